package claims_test

import (
	"os"
	"testing"
	"time"

	"github.com/edtech-analytics/platform/libs/pgutil/pgtest"
	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/edtech-analytics/platform/libs/tenancy/fleet"
	"github.com/edtech-analytics/platform/libs/tenancy/ingest"
	"github.com/edtech-analytics/platform/libs/tenancy/tenants"
	"github.com/edtech-analytics/platform/services/enricher/internal/claims"
)

// TestClaims: a record's own claim passes again (its transaction aborted and it is processed anew),
// another record with the id is a retry, of two claims of one id in one call exactly one wins, an expired
// claim is taken over, and ids copied in after a switch are held by no record.
func TestClaims(t *testing.T) {
	pool, _ := pgtest.New(t)
	ctx := t.Context()
	if err := tenancy.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	s := claims.New(pool, 48*time.Hour)
	claim := func(cs ...claims.Claim) []bool {
		t.Helper()
		won, err := s.Claim(ctx, cs)
		if err != nil {
			t.Fatal(err)
		}
		return won
	}
	a := claims.Claim{Tenant: "d1", EventID: "e1", Partition: 2, Offset: 10}
	if won := claim(a); !won[0] {
		t.Fatal("a new id was not claimed")
	}
	if won := claim(a); !won[0] {
		t.Fatal("the record that claimed an id lost it when processed again (aborted transaction)")
	}
	retry := claims.Claim{Tenant: "d1", EventID: "e1", Partition: 3, Offset: 4}
	if won := claim(retry); won[0] {
		t.Fatal("a copy on another partition took a claimed id")
	}
	if won := claim(claims.Claim{Tenant: "d2", EventID: "e1", Partition: 3, Offset: 4}); !won[0] {
		t.Fatal("the same event id in another district was refused")
	}
	// Two copies of one id in a batch: the first wins, unless the second holds it already.
	x, y := claims.Claim{Tenant: "d1", EventID: "e2", Partition: 0, Offset: 1}, claims.Claim{Tenant: "d1", EventID: "e2", Partition: 1, Offset: 1}
	if won := claim(x, y); !won[0] || won[1] {
		t.Fatalf("two copies in one call: won %v, want [true false]", won)
	}
	if won := claim(y, x); won[0] || !won[1] {
		t.Fatalf("the holder second in a call: won %v, want [false true]", won)
	}
	// An expired claim is taken over.
	if _, err := pool.Exec(ctx, "UPDATE control.dedup_claims SET expires_at = now() - interval '1 minute' WHERE event_id = 'e1' AND tenant_id = 'd1'"); err != nil {
		t.Fatal(err)
	}
	if won := claim(retry); !won[0] {
		t.Fatal("an expired claim was not taken over")
	}
	if n, err := s.Expire(ctx, 100); err != nil || n != 0 {
		t.Fatalf("Expire = %d, %v; want 0 (nothing expired now)", n, err)
	}

	// Backfill: the ids are held by no record; the backfill is recorded per switch.
	changed := time.Date(2026, 11, 20, 8, 0, 0, 123456000, time.UTC)
	if done, err := s.IsBackfilled(ctx, "d3", changed); err != nil || done {
		t.Fatalf("IsBackfilled before = %v, %v", done, err)
	}
	if err := s.Backfill(ctx, "d3", changed, map[string]time.Time{"old": time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if done, err := s.IsBackfilled(ctx, "d3", changed); err != nil || !done {
		t.Fatalf("IsBackfilled after = %v, %v", done, err)
	}
	if won := claim(claims.Claim{Tenant: "d3", EventID: "old", Partition: 0, Offset: 0}); won[0] {
		t.Fatal("an id the district had before its switch was claimed again")
	}
	var n int
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM control.dedup_claims").Scan(&n); err != nil || n != 4 {
		t.Fatalf("claims = %d, %v; want 4 (d1/e1, d2/e1, d1/e2, d3/old)", n, err)
	}
}

// TestShared: a cool district is judged per partition; hot, or switched within the window, it is shared;
// a switch older than the window no longer counts; Recent says when a switch needs the earlier ids; the
// epoch counts switches, and setting the same value again is none.
func TestShared(t *testing.T) {
	pool, _ := pgtest.New(t)
	ctx := t.Context()
	if err := tenancy.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	store, settings := tenants.New(fleet.New(pool, os.Getenv)), ingest.New(pool)
	for _, id := range []string{"cool", "hot", "was"} {
		if _, err := store.Create(ctx, id, id); err != nil {
			t.Fatal(err)
		}
	}
	s := claims.New(pool, 48*time.Hour)
	epoch := func() int64 {
		t.Helper()
		e, err := s.Epoch(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	if e := epoch(); e != 0 {
		t.Fatalf("epoch of a fresh schema = %d", e)
	}
	for _, sw := range []struct {
		id string
		n  int
	}{{"hot", 4}, {"was", 2}, {"was", 0}, {"hot", 4}} {
		if _, err := settings.SetHotShards(ctx, sw.id, sw.n); err != nil {
			t.Fatal(err)
		}
	}
	if e := epoch(); e != 3 {
		t.Fatalf("epoch after 3 switches and a repeat = %d", e)
	}
	shared, err := s.Shared(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := shared["cool"]; ok || len(shared) != 2 {
		t.Errorf("shared = %+v, want hot and was", shared)
	}
	if m := shared["hot"]; !m.Shared || !m.Recent || m.Changed.IsZero() {
		t.Errorf("hot = %+v", m)
	}
	if m := shared["was"]; !m.Shared || !m.Recent {
		t.Errorf("switched back within the window = %+v", m)
	}
	if _, err := pool.Exec(ctx, "UPDATE control.tenants SET hot_changed_at = now() - interval '49 hours' WHERE id IN ('hot', 'was')"); err != nil {
		t.Fatal(err)
	}
	again, err := s.Shared(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if m := again["hot"]; !m.Shared || m.Recent || m.Same(shared["hot"]) {
		t.Errorf("hot, switched long ago = %+v", m)
	}
	if m, ok := again["was"]; ok {
		t.Errorf("cool again for longer than the window = %+v", m)
	}
}
