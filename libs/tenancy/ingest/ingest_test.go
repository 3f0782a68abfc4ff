package ingest_test

import (
	"errors"
	"testing"
	"time"

	"github.com/edtech-analytics/platform/libs/pgutil/pgtest"
	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/edtech-analytics/platform/libs/tenancy/ingest"
	"github.com/edtech-analytics/platform/libs/tenancy/internal/controltest"
)

// TestIngestSettings: a new district has the default limit and is not hot; limits and hot shards are
// stored, listed and reset; bad values and unknown districts are refused, and the database itself refuses
// half a rate limit.
func TestIngestSettings(t *testing.T) {
	pool, districts := controltest.Districts(t, pgtest.New)
	store := ingest.New(pool)
	ctx := t.Context()
	for _, id := range []string{"d1", "d2"} {
		if _, err := districts.Create(ctx, id, id); err != nil {
			t.Fatal(err)
		}
	}
	list, err := store.Settings(ctx)
	if err != nil || len(list) != 2 || list[0] != (ingest.Settings{TenantID: "d1"}) {
		t.Fatalf("fresh settings = %+v, %v", list, err)
	}

	got, err := store.SetRateLimit(ctx, "d1", &ingest.RateLimit{EventsPerSecond: 500, Burst: 2000})
	if err != nil || got.RateLimit == nil || *got.RateLimit != (ingest.RateLimit{EventsPerSecond: 500, Burst: 2000}) {
		t.Fatalf("SetRateLimit = %+v, %v", got, err)
	}
	if got, err = store.SetHotShards(ctx, "d1", 8); err != nil || got.HotShards != 8 || got.RateLimit == nil {
		t.Fatalf("SetHotShards = %+v, %v", got, err)
	}
	list, err = store.Settings(ctx)
	if err != nil || list[0].HotShards != 8 || list[0].RateLimit.Burst != 2000 || list[1].RateLimit != nil || list[1].HotShards != 0 {
		t.Fatalf("settings = %+v, %v", list, err)
	}
	if got, err = store.SetRateLimit(ctx, "d1", nil); err != nil || got.RateLimit != nil || got.HotShards != 8 {
		t.Fatalf("reset rate limit = %+v, %v", got, err)
	}

	bad := []struct {
		name string
		err  error
		want error
	}{
		{"zero rate", second(store.SetRateLimit(ctx, "d1", &ingest.RateLimit{EventsPerSecond: 0, Burst: 10})), tenancy.ErrInvalidArgument},
		{"zero burst", second(store.SetRateLimit(ctx, "d1", &ingest.RateLimit{EventsPerSecond: 10})), tenancy.ErrInvalidArgument},
		{"negative shards", second(store.SetHotShards(ctx, "d1", -1)), tenancy.ErrInvalidArgument},
		{"too many shards", second(store.SetHotShards(ctx, "d1", ingest.MaxHotShards+1)), tenancy.ErrInvalidArgument},
		{"unknown tenant", second(store.SetHotShards(ctx, "nope", 2)), tenancy.ErrNotFound},
		{"invalid tenant id", second(store.SetRateLimit(ctx, "A;", nil)), tenancy.ErrInvalidArgument},
	}
	for _, b := range bad {
		if !errors.Is(b.err, b.want) {
			t.Errorf("%s: %v, want %v", b.name, b.err, b.want)
		}
	}
	if _, err := pool.Exec(ctx, "UPDATE control.tenants SET rate_limit_eps = 5 WHERE id = 'd2'"); err == nil {
		t.Error("a rate without a burst was stored")
	}
	if _, err := pool.Exec(ctx, "UPDATE control.tenants SET deleted_at = now() WHERE id = 'd2'"); err != nil {
		t.Fatal(err)
	}
	if list, _ := store.Settings(ctx); len(list) != 1 {
		t.Errorf("deleted tenant still listed: %+v", list)
	}
	if _, err := store.SetHotShards(ctx, "d2", 2); !errors.Is(err, tenancy.ErrNotFound) {
		t.Errorf("deleted tenant updated: %v", err)
	}
}

func second[T any](_ T, err error) error { return err }

// TestGatewayInstancesCountThemselves: each instance's heartbeat counts itself and the others seen within
// the TTL; an instance whose heartbeats stopped stops counting after it, and one that leaves at once.
func TestGatewayInstancesCountThemselves(t *testing.T) {
	pool, _ := controltest.Districts(t, pgtest.New)
	store := ingest.New(pool)
	ctx := t.Context()
	beat := func(id string) int {
		t.Helper()
		n, err := store.Heartbeat(ctx, id, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := beat("a"); n != 1 {
		t.Fatalf("the first instance counts %d", n)
	}
	if n := beat("b"); n != 2 {
		t.Fatalf("the second instance counts %d", n)
	}
	if n := beat("a"); n != 2 {
		t.Fatalf("the first instance, again, counts %d", n)
	}
	if _, err := pool.Exec(ctx, `UPDATE control.gateway_instances SET last_seen = now() - interval '2 minutes' WHERE id = 'b'`); err != nil {
		t.Fatal(err)
	}
	if n := beat("a"); n != 1 {
		t.Fatalf("with b silent past the TTL, a counts %d", n)
	}
	if n := beat("b"); n != 2 {
		t.Fatalf("b back: %d", n)
	}
	if err := store.Leave(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	if n := beat("a"); n != 1 {
		t.Fatalf("after b left, a counts %d", n)
	}
}
