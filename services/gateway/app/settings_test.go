package app

import (
	"io"
	"log/slog"
	"os"
	"testing"

	"github.com/edtech-analytics/platform/libs/pgutil/pgtest"
	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/edtech-analytics/platform/libs/tenancy/fleet"
	"github.com/edtech-analytics/platform/libs/tenancy/ingest"
	districts "github.com/edtech-analytics/platform/libs/tenancy/tenants"
	"github.com/edtech-analytics/platform/services/gateway/internal/tenants"
)

// TestStoredSettingsReachTheRegistry: what ctl writes to the control schema (a district's own limit, a hot
// flag) is what a refresh of the gateway's registry applies; other districts get the default.
func TestStoredSettingsReachTheRegistry(t *testing.T) {
	pool, _ := pgtest.New(t)
	ctx := t.Context()
	if err := tenancy.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	store := ingest.New(pool)
	for _, id := range []string{"d1", "d2"} {
		if _, err := districts.New(fleet.New(pool, os.Getenv)).Create(ctx, id, id); err != nil {
			t.Fatal(err)
		}
	}
	def := tenants.RateLimit{EventsPerSecond: 5000, Burst: 20000}
	reg, err := tenants.New(storedSettings(store), def, 1000, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if err := reg.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if s := reg.Settings("d1"); s.Limit != def || s.HotShards != 0 {
		t.Fatalf("before any setting d1 = %+v", s)
	}
	if _, err := store.SetRateLimit(ctx, "d1", &ingest.RateLimit{EventsPerSecond: 300, Burst: 3000}); err != nil {
		t.Fatal(err)
	}
	if _, err := store.SetHotShards(ctx, "d1", 6); err != nil {
		t.Fatal(err)
	}
	if err := reg.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if s := reg.Settings("d1"); s.Limit != (tenants.RateLimit{EventsPerSecond: 300, Burst: 3000}) || s.HotShards != 6 || string(s.RecordKey("S1")) != "d1/3" {
		t.Fatalf("after the settings d1 = %+v, key %q", s, s.RecordKey("S1"))
	}
	if s := reg.Settings("d2"); s.Limit != def || string(s.RecordKey("S1")) != "d2" {
		t.Fatalf("d2 = %+v", s)
	}
}
