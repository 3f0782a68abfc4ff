package app

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/edtech-analytics/platform/libs/quality"
	"github.com/edtech-analytics/platform/libs/tenancy/rosters"
)

// TestQualityReportEventChecks: with ClickHouse configured the report adds the event checks: attendance
// marks down on the checked day against the same weekdays before (volume), and a closed day whose marks
// the sink did not all store (completeness), in the findings of the text and JSON reports; the JSON
// still reads as the roster report, with the checks' details under events. Without ClickHouse the
// report is the roster one.
func TestQualityReportEventChecks(t *testing.T) {
	pool, url := migratedDB(t)
	mustCtl(t, url, "tenant", "create", "--id", "d1", "--name", "District 1")
	conn, database, addr := aggregatorCH(t)
	ctx := t.Context()

	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	monday := time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC) // checked for volume, and the last closed day
	batch, err := conn.PrepareBatch(ctx, `INSERT INTO events (tenant_id, event_id, source_id, type, occurred_at, student_id, attendance_date)`)
	if err != nil {
		t.Fatal(err)
	}
	for w := 4; w >= 0; w-- {
		day, n := monday.AddDate(0, 0, -7*w), 200
		if w == 0 {
			n = 120 // 40% down
		}
		for i := range n {
			student := uuid.New()
			if err := batch.Append("d1", uuid.New(), "sis", "attendance", day.Add(8*time.Hour), student, day); err != nil {
				t.Fatal(err)
			}
			if w == 0 && i < 2 {
				continue // the sink lacks 2 of the 120 marks of the day
			}
			if _, err := pool.Exec(ctx, `INSERT INTO district_d1.attendance_daily (internal_id, day, status, event_id) VALUES ($1, $2, 'present', $3)`,
				student, day, uuid.New()); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := batch.Send(); err != nil {
		t.Fatal(err)
	}

	args := []string{"quality", "report", "--tenant", "d1", "--clickhouse.addr", addr, "--clickhouse.database", database, "--at", at.Format(time.RFC3339)}
	var rep rosters.Report
	var events struct {
		Events quality.Report `json:"events"`
	}
	out := mustCtl(t, url, append(args, "--output", "json")...)
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(out), &events); err != nil {
		t.Fatal(err)
	}
	findings := map[string]rosters.Finding{}
	for _, f := range rep.Findings {
		findings[f.Check] = f
	}
	vol, gap := findings[quality.CheckVolume], findings[quality.CheckCompleteness]
	if vol.Source != "sis" || vol.Entity != "attendance" || vol.Subject != "2026-11-30" || vol.Severity != rosters.SeverityError ||
		!strings.Contains(vol.Message, "attendance events from sis on 2026-11-30: 120, 40% down on the mean 200.0 of 4 previous Mondays") {
		t.Errorf("volume finding %+v", vol)
	}
	if gap.Subject != "2026-11-30" || gap.Value != 2.0/120 ||
		gap.Message != "attendance student-days on 2026-11-30: 120 in clickhouse, 118 stored by the sink (1.67% apart)" {
		t.Errorf("completeness finding %+v", gap)
	}
	if ev := events.Events; ev.TenantID != "d1" || ev.Anomalies() != 1 || len(ev.Completeness) != 7 || rep.TenantID != "d1" {
		t.Errorf("events %+v", ev)
	}

	text := mustCtl(t, url, args...)
	for _, want := range []string{"events: volume of 2026-11-30 against 8 previous Mondays: 1 sources and types, 1 anomalies",
		"attendance student-days of 2026-11-30: 120 in clickhouse, 118 stored", "error     volume", "error     completeness"} {
		if !strings.Contains(text, want) {
			t.Errorf("report lacks %q:\n%s", want, text)
		}
	}

	// A floor above the drop of 80 marks: no volume finding, the gap stays.
	if text := mustCtl(t, url, append(args, "--volume-floor", "100")...); strings.Contains(text, "error     volume") ||
		!strings.Contains(text, "error     completeness") {
		t.Errorf("report with a higher floor:\n%s", text)
	}
	// As of before Monday: Sunday has no events, and Monday is not closed.
	if text := mustCtl(t, url, append(args[:len(args)-2], "--at", "2026-11-30T23:59:00Z")...); !strings.Contains(text, "no findings") {
		t.Errorf("report as of before the day:\n%s", text)
	}
	// Without ClickHouse: the roster report only.
	if out := mustCtl(t, url, "quality", "report", "--tenant", "d1", "--clickhouse.addr", "", "--output", "json"); strings.Contains(out, `"events"`) {
		t.Errorf("report without clickhouse: %s", out)
	}
}
