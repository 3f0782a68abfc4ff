package keyring_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/edtech-analytics/platform/libs/keyring"
	"github.com/edtech-analytics/platform/libs/pgutil/pgtest"
	"github.com/edtech-analytics/platform/libs/tenancy"
)

func masterKeys(t testing.TB, lines ...string) *keyring.LocalKeys {
	t.Helper()
	lk, err := keyring.ParseLocalKeys(strings.Join(lines, "\n"))
	if err != nil {
		t.Fatal(err)
	}
	return lk
}

// controlDB returns a fresh database with the control schema.
func controlDB(t testing.TB) *pgxpool.Pool {
	t.Helper()
	pool, _ := pgtest.New(t)
	if err := tenancy.Migrate(context.Background(), pool); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	return pool
}

func seal(t *testing.T, kr *keyring.Keyring, tenant, sisID, value string) string {
	t.Helper()
	k, err := kr.SubjectKey(t.Context(), tenant, sisID)
	if err != nil {
		t.Fatalf("SubjectKey(%s, %s): %v", tenant, sisID, err)
	}
	return k.Seal(value)
}

func open(t *testing.T, kr *keyring.Keyring, tenant, v string) string {
	t.Helper()
	pt, err := kr.Open(t.Context(), tenant, v)
	if err != nil {
		t.Fatalf("Open(%s, %.20s...): %v", tenant, v, err)
	}
	return pt
}

func TestSealedFieldsOpenOnlyInTheirDistrict(t *testing.T) {
	pool := controlDB(t)
	m := masterKeys(t, keyring.NewLocalKeyLine("m1"))
	gateway := keyring.New(pool, m, keyring.Options{})
	enricher := keyring.New(pool, m, keyring.Options{}) // another process: nothing cached

	v := seal(t, gateway, "d1", "stu-1", "Ada Lovelace")
	if !keyring.IsSealed(v) || strings.Contains(v, "Ada") {
		t.Fatalf("sealed value %q is not sealed", v)
	}
	if again := seal(t, gateway, "d1", "stu-1", "Ada Lovelace"); again == v {
		t.Fatal("two seals of one value are equal: the nonce is not fresh")
	}
	if got := open(t, enricher, "d1", v); got != "Ada Lovelace" {
		t.Fatalf("Open = %q", got)
	}
	if got := open(t, enricher, "d1", "plain-legacy-value"); got != "plain-legacy-value" {
		t.Fatalf("Open of a plaintext value = %q", got)
	}
	if _, err := enricher.Open(t.Context(), "d2", v); !errors.Is(err, keyring.ErrMalformed) {
		t.Fatalf("Open in another district: %v, want ErrMalformed", err)
	}
	tampered := []byte(v)
	tampered[len(tampered)-3] ^= 1
	if _, err := enricher.Open(t.Context(), "d1", string(tampered)); !errors.Is(err, keyring.ErrMalformed) {
		t.Fatalf("Open of a changed value: %v, want ErrMalformed", err)
	}
	if _, err := enricher.Open(t.Context(), "d1", "enc1.!!"); !errors.Is(err, keyring.ErrMalformed) {
		t.Fatalf("Open of garbage: %v, want ErrMalformed", err)
	}

	// The key table never names the person.
	var refs int
	if err := pool.QueryRow(t.Context(), `SELECT count(*) FROM control.subject_keys
		WHERE position('stu-1'::bytea in subject_ref) > 0`).Scan(&refs); err != nil || refs != 0 {
		t.Fatalf("subject_keys holds the SIS id in plain form (%d rows, %v)", refs, err)
	}
}

func TestConcurrentProcessesAgreeOnOneKeyPerPerson(t *testing.T) {
	pool := controlDB(t)
	m := masterKeys(t, keyring.NewLocalKeyLine("m1"))
	ids := []string{"s1", "s2", "s3", "s4", "s5", "s1"}
	const procs = 6
	got := make([]map[string]*keyring.DataKey, procs)
	var wg sync.WaitGroup
	errs := make([]error, procs)
	for i := range procs {
		wg.Go(func() {
			got[i], errs[i] = keyring.New(pool, m, keyring.Options{}).SubjectKeys(context.Background(), "d1", ids)
		})
	}
	wg.Wait()
	for i := range procs {
		if errs[i] != nil {
			t.Fatalf("process %d: %v", i, errs[i])
		}
		for _, id := range ids {
			if got[i][id].ID() != got[0][id].ID() {
				t.Fatalf("process %d has key %s for %s, process 0 has %s", i, got[i][id].ID(), id, got[0][id].ID())
			}
		}
	}
	var n int
	if err := pool.QueryRow(t.Context(), "SELECT count(*) FROM control.subject_keys").Scan(&n); err != nil || n != 5 {
		t.Fatalf("%d data keys stored (%v), want 5", n, err)
	}
}

func TestKeySetsCreateWhatIsMissingAndKeepWhatExists(t *testing.T) {
	pool := controlDB(t)
	m := masterKeys(t, keyring.NewLocalKeyLine("m1"))
	gateway := keyring.New(pool, m, keyring.Options{})
	enricher := keyring.New(pool, m, keyring.Options{})
	had := seal(t, gateway, "d1", "s1", "Ada") // s1 has a key before the set is made

	// Two processes fill sets of overlapping people at once: every person ends with one key.
	sets := []*keyring.KeySet{keyring.NewKeySet("d1"), keyring.NewKeySet("d1")}
	errs := make([]error, len(sets))
	var wg sync.WaitGroup
	for i, set := range sets {
		wg.Go(func() {
			errs[i] = keyring.New(pool, m, keyring.Options{}).EnsureSubjectKeys(t.Context(), set, []string{"s1", "s2", "s3", "s2"})
		})
	}
	wg.Wait()
	for i, set := range sets {
		if errs[i] != nil || set.Len() != 3 {
			t.Fatalf("set %d: %d keys, %v", i, set.Len(), errs[i])
		}
	}
	if err := gateway.EnsureSubjectKeys(t.Context(), sets[0], []string{"s3", "s4"}); err != nil || sets[0].Len() != 4 {
		t.Fatalf("adding to a set: %d keys, %v", sets[0].Len(), err)
	}
	for _, id := range []string{"s1", "s2", "s3", "s4"} {
		k, err := sets[0].Key(id)
		if err != nil || k == nil {
			t.Fatalf("Key(%s) = %v, %v", id, k, err)
		}
		if other, err := sets[1].Key(id); id != "s4" && (err != nil || other.ID() != k.ID()) {
			t.Fatalf("the sets hold different keys for %s", id)
		}
		cached, err := gateway.SubjectKey(t.Context(), "d1", id)
		if err != nil || cached.ID() != k.ID() {
			t.Fatalf("SubjectKey(%s) = %v, %v: not the set's key %s", id, cached, err, k.ID())
		}
		if got := open(t, enricher, "d1", k.Seal("v-"+id)); got != "v-"+id {
			t.Fatalf("a value sealed with the set's key of %s opens as %q", id, got)
		}
	}
	if k, err := sets[0].Key("s9"); k != nil || err != nil {
		t.Fatalf("Key of a person not in the set = %v, %v", k, err)
	}
	if got := open(t, enricher, "d1", had); got != "Ada" {
		t.Fatalf("the key s1 had before was replaced: %q", got)
	}
	var n int
	if err := pool.QueryRow(t.Context(), "SELECT count(*) FROM control.subject_keys").Scan(&n); err != nil || n != 4 {
		t.Fatalf("%d data keys stored (%v), want 4", n, err)
	}
}

func TestShreddedPersonCannotBeRead(t *testing.T) {
	pool := controlDB(t)
	m := masterKeys(t, keyring.NewLocalKeyLine("m1"))
	gateway := keyring.New(pool, m, keyring.Options{})
	erased := seal(t, gateway, "d1", "stu-erased", "Erased Student")
	kept := seal(t, gateway, "d1", "stu-kept", "Kept Student")

	admin := keyring.New(pool, m, keyring.Options{})
	if found, err := admin.ShredSubject(t.Context(), "d1", "stu-erased"); err != nil || !found {
		t.Fatalf("ShredSubject = %v, %v; want true", found, err)
	}
	if found, err := admin.ShredSubject(t.Context(), "d1", "stu-erased"); err != nil || found {
		t.Fatalf("second ShredSubject = %v, %v; want false, nil", found, err)
	}
	if has, err := admin.HasSubjectKey(t.Context(), "d1", "stu-erased"); err != nil || has {
		t.Fatalf("HasSubjectKey after shredding = %v, %v", has, err)
	}

	later := keyring.New(pool, m, keyring.Options{}) // a replay long after, in a new process
	if err := later.Preload(t.Context(), []string{erased, kept, "plain"}); err != nil {
		t.Fatal(err)
	}
	if _, err := later.Open(t.Context(), "d1", erased); !errors.Is(err, keyring.ErrShredded) {
		t.Fatalf("Open of a shredded person's field: %v, want ErrShredded", err)
	}
	if got := open(t, later, "d1", kept); got != "Kept Student" {
		t.Fatalf("the other student's field = %q", got)
	}
}

func TestDistrictRotationRewrapsWithoutTouchingData(t *testing.T) {
	pool := controlDB(t)
	m := masterKeys(t, keyring.NewLocalKeyLine("m1"))
	gateway := keyring.New(pool, m, keyring.Options{})
	before := map[string]string{}
	for _, id := range []string{"a", "b", "c"} {
		before[id] = seal(t, gateway, "d1", id, "name of "+id)
	}
	seal(t, gateway, "d2", "a", "other district")

	rot, err := keyring.New(pool, m, keyring.Options{}).RotateDistrict(t.Context(), "d1")
	if err != nil {
		t.Fatal(err)
	}
	if rot != (keyring.Rotation{From: 1, To: 2, Rewrapped: 3, Retired: 1}) {
		t.Fatalf("rotation = %+v", rot)
	}
	var oldVersions int
	if err := pool.QueryRow(t.Context(), `SELECT count(*) FROM control.subject_keys WHERE tenant_id = 'd1' AND kek_version <> 2`).
		Scan(&oldVersions); err != nil || oldVersions != 0 {
		t.Fatalf("%d data keys still under the old KEK (%v)", oldVersions, err)
	}

	// The gateway's cache still names KEK 1, which is gone: a new person's key is refused by the database
	// and created under KEK 2 instead.
	fresh := seal(t, gateway, "d1", "d", "name of d")
	reader := keyring.New(pool, m, keyring.Options{})
	for id, v := range before {
		if got := open(t, reader, "d1", v); got != "name of "+id {
			t.Fatalf("after rotation %s = %q", id, got)
		}
	}
	if got := open(t, reader, "d1", fresh); got != "name of d" {
		t.Fatalf("key created with a stale cache: %q", got)
	}
	rot2, err := reader.RotateDistrict(t.Context(), "d1")
	if err != nil || rot2.From != 2 || rot2.To != 3 || rot2.Rewrapped != 4 {
		t.Fatalf("second rotation = %+v, %v", rot2, err)
	}
	if _, err := reader.RotateDistrict(t.Context(), "nope"); !errors.Is(err, keyring.ErrUnknownKey) {
		t.Fatalf("rotating an unknown district: %v", err)
	}
}

func TestMasterRotationLetsTheOldMasterKeyGo(t *testing.T) {
	pool := controlDB(t)
	old := keyring.NewLocalKeyLine("m1")
	gateway := keyring.New(pool, masterKeys(t, old), keyring.Options{})
	v1 := seal(t, gateway, "d1", "a", "one")
	v2 := seal(t, gateway, "d2", "b", "two")
	if _, err := keyring.New(pool, masterKeys(t, old), keyring.Options{}).RotateDistrict(t.Context(), "d1"); err != nil {
		t.Fatal(err)
	}

	newer := keyring.NewLocalKeyLine("m2")
	both := masterKeys(t, newer, old)
	n, err := keyring.New(pool, both, keyring.Options{}).RotateMaster(t.Context())
	if err != nil || n != 4 { // two lookup secrets, two current KEKs
		t.Fatalf("RotateMaster = %d, %v; want 4", n, err)
	}
	onlyNew := keyring.New(pool, masterKeys(t, newer), keyring.Options{})
	if got := open(t, onlyNew, "d1", v1); got != "one" {
		t.Fatalf("d1 = %q", got)
	}
	if got := open(t, onlyNew, "d2", v2); got != "two" {
		t.Fatalf("d2 = %q", got)
	}
	withOld := keyring.New(pool, masterKeys(t, old), keyring.Options{})
	if _, err := withOld.Open(t.Context(), "d1", v1); !errors.Is(err, keyring.ErrUnknownKey) {
		t.Fatalf("the old master key alone still opens: %v", err)
	}
}

func TestShreddedDistrictCannotBeRead(t *testing.T) {
	pool := controlDB(t)
	m := masterKeys(t, keyring.NewLocalKeyLine("m1"))
	gateway := keyring.New(pool, m, keyring.Options{})
	v := seal(t, gateway, "d1", "a", "one")
	other := seal(t, gateway, "d2", "a", "two")
	admin := keyring.New(pool, m, keyring.Options{})
	if n, err := admin.ShredDistrict(t.Context(), "d1"); err != nil || n != 1 {
		t.Fatalf("ShredDistrict = %d, %v", n, err)
	}
	if n, err := admin.DistrictKeyCount(t.Context(), "d1"); err != nil || n != 0 {
		t.Fatalf("DistrictKeyCount after shredding = %d, %v", n, err)
	}
	later := keyring.New(pool, m, keyring.Options{})
	if _, err := later.Open(t.Context(), "d1", v); !errors.Is(err, keyring.ErrShredded) {
		t.Fatalf("Open after the district was shredded: %v", err)
	}
	if got := open(t, later, "d2", other); got != "two" {
		t.Fatalf("the other district = %q", got)
	}
}

func TestPseudonymKeysMoveIntoTheHierarchy(t *testing.T) {
	pool := controlDB(t)
	if _, err := pool.Exec(t.Context(), `INSERT INTO control.tenants (id, name, pseudonym_key) VALUES ('d1', 'D1', $1)`,
		[]byte(strings.Repeat("p", 32))); err != nil {
		t.Fatal(err)
	}
	legacy := []byte(strings.Repeat("p", 32))
	old := keyring.NewLocalKeyLine("m1")
	m := masterKeys(t, old)
	got, err := keyring.New(pool, m, keyring.Options{}).PseudonymKey(t.Context(), "d1", legacy)
	if err != nil || string(got) != string(legacy) {
		t.Fatalf("PseudonymKey = %q, %v", got, err)
	}
	var plain []byte
	if err := pool.QueryRow(t.Context(), `SELECT pseudonym_key FROM control.tenants WHERE id = 'd1'`).Scan(&plain); err != nil || plain != nil {
		t.Fatalf("the plaintext key is still in control.tenants: %v, %v", plain, err)
	}
	// Later loads read the wrapped key (the plaintext is gone), also after a master rotation.
	newer := keyring.NewLocalKeyLine("m2")
	if _, err := keyring.New(pool, masterKeys(t, newer, old), keyring.Options{}).RotateMaster(t.Context()); err != nil {
		t.Fatal(err)
	}
	got, err = keyring.New(pool, masterKeys(t, newer), keyring.Options{}).PseudonymKey(t.Context(), "d1", nil)
	if err != nil || string(got) != string(legacy) {
		t.Fatalf("PseudonymKey after the master rotation = %q, %v", got, err)
	}
	if _, err := keyring.New(pool, m, keyring.Options{}).PseudonymKey(t.Context(), "unknown", nil); !errors.Is(err, keyring.ErrShredded) {
		t.Fatalf("PseudonymKey of a district without one: %v", err)
	}
	admin := keyring.New(pool, masterKeys(t, newer), keyring.Options{})
	if _, err := admin.ShredDistrict(t.Context(), "d1"); err != nil {
		t.Fatal(err)
	}
	if _, err := keyring.New(pool, masterKeys(t, newer), keyring.Options{}).PseudonymKey(t.Context(), "d1", nil); !errors.Is(err, keyring.ErrShredded) {
		t.Fatalf("PseudonymKey of a shredded district: %v", err)
	}
}
