package identity_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"

	"github.com/edtech-analytics/platform/libs/keyring"
	"github.com/edtech-analytics/platform/libs/pgutil/pgtest"
	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/edtech-analytics/platform/libs/tenancy/fleet"
	"github.com/edtech-analytics/platform/libs/tenancy/tenants"
	"github.com/edtech-analytics/platform/services/enricher/internal/identity"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// districts returns a migrated database with the given districts.
func districts(t *testing.T, ids ...string) (*pgxpool.Pool, map[string]tenants.Tenant) {
	t.Helper()
	pool, _ := pgtest.New(t)
	if err := tenancy.Migrate(t.Context(), pool); err != nil {
		t.Fatal(err)
	}
	out := map[string]tenants.Tenant{}
	for _, id := range ids {
		tn, err := tenants.New(fleet.New(pool, os.Getenv)).Create(t.Context(), id, "District "+id)
		if err != nil {
			t.Fatal(err)
		}
		out[id] = tn
	}
	return pool, out
}

func count(t *testing.T, pool *pgxpool.Pool, query string, args ...any) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(t.Context(), query, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// mustOf returns a helper that unwraps (Identity, error), failing t on error.
func mustOf(t *testing.T) func(identity.Identity, error) identity.Identity {
	return func(id identity.Identity, err error) identity.Identity {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
}

func TestResolveIsStablePerDistrict(t *testing.T) {
	must := mustOf(t)
	pool, d := districts(t, "d1", "d2")
	ctx := t.Context()
	a := must(identity.New(fleet.NewDistrictPools(fleet.New(pool, os.Getenv)), 100).Resolve(ctx, d["d1"], "sis", "S1"))
	b := must(identity.New(fleet.NewDistrictPools(fleet.New(pool, os.Getenv)), 100).Resolve(ctx, d["d1"], "sis", "S1")) // another instance, cold cache
	if a != b || a.InternalID == "" || a.Pseudonym != keyring.Pseudonym(d["d1"].PseudonymKey, a.InternalID) {
		t.Fatalf("same student resolved to %+v and %+v", a, b)
	}
	other := must(identity.New(fleet.NewDistrictPools(fleet.New(pool, os.Getenv)), 100).Resolve(ctx, d["d2"], "sis", "S1"))
	if other.InternalID == a.InternalID || other.Pseudonym == a.Pseudonym {
		t.Fatal("the same SIS id in two districts shares an id or pseudonym")
	}
	if lms := must(identity.New(fleet.NewDistrictPools(fleet.New(pool, os.Getenv)), 100).Resolve(ctx, d["d1"], "lms", "S1")); lms.InternalID == a.InternalID {
		t.Fatal("another source's SIS id namespace shares the id")
	}
}

// TestRacingResolversMakeOneID: two instances (separate caches), eight goroutines each, resolving the same
// 40 unseen SIS ids at once (one by one, in batches, or through roster links) agree on one id per
// student, and leave no orphan student rows.
func TestRacingResolversMakeOneID(t *testing.T) {
	pool, d := districts(t, "d1")
	resolvers := []*identity.Resolver{identity.New(fleet.NewDistrictPools(fleet.New(pool, os.Getenv)), 1000), identity.New(fleet.NewDistrictPools(fleet.New(pool, os.Getenv)), 1000)}
	const students = 40
	got := make([][students]string, 16)
	var wg sync.WaitGroup
	errs := make(chan error, 16*students)
	for g := range got {
		wg.Go(func() {
			r := resolvers[g%2]
			if g%4 == 3 { // a batch: resolve all at once, then answer from the cache
				var keys []identity.Key
				for i := range students {
					keys = append(keys, identity.Key{Source: "sis", SIS: fmt.Sprintf("S%d", i)})
				}
				if err := r.ResolveMany(t.Context(), d["d1"], keys); err != nil {
					errs <- err
					return
				}
			}
			for i := range students {
				// Half the goroutines link through the roster (with a matching key), half resolve events.
				sis := fmt.Sprintf("S%d", (i+g)%students)
				var id identity.Identity
				var err error
				if g%4 < 2 {
					id, err = r.Resolve(t.Context(), d["d1"], "sis", sis)
				} else {
					id, err = r.Link(t.Context(), d["d1"], "sis", sis, "state-"+sis)
				}
				if err != nil {
					errs <- err
					return
				}
				got[g][(i+g)%students] = id.InternalID
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for i := range students {
		for g := range got {
			if got[g][i] != got[0][i] {
				t.Fatalf("S%d resolved to %s and %s", i, got[0][i], got[g][i])
			}
		}
	}
	if n := count(t, pool, "SELECT count(*) FROM district_d1.students"); n != students {
		t.Fatalf("%d student rows for %d students", n, students)
	}
	if n := count(t, pool, "SELECT count(*) FROM district_d1.students WHERE match_key IS NOT NULL"); n != students {
		t.Fatalf("%d students carry their matching key, want %d", n, students)
	}
}

func TestVendorSwitchAndLateRoster(t *testing.T) {
	must := mustOf(t)
	pool, d := districts(t, "d1")
	ctx := t.Context()
	d1 := d["d1"]
	r := identity.New(fleet.NewDistrictPools(fleet.New(pool, os.Getenv)), 100)

	// The old SIS rostered the student with a state id.
	old := must(r.Link(ctx, d1, "powerschool", "PS-1", "STATE-1"))
	// The district switches vendor: the new SIS's id for the same student links by the state id...
	switched := must(r.Link(ctx, d1, "infinitecampus", "IC-9", "STATE-1"))
	if switched.InternalID != old.InternalID {
		t.Fatalf("vendor switch made a new id: %s, was %s", switched.InternalID, old.InternalID)
	}
	// ...and events from the new vendor's integration resolve to it, from a cold cache too.
	if ev := must(identity.New(fleet.NewDistrictPools(fleet.New(pool, os.Getenv)), 100).Resolve(ctx, d1, "infinitecampus", "IC-9")); ev.InternalID != old.InternalID {
		t.Fatalf("event after the switch resolved to %s", ev.InternalID)
	}

	// An event for a student not yet rostered gets an id at once; the roster then links to that id.
	early := must(r.Resolve(ctx, d1, "infinitecampus", "IC-10"))
	rostered := must(r.Link(ctx, d1, "infinitecampus", "IC-10", "STATE-2"))
	if rostered.InternalID != early.InternalID {
		t.Fatalf("roster made a new id %s for a student first seen as %s", rostered.InternalID, early.InternalID)
	}
	if n := count(t, pool, "SELECT count(*) FROM district_d1.students WHERE match_key = 'STATE-2' AND internal_id = $1",
		early.InternalID); n != 1 {
		t.Fatal("the early student did not get its matching key")
	}

	// The same roster record again changes nothing; a corrected state id is stored.
	if again := must(r.Link(ctx, d1, "infinitecampus", "IC-10", "STATE-2")); again != rostered {
		t.Fatalf("re-sent roster record: %+v, was %+v", again, rostered)
	}
	must(r.Link(ctx, d1, "infinitecampus", "IC-10", "STATE-2b"))
	if n := count(t, pool, "SELECT count(*) FROM district_d1.students WHERE match_key = 'STATE-2b' AND internal_id = $1",
		early.InternalID); n != 1 {
		t.Fatal("a changed matching key was not stored")
	}

	// A new-vendor event that came before the new vendor's roster got a provisional id; when the roster
	// links it to the existing student, that student's id wins and the provisional one is marked merged.
	provisional := must(r.Resolve(ctx, d1, "infinitecampus", "IC-11"))
	prior := must(r.Link(ctx, d1, "powerschool", "PS-3", "STATE-3"))
	linked := must(r.Link(ctx, d1, "infinitecampus", "IC-11", "STATE-3"))
	if linked.InternalID != prior.InternalID || provisional.InternalID == prior.InternalID {
		t.Fatalf("linked = %s, prior = %s, provisional = %s", linked.InternalID, prior.InternalID, provisional.InternalID)
	}
	if ev := must(identity.New(fleet.NewDistrictPools(fleet.New(pool, os.Getenv)), 100).Resolve(ctx, d1, "infinitecampus", "IC-11")); ev.InternalID != prior.InternalID {
		t.Fatalf("events after the link resolve to %s, want %s", ev.InternalID, prior.InternalID)
	}
	if n := count(t, pool, "SELECT count(*) FROM district_d1.students WHERE internal_id = $1 AND merged_into = $2",
		provisional.InternalID, prior.InternalID); n != 1 {
		t.Fatal("the provisional id is not marked merged into the matched student")
	}
}

func TestEraseHashesIdentifiersAndKeepsTheID(t *testing.T) {
	must := mustOf(t)
	pool, d := districts(t, "d1")
	ctx := t.Context()
	d1 := d["d1"]
	r := identity.New(fleet.NewDistrictPools(fleet.New(pool, os.Getenv)), 100)
	id := must(r.Link(ctx, d1, "sis", "S1", "STATE-1"))
	must(r.Resolve(ctx, d1, "lms", "L1")) // another student, untouched
	if err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return r.Erase(ctx, tx, d1, id.InternalID) }); err != nil {
		t.Fatal(err)
	}
	if n := count(t, pool, `SELECT count(*) FROM district_d1.student_identities i JOIN district_d1.students s USING (internal_id)
		WHERE i.sis_id = 'S1' OR s.match_key = 'STATE-1'`); n != 0 {
		t.Fatal("clear identifiers of the erased student remain")
	}
	if n := count(t, pool, "SELECT count(*) FROM district_d1.student_identities WHERE sis_id = 'L1'"); n != 1 {
		t.Fatal("another student's identity was touched")
	}
	// Its SIS id and matching key still resolve to the erased id, so its records can be suppressed.
	cold := identity.New(fleet.NewDistrictPools(fleet.New(pool, os.Getenv)), 100)
	if again := must(cold.Resolve(ctx, d1, "sis", "S1")); again.InternalID != id.InternalID {
		t.Fatalf("erased SIS id resolved to a new id %s", again.InternalID)
	}
	batch := identity.New(fleet.NewDistrictPools(fleet.New(pool, os.Getenv)), 100)
	if err := batch.ResolveMany(ctx, d1, []identity.Key{{Source: "sis", SIS: "S1"}, {Source: "sis", SIS: "S2"}}); err != nil {
		t.Fatal(err)
	}
	if again := must(batch.Resolve(ctx, d1, "sis", "S1")); again.InternalID != id.InternalID {
		t.Fatalf("erased SIS id resolved in a batch to a new id %s", again.InternalID)
	}
	newVendor := must(cold.Link(ctx, d1, "ic", "IC-1", "STATE-1"))
	if newVendor.InternalID != id.InternalID {
		t.Fatalf("a new vendor's record of the erased student made a new id %s", newVendor.InternalID)
	}
	if n := count(t, pool, "SELECT count(*) FROM district_d1.student_identities WHERE sis_id = 'IC-1'"); n != 0 {
		t.Fatal("a new SIS id of an erased student was stored in clear")
	}
	if n := count(t, pool, "SELECT count(*) FROM district_d1.students WHERE erased_at IS NOT NULL"); n != 1 {
		t.Fatal("erased_at not set")
	}
	// Erasing twice is harmless.
	if err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return r.Erase(ctx, tx, d1, id.InternalID) }); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Resolve(context.Background(), tenants.Tenant{ID: "Bad;ID"}, "sis", "S1"); !errors.Is(err, tenancy.ErrInvalidArgument) {
		t.Fatalf("invalid tenant id: %v", err)
	}
}
