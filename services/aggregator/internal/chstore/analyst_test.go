package chstore_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/edtech-analytics/platform/services/aggregator/internal/chstore"
	"github.com/edtech-analytics/platform/services/aggregator/internal/synth"
)

// TestAnalystViewsShowOneDistrictPseudonymously writes events of three districts and proves that each
// district's analyst database holds the five views, that every view returns that district's rows only
// (counts and pseudonyms), that no view has a column that identifies a student (internal id, SIS id,
// names) or says where a row came from, that a SIS id in the input shows nowhere, and that a second
// store (a restarted aggregator) finds the views in place.
func TestAnalystViewsShowOneDistrictPseudonymously(t *testing.T) {
	store, conn, codec := newStore(t)
	db := currentDatabase(t, conn)
	prefix := db + "_analyst_"
	evs, _ := synth.Events(21, 3, 600)
	evs[0].Actor.SISID = ptr("SIS-SECRET-9")
	// district_1's events view as an older release made it, without academic_session_id: the first write
	// of the district replaces it.
	old, _ := chstore.AnalystDatabase(prefix, "district_1")
	for _, stmt := range []string{"CREATE DATABASE " + old, "CREATE VIEW " + old + ".events AS SELECT event_id, type FROM " + db +
		".events WHERE tenant_id = 'district_1'"} {
		if err := conn.Exec(t.Context(), stmt); err != nil {
			t.Fatal(err)
		}
	}
	if err := store.Write(t.Context(), topic, 0, facts(t, codec, 0, 0, evs)); err != nil {
		t.Fatal(err)
	}
	want := synth.Want(evs)

	allowed := map[string]bool{}
	for _, c := range strings.Split("event_id source_id type occurred_at occurred_ms local_day received_at school_id class_id pseudonym role "+
		"age_band grade_level academic_session_id attendance_status attendance_date minutes_present assessment_id score max_score assignment_id "+
		"submission_status late session_action session_seconds content_id content_type duration_seconds percent_complete "+
		"custom_name generic_standard generic_type generic_action generic_object_id generic_object_type generic_statement_id prop_keys prop_values day "+
		"active_students events present tardy absent excused other_marks attendance_rate assessments mean_score_pct "+
		"score_quantiles submissions late_submissions content_seconds logins session_seconds week active_days first_event_at first_day", " ") {
		allowed[c] = true
	}
	for i, tenant := range []string{"district_1", "district_2", "district_3"} {
		analyst, ok := chstore.AnalystDatabase(prefix, tenant)
		if !ok {
			t.Fatalf("no analyst database for %s", tenant)
		}
		var cols []struct {
			Table string `ch:"table"`
			Name  string `ch:"name"`
			Type  string `ch:"type"`
		}
		if err := conn.Select(t.Context(), &cols, "SELECT table, name, type FROM system.columns WHERE database = ? ORDER BY table, name", analyst); err != nil {
			t.Fatal(err)
		}
		views, eventCols := map[string]bool{}, 0
		for _, c := range cols {
			views[c.Table] = true
			if !allowed[c.Name] {
				t.Errorf("%s.%s shows column %s, which analysts must not see", analyst, c.Table, c.Name)
			}
			if c.Table == "events" {
				eventCols++
			}
		}
		if eventCols != 38 { // every column analysts see, also where an older view was replaced
			t.Errorf("%s.events has %d columns, want 38", analyst, eventCols)
		}
		if len(views) != len(chstore.AnalystViewNames()) {
			t.Fatalf("%s holds views %v, want %v", analyst, views, chstore.AnalystViewNames())
		}

		var (
			wantEvents, wantStudentEvents uint64
			pseudonyms                    = map[string]bool{}
		)
		for _, ev := range evs {
			if ev.TenantID == tenant {
				wantEvents++
				if ev.Actor.Role == "student" {
					wantStudentEvents++
				}
				pseudonyms[ev.Actor.Pseudonym] = true
			}
		}
		q := func(query string) uint64 { return count(t, conn, fmt.Sprintf(query, analyst)) }
		if n := q("SELECT count() FROM %s.events"); n != wantEvents || n == 0 {
			t.Errorf("%s.events holds %d rows, want the district's %d", analyst, n, wantEvents)
		}
		if n := q("SELECT sum(events) FROM %s.district_daily"); n != wantStudentEvents {
			t.Errorf("%s.district_daily counts %d events, want %d", analyst, n, wantStudentEvents)
		}
		for _, v := range []string{"school_daily", "class_daily", "student_daily"} {
			if n := q("SELECT count() FROM %s." + v); n == 0 {
				t.Errorf("%s.%s is empty", analyst, v)
			}
		}
		// The product analytics views count a student's events other than attendance marks, by local week,
		// and find the first meaningful one: together they hold every such event of the district.
		var wantActive uint64
		for _, ev := range evs {
			if ev.TenantID == tenant && ev.Actor.Role == "student" && ev.Type != "attendance" {
				wantActive++
			}
		}
		if n := q("SELECT sum(events) FROM %s.student_weekly_activity"); n != wantActive {
			t.Errorf("%s.student_weekly_activity counts %d events, want %d", analyst, n, wantActive)
		}
		if n := q("SELECT count() FROM %s.student_first_activity WHERE first_day > toDate('2000-01-01')"); n == 0 || n > uint64(len(pseudonyms)) {
			t.Errorf("%s.student_first_activity holds %d students of %d", analyst, n, len(pseudonyms))
		}
		var wantMarks uint64
		for k, m := range want.Metrics {
			if k.Tenant == tenant && k.Level == synth.LevelDistrict {
				wantMarks += m.Present + m.Tardy + m.Absent + m.Excused + m.OtherMarks
			}
		}
		if n := q("SELECT sum(present + tardy + absent + excused + other_marks) FROM %s.school_daily"); n != wantMarks {
			t.Errorf("%s.school_daily holds %d attendance marks, want %d", analyst, n, wantMarks)
		}
		var seen []struct {
			Pseudonym string `ch:"pseudonym"`
		}
		if err := conn.Select(t.Context(), &seen, fmt.Sprintf(
			"SELECT DISTINCT pseudonym FROM %[1]s.events UNION ALL SELECT DISTINCT pseudonym FROM %[1]s.student_daily", analyst)); err != nil {
			t.Fatal(err)
		}
		for _, s := range seen {
			if !pseudonyms[s.Pseudonym] || !strings.HasPrefix(s.Pseudonym, fmt.Sprintf("p-%d-", i)) {
				t.Fatalf("%s shows pseudonym %q, which is not of %s", analyst, s.Pseudonym, tenant)
			}
		}
		for _, c := range cols {
			if !strings.Contains(c.Type, "String") {
				continue
			}
			if n := count(t, conn, fmt.Sprintf("SELECT count() FROM %s.%s WHERE position(toString(%s), 'SIS-') > 0", analyst, c.Table, c.Name)); n != 0 {
				t.Errorf("%s.%s.%s holds a SIS id", analyst, c.Table, c.Name)
			}
		}
	}

	// A restarted aggregator finds the views in place and writes on.
	again, err := chstore.New(conn, codec, chstore.Config{Database: db, AnalystPrefix: prefix}, chstore.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	more, _ := synth.Events(22, 3, 30)
	if err := again.Write(t.Context(), topic, 0, facts(t, codec, 0, int64(len(evs)), more)); err != nil {
		t.Fatal(err)
	}
	if n := count(t, conn, fmt.Sprintf("SELECT count() FROM %sdistrict_1.events", prefix)); n <= 0 {
		t.Fatal("district_1's view is empty after the restart")
	}
	if !slices.Equal(chstore.AnalystViewNames(), []string{"events", "district_daily", "school_daily", "class_daily", "student_daily",
		"student_weekly_activity", "student_first_activity"}) {
		t.Fatalf("views %v", chstore.AnalystViewNames())
	}
	if _, ok := chstore.AnalystDatabase(prefix, "Bad-Tenant"); ok {
		t.Fatal("a tenant id that is not a slug got an analyst database")
	}
}

func currentDatabase(t *testing.T, conn driver.Conn) string {
	t.Helper()
	var db string
	if err := conn.QueryRow(t.Context(), "SELECT currentDatabase()").Scan(&db); err != nil {
		t.Fatal(err)
	}
	return db
}
