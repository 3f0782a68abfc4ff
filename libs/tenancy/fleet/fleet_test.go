package fleet_test

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/edtech-analytics/platform/libs/pgutil/pgtest"
	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/edtech-analytics/platform/libs/tenancy/fleet"
	"github.com/edtech-analytics/platform/libs/tenancy/internal/controltest"
	"github.com/edtech-analytics/platform/libs/tenancy/tenants"
	"github.com/jackc/pgx/v5"
)

// TestPlacement: a district's schema is created on the instance it is placed on (the default one unless
// named), the placement is recorded, and a new default takes the next districts.
func TestPlacement(t *testing.T) {
	f, control, east := controltest.TwoInstances(t, pgtest.New)
	store := tenants.New(f)
	ctx := t.Context()

	if _, err := store.CreateOn(ctx, "d1", "District 1", "east"); err != nil {
		t.Fatalf("CreateTenantOn east: %v", err)
	}
	if _, err := store.Create(ctx, "d2", "District 2"); err != nil {
		t.Fatal(err)
	}
	if !controltest.SchemaExists(t, east, "district_d1") || controltest.SchemaExists(t, control, "district_d1") {
		t.Error("district_d1 should exist on east only")
	}
	if !controltest.SchemaExists(t, control, "district_d2") || controltest.SchemaExists(t, east, "district_d2") {
		t.Error("district_d2 should exist on main only")
	}
	if got := controltest.Tables(t, east, "district_d1"); !slices.Equal(got, controltest.DistrictTables) {
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

	if _, err := f.AddInstance(ctx, "west", "WEST_URL", true); err == nil || !errors.Is(err, tenancy.ErrInvalidArgument) {
		t.Errorf("AddInstance with an unset variable: %v", err)
	}
	if _, err := f.AddInstance(ctx, "east2", "EAST_URL", true); !errors.Is(err, tenancy.ErrInvalidArgument) {
		t.Errorf("AddInstance reusing a variable: %v", err)
	}
	if _, err := control.Exec(ctx, "UPDATE control.instances SET is_default = (name = 'east')"); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Create(ctx, "d3", "District 3"); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"d1": "east", "d2": fleet.MainInstance, "d3": "east"}
	got, err := f.Placements(ctx)
	if err != nil || len(got) != len(want) {
		t.Fatalf("Placements = %v, %v", got, err)
	}
	for id, inst := range want {
		if got[id] != inst {
			t.Errorf("placement of %s = %s, want %s", id, got[id], inst)
		}
		if p, err := f.Placement(ctx, id); err != nil || p != inst {
			t.Errorf("Placement(%s) = %s, %v", id, p, err)
		}
	}

	for _, tt := range []struct {
		instance string
		is       error
	}{{"nowhere", tenancy.ErrNotFound}, {"Bad Name", tenancy.ErrInvalidArgument}} {
		if _, err := store.CreateOn(ctx, "d9", "D9", tt.instance); !errors.Is(err, tt.is) {
			t.Errorf("CreateTenantOn(%q) = %v, want %v", tt.instance, err, tt.is)
		}
	}
	if controltest.SchemaExists(t, control, "district_d9") || controltest.SchemaExists(t, east, "district_d9") {
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
	list, err := f.Instances(ctx)
	if err != nil || len(list) != 2 || list[0].Name != fleet.MainInstance || list[1].Name != "east" || !list[1].Default {
		t.Errorf("Instances = %+v, %v", list, err)
	}
}

// TestDistrictPools: each district's pool is the one of the instance it is placed on, remembered after the
// first look-up; an unknown district is ErrNotFound.
func TestDistrictPools(t *testing.T) {
	f, control, _ := controltest.TwoInstances(t, pgtest.New)
	store := tenants.New(f)
	ctx := t.Context()
	if _, err := store.CreateOn(ctx, "d1", "District 1", "east"); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Create(ctx, "d2", "District 2"); err != nil {
		t.Fatal(err)
	}
	pools := fleet.NewDistrictPools(f)
	for _, tc := range []struct{ tenant, instance string }{{"d1", "east"}, {"d2", fleet.MainInstance}, {"d1", "east"}} {
		pool, err := pools.Pool(ctx, tc.tenant)
		if err != nil {
			t.Fatal(err)
		}
		if !controltest.SchemaExists(t, pool, "district_"+tc.tenant) {
			t.Errorf("the pool of %s does not hold its schema", tc.tenant)
		}
		if (pool == control) != (tc.instance == fleet.MainInstance) {
			t.Errorf("%s: got the control pool %v, want it only on %s", tc.tenant, pool == control, fleet.MainInstance)
		}
	}
	if _, err := pools.Pool(ctx, "nobody"); !errors.Is(err, tenancy.ErrNotFound) {
		t.Errorf("unknown district: %v, want ErrNotFound", err)
	}
}

// TestDistrictPoolsFindAMovedDistrict: a placement is remembered for the refresh interval and read again
// after it, so a district moved to another instance is found there.
func TestDistrictPoolsFindAMovedDistrict(t *testing.T) {
	f, control, _ := controltest.TwoInstances(t, pgtest.New)
	ctx := t.Context()
	if _, err := tenants.New(f).Create(ctx, "d1", "District 1"); err != nil {
		t.Fatal(err)
	}
	remembering := fleet.NewDistrictPools(f).WithRefresh(time.Hour)
	rereading := fleet.NewDistrictPools(f).WithRefresh(0)
	for _, pools := range []*fleet.DistrictPools{remembering, rereading} {
		if pool, err := pools.Pool(ctx, "d1"); err != nil || pool != control {
			t.Fatalf("before the move: %v", err)
		}
	}
	if err := pgx.BeginFunc(ctx, control, func(tx pgx.Tx) error { return fleet.Move(ctx, tx, "d1", "east") }); err != nil {
		t.Fatal(err)
	}
	eastPool, err := f.Pool(ctx, "east")
	if err != nil {
		t.Fatal(err)
	}
	if pool, err := rereading.Pool(ctx, "d1"); err != nil || pool != eastPool {
		t.Errorf("after the move, the placement read again: the control pool %v, %v", pool == control, err)
	}
	if pool, err := remembering.Pool(ctx, "d1"); err != nil || pool != control {
		t.Errorf("within the refresh interval: not the remembered pool (%v)", err)
	}
}
