package app

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/edtech-analytics/platform/libs/tenancy/ingest"
)

// TestTenantIngestSettings: set-limits and set-hot store what the gateways read, --default resets the
// limit, limits lists them, and bad command lines are refused before touching the database.
func TestTenantIngestSettings(t *testing.T) {
	pool, url := migratedDB(t)
	store := ingest.New(pool)
	mustCtl(t, url, "tenant", "create", "--id", "d1", "--name", "D1")
	mustCtl(t, url, "tenant", "create", "--id", "d2", "--name", "D2")

	out := mustCtl(t, url, "tenant", "set-limits", "--id", "d1", "--events-per-sec", "500")
	if !strings.Contains(out, "500") || !strings.HasPrefix(out, "ID") {
		t.Errorf("set-limits printed %q", out)
	}
	var got []ingest.Settings
	out = mustCtl(t, url, "tenant", "set-hot", "--id", "d1", "--shards", "8", "--output", "json")
	if err := json.Unmarshal([]byte(out), &got); err != nil || len(got) != 1 || got[0].HotShards != 8 ||
		got[0].RateLimit == nil || *got[0].RateLimit != (ingest.RateLimit{EventsPerSecond: 500, Burst: 500}) {
		t.Fatalf("set-hot json = %q (%v)", out, err)
	}
	mustCtl(t, url, "tenant", "set-limits", "--id", "d2", "--events-per-sec", "100", "--burst", "1000")
	stored, err := store.Settings(t.Context())
	if err != nil || len(stored) != 2 || stored[1].RateLimit.Burst != 1000 || stored[0].HotShards != 8 {
		t.Fatalf("stored = %+v, %v", stored, err)
	}

	mustCtl(t, url, "tenant", "set-limits", "--id", "d1", "--default")
	out = mustCtl(t, url, "tenant", "limits")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.Contains(lines[1], "default") || !strings.Contains(lines[1], "8") ||
		!strings.Contains(lines[2], "1000") {
		t.Errorf("limits = %q", out)
	}
	if out = mustCtl(t, url, "tenant", "limits", "--id", "d2"); strings.Count(out, "\n") != 2 || strings.Contains(out, "d1") {
		t.Errorf("limits --id d2 = %q", out)
	}

	tests := []struct {
		args    []string
		usage   bool
		mention string
	}{
		{[]string{"tenant", "set-limits", "--id", "d1"}, true, "--events-per-sec"},
		{[]string{"tenant", "set-limits", "--id", "d1", "--default", "--events-per-sec", "5"}, true, "--default"},
		{[]string{"tenant", "set-limits", "--id", "d1", "--events-per-sec", "5", "--burst", "-1"}, true, "--burst"},
		{[]string{"tenant", "set-hot", "--id", "d1"}, true, "--shards"},
		{[]string{"tenant", "set-hot", "--id", "d1", "--shards", "5000"}, false, "--shards"},
		{[]string{"tenant", "set-hot", "--id", "D1", "--shards", "2"}, true, "--id"},
		{[]string{"tenant", "set-hot", "--id", "d9", "--shards", "2"}, false, "not found"},
		{[]string{"tenant", "limits", "--id", "d9"}, false, "not found"},
	}
	for _, tt := range tests {
		_, _, err := ctl(t, url, tt.args...)
		if err == nil || errors.Is(err, ErrUsage) != tt.usage || !strings.Contains(err.Error(), tt.mention) {
			t.Errorf("ctl %s: %v, want usage=%v mentioning %s", strings.Join(tt.args, " "), err, tt.usage, tt.mention)
		}
	}
}
