package app

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/edtech-analytics/platform/libs/tenancy/timezones"
)

// TestTenantTimezone: set-timezone stores what the query service reads, timezones lists it, and a name
// outside the IANA database is refused naming the flag, before touching the database.
func TestTenantTimezone(t *testing.T) {
	pool, url := migratedDB(t)
	mustCtl(t, url, "tenant", "create", "--id", "d1", "--name", "D1")
	mustCtl(t, url, "tenant", "create", "--id", "d2", "--name", "D2")

	var got []timezones.Zone
	out, notice, err := ctl(t, url, "tenant", "set-timezone", "--id", "d1", "--timezone", "America/Chicago", "--output", "json")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(notice, "changing it later restates only new events") {
		t.Errorf("set-timezone says %q on stderr, want the note that a change restates only new events", notice)
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil || len(got) != 1 || got[0] != (timezones.Zone{TenantID: "d1", TimeZone: "America/Chicago"}) {
		t.Fatalf("set-timezone json = %q (%v)", out, err)
	}
	if tz, err := timezones.New(pool).TimeZone(t.Context(), "d1"); err != nil || tz != "America/Chicago" {
		t.Fatalf("stored time zone = %q, %v", tz, err)
	}
	out = mustCtl(t, url, "tenant", "timezones")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.Contains(lines[1], "America/Chicago") || !strings.Contains(lines[2], "UTC") {
		t.Errorf("timezones = %q", out)
	}
	if out = mustCtl(t, url, "tenant", "timezones", "--id", "d2"); strings.Count(out, "\n") != 2 || strings.Contains(out, "d1") {
		t.Errorf("timezones --id d2 = %q", out)
	}

	tests := []struct {
		args    []string
		usage   bool
		mention string
	}{
		{[]string{"tenant", "set-timezone", "--id", "d1"}, true, "--timezone"},
		{[]string{"tenant", "set-timezone", "--id", "d1", "--timezone", "America/Springfield"}, true, "--timezone"},
		{[]string{"tenant", "set-timezone", "--id", "d1", "--timezone", "Local"}, true, "--timezone"},
		{[]string{"tenant", "set-timezone", "--id", "D1", "--timezone", "UTC"}, true, "--id"},
		{[]string{"tenant", "set-timezone", "--id", "d9", "--timezone", "UTC"}, false, "not found"},
		{[]string{"tenant", "timezones", "--id", "d9"}, false, "not found"},
	}
	for _, tt := range tests {
		_, _, err := ctl(t, url, tt.args...)
		if err == nil || errors.Is(err, ErrUsage) != tt.usage || !strings.Contains(err.Error(), tt.mention) {
			t.Errorf("ctl %s: %v, want usage=%v mentioning %s", strings.Join(tt.args, " "), err, tt.usage, tt.mention)
		}
	}
	if tz, _ := timezones.New(pool).TimeZone(t.Context(), "d1"); tz != "America/Chicago" {
		t.Errorf("a refused command changed the time zone to %q", tz)
	}
}
