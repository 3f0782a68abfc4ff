package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"github.com/edtech-analytics/platform/libs/keyring/keyringtest"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/edtech-analytics/platform/libs/chutil"
	"github.com/edtech-analytics/platform/libs/chutil/chtest"
	"github.com/edtech-analytics/platform/libs/pgutil/pgtest"
	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/edtech-analytics/platform/libs/tenancy/audit"
	"github.com/edtech-analytics/platform/libs/tenancy/credentials"
	"github.com/edtech-analytics/platform/libs/tenancy/fleet"
	"github.com/edtech-analytics/platform/libs/tenancy/tenants"
	"github.com/edtech-analytics/platform/services/query/internal/api"
	"github.com/edtech-analytics/platform/services/query/internal/auth"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// migrateRollups applies the aggregator's ClickHouse migrations (the query service reads what they make).
func migrateRollups(t *testing.T) (driver.Conn, string) {
	t.Helper()
	conn, db, _ := chtest.New(t)
	if err := chutil.Migrate(t.Context(), conn, db, os.DirFS("../../../aggregator/internal/chstore/migrations")); err != nil {
		t.Fatal(err)
	}
	return conn, db
}

// event is a fact as the aggregator stores it, reduced to what the rollups read.
type event struct {
	tenant, school, class, student, typ, status string
	day                                         time.Time
	score, max                                  float64
	late                                        bool
	seconds                                     uint32
}

// insertEvents writes events into the fact table; the materialized views fill the rollups.
func insertEvents(t *testing.T, conn driver.Conn, evs []event) {
	t.Helper()
	batch, err := conn.PrepareBatch(t.Context(), `INSERT INTO events (tenant_id, event_id, type, occurred_at, school_id, class_id,
		student_id, pseudonym, role, attendance_status, attendance_date, score, max_score, late, session_action, duration_seconds)`)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs {
		var score, max *float64
		var late *uint8
		action := ""
		var dur uint32
		switch e.typ {
		case "assessment_result":
			score, max = &e.score, &e.max
		case "assignment_submission":
			l := uint8(0)
			if e.late {
				l = 1
			}
			late = &l
		case "session":
			action = "login"
		case "content_view":
			dur = e.seconds
		}
		if err := batch.Append(e.tenant, uuid.New(), e.typ, e.day.Add(9*time.Hour), e.school, e.class, uuid.MustParse(e.student),
			"p-"+e.student[:8], "student", e.status, e.day, score, max, late, action, dur); err != nil {
			t.Fatal(err)
		}
	}
	if err := batch.Send(); err != nil {
		t.Fatal(err)
	}
}

// world is two districts with the same school and class ids (s1: c1, c2; s2: c3), a teacher t1 of c1
// and one student per class, in the roster and in ClickHouse.
type world struct {
	students map[string]map[string]string // tenant -> class -> student internal id
	events   []event
}

var day0 = time.Date(2026, 10, 5, 0, 0, 0, 0, time.UTC)

func buildWorld(t *testing.T, pool *pgxpool.Pool, conn driver.Conn, store *tenants.Store) world {
	t.Helper()
	w := world{students: map[string]map[string]string{}}
	classes := map[string]string{"c1": "s1", "c2": "s1", "c3": "s2"}
	for ti, tenant := range []string{"d1", "d2"} {
		if _, err := store.Create(t.Context(), tenant, "District "+tenant); err != nil {
			t.Fatal(err)
		}
		schema := pgx.Identifier{"district_" + tenant}.Sanitize()
		w.students[tenant] = map[string]string{}
		exec := func(q string, args ...any) {
			if _, err := pool.Exec(t.Context(), fmt.Sprintf(q, schema), args...); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
		exec(`INSERT INTO %s.roster_users (sourced_id, status, date_last_modified, enabled, given_name, family_name) VALUES ('t1', 'active', now(), true, 'Tea', 'Cher')`)
		for ci, class := range []string{"c1", "c2", "c3"} {
			school := classes[class]
			student := uuid.NewString()
			w.students[tenant][class] = student
			exec(`INSERT INTO %s.roster_classes (sourced_id, status, date_last_modified, title, class_type, course_sourced_id, school_sourced_id)
				VALUES ($1, 'active', now(), $1, 'scheduled', 'course', $2)`, class, school)
			exec(`INSERT INTO %s.roster_users (sourced_id, status, date_last_modified, enabled, given_name, family_name, internal_id)
				VALUES ($1, 'active', now(), true, 'Stu', 'Dent', $2)`, "u-"+class, student)
			exec(`INSERT INTO %s.roster_enrollments (sourced_id, status, date_last_modified, class_sourced_id, school_sourced_id, user_sourced_id, role)
				VALUES ($1, 'active', now(), $2, $3, $4, 'student')`, "e-"+class, class, school, "u-"+class)
			for d := range 3 {
				day := day0.AddDate(0, 0, d)
				base := event{tenant: tenant, school: school, class: class, student: student, day: day}
				statuses := []string{"present", "tardy", "absent"}
				att, asmt, sub, login, content := base, base, base, base, base
				att.typ, att.status = "attendance", statuses[(d+ci+ti)%3]
				asmt.typ, asmt.score, asmt.max = "assessment_result", float64(10*(ci+1)+d+5*ti), 50
				sub.typ, sub.late = "assignment_submission", (d+ci)%2 == 0
				login.typ = "session"
				content.typ, content.seconds = "content_view", uint32(60*(ci+1)+d+ti)
				w.events = append(w.events, att, asmt, sub, login, content)
			}
		}
		exec(`INSERT INTO %s.roster_enrollments (sourced_id, status, date_last_modified, class_sourced_id, school_sourced_id, user_sourced_id, role)
			VALUES ('e-t1', 'active', now(), 'c1', 's1', 't1', 'teacher')`)
	}
	insertEvents(t, conn, w.events)
	return w
}

// expected is what a summary of the events matching keep must total.
type expected struct {
	events, students, marks, present, tardy, assessments, submissions, late, content, logins uint64
	p50                                                                                      float64
}

func (w world) expect(keep func(event) bool) expected {
	var e expected
	students := map[string]bool{}
	var scores []float64
	for _, ev := range w.events {
		if !keep(ev) {
			continue
		}
		e.events++
		students[ev.student] = true
		switch ev.typ {
		case "attendance":
			e.marks++
			if ev.status == "present" {
				e.present++
			}
			if ev.status == "tardy" {
				e.tardy++
			}
		case "assessment_result":
			e.assessments++
			scores = append(scores, ev.score/ev.max*100)
		case "assignment_submission":
			e.submissions++
			if ev.late {
				e.late++
			}
		case "session":
			e.logins++
		case "content_view":
			e.content += uint64(ev.seconds)
		}
	}
	e.students = uint64(len(students))
	sort.Float64s(scores)
	if n := len(scores); n > 0 {
		idx := 0.5 * float64(n-1)
		lo := int(idx)
		hi := min(lo+1, n-1)
		e.p50 = scores[lo] + (idx-float64(lo))*(scores[hi]-scores[lo])
	}
	return e
}

func check(t *testing.T, s api.Summary, want expected, withStudents bool) {
	t.Helper()
	m := s.Totals
	got := expected{events: m.Events, marks: m.Attendance.Marks, present: m.Attendance.Present, tardy: m.Attendance.Tardy,
		assessments: m.Assessments.Count, submissions: m.Submissions.Count, late: m.Submissions.Late, content: m.ContentSeconds,
		logins: m.Logins}
	if m.ActiveStudents != nil {
		got.students = *m.ActiveStudents
	}
	if !withStudents {
		want.students = 0
	}
	if m.Assessments.P50 != nil {
		got.p50 = *m.Assessments.P50
	}
	if math.Abs(got.p50-want.p50) > 1e-9 {
		t.Errorf("p50 = %v, want %v", got.p50, want.p50)
	}
	got.p50, want.p50 = 0, 0
	if got != want {
		t.Errorf("totals = %+v, want %+v", got, want)
	}
	var dayEvents uint64
	for _, d := range s.Days {
		dayEvents += d.Events
	}
	if dayEvents != want.events || (want.events > 0 && len(s.Days) != 3) {
		t.Errorf("%d days with %d events, want 3 days with %d", len(s.Days), dayEvents, want.events)
	}
	if want.marks > 0 {
		if r := m.Attendance.Rate; r == nil || math.Abs(*r-float64(want.present+want.tardy)/float64(want.marks)) > 1e-12 {
			t.Errorf("attendance rate = %v, want %d/%d", r, want.present+want.tardy, want.marks)
		}
	}
}

type fixture struct {
	srv       *httptest.Server
	w         world
	creds     map[string]string // name -> bearer credential
	districts *tenants.Store
	audit     *audit.Store
	conn      driver.Conn
	handle    *api.API
	pool      *pgxpool.Pool
}

// fixtureOption builds an option of the API under test from the fixture's control database.
type fixtureOption func(pool *pgxpool.Pool) api.Option

// controlPlane is what the API reads and writes of the control plane, which a test may replace.
type controlPlane interface {
	api.Auditor
	api.Districts
}

func newFixture(t *testing.T, minDistricts int, cp controlPlane) fixture {
	t.Helper()
	return newFixtureWith(t, api.Config{MinDistricts: minDistricts, MinStudents: 1}, cp)
}

func newFixtureWith(t *testing.T, cfg api.Config, cp controlPlane, opts ...fixtureOption) fixture {
	t.Helper()
	pool, _ := pgtest.New(t)
	if err := tenancy.Migrate(t.Context(), pool); err != nil {
		t.Fatal(err)
	}
	f := fleet.New(pool, os.Getenv)
	districts, auditLog, keys := tenants.New(f), audit.New(pool, keyringtest.Over(t, pool)), credentials.New(pool)
	conn, _ := migrateRollups(t)
	w := buildWorld(t, pool, conn, districts)
	creds := map[string]string{}
	token := func(name string, tok credentials.DashboardToken) {
		plain, _, err := keys.CreateDashboardToken(t.Context(), tok)
		if err != nil {
			t.Fatal(err)
		}
		creds[name] = plain
	}
	token("d1-district", credentials.DashboardToken{TenantID: "d1", Role: credentials.RoleDistrictAdmin})
	token("d1-school-s1", credentials.DashboardToken{TenantID: "d1", Role: credentials.RoleSchoolAdmin, SchoolIDs: []string{"s1"}})
	token("d1-teacher-t1", credentials.DashboardToken{TenantID: "d1", Role: credentials.RoleTeacher, TeacherID: "t1"})
	token("d2-district", credentials.DashboardToken{TenantID: "d2", Role: credentials.RoleDistrictAdmin})
	token("d2-teacher-t1", credentials.DashboardToken{TenantID: "d2", Role: credentials.RoleTeacher, TeacherID: "t1"})
	for name, verbs := range map[string][]string{"d1-key-dashboards": {credentials.VerbDashboardsRead}, "d1-key-events": {credentials.VerbEventsWrite}} {
		plain, _, err := keys.CreateAPIKey(t.Context(), "d1", "dash", verbs)
		if err != nil {
			t.Fatal(err)
		}
		creds[name] = plain
	}
	var auditor api.Auditor = auditLog
	var listed api.Districts = districts
	if cp != nil {
		auditor, listed = cp, cp
	}
	var apiOpts []api.Option
	for _, o := range opts {
		apiOpts = append(apiOpts, o(pool))
	}
	h := api.New(slog.New(slog.NewTextHandler(io.Discard, nil)), auth.NewResolver(keys, f, time.Minute), auditor, listed, conn, cfg, apiOpts...)
	srv := httptest.NewServer(h.Handler())
	t.Cleanup(srv.Close)
	return fixture{srv: srv, w: w, creds: creds, districts: districts, audit: auditLog, conn: conn, handle: h, pool: pool}
}

// attendanceDistricts adds districts, each with ten attendance marks of distinct students on day0, the
// i-th with first+i of them present, and returns their attendance rates.
func (f fixture) attendanceDistricts(t *testing.T, first int, tenants ...string) map[string]float64 {
	t.Helper()
	var evs []event
	rates := map[string]float64{}
	for i, tenant := range tenants {
		if _, err := f.districts.Create(t.Context(), tenant, tenant); err != nil {
			t.Fatal(err)
		}
		for m := range 10 {
			status := "absent"
			if m < first+i {
				status = "present"
			}
			evs = append(evs, event{tenant: tenant, school: "s1", class: "c1", student: uuid.NewString(), typ: "attendance", status: status, day: day0})
		}
		rates[tenant] = float64(first+i) / 10
	}
	insertEvents(t, f.conn, evs)
	return rates
}

func (f fixture) get(t *testing.T, cred, path string, v any) int {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, f.srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cred != "" {
		req.Header.Set("Authorization", "Bearer "+cred)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := resp.Body.Close(); err != nil {
			t.Error(err)
		}
	}()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusOK && v != nil {
		if err := json.Unmarshal(body, v); err != nil {
			t.Fatalf("%s: %v in %s", path, err, body)
		}
	}
	return resp.StatusCode
}

const span = "?from=2026-10-01&to=2026-10-31"

// TestSummariesAreScopedByRoleAndTenant requests every summary endpoint with every kind of credential,
// for entities inside and outside its scope and of the other district (which uses the same school and
// class ids), and proves the status each gets, that every answer carries the caller's district, and that
// every number equals what the caller's own district's events give, never the other district's.
func TestSummariesAreScopedByRoleAndTenant(t *testing.T) {
	f := newFixture(t, 5, nil)
	st := f.w.students
	in := func(tenant string, keep func(event) bool) func(event) bool {
		return func(e event) bool { return e.tenant == tenant && keep(e) }
	}
	all := func(event) bool { return true }
	school := func(s string) func(event) bool { return func(e event) bool { return e.school == s } }
	class := func(c string) func(event) bool { return func(e event) bool { return e.class == c } }
	student := func(id string) func(event) bool { return func(e event) bool { return e.student == id } }
	none := func(event) bool { return false }

	type call struct {
		path  string
		keep  func(event) bool // which events the answer must total, for 200s
		level string
	}
	district := call{"/v1/district/summary", nil, "district"}
	schoolS1, schoolS2 := call{"/v1/schools/s1/summary", school("s1"), "school"}, call{"/v1/schools/s2/summary", school("s2"), "school"}
	c1, c2, c3 := call{"/v1/classes/c1/summary", class("c1"), "class"}, call{"/v1/classes/c2/summary", class("c2"), "class"}, call{"/v1/classes/c3/summary", class("c3"), "class"}
	stu := func(tenant, c string) call {
		return call{"/v1/students/" + st[tenant][c] + "/summary", student(st[tenant][c]), "student"}
	}
	tests := []struct {
		cred   string
		call   call
		status int
		tenant string // whose data a 200 holds
	}{
		// district admin of d1: everything of d1; d2's student is nobody in d1 (empty, never d2's data).
		{"d1-district", district, 200, "d1"},
		{"d1-district", schoolS1, 200, "d1"},
		{"d1-district", schoolS2, 200, "d1"},
		{"d1-district", c3, 200, "d1"},
		{"d1-district", stu("d1", "c3"), 200, "d1"},
		{"d1-district", call{stu("d2", "c1").path, none, "student"}, 200, "d1"},
		// an API key with dashboards:read acts as district admin; one without is refused.
		{"d1-key-dashboards", district, 200, "d1"},
		{"d1-key-dashboards", c2, 200, "d1"},
		{"d1-key-events", district, 403, ""},
		{"d1-key-events", schoolS1, 403, ""},
		// school admin of s1: s1, its classes c1 and c2 and their students; not the district, s2, c3,
		// c3's student, or any student of d2.
		{"d1-school-s1", district, 403, ""},
		{"d1-school-s1", schoolS1, 200, "d1"},
		{"d1-school-s1", schoolS2, 403, ""},
		{"d1-school-s1", c1, 200, "d1"},
		{"d1-school-s1", c2, 200, "d1"},
		{"d1-school-s1", c3, 403, ""},
		{"d1-school-s1", stu("d1", "c2"), 200, "d1"},
		{"d1-school-s1", stu("d1", "c3"), 403, ""},
		{"d1-school-s1", stu("d2", "c1"), 403, ""},
		// teacher t1 of d1 teaches c1: c1 and its student only.
		{"d1-teacher-t1", district, 403, ""},
		{"d1-teacher-t1", schoolS1, 403, ""},
		{"d1-teacher-t1", c1, 200, "d1"},
		{"d1-teacher-t1", c2, 403, ""},
		{"d1-teacher-t1", c3, 403, ""},
		{"d1-teacher-t1", stu("d1", "c1"), 200, "d1"},
		{"d1-teacher-t1", stu("d1", "c2"), 403, ""},
		{"d1-teacher-t1", stu("d2", "c1"), 403, ""},
		// d2's credentials, asking for the same ids, get d2's numbers; d1's student is out of scope.
		{"d2-district", district, 200, "d2"},
		{"d2-district", schoolS1, 200, "d2"},
		{"d2-district", c1, 200, "d2"},
		{"d2-district", call{stu("d1", "c1").path, none, "student"}, 200, "d2"},
		{"d2-teacher-t1", c1, 200, "d2"},
		{"d2-teacher-t1", stu("d2", "c1"), 200, "d2"},
		{"d2-teacher-t1", stu("d1", "c1"), 403, ""},
		// no credential, a wrong one.
		{"", district, 401, ""},
		{"edt_aaaaaaaaaaaa_" + "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", district, 401, ""},
	}
	for _, tt := range tests {
		t.Run(tt.cred+tt.call.path, func(t *testing.T) {
			var s api.Summary
			cred := f.creds[tt.cred]
			if cred == "" && tt.cred != "" && tt.cred[:4] == "edt_" {
				cred = tt.cred
			}
			status := f.get(t, cred, tt.call.path+span, &s)
			if status != tt.status {
				t.Fatalf("status %d, want %d", status, tt.status)
			}
			if status != 200 {
				return
			}
			if s.TenantID != tt.tenant || s.Level != tt.call.level {
				t.Fatalf("answer of tenant %q level %q, want %q %q", s.TenantID, s.Level, tt.tenant, tt.call.level)
			}
			keep := tt.call.keep
			if keep == nil {
				keep = all
			}
			check(t, s, f.w.expect(in(tt.tenant, keep)), tt.call.level != "student")
		})
	}

	// A narrower range narrows the answer; a bad range is refused.
	var s api.Summary
	if code := f.get(t, f.creds["d1-district"], "/v1/district/summary?from=2026-10-06&to=2026-10-06", &s); code != 200 || len(s.Days) != 1 {
		t.Fatalf("one-day range: status %d, %d days", code, len(s.Days))
	}
	for _, q := range []string{"?from=2026-10-06", "?from=x&to=2026-10-06", "?from=2026-10-06&to=2026-10-01", "?from=2025-01-01&to=2026-10-01"} {
		if code := f.get(t, f.creds["d1-district"], "/v1/district/summary"+q, nil); code != 400 {
			t.Errorf("range %s: status %d, want 400", q, code)
		}
	}
	if code := f.get(t, f.creds["d1-district"], "/v1/students/not-a-uuid/summary"+span, nil); code != 400 {
		t.Errorf("a student id that is not a UUID: status %d, want 400", code)
	}
}

// TestBenchmarksNeedEnoughDistrictsAndAreAudited fills rollups for seven districts and proves that a
// benchmark answers the percentiles of the metric across them and the caller's own value, that only a
// district admin may ask, that with fewer districts than the minimum nothing is served, that every
// request (served or not) is in the audit log with who asked, and that without the audit log nothing is
// served at all.
func TestBenchmarksNeedEnoughDistrictsAndAreAudited(t *testing.T) {
	f := newFixture(t, 5, nil)
	rates := f.attendanceDistricts(t, 3, "d3", "d4", "d5", "d6", "d7")
	for _, tenant := range []string{"d1", "d2"} {
		e := f.w.expect(func(e event) bool { return e.tenant == tenant })
		rates[tenant] = float64(e.present+e.tardy) / float64(e.marks)
	}
	var values []float64
	for _, r := range rates {
		values = append(values, r)
	}
	sort.Float64s(values)

	var b api.Benchmark
	if code := f.get(t, f.creds["d1-district"], "/v1/benchmarks/attendance_rate"+span, &b); code != 200 {
		t.Fatalf("benchmark: status %d", code)
	}
	if b.Districts != 7 || b.MinDistricts != 5 || b.YourDistrict == nil || math.Abs(*b.YourDistrict-rates["d1"]) > 1e-12 {
		t.Fatalf("benchmark = %+v, want 7 districts and d1's rate %v", b, rates["d1"])
	}
	// Seven districts in bands of at least three: the lowest three and the highest four.
	mean := func(vs []float64) float64 {
		var s float64
		for _, v := range vs {
			s += v
		}
		return s / float64(len(vs))
	}
	want := []api.Band{{FromPct: 0, ToPct: 42, Districts: 3, Mean: mean(values[:3])}, {FromPct: 42, ToPct: 100, Districts: 4, Mean: mean(values[3:])}}
	if len(b.Bands) != 2 || b.Bands[0].Districts != 3 || b.Bands[1].Districts != 4 || b.Bands[0].ToPct != 42 ||
		math.Abs(b.Bands[0].Mean-want[0].Mean) > 1e-6 || math.Abs(b.Bands[1].Mean-want[1].Mean) > 1e-6 {
		t.Errorf("bands = %+v, want %+v", b.Bands, want)
	}
	if i := sort.SearchFloat64s(values, rates["d1"]); b.YourBand == nil || *b.YourBand != min(1, i/3) {
		t.Errorf("your band = %v, want the one holding rank %d", b.YourBand, i)
	}
	for _, cred := range []string{"d1-school-s1", "d1-teacher-t1", "d1-key-events"} {
		if code := f.get(t, f.creds[cred], "/v1/benchmarks/attendance_rate"+span, nil); code != 403 {
			t.Errorf("%s asked for a benchmark: status %d, want 403", cred, code)
		}
	}
	if code := f.get(t, f.creds["d1-district"], "/v1/benchmarks/favourite_colour"+span, nil); code != 400 {
		t.Errorf("unknown metric: status %d, want 400", code)
	}
	// Only d1 and d2 have assessments: too few districts.
	if code := f.get(t, f.creds["d2-district"], "/v1/benchmarks/mean_score_pct"+span, &b); code != 422 {
		t.Fatalf("benchmark over 2 districts: status %d, want 422", code)
	}

	entries, err := f.audit.Entries(t.Context(), 1, 100)
	if err != nil {
		t.Fatal(err)
	}
	var reads []audit.Entry
	for _, e := range entries {
		if e.Action == "benchmark.read" {
			reads = append(reads, e)
		}
	}
	if len(reads) != 2 || reads[0].TenantID != "d1" || reads[1].TenantID != "d2" || reads[0].Actor[:6] != "token:" ||
		reads[0].Detail != `{"metric":"attendance_rate","from":"2026-10-01","to":"2026-10-31","districts":7,"served":true}` ||
		reads[1].Detail != `{"metric":"mean_score_pct","from":"2026-10-01","to":"2026-10-31","districts":2,"served":false}` {
		t.Fatalf("audit log holds %+v", reads)
	}
	if _, err := f.audit.Verify(t.Context(), nil); err != nil {
		t.Fatal(err)
	}

	broken := newFixture(t, 2, failingAuditor{})
	if code := broken.get(t, broken.creds["d1-district"], "/v1/benchmarks/attendance_rate"+span, nil); code != 503 {
		t.Fatalf("benchmark without an audit log: status %d, want 503", code)
	}
}

type failingAuditor struct{}

func (failingAuditor) Append(context.Context, string, string, string, any) (audit.Entry, error) {
	return audit.Entry{}, fmt.Errorf("audit log unavailable")
}

// TestIDsThatCannotNameAnythingAre400: an id in the path with a NUL, a control character, invalid UTF-8
// or more than 256 bytes is answered 400 naming the parameter, for every role (PostgreSQL refused NUL
// and invalid UTF-8 with 22021 and the caller got 503).
func TestIDsThatCannotNameAnythingAre400(t *testing.T) {
	f := newFixture(t, 5, nil)
	long := strings.Repeat("s", 257)
	tests := []struct{ path, param, msg string }{
		{"/v1/classes/seca-s1%00/summary", "class_id", "must not contain control characters"},
		{"/v1/classes/%ff%fe/summary", "class_id", "must be valid UTF-8"},
		{"/v1/classes/c1%0A/summary", "class_id", "must not contain control characters"},
		{"/v1/classes/c1%C2%85/summary", "class_id", "must not contain control characters"},
		{"/v1/classes/" + long + "/summary", "class_id", "must be at most 256 bytes"},
		{"/v1/schools/s1%00/summary", "school_id", "must not contain control characters"},
		{"/v1/schools/%ff%fe/daily", "school_id", "must be valid UTF-8"},
		{"/v1/schools/s1%1B/daily", "school_id", "must not contain control characters"},
		{"/v1/students/%00/summary", "student_id", "must be the student's internal id (a UUID)"},
	}
	for _, cred := range []string{"d1-school-s1", "d1-teacher-t1", "d1-district"} {
		for _, tt := range tests {
			t.Run(cred+tt.path, func(t *testing.T) {
				code, p := f.problem(t, f.creds[cred], tt.path+span)
				if code != http.StatusBadRequest || p["type"] != "/problems/invalid-parameter" || p["detail"] != tt.param+": "+tt.msg {
					t.Fatalf("answer %d %v, want 400 naming %s", code, p, tt.param)
				}
			})
		}
	}
	// The same ids, valid, still answer.
	if code := f.get(t, f.creds["d1-school-s1"], "/v1/classes/c1/summary"+span, nil); code != 200 {
		t.Fatalf("a valid class id: status %d", code)
	}
}

// problem requests path and decodes the answer as a problem body.
func (f fixture) problem(t *testing.T, cred, path string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, f.srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+cred)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := resp.Body.Close(); err != nil {
			t.Error(err)
		}
	}()
	var p map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&p); err != nil {
		t.Fatalf("%s: answer is not JSON: %v", path, err)
	}
	return resp.StatusCode, p
}

func (failingAuditor) Tenants(context.Context) ([]tenants.Tenant, error) {
	return []tenants.Tenant{{ID: "d1"}, {ID: "d2"}}, nil
}

// TestBenchmarkAtTheMinimumRevealsNoDistrict: with exactly the minimum of contributing districts, the
// answer holds no district's value, only a mean over all of them; districts with too few students and
// deleted districts do not count; and the audit log names who asked, for which metric, and when.
func TestBenchmarkAtTheMinimumRevealsNoDistrict(t *testing.T) {
	f := newFixtureWith(t, api.Config{MinDistricts: 5, MinStudents: 10}, nil)
	var evs []event
	attendance := func(tenant string, students, present int) {
		for m := range students {
			status := "absent"
			if m < present {
				status = "present"
			}
			evs = append(evs, event{tenant: tenant, school: "s1", class: "c1", student: uuid.NewString(), typ: "attendance", status: status, day: day0})
		}
	}
	rates := map[string]float64{}
	for tenant, present := range map[string]int{"e1": 3, "e2": 4, "e3": 5, "e4": 6, "e5": 9, "gone": 8} {
		if _, err := f.districts.Create(t.Context(), tenant, tenant); err != nil {
			t.Fatal(err)
		}
		attendance(tenant, 10, present)
		rates[tenant] = float64(present) / 10
	}
	attendance("small", 9, 1) // nine students: fewer than the minimum behind a district's value
	if _, err := f.districts.Create(t.Context(), "small", "small"); err != nil {
		t.Fatal(err)
	}
	insertEvents(t, f.conn, evs)
	if _, err := f.districts.Delete(t.Context(), "gone"); err != nil {
		t.Fatal(err)
	}

	before := time.Now()
	var raw map[string]any
	if code := f.get(t, f.creds["d1-district"], "/v1/benchmarks/attendance_rate"+span, &raw); code != 200 {
		t.Fatalf("benchmark: status %d", code)
	}
	after := time.Now()
	// d1 and d2 (three students each), small (nine) and gone (deleted) do not count: e1 to e5 do.
	if raw["districts"] != 5.0 || raw["your_district"] != nil || raw["your_band"] != nil {
		t.Fatalf("benchmark = %v, want the five e districts and nothing of d1's", raw)
	}
	bands, _ := raw["bands"].([]any)
	if len(bands) != 1 || bands[0].(map[string]any)["districts"] != 5.0 || math.Abs(bands[0].(map[string]any)["mean"].(float64)-0.54) > 1e-12 {
		t.Fatalf("bands = %v, want one of five districts with mean 0.54", bands)
	}
	var numbers []float64
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case float64:
			numbers = append(numbers, v)
		case map[string]any:
			for _, x := range v {
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(raw)
	for tenant, rate := range rates {
		for _, n := range numbers {
			if math.Abs(n-rate) < 1e-9 {
				t.Errorf("the answer holds %s's value %v", tenant, rate)
			}
		}
	}

	entries, err := f.audit.Entries(t.Context(), 1, 100)
	if err != nil {
		t.Fatal(err)
	}
	var read *audit.Entry
	for i, e := range entries {
		if e.Action == "benchmark.read" {
			read = &entries[i]
		}
	}
	if read == nil || !strings.HasPrefix(read.Actor, "token:") || read.TenantID != "d1" ||
		!strings.Contains(read.Detail, `"metric":"attendance_rate"`) ||
		read.At.Before(before.Add(-time.Second)) || read.At.After(after.Add(time.Second)) {
		t.Fatalf("audit entry = %+v, want the caller, the metric and the time of the request", read)
	}
}

// TestStudentReadsAreAudited checks that a student-level read names who read which student, and that it
// is refused when it cannot be audited.
func TestStudentReadsAreAudited(t *testing.T) {
	f := newFixture(t, 2, nil)
	id := f.w.students["d1"]["c1"]
	if code := f.get(t, f.creds["d1-teacher-t1"], "/v1/students/"+id+"/summary"+span, nil); code != 200 {
		t.Fatalf("teacher's read of a student of their class: status %d", code)
	}
	entries, err := f.audit.List(t.Context(), "d1", time.Time{}, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Action != "student.read" || !strings.HasPrefix(entries[0].Actor, "token:") ||
		!strings.Contains(entries[0].Detail, `"student_id":"`+id+`"`) || !strings.Contains(entries[0].Detail, `"role":"teacher"`) {
		t.Fatalf("audit entries = %+v, want the teacher's read of %s", entries, id)
	}
	broken := newFixture(t, 2, failingAuditor{})
	if code := broken.get(t, broken.creds["d1-district"], "/v1/students/"+broken.w.students["d1"]["c1"]+"/summary"+span, nil); code != 503 {
		t.Fatalf("a student read that cannot be audited: status %d, want 503", code)
	}
}
