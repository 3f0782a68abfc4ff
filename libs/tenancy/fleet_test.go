package tenancy_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/edtech-analytics/platform/libs/pgutil/pgtest"
	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/jackc/pgx/v5/pgxpool"
)

// fleet returns a store on a migrated control database and a second database registered as instance
// "east" (its URL in the variable EAST_URL, seen only through the fleet's getenv).
func fleet(t *testing.T) (*tenancy.Store, *pgxpool.Pool, *pgxpool.Pool) {
	t.Helper()
	control, _ := pgtest.New(t)
	if err := tenancy.Migrate(t.Context(), control); err != nil {
		t.Fatal(err)
	}
	east, eastURL := pgtest.New(t)
	env := map[string]string{"EAST_URL": eastURL}
	store := tenancy.NewFleetStore(tenancy.NewFleet(control, func(k string) string { return env[k] }))
	t.Cleanup(store.Close)
	// Offsets stored before the instance joins are where its own offsets start.
	if _, err := control.Exec(t.Context(), `INSERT INTO control.consumer_offsets (consumer, topic, partition, next_offset)
		VALUES ('sink', 'enriched', 0, 40), ('sink', 'enriched', 3, 7)`); err != nil {
		t.Fatal(err)
	}
	if _, err := store.AddInstance(t.Context(), "east", "EAST_URL", false); err != nil {
		t.Fatalf("AddInstance: %v", err)
	}
	return store, control, east
}

func schemaExists(t *testing.T, pool *pgxpool.Pool, schema string) bool {
	t.Helper()
	var ok bool
	if err := pool.QueryRow(t.Context(), "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)", schema).Scan(&ok); err != nil {
		t.Fatal(err)
	}
	return ok
}

// TestPlacement: a district's schema is created on the instance it is placed on (the default one unless
// named), the placement is recorded, and a new default takes the next districts.
func TestPlacement(t *testing.T) {
	store, control, east := fleet(t)
	ctx := t.Context()

	if _, err := store.CreateTenantOn(ctx, "d1", "District 1", "east"); err != nil {
		t.Fatalf("CreateTenantOn east: %v", err)
	}
	if _, err := store.CreateTenant(ctx, "d2", "District 2"); err != nil {
		t.Fatal(err)
	}
	if !schemaExists(t, east, "district_d1") || schemaExists(t, control, "district_d1") {
		t.Error("district_d1 should exist on east only")
	}
	if !schemaExists(t, control, "district_d2") || schemaExists(t, east, "district_d2") {
		t.Error("district_d2 should exist on main only")
	}
	if got := tablesIn(t, east, "district_d1"); !slices.Equal(got, districtTables) {
		t.Errorf("district_d1 tables on east = %v", got)
	}
	// The instance's own control schema holds the offsets, started where the fleet's were.
	var offsets int64
	if err := east.QueryRow(ctx, "SELECT sum(next_offset) FROM control.consumer_offsets WHERE consumer = 'sink'").Scan(&offsets); err != nil {
		t.Fatal(err)
	}
	if offsets != 47 {
		t.Errorf("east starts with offsets summing to %d, want 47", offsets)
	}

	if _, err := store.AddInstance(ctx, "west", "WEST_URL", true); err == nil || !errors.Is(err, tenancy.ErrInvalidArgument) {
		t.Errorf("AddInstance with an unset variable: %v", err)
	}
	if _, err := store.AddInstance(ctx, "east2", "EAST_URL", true); !errors.Is(err, tenancy.ErrInvalidArgument) {
		t.Errorf("AddInstance reusing a variable: %v", err)
	}
	if _, err := control.Exec(ctx, "UPDATE control.instances SET is_default = (name = 'east')"); err != nil {
		t.Fatal(err)
	}
	if _, err := store.CreateTenant(ctx, "d3", "District 3"); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"d1": "east", "d2": tenancy.MainInstance, "d3": "east"}
	got, err := store.Placements(ctx)
	if err != nil || len(got) != len(want) {
		t.Fatalf("Placements = %v, %v", got, err)
	}
	for id, inst := range want {
		if got[id] != inst {
			t.Errorf("placement of %s = %s, want %s", id, got[id], inst)
		}
		if p, err := store.Placement(ctx, id); err != nil || p != inst {
			t.Errorf("Placement(%s) = %s, %v", id, p, err)
		}
	}

	for _, tt := range []struct {
		instance string
		is       error
	}{{"nowhere", tenancy.ErrNotFound}, {"Bad Name", tenancy.ErrInvalidArgument}} {
		if _, err := store.CreateTenantOn(ctx, "d9", "D9", tt.instance); !errors.Is(err, tt.is) {
			t.Errorf("CreateTenantOn(%q) = %v, want %v", tt.instance, err, tt.is)
		}
	}
	if schemaExists(t, control, "district_d9") || schemaExists(t, east, "district_d9") {
		t.Error("a refused placement left a schema behind")
	}

	// Only the variable's name is stored, never the URL.
	var rows string
	if err := control.QueryRow(ctx, "SELECT string_agg(i::text, ';') FROM control.instances i").Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(rows, "postgres://") || !strings.Contains(rows, "EAST_URL") {
		t.Errorf("instances rows = %q", rows)
	}
	list, err := store.Instances(ctx)
	if err != nil || len(list) != 2 || list[0].Name != tenancy.MainInstance || list[1].Name != "east" || !list[1].Default {
		t.Errorf("Instances = %+v, %v", list, err)
	}
}

// TestDeleteTenant: deletion marks the tenant deleted, revokes its keys and drops its schema on its own
// instance; it can be repeated, and other districts are untouched.
func TestDeleteTenant(t *testing.T) {
	store, control, east := fleet(t)
	ctx := t.Context()
	for _, id := range []string{"gone", "kept"} {
		if _, err := store.CreateTenantOn(ctx, id, id, "east"); err != nil {
			t.Fatal(err)
		}
	}
	key, _, err := store.CreateAPIKey(ctx, "gone", "sis", []string{tenancy.VerbEventsWrite})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := store.CreateAPIKey(ctx, "gone", "lms", []string{tenancy.VerbEventsWrite}); err != nil {
		t.Fatal(err)
	}
	shadow, err := tenancy.EnsureShadowSchema(ctx, east, "gone") // an abandoned rebuild
	if err != nil {
		t.Fatal(err)
	}

	d, err := store.DeleteTenant(ctx, "gone")
	if err != nil {
		t.Fatalf("DeleteTenant: %v", err)
	}
	if d != (tenancy.Deletion{TenantID: "gone", Instance: "east", Schema: "district_gone", KeysRevoked: 2, SchemaDropped: true}) {
		t.Errorf("deletion = %+v", d)
	}
	if schemaExists(t, east, "district_gone") || schemaExists(t, east, shadow) {
		t.Error("schemas of the deleted district remain")
	}
	if !schemaExists(t, east, "district_kept") {
		t.Error("another district's schema was dropped")
	}
	if _, err := store.LookupAPIKey(ctx, key); !errors.Is(err, tenancy.ErrInvalidKey) {
		t.Errorf("key of a deleted tenant: %v", err)
	}
	tn, err := store.Tenant(ctx, "gone")
	if err != nil || tn.Status != tenancy.StatusDeleted || tn.DeletedAt == nil {
		t.Errorf("deleted tenant = %+v, %v", tn, err)
	}
	if list, _ := store.Tenants(ctx); len(list) != 1 || list[0].ID != "kept" {
		t.Errorf("Tenants after delete = %+v", list)
	}

	again, err := store.DeleteTenant(ctx, "gone")
	if err != nil || again.SchemaDropped || again.KeysRevoked != 0 {
		t.Errorf("second DeleteTenant = %+v, %v", again, err)
	}
	// A service that saw the tenant alive a moment ago cannot bring the schema back.
	if err := store.UpgradeDistrictSchema(ctx, "gone"); !errors.Is(err, tenancy.ErrSchemaMissing) {
		t.Errorf("UpgradeDistrictSchema of a dropped schema = %v, want ErrSchemaMissing", err)
	}
	if schemaExists(t, east, "district_gone") || schemaExists(t, control, "district_gone") {
		t.Error("UpgradeDistrictSchema recreated a dropped schema")
	}
	if _, err := store.DeleteTenant(ctx, "never"); !errors.Is(err, tenancy.ErrNotFound) {
		t.Errorf("DeleteTenant(unknown) = %v", err)
	}
}

// TestStaleDistricts: the fleet-wide check finds exactly the schemas that are missing or lack a
// migration, and upgrading one applies only what it lacks, even below its newest version.
func TestStaleDistricts(t *testing.T) {
	store, pool := migrated(t)
	ctx := t.Context()
	ids := []string{"a1", "a2", "a3", "a4"}
	for _, id := range ids {
		if _, err := store.CreateTenant(ctx, id, id); err != nil {
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
	if !slices.Contains(tablesIn(t, pool, "district_a2"), "roster_users") {
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

// TestDistrictPools: each district's pool is the one of the instance it is placed on, remembered after the
// first look-up; an unknown district is ErrNotFound.
func TestDistrictPools(t *testing.T) {
	store, control, _ := fleet(t)
	ctx := t.Context()
	if _, err := store.CreateTenantOn(ctx, "d1", "District 1", "east"); err != nil {
		t.Fatal(err)
	}
	if _, err := store.CreateTenant(ctx, "d2", "District 2"); err != nil {
		t.Fatal(err)
	}
	pools := tenancy.NewDistrictPools(store)
	for _, tc := range []struct{ tenant, instance string }{{"d1", "east"}, {"d2", tenancy.MainInstance}, {"d1", "east"}} {
		pool, err := pools.Pool(ctx, tc.tenant)
		if err != nil {
			t.Fatal(err)
		}
		if !schemaExists(t, pool, "district_"+tc.tenant) {
			t.Errorf("the pool of %s does not hold its schema", tc.tenant)
		}
		if (pool == control) != (tc.instance == tenancy.MainInstance) {
			t.Errorf("%s: got the control pool %v, want it only on %s", tc.tenant, pool == control, tenancy.MainInstance)
		}
	}
	if _, err := pools.Pool(ctx, "nobody"); !errors.Is(err, tenancy.ErrNotFound) {
		t.Errorf("unknown district: %v, want ErrNotFound", err)
	}
}
