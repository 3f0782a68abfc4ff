package server_test

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/edtech-analytics/platform/libs/tenancy/mappings"

	"github.com/edtech-analytics/platform/services/gateway/internal/roster"
)

// districtPackage is a bulk OneRoster CSV package of a district: 50 schools and users users (one in 40
// a teacher), each with a primary role at a school (the OneRoster 1.1 columns); changed users get a
// new family name.
func districtPackage(b *testing.B, users int, changed func(i int) bool) []byte {
	b.Helper()
	orgs := generated(func(w io.Writer) error {
		if _, err := io.WriteString(w, "sourcedId,name,type\n"); err != nil {
			return err
		}
		for s := range 50 {
			if _, err := fmt.Fprintf(w, "sch-%02d,School %d,school\n", s, s); err != nil {
				return err
			}
		}
		return nil
	})
	rows := generated(func(w io.Writer) error {
		if _, err := io.WriteString(w, "sourcedId,status,dateLastModified,enabledUser,orgSourcedIds,role,username,givenName,familyName,email,grades\n"); err != nil {
			return err
		}
		for i := range users {
			role, grade := "student", fmt.Sprintf("%02d", 1+i%12)
			if i%40 == 0 {
				role, grade = "teacher", ""
			}
			family := "Family"
			if changed(i) {
				family = "Renamed"
			}
			if _, err := fmt.Fprintf(w, "user-%06d,,,true,sch-%02d,%s,u%06d,Given%d,%s,u%06d@example.org,%s\n", i, i%50, role, i, i, family, i, grade); err != nil {
				return err
			}
		}
		return nil
	})
	return packageOf(b, zipFile{name: "manifest.csv", body: strings.NewReader("propertyName,value\nmanifest.version,1.0\noneroster.version,1.2\nfile.orgs,bulk\nfile.users,bulk\n")},
		zipFile{name: "orgs.csv", body: orgs}, zipFile{name: "users.csv", body: rows})
}

// peakHeap samples the heap every millisecond until stop is called, and returns the most it held in
// objects (live or not yet collected) and the most a garbage collection found live.
func peakHeap() (stop func() (objects, live uint64)) {
	var mu sync.Mutex
	var peak, peakLive uint64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/gc/heap/live:bytes"}}
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
		for {
			metrics.Read(s)
			mu.Lock()
			peak = max(peak, s[0].Value.Uint64())
			peakLive = max(peakLive, s[1].Value.Uint64())
			mu.Unlock()
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	})
	return func() (uint64, uint64) {
		close(done)
		wg.Wait()
		return peak, peakLive
	}
}

// BenchmarkRosterImport sends a 200,000-user district's bulk CSV package through the gateway (decoding,
// the import step's comparison with the district's ledger in PostgreSQL, sealing, Kafka) twice per
// iteration: first into an empty ledger (every record sent, every user's data key created), then again
// with 1% of the users changed (those sent). It reports rows/s of each and, for each, above what they
// were before the request: the peak of the heap's objects (sampled every millisecond; garbage not yet
// collected included) and the peak of what a garbage collection found live. The broker
// keeps its log on disk, so its memory is not the gateway's; the keyring's cache of data keys (200,000
// by default, about 1 KiB each, shared by every request) fills during the first request, so it is run
// again with a cache of 10,000 keys to show what the import itself holds.
//
//	go test -run '^$' -bench BenchmarkRosterImport -benchtime 1x ./internal/server/
func BenchmarkRosterImport(b *testing.B) {
	for _, cache := range []int{0, 10_000} {
		name := "key-cache=default"
		if cache > 0 {
			name = fmt.Sprintf("key-cache=%d", cache)
		}
		b.Run(name, func(b *testing.B) { benchmarkRosterImport(b, cache) })
	}
}

func benchmarkRosterImport(b *testing.B, keyCache int) {
	const users = 200_000
	first := districtPackage(b, users, func(int) bool { return false })
	again := districtPackage(b, users, func(i int) bool { return i%100 == 7 })
	b.Logf("package: %d bytes zipped", len(first))
	for b.Loop() {
		b.StopTimer()
		f := newFixture(b, func(s *setup) {
			s.keyCache = keyCache
			s.kafka = []kfake.Opt{kfake.DataDir(b.TempDir())}
			s.limits.MaxRosterBodyBytes = 64 << 20
			s.limits.Roster = roster.Limits{MaxRecords: 250_000, MaxFileBytes: 128 << 20, MaxUnzippedBytes: 256 << 20}
		})
		send := func(body []byte) (time.Duration, float64, float64, map[string]any) {
			runtime.GC()
			base := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/gc/heap/live:bytes"}}
			metrics.Read(base)
			stop := peakHeap()
			b.StartTimer()
			start := time.Now()
			code, out := f.postRaw(b, "/v1/roster/csv", "roster", "application/zip", body)
			took := time.Since(start)
			b.StopTimer()
			peak, live := stop()
			if code != http.StatusAccepted || out["accepted"] != float64(users+50) {
				b.Fatalf("upload: %d %.300v", code, out)
			}
			mib := func(v, from uint64) float64 { return float64(v-min(v, from)) / (1 << 20) }
			return took, mib(peak, base[0].Value.Uint64()), mib(live, base[1].Value.Uint64()), out["upload"].(map[string]any)
		}
		took, peak, live, _ := send(first)
		b.ReportMetric(float64(users+50)/took.Seconds(), "first-rows/s")
		b.ReportMetric(peak, "first-heap-MiB")
		b.ReportMetric(live, "first-live-MiB")
		took, peak, live, up := send(again)
		if up["sent"] != float64(users/100) {
			b.Fatalf("second upload sent %v", up["sent"])
		}
		b.ReportMetric(float64(users+50)/took.Seconds(), "again-rows/s")
		b.ReportMetric(peak, "again-heap-MiB")
		b.ReportMetric(live, "again-live-MiB")
		b.StartTimer()
	}
}

// BenchmarkMappedUpload sends a 200,000-row students export of the sis-a shape (libs/mapping's example
// rules) through POST /v1/sources/{source}/uploads: mapped, checked as OneRoster, through the import step
// to Kafka, first into an empty ledger and then again with 1% of the rows changed. It reports rows/s of
// each, with the keyring's cache at 10,000 keys (see BenchmarkRosterImport).
//
//	go test -run '^$' -bench BenchmarkMappedUpload -benchtime 1x ./internal/server/
func BenchmarkMappedUpload(b *testing.B) {
	const rows = 200_000
	export := func(changed func(i int) bool) []byte {
		var buf strings.Builder
		buf.WriteString("Student_Number,First_Name,Last_Name,Middle_Name,Grade_Level,School_ID,Email,Homeroom_Teacher,Room,Active\n")
		for i := range rows {
			last := "Family"
			if changed(i) {
				last = "Renamed"
			}
			fmt.Fprintf(&buf, "%d,Given%d,%s,,%d,SCH-%02d,s%d@students.example.org,Teacher %d,%d,Y\n", 300000+i, i, last, i%12+1, i%50, i, i%40, i%40)
		}
		return []byte(buf.String())
	}
	first := export(func(int) bool { return false })
	again := export(func(i int) bool { return i%100 == 7 })
	rules, err := os.ReadFile(filepath.Join("..", "..", "..", "..", "libs", "mapping", "examples", "sis-a", "rules.yaml"))
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		b.StopTimer()
		f := newFixture(b, func(s *setup) {
			s.keyCache = 10_000
			s.kafka = []kfake.Opt{kfake.DataDir(b.TempDir())}
			s.limits.MaxRosterBodyBytes = 64 << 20
		})
		if _, err := mappings.New(f.pool).Set(b.Context(), "d1", "sis", rules, "bench"); err != nil {
			b.Fatal(err)
		}
		send := func(body []byte) (time.Duration, map[string]any) {
			b.StartTimer()
			start := time.Now()
			code, out := f.postRaw(b, "/v1/sources/sis/uploads?file=students_2026.csv&mode=bulk", "roster", "text/csv", body)
			took := time.Since(start)
			b.StopTimer()
			if code != http.StatusAccepted || out["accepted"] != float64(rows) {
				b.Fatalf("upload: %d %.300v", code, out)
			}
			return took, out["upload"].(map[string]any)
		}
		took, _ := send(first)
		b.ReportMetric(rows/took.Seconds(), "first-rows/s")
		took, up := send(again)
		if up["sent"] != float64(rows/100) {
			b.Fatalf("second upload sent %v", up["sent"])
		}
		b.ReportMetric(rows/took.Seconds(), "again-rows/s")
		b.StartTimer()
	}
}
