package timezones_test

import (
	"errors"
	"testing"

	"github.com/edtech-analytics/platform/libs/pgutil/pgtest"
	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/edtech-analytics/platform/libs/tenancy/internal/controltest"
	"github.com/edtech-analytics/platform/libs/tenancy/timezones"
)

// TestTimeZones: a new district is in UTC; a zone is stored, read and listed; names outside the IANA
// database and unknown or deleted districts are refused.
func TestTimeZones(t *testing.T) {
	pool, districts := controltest.Districts(t, pgtest.New)
	store := timezones.New(pool)
	ctx := t.Context()
	for _, id := range []string{"d1", "d2", "gone"} {
		if _, err := districts.Create(ctx, id, id); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := districts.Delete(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	if tz, err := store.TimeZone(ctx, "d1"); err != nil || tz != timezones.Default {
		t.Fatalf("fresh time zone = %q, %v; want UTC", tz, err)
	}
	if z, err := store.Set(ctx, "d1", "America/Chicago"); err != nil || z != (timezones.Zone{TenantID: "d1", TimeZone: "America/Chicago"}) {
		t.Fatalf("Set = %+v, %v", z, err)
	}
	if tz, err := store.TimeZone(ctx, "d1"); err != nil || tz != "America/Chicago" {
		t.Fatalf("time zone = %q, %v", tz, err)
	}
	zones, err := store.Zones(ctx)
	if err != nil || len(zones) != 2 || zones[0].TimeZone != "America/Chicago" || zones[1] != (timezones.Zone{TenantID: "d2", TimeZone: "UTC"}) {
		t.Fatalf("Zones = %+v, %v", zones, err)
	}
	for _, bad := range []string{"", "Local", "America/Springfield", "../etc/passwd", "CST6CDT "} {
		if _, err := store.Set(ctx, "d2", bad); !errors.Is(err, tenancy.ErrInvalidArgument) {
			t.Errorf("Set(%q) = %v, want ErrInvalidArgument", bad, err)
		}
	}
	for _, id := range []string{"nobody", "gone"} {
		if _, err := store.Set(ctx, id, "UTC"); !errors.Is(err, tenancy.ErrNotFound) {
			t.Errorf("Set on %s = %v, want ErrNotFound", id, err)
		}
	}
	if _, err := store.TimeZone(ctx, "nobody"); !errors.Is(err, tenancy.ErrNotFound) {
		t.Errorf("TimeZone of an unknown tenant = %v, want ErrNotFound", err)
	}
	if loc, err := store.Location(ctx, "d1"); err != nil || loc.String() != "America/Chicago" {
		t.Errorf("Location of d1 = %v, %v", loc, err)
	}
	if loc, err := store.Location(ctx, "d2"); err != nil || loc.String() != "UTC" {
		t.Errorf("Location of d2 = %v, %v", loc, err)
	}
	if _, err := store.Location(ctx, "nobody"); !errors.Is(err, tenancy.ErrNotFound) {
		t.Errorf("Location of an unknown tenant = %v, want ErrNotFound", err)
	}
	// A name stored by other means that does not load is an error, never UTC in its place.
	if _, err := pool.Exec(ctx, "UPDATE control.tenants SET time_zone = 'Nowhere/Atlantis' WHERE id = 'd2'"); err != nil {
		t.Fatal(err)
	}
	if loc, err := store.Location(ctx, "d2"); err == nil {
		t.Errorf("Location of a zone that does not load = %v, want an error", loc)
	}
}
