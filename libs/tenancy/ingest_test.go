package tenancy_test

import (
	"errors"
	"testing"

	"github.com/edtech-analytics/platform/libs/tenancy"
)

// TestIngestSettings: a new district has the default limit and is not hot; limits and hot shards are
// stored, listed and reset; bad values and unknown districts are refused, and the database itself refuses
// half a rate limit.
func TestIngestSettings(t *testing.T) {
	store, pool := migrated(t)
	ctx := t.Context()
	for _, id := range []string{"d1", "d2"} {
		if _, err := store.CreateTenant(ctx, id, id); err != nil {
			t.Fatal(err)
		}
	}
	list, err := store.IngestSettings(ctx)
	if err != nil || len(list) != 2 || list[0] != (tenancy.IngestSettings{TenantID: "d1"}) {
		t.Fatalf("fresh settings = %+v, %v", list, err)
	}

	got, err := store.SetRateLimit(ctx, "d1", &tenancy.RateLimit{EventsPerSecond: 500, Burst: 2000})
	if err != nil || got.RateLimit == nil || *got.RateLimit != (tenancy.RateLimit{EventsPerSecond: 500, Burst: 2000}) {
		t.Fatalf("SetRateLimit = %+v, %v", got, err)
	}
	if got, err = store.SetHotShards(ctx, "d1", 8); err != nil || got.HotShards != 8 || got.RateLimit == nil {
		t.Fatalf("SetHotShards = %+v, %v", got, err)
	}
	list, err = store.IngestSettings(ctx)
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
		{"zero rate", second(store.SetRateLimit(ctx, "d1", &tenancy.RateLimit{EventsPerSecond: 0, Burst: 10})), tenancy.ErrInvalidArgument},
		{"zero burst", second(store.SetRateLimit(ctx, "d1", &tenancy.RateLimit{EventsPerSecond: 10})), tenancy.ErrInvalidArgument},
		{"negative shards", second(store.SetHotShards(ctx, "d1", -1)), tenancy.ErrInvalidArgument},
		{"too many shards", second(store.SetHotShards(ctx, "d1", tenancy.MaxHotShards+1)), tenancy.ErrInvalidArgument},
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
	if list, _ := store.IngestSettings(ctx); len(list) != 1 {
		t.Errorf("deleted tenant still listed: %+v", list)
	}
	if _, err := store.SetHotShards(ctx, "d2", 2); !errors.Is(err, tenancy.ErrNotFound) {
		t.Errorf("deleted tenant updated: %v", err)
	}
}

func second[T any](_ T, err error) error { return err }
