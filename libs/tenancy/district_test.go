package tenancy_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/edtech-analytics/platform/libs/pgutil/pgtest"
	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/edtech-analytics/platform/libs/tenancy/internal/controltest"
)

// TestStaleDistricts: the fleet-wide check finds exactly the schemas that are missing or lack a
// migration, and upgrading one applies only what it lacks, even below its newest version.
func TestStaleDistricts(t *testing.T) {
	pool, store := controltest.Districts(t, pgtest.New)
	ctx := t.Context()
	ids := []string{"a1", "a2", "a3", "a4"}
	for _, id := range ids {
		if _, err := store.Create(ctx, id, id); err != nil {
			t.Fatal(err)
		}
	}
	stale, err := tenancy.StaleDistricts(ctx, pool, ids)
	if err != nil || len(stale) != 0 {
		t.Fatalf("fresh districts: stale = %v, %v", stale, err)
	}
	// a2 is back where it was before migration 3 (as if made by an older release), a3 lost its first
	// migration's record, a4 its schema.
	if _, err := pool.Exec(ctx, `SET search_path = district_a2;
		DROP TABLE roster_orgs, roster_academic_sessions, roster_courses, roster_classes, roster_users,
			roster_enrollments, roster_demographics, roster_line_items, roster_results, roster_deletions;
		ALTER TABLE attendance_daily DROP COLUMN occurred_at;
		DELETE FROM goose_db_version WHERE version_id = 3;
		RESET search_path;
		UPDATE district_a3.goose_db_version SET is_applied = false WHERE version_id = 1;
		DROP SCHEMA district_a4 CASCADE`); err != nil {
		t.Fatal(err)
	}
	stale, err = tenancy.StaleDistricts(ctx, pool, ids)
	if err != nil || !slices.Equal(stale, []string{"a2", "a3", "a4"}) {
		t.Fatalf("stale = %v, %v; want a2 a3 a4", stale, err)
	}
	if err := store.UpgradeDistrictSchema(ctx, "a2"); err != nil {
		t.Fatalf("UpgradeDistrictSchema: %v", err)
	}
	if !slices.Contains(controltest.Tables(t, pool, "district_a2"), "roster_users") {
		t.Error("the missing migration was not applied")
	}
	if err := store.UpgradeDistrictSchema(ctx, "a4"); !errors.Is(err, tenancy.ErrSchemaMissing) {
		t.Errorf("UpgradeDistrictSchema(a4) = %v, want ErrSchemaMissing", err)
	}
	if err := store.EnsureDistrictSchema(ctx, "a4"); err != nil {
		t.Fatal(err)
	}
	if stale, err := tenancy.StaleDistricts(ctx, pool, ids); err != nil || !slices.Equal(stale, []string{"a3"}) {
		t.Errorf("stale after repairs = %v, %v; want a3", stale, err)
	}
}

func TestShadowSchemaNames(t *testing.T) {
	for _, fn := range []func(string) (string, error){tenancy.ShadowSchemaName, tenancy.RetiredSchemaName} {
		if _, err := fn("../x"); !errors.Is(err, tenancy.ErrInvalidArgument) {
			t.Errorf("bad id accepted: %v", err)
		}
		name, err := fn("d1")
		if err != nil || strings.HasPrefix(name, "district_") || !strings.HasSuffix(name, "_d1") {
			t.Errorf("name = %q, %v", name, err)
		}
	}
	if tenancy.DistrictLockKey("a") == tenancy.DistrictLockKey("b") {
		t.Error("two districts share a lock key")
	}
}
