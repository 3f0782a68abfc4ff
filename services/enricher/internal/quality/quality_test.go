package quality_test

import (
	"errors"
	"os"
	"testing"
	"time"

	"github.com/edtech-analytics/platform/libs/pgutil/pgtest"
	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/edtech-analytics/platform/libs/tenancy/fleet"
	"github.com/edtech-analytics/platform/libs/tenancy/tenants"
	"github.com/edtech-analytics/platform/services/enricher/internal/quality"
)

// TestAdd: counts add up per day, source, field and kind (twice the same key in one call, as when a
// policy changed its action within a batch, is one row); counts of a deleted or unknown district are
// dropped with ErrGone, not kept for a retry.
func TestAdd(t *testing.T) {
	pool, _ := pgtest.New(t)
	ctx := t.Context()
	if err := tenancy.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	f := fleet.New(pool, os.Getenv)
	t.Cleanup(f.Close)
	districts := tenants.New(f)
	for _, id := range []string{"d1", "gone"} {
		if _, err := districts.Create(ctx, id, id); err != nil {
			t.Fatal(err)
		}
	}
	store := quality.New(fleet.NewDistrictPools(f))
	day := time.Date(2026, 12, 6, 23, 30, 0, 0, time.UTC)
	c := quality.Count{Day: day, Tenant: "d1", Source: "lms", Field: "attendance.reason", Kind: "phone", Records: 2}
	if failed, err := store.Add(ctx, []quality.Count{c, c}); err != nil || failed != nil {
		t.Fatalf("Add = %v, %v", failed, err)
	}
	c.Records = 5
	if failed, err := store.Add(ctx, []quality.Count{c}); err != nil || failed != nil {
		t.Fatalf("Add = %v, %v", failed, err)
	}
	var records int64
	var stored time.Time
	if err := pool.QueryRow(ctx, "SELECT day, records FROM district_d1.quality_pii_daily").Scan(&stored, &records); err != nil ||
		records != 9 || !stored.Equal(time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("stored %v %d, %v; want 2026-12-06 9", stored, records, err)
	}

	if _, err := districts.Delete(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	gone := quality.Count{Day: day, Tenant: "gone", Source: "lms", Field: "attendance.reason", Kind: "ssn", Records: 1}
	unknown := gone
	unknown.Tenant = "nowhere"
	failed, err := store.Add(ctx, []quality.Count{gone, unknown, c})
	if !errors.Is(err, quality.ErrGone) || failed != nil {
		t.Errorf("Add to deleted and unknown districts = %v, %v; want ErrGone and nothing to retry", failed, err)
	}
	if err := pool.QueryRow(ctx, "SELECT records FROM district_d1.quality_pii_daily").Scan(&records); err != nil || records != 14 {
		t.Errorf("d1 after a call with gone districts: %d, %v; want 14", records, err)
	}
}
