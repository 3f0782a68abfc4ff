package quality_test

import (
	"os"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/google/uuid"

	"github.com/edtech-analytics/platform/libs/chutil"
	"github.com/edtech-analytics/platform/libs/chutil/chtest"
	"github.com/edtech-analytics/platform/libs/pgutil/pgtest"
	"github.com/edtech-analytics/platform/libs/quality"
	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/edtech-analytics/platform/libs/tenancy/fleet"
	"github.com/edtech-analytics/platform/libs/tenancy/tenants"
)

// event is one synthetic row of ClickHouse's events table.
type event struct {
	tenant, source, typ string
	at                  time.Time
	student             uuid.UUID
	attendanceDate      time.Time
}

// eventsTable gives the test a ClickHouse database with the aggregator's tables (its migrations: the
// events table the checks read is the aggregator's).
func eventsTable(t testing.TB) driver.Conn {
	t.Helper()
	conn, db, _ := chtest.New(t)
	if err := chutil.Migrate(t.Context(), conn, db, os.DirFS("../../services/aggregator/internal/chstore/migrations")); err != nil {
		t.Fatal(err)
	}
	return conn
}

func insert(t *testing.T, conn driver.Conn, evs []event) {
	t.Helper()
	batch, err := conn.PrepareBatch(t.Context(), `INSERT INTO events (tenant_id, event_id, source_id, type, occurred_at, student_id, attendance_date)`)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs {
		if err := batch.Append(e.tenant, uuid.New(), e.source, e.typ, e.at, e.student, e.attendanceDate); err != nil {
			t.Fatal(err)
		}
	}
	if err := batch.Send(); err != nil {
		t.Fatal(err)
	}
}

// many returns n events of a source and type at a time, each of its own student.
func many(n int, tenant, source, typ string, at time.Time) []event {
	out := make([]event, n)
	for i := range out {
		out[i] = event{tenant: tenant, source: source, typ: typ, at: at, student: uuid.New(), attendanceDate: quality.Day(at)}
	}
	return out
}

// TestDailyCountsAndVolume: the counts read from ClickHouse are the district's, by source, type and UTC
// day, on the checked weekday only; the analysis over them finds a drop, a source gone silent, and not a
// steady source or another district.
func TestDailyCountsAndVolume(t *testing.T) {
	conn := eventsTable(t)
	day := time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC) // a Monday
	var evs []event
	for w := 1; w <= 4; w++ {
		d := day.AddDate(0, 0, -7*w)
		evs = append(evs, many(100, "d1", "sis", "attendance", d.Add(8*time.Hour))...)
		evs = append(evs, many(60, "d1", "lms", "content_view", d.Add(23*time.Hour+59*time.Minute))...)
		evs = append(evs, many(30, "d1", "sis", "attendance", d.Add(24*time.Hour))...) // Tuesday: not read
		evs = append(evs, many(100, "d2", "sis", "attendance", d.Add(8*time.Hour))...)
	}
	evs = append(evs, many(40, "d1", "sis", "attendance", day.Add(9*time.Hour))...)   // 60% down
	evs = append(evs, many(100, "d2", "sis", "attendance", day.Add(9*time.Hour))...)  // steady
	evs = append(evs, many(500, "d1", "sis", "attendance", day.Add(-time.Second))...) // Sunday before: not read
	insert(t, conn, evs)

	counts, err := quality.DailyCounts(t.Context(), conn, "d1", quality.BaselineFrom(day, 8), day.Add(5*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if len(counts) != 9 {
		t.Fatalf("counts %+v, want 4 weeks of two keys and the day of one", counts)
	}
	for _, c := range counts {
		want := map[string]int64{"attendance": 100, "content_view": 60}[c.Type]
		if c.Day.Equal(day) {
			want = 40
		}
		if c.Day.Weekday() != time.Monday || c.Count != want {
			t.Errorf("count %+v, want %d", c, want)
		}
	}
	vol := quality.AnalyzeVolume(counts, day, quality.VolumeConfig{Floor: 20})
	if len(vol) != 2 || vol[0].Type != "content_view" || vol[0].Count != 0 || !vol[0].Anomaly ||
		vol[1].Type != "attendance" || vol[1].Count != 40 || !vol[1].Anomaly || vol[1].Baseline != 4 {
		t.Fatalf("volume %+v", vol)
	}
	counts, err = quality.DailyCounts(t.Context(), conn, "d2", quality.BaselineFrom(day, 8), day)
	if err != nil {
		t.Fatal(err)
	}
	if vol := quality.AnalyzeVolume(counts, day, quality.VolumeConfig{}); len(vol) != 1 || vol[0].Anomaly || vol[0].Count != 100 {
		t.Fatalf("d2 volume %+v", vol)
	}
}

// TestCheckerCompleteness: the checker compares each closed day's attendance student-days in ClickHouse
// with the sink's attendance_daily rows of the district, and finds the day the sink lacks rows.
func TestCheckerCompleteness(t *testing.T) {
	conn := eventsTable(t)
	pool, _ := pgtest.New(t)
	ctx := t.Context()
	if err := tenancy.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	f := fleet.New(pool, os.Getenv)
	t.Cleanup(f.Close)
	if _, err := tenants.New(f).Create(ctx, "d1", "d1"); err != nil {
		t.Fatal(err)
	}

	now := time.Date(2026, 12, 3, 0, 30, 0, 0, time.UTC) // Dec 2 ended 30 minutes ago: not closed yet
	day1, day2 := time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC), time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	evs := append(many(400, "d1", "sis", "attendance", day1.Add(8*time.Hour)), many(400, "d1", "sis", "attendance", day2.Add(8*time.Hour))...)
	second := evs[0] // a student marked again for day 1, the day after, is one row in both stores
	second.at = second.at.Add(26 * time.Hour)
	evs = append(evs, second)
	evs = append(evs, many(10, "d1", "sis", "attendance", day2.AddDate(0, 0, 1).Add(8*time.Hour))...) // Dec 2: not compared
	evs = append(evs, many(10, "d1", "lms", "content_view", day1.Add(8*time.Hour))...)                // not attendance
	insert(t, conn, evs)
	// The sink stored every mark of day 1, and all but 3 of day 2 (0.75%).
	for _, e := range evs[:797] {
		if _, err := pool.Exec(ctx, `INSERT INTO district_d1.attendance_daily (internal_id, day, status, event_id) VALUES ($1, $2, 'present', $3)`,
			e.student, e.attendanceDate, uuid.New()); err != nil {
			t.Fatal(err)
		}
	}

	c := quality.NewChecker(conn, fleet.NewDistrictPools(f), tenancy.SchemaName, quality.Config{Days: 3})
	rep, err := c.Check(ctx, "d1", now)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Completeness) != 3 {
		t.Fatalf("completeness %+v", rep.Completeness)
	}
	for i, want := range []quality.DayGap{
		{Day: day1.AddDate(0, 0, -1)},
		{Day: day1, ClickHouse: 400, Stored: 400},
		{Day: day2, ClickHouse: 400, Stored: 397, Ratio: 3.0 / 400, Finding: true},
	} {
		if got := rep.Completeness[i]; !got.Day.Equal(want.Day) || got.ClickHouse != want.ClickHouse || got.Stored != want.Stored ||
			got.Ratio != want.Ratio || got.Finding != want.Finding {
			t.Errorf("day %d: %+v, want %+v", i, got, want)
		}
	}
	if g, ok := rep.LastGap(); !ok || !g.Day.Equal(day2) {
		t.Errorf("last gap %+v", g)
	}
	findings := rep.Findings(c.Config().Volume)
	if len(findings) != 1 || findings[0].Check != quality.CheckCompleteness || findings[0].Subject != "2026-12-01" {
		t.Fatalf("findings %+v", findings)
	}
	if !rep.Day.Equal(day2) {
		t.Errorf("volume checked %v, want the last closed day", rep.Day)
	}
}
