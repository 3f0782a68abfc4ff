// Package usagetest seeds districts whose usage in November 2026 is known, over a migrated control
// database and a ClickHouse database with the aggregator's tables, for the tests of everything that
// reports usage (libs/usage, ctl usage report, the query service's GET /v1/usage and gauges).
package usagetest

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/edtech-analytics/platform/libs/tenancy/fleet"
	"github.com/edtech-analytics/platform/libs/tenancy/jobs"
	"github.com/edtech-analytics/platform/libs/tenancy/tenants"
	"github.com/edtech-analytics/platform/libs/usage"
)

// Month is the month the fixture's usage falls in.
const Month = "2026-11"

// Fixture is what Seed set up: the districts a report of Month lists, and each one's counts.
type Fixture struct {
	// Reported are the districts a report of Month over every district lists, in order: d1, d2, and
	// d4 (deleted during the month). d3 was deleted before it and d5 created after it.
	Reported []string
	// Want holds each reported district's exact counts (storage is checked apart: Bytes).
	Want map[string]usage.District
	// EventRows is how many rows each district (d1 to d5) has in ClickHouse's events table.
	EventRows map[string]uint64
}

func at(s string) time.Time {
	t, err := time.Parse(time.DateTime, s)
	if err != nil {
		panic(err)
	}
	return t.UTC()
}

// event is one row of ClickHouse's events table.
type event struct {
	tenant, typ, role  string
	student            uuid.UUID
	occurred, received string
	attendanceDate     string // attendance only
}

// Seed creates districts d1 to d5 and their events, rosters and privacy jobs. control must hold a
// migrated control schema (its districts' schemas go on its main instance), ch's default database the
// aggregator's tables.
//
//   - d1: events received in the month: 3 attendance marks (students A, B, C), 2 content views (A and a
//     teacher), an assessment result (B, the month's last second), a session of E that occurred in
//     October and was received in November; not counted: F's session received on 31 October, G's
//     received on 1 December (G was active on 30 November: 4 active students, A, B, C, G). Roster: 3
//     students (one also an aide) and a teacher. Jobs done in the month: 2 student exports, 1 student
//     erasure; not counted: a failed erasure, a district export done in October.
//   - d2: 2 sessions and a custom event of D (1 active student); 1 student in the roster; 1 district
//     export.
//   - d3: deleted in October, with 5 events in November: not reported, its rows in ClickHouse's totals.
//   - d4: deleted (schema dropped) on 20 November after an attendance mark of H and its erasure job.
//   - d5: created in December.
//
// ClickHouse's tables are merged (OPTIMIZE ... FINAL) at the end, so that their sizes stay put while a
// test measures them.
func Seed(t testing.TB, control *pgxpool.Pool, ch driver.Conn) Fixture {
	t.Helper()
	ctx := t.Context()
	f := fleet.New(control, os.Getenv)
	t.Cleanup(f.Close)
	store := tenants.New(f)
	for _, id := range []string{"d1", "d2", "d3", "d4", "d5"} {
		if _, err := store.Create(ctx, id, "District "+id); err != nil {
			t.Fatal(err)
		}
	}
	exec(t, control, `UPDATE control.tenants SET created_at = '2026-01-01T00:00:00Z' WHERE id <> 'd5'`)
	exec(t, control, `UPDATE control.tenants SET created_at = '2026-12-02T00:00:00Z' WHERE id = 'd5'`)

	s := func() uuid.UUID { return uuid.New() }
	a, b, c, e, g, teacher, d, h := s(), s(), s(), s(), s(), s(), s(), s()
	evs := []event{
		{"d1", "attendance", "student", a, "2026-11-02 08:00:00", "2026-11-02 08:00:01", "2026-11-02"},
		{"d1", "attendance", "student", b, "2026-11-02 08:00:00", "2026-11-02 08:00:01", "2026-11-02"},
		{"d1", "attendance", "student", c, "2026-11-03 08:00:00", "2026-11-03 08:00:01", "2026-11-03"},
		{"d1", "content_view", "student", a, "2026-11-10 10:00:00", "2026-11-10 10:00:00", ""},
		{"d1", "content_view", "teacher", teacher, "2026-11-10 10:00:00", "2026-11-10 10:00:00", ""},
		{"d1", "assessment_result", "student", b, "2026-11-30 23:59:59", "2026-11-30 23:59:59", ""},
		{"d1", "session", "student", e, "2026-10-15 09:00:00", "2026-11-02 09:00:00", ""},
		{"d1", "session", "student", s(), "2026-10-31 23:59:59", "2026-10-31 23:59:59", ""},
		{"d1", "session", "student", g, "2026-11-30 23:59:00", "2026-12-01 00:00:00", ""},
		{"d2", "session", "student", d, "2026-11-05 09:00:00", "2026-11-05 09:00:00", ""},
		{"d2", "session", "student", d, "2026-11-05 09:40:00", "2026-11-05 09:40:00", ""},
		{"d2", "custom", "student", d, "2026-11-06 09:00:00", "2026-11-06 09:00:00", ""},
		{"d4", "attendance", "student", h, "2026-11-03 08:00:00", "2026-11-03 08:00:00", "2026-11-03"},
	}
	for range 5 {
		evs = append(evs, event{"d3", "session", "student", s(), "2026-11-04 09:00:00", "2026-11-04 09:00:00", ""})
	}
	batch, err := ch.PrepareBatch(ctx, `INSERT INTO events (tenant_id, event_id, source_id, type, occurred_at, received_at,
		student_id, role, attendance_status, attendance_date, kafka_partition)`)
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]uint64{}
	for i, ev := range evs {
		status, day := "", time.Time{}
		if ev.attendanceDate != "" {
			status, day = "present", at(ev.attendanceDate+" 00:00:00")
		}
		if err := batch.Append(ev.tenant, uuid.New(), "sis", ev.typ, at(ev.occurred), at(ev.received), ev.student, ev.role,
			status, day, uint32(i%2)); err != nil {
			t.Fatal(err)
		}
		rows[ev.tenant]++
	}
	if err := batch.Send(); err != nil {
		t.Fatal(err)
	}

	roster := func(tenant, id, roles string) {
		exec(t, control, `INSERT INTO `+pgx.Identifier{"district_" + tenant, "roster_users"}.Sanitize()+`
			(sourced_id, status, date_last_modified, enabled, given_name, family_name, roles)
			VALUES ($1, 'active', now(), true, 'N', 'N', $2::jsonb)`, id, roles)
	}
	student := `[{"role_type": "primary", "role": "student", "org_sourced_id": "s1"}]`
	roster("d1", "u1", student)
	roster("d1", "u2", student)
	roster("d1", "u3", `[{"role_type": "primary", "role": "aide", "org_sourced_id": "s1"}, {"role_type": "secondary", "role": "student", "org_sourced_id": "s1"}]`)
	roster("d1", "t1", `[{"role_type": "primary", "role": "teacher", "org_sourced_id": "s1"}]`)
	roster("d2", "u1", student)
	roster("d4", "u1", student)

	js := jobs.New(control)
	job := func(tenant, kind, status, finished string) {
		j, _, err := js.Start(ctx, jobs.Request{Kind: kind, TenantID: tenant, Subject: uuid.NewString(), By: "test"})
		if err != nil {
			t.Fatal(err)
		}
		if err := js.Finish(ctx, j.ID, status, ""); err != nil {
			t.Fatal(err)
		}
		exec(t, control, `UPDATE control.privacy_jobs SET finished_at = $2 WHERE id = $1::uuid`, j.ID, at(finished))
	}
	job("d1", usage.KindExportStudent, jobs.StatusDone, "2026-11-01 00:00:00")
	job("d1", usage.KindExportStudent, jobs.StatusDone, "2026-11-15 12:00:00")
	job("d1", usage.KindEraseStudent, jobs.StatusDone, "2026-11-30 23:59:59")
	job("d1", usage.KindEraseStudent, jobs.StatusFailed, "2026-11-16 12:00:00")
	job("d1", usage.KindExportTenant, jobs.StatusDone, "2026-10-31 23:59:59")
	job("d1", usage.KindExportTenant, jobs.StatusDone, "2026-12-01 00:00:00")
	job("d2", usage.KindExportTenant, jobs.StatusDone, "2026-11-07 12:00:00")
	job("d4", usage.KindEraseTenant, jobs.StatusDone, "2026-11-20 12:00:00")

	for _, del := range []struct{ id, at string }{{"d3", "2026-10-15 00:00:00"}, {"d4", "2026-11-20 12:00:00"}} {
		if _, err := store.Delete(ctx, del.id); err != nil {
			t.Fatal(err)
		}
		exec(t, control, `UPDATE control.tenants SET deleted_at = $2 WHERE id = $1`, del.id, at(del.at))
	}

	optimize(t, ch)
	return Fixture{
		Reported:  []string{"d1", "d2", "d4"},
		EventRows: rows,
		Want: map[string]usage.District{
			"d1": {TenantID: "d1", Status: "active", EventsTotal: 7,
				Events:         map[string]int64{"attendance": 3, "content_view": 2, "assessment_result": 1, "session": 1},
				ActiveStudents: 4, RosterStudents: 3, ExportsStudent: 2, ErasuresStudent: 1},
			"d2": {TenantID: "d2", Status: "active", EventsTotal: 3, Events: map[string]int64{"session": 2, "custom": 1},
				ActiveStudents: 1, RosterStudents: 1, ExportsDistrict: 1},
			"d4": {TenantID: "d4", Status: "deleted", EventsTotal: 1, Events: map[string]int64{"attendance": 1},
				ActiveStudents: 1, ErasuresDistrict: 1},
		},
	}
}

// Check compares a report of Month with the fixture's counts, exactly, and checks that every district
// that has a schema has a size and that every district with rows in ClickHouse has a share of it.
func (f Fixture) Check(t testing.TB, rep *usage.Report) {
	t.Helper()
	if rep.Period != Month || !rep.Start.Equal(at("2026-11-01 00:00:00")) || !rep.End.Equal(at("2026-12-01 00:00:00")) {
		t.Errorf("report of %q from %s to %s", rep.Period, rep.Start, rep.End)
	}
	var ids []string
	for _, d := range rep.Districts {
		ids = append(ids, d.TenantID)
	}
	if fmt.Sprint(ids) != fmt.Sprint(f.Reported) {
		t.Fatalf("districts %v, want %v", ids, f.Reported)
	}
	for _, got := range rep.Districts {
		want := f.Want[got.TenantID]
		counts := func(d usage.District) string {
			return fmt.Sprintf("status %s events %v total %d active %d roster %d exports %d/%d erasures %d/%d", d.Status, d.Events,
				d.EventsTotal, d.ActiveStudents, d.RosterStudents, d.ExportsStudent, d.ExportsDistrict, d.ErasuresStudent, d.ErasuresDistrict)
		}
		if counts(got) != counts(want) {
			t.Errorf("%s: %s\nwant     %s", got.TenantID, counts(got), counts(want))
		}
		if (got.PostgreSQLBytes > 0) != (got.Status != "deleted") || got.ClickHouseBytesApportioned <= 0 {
			t.Errorf("%s: %d bytes in postgresql, %d apportioned in clickhouse", got.TenantID, got.PostgreSQLBytes, got.ClickHouseBytesApportioned)
		}
	}
}

func exec(t testing.TB, pool *pgxpool.Pool, sql string, args ...any) {
	t.Helper()
	if _, err := pool.Exec(t.Context(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// optimize merges every part of the database's tables that have a tenant_id.
func optimize(t testing.TB, ch driver.Conn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	rows, err := ch.Query(ctx, `SELECT DISTINCT table FROM system.parts WHERE active AND database = currentDatabase()`)
	if err != nil {
		t.Fatal(err)
	}
	var tables []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			t.Fatal(err)
		}
		tables = append(tables, name)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	_ = rows.Close()
	for _, table := range tables {
		if err := ch.Exec(ctx, "OPTIMIZE TABLE `"+table+"` FINAL"); err != nil {
			t.Fatalf("optimizing %s: %v", table, err)
		}
	}
}
