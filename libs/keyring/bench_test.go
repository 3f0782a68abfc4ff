package keyring_test

import (
	"fmt"
	"testing"

	"github.com/edtech-analytics/platform/libs/keyring"
)

// BenchmarkSealEvent is what the gateway adds to a learning event: find the student's data key (cached)
// and seal the one identifying field an event carries, the student's SIS id.
func BenchmarkSealEvent(b *testing.B) {
	pool := controlDB(b)
	kr := keyring.New(pool, masterKeys(b, keyring.NewLocalKeyLine("m1")), keyring.Options{})
	ids := make([]string, 1000)
	for i := range ids {
		ids[i] = fmt.Sprintf("stu-%06d", i)
	}
	if _, err := kr.SubjectKeys(b.Context(), "d1", ids); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		id := ids[i%len(ids)]
		i++
		k, err := kr.SubjectKey(b.Context(), "d1", id)
		if err != nil {
			b.Fatal(err)
		}
		_ = k.Seal(id)
	}
}

// BenchmarkOpenEvent is the enricher's side: open the sealed SIS id with a cached data key.
func BenchmarkOpenEvent(b *testing.B) {
	pool := controlDB(b)
	kr := keyring.New(pool, masterKeys(b, keyring.NewLocalKeyLine("m1")), keyring.Options{})
	sealed := make([]string, 1000)
	for i := range sealed {
		id := fmt.Sprintf("stu-%06d", i)
		k, err := kr.SubjectKey(b.Context(), "d1", id)
		if err != nil {
			b.Fatal(err)
		}
		sealed[i] = k.Seal(id)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := kr.Open(b.Context(), "d1", sealed[i%len(sealed)]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkCreateSubjectKeys creates the data keys of 2,048 new people per iteration in one call, as a
// first roster import does for each chunk of users.
func BenchmarkCreateSubjectKeys(b *testing.B) {
	pool := controlDB(b)
	kr := keyring.New(pool, masterKeys(b, keyring.NewLocalKeyLine("m1")), keyring.Options{})
	n := 0
	for b.Loop() {
		ids := make([]string, 2048)
		for i := range ids {
			ids[i] = fmt.Sprintf("stu-%08d", n)
			n++
		}
		if _, err := kr.SubjectKeys(b.Context(), "d1", ids); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "keys/s")
}

// BenchmarkEnsureSubjectKeys is BenchmarkCreateSubjectKeys through a KeySet (insert first).
func BenchmarkEnsureSubjectKeys(b *testing.B) {
	pool := controlDB(b)
	kr := keyring.New(pool, masterKeys(b, keyring.NewLocalKeyLine("m1")), keyring.Options{})
	set := keyring.NewKeySet("d1")
	n := 0
	for b.Loop() {
		ids := make([]string, 2048)
		for i := range ids {
			ids[i] = fmt.Sprintf("stu-%08d", n)
			n++
		}
		if err := kr.EnsureSubjectKeys(b.Context(), set, ids); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "keys/s")
}
