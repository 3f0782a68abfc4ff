package app

import (
	"encoding/csv"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edtech-analytics/platform/libs/tenancy/audit"
	"github.com/edtech-analytics/platform/libs/usage"
	"github.com/edtech-analytics/platform/libs/usage/usagetest"
)

// TestUsageReport: 'usage report' prints the month's usage of every district, or of one, as JSON with
// the exact counts, as CSV that reads back to the same numbers (a header, a row per district), and as a
// table; each report is in the audit log. A bad month is refused naming --month.
func TestUsageReport(t *testing.T) {
	pool, url := migratedDB(t)
	conn, database, addr := aggregatorCH(t)
	fx := usagetest.Seed(t, pool, conn)
	chFlags := []string{"--clickhouse.addr", addr, "--clickhouse.database", database}
	report := func(args ...string) string {
		return mustCtl(t, url, append(append([]string{"usage", "report", "--month", usagetest.Month}, chFlags...), args...)...)
	}

	var rep usage.Report
	if err := json.Unmarshal([]byte(report("--output", "json")), &rep); err != nil {
		t.Fatal(err)
	}
	fx.Check(t, &rep)

	recs, err := csv.NewReader(strings.NewReader(report("--output", "csv"))).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1+len(fx.Reported) {
		t.Fatalf("csv of %d records: %v", len(recs), recs)
	}
	col := map[string]int{}
	for i, name := range recs[0] {
		col[name] = i
	}
	for i, id := range fx.Reported {
		row, want := recs[i+1], fx.Want[id]
		num := func(name string) int64 {
			n, err := strconv.ParseInt(row[col[name]], 10, 64)
			if err != nil {
				t.Fatalf("%s of %s: %v", name, id, err)
			}
			return n
		}
		if row[col["tenant_id"]] != id || row[col["period"]] != usagetest.Month || row[col["status"]] != want.Status ||
			num("events_total") != want.EventsTotal || num("active_students") != want.ActiveStudents ||
			num("roster_students") != want.RosterStudents || num("exports_student") != want.ExportsStudent ||
			num("exports_district") != want.ExportsDistrict || num("erasures_student") != want.ErasuresStudent ||
			num("erasures_district") != want.ErasuresDistrict || (num("postgresql_bytes") > 0) != (want.Status != "deleted") ||
			num("clickhouse_bytes_apportioned") != rep.Districts[i].ClickHouseBytesApportioned {
			t.Errorf("csv row %v, want %+v", row, want)
		}
		for _, typ := range usage.EventTypes() {
			if num(usage.EventColumn(typ)) != want.Events[typ] {
				t.Errorf("%s: %s = %d, want %d", id, usage.EventColumn(typ), num(usage.EventColumn(typ)), want.Events[typ])
			}
		}
	}

	text := report("--tenant", "d1")
	for _, want := range []string{"usage of 2026-11 (2026-11-01T00:00:00Z to 2026-12-01T00:00:00Z)", "apportioned",
		"TENANT  STATUS  EVENTS  ATTENDANCE  ASSESSMENT_RESULT  SESSION  CONTENT_VIEW  ACTIVE_STUDENTS", "d1      active  7       3           1"} {
		if !strings.Contains(text, want) {
			t.Errorf("table lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "d2") {
		t.Errorf("report of d1 shows another district:\n%s", text)
	}
	// The same table (below the first line, which has the time of measuring).
	if out := report("--tenant", "d1", "--output", "table"); out[strings.Index(out, "\n"):] != text[strings.Index(text, "\n"):] {
		t.Errorf("--output table differs from text:\n%s", out)
	}

	entries, err := audit.New(pool, nil).List(t.Context(), "", time.Time{}, 100)
	if err != nil {
		t.Fatal(err)
	}
	var reads []string
	for _, e := range entries {
		if e.Action == "usage.read" {
			reads = append(reads, e.TenantID+" "+e.Detail)
		}
	}
	if len(reads) != 4 || !strings.Contains(strings.Join(reads, "\n"), `"period":"2026-11"`) {
		t.Errorf("audit entries of usage reads: %v", reads)
	}

	for _, bad := range [][]string{
		{"--month", "2026-13"}, {"--month", "November"}, {},
	} {
		_, _, err := ctl(t, url, append([]string{"usage", "report"}, bad...)...)
		if !errors.Is(err, ErrUsage) || !strings.Contains(err.Error(), "--month") {
			t.Errorf("usage report %v: %v", bad, err)
		}
	}
	if _, _, err := ctl(t, url, "usage", "report", "--month", "2026-11", "--output", "xml"); !errors.Is(err, ErrUsage) ||
		!strings.Contains(err.Error(), "csv") {
		t.Errorf("--output xml: %v", err)
	}
	if _, _, err := ctl(t, url, append([]string{"usage", "report", "--month", "2026-11", "--tenant", "d9"}, chFlags...)...); err == nil ||
		!strings.Contains(err.Error(), "d9") {
		t.Errorf("report of an unknown district: %v", err)
	}
}
