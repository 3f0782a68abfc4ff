package api_test

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/edtech-analytics/platform/libs/tenancy/timezones"
	"github.com/edtech-analytics/platform/services/query/internal/api"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// fact is one row of the events table as the analytics endpoints read it.
type fact struct {
	tenant, school, class, typ, action, custom string
	student                                    uuid.UUID
	at                                         time.Time
	teacher                                    bool // the actor is a teacher, not a student
}

func insertFacts(t *testing.T, conn driver.Conn, facts []fact) {
	t.Helper()
	batch, err := conn.PrepareBatch(t.Context(), `INSERT INTO events (tenant_id, event_id, type, occurred_at, school_id, class_id,
		student_id, pseudonym, role, session_action, custom_name)`)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range facts {
		role := "student"
		if f.teacher {
			role = "teacher"
		}
		if err := batch.Append(f.tenant, uuid.New(), f.typ, f.at, f.school, f.class, f.student, "p-"+f.student.String()[:8], role,
			f.action, f.custom); err != nil {
			t.Fatal(err)
		}
	}
	if err := batch.Send(); err != nil {
		t.Fatal(err)
	}
}

// Step makers for one student in one class.
type actor struct {
	tenant, school, class string
	id                    uuid.UUID
	teacher               bool
}

func newActor(tenant, school, class string) actor {
	return actor{tenant: tenant, school: school, class: class, id: uuid.New()}
}

func (a actor) did(typ string, at time.Time) fact {
	f := fact{tenant: a.tenant, school: a.school, class: a.class, student: a.id, typ: typ, at: at, teacher: a.teacher}
	switch typ {
	case "login", "logout":
		f.typ, f.action = "session", typ
	case "assignment_submission", "content_view", "attendance", "assessment_result":
	default:
		f.typ, f.custom = "custom", typ
	}
	return f
}

// analyticsFixture is the summaries' fixture (districts d1 and d2, classes c1, c2 of school s1 and c3 of
// s2, teacher t1 of c1) with the districts' time zones read from the control schema; d2 is in
// America/Chicago.
func analyticsFixture(t *testing.T) fixture {
	t.Helper()
	f := newFixtureWith(t, api.Config{MinDistricts: 5, MinStudents: 1}, nil, func(pool *pgxpool.Pool) api.Option {
		return api.WithTimeZones(timezones.New(pool), time.Minute)
	})
	if _, err := timezones.New(f.pool).Set(t.Context(), "d2", "America/Chicago"); err != nil {
		t.Fatal(err)
	}
	return f
}

// getBody requests path and returns the status and the body.
func (f fixture) getBody(t *testing.T, cred, path string) (int, []byte) {
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
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, body
}

func utc(s string) time.Time {
	ts, err := time.Parse(time.DateTime, s)
	if err != nil {
		panic(err)
	}
	return ts
}

func near(a *float64, b float64) bool { return a != nil && math.Abs(*a-b) < 1e-12 }

// TestFunnels: exact counts of students per step, with a step just inside and just outside the window,
// steps out of order, events before and after the range, teachers' events, custom event names, and the
// scopes of each role.
func TestFunnels(t *testing.T) {
	f := analyticsFixture(t)
	T := utc("2026-11-03 10:00:00")
	a, b := newActor("d1", "s1", "c1"), newActor("d1", "s1", "c1")
	c, d := newActor("d1", "s1", "c2"), newActor("d1", "s1", "c2")
	e, g := newActor("d1", "s2", "c3"), newActor("d1", "s2", "c3")
	h := newActor("d1", "s1", "c1")
	teacher := newActor("d1", "s1", "c1")
	teacher.teacher = true
	j, k := newActor("d1", "s2", "c3"), newActor("d1", "s2", "c3")
	other, evening := newActor("d2", "s1", "c1"), newActor("d2", "s1", "c1")
	const day = 24 * time.Hour
	insertFacts(t, f.conn, []fact{
		// a: every step, in order.
		a.did("login", T), a.did("content_view", T.Add(time.Hour)), a.did("assignment_submission", T.Add(2*time.Hour)),
		// b: the last step exactly one window (1d) after the first: inside.
		b.did("login", T), b.did("content_view", T.Add(time.Hour)), b.did("assignment_submission", T.Add(day)),
		// c: the last step one second later than that: outside.
		c.did("login", T), c.did("content_view", T.Add(time.Hour)), c.did("assignment_submission", T.Add(day+time.Second)),
		// d: content before the login: only the login counts, then no content follows.
		d.did("content_view", T), d.did("login", T.Add(time.Hour)), d.did("assignment_submission", T.Add(2*time.Hour)),
		// e: submission before content: two steps.
		e.did("login", T), e.did("assignment_submission", T.Add(time.Hour)), e.did("content_view", T.Add(2*time.Hour)),
		// g: content only: not in the funnel.
		g.did("content_view", T),
		// h: login the day before the range, the rest in it; then a login after it: nothing counts.
		h.did("login", utc("2026-11-01 23:59:59")), h.did("content_view", utc("2026-11-02 00:00:10")),
		h.did("assignment_submission", utc("2026-11-02 00:00:20")), h.did("login", utc("2026-11-09 00:00:00")),
		// a teacher's events are not a student's.
		teacher.did("login", T), teacher.did("content_view", T), teacher.did("assignment_submission", T),
		// custom events: j in order, k with the custom steps swapped.
		j.did("login", T), j.did("quiz_started", T.Add(10*time.Minute)), j.did("quiz_done", T.Add(20*time.Minute)),
		k.did("login", T), k.did("quiz_done", T.Add(5*time.Minute)), k.did("quiz_started", T.Add(10*time.Minute)),
		// another district's student.
		other.did("login", T), other.did("content_view", T.Add(time.Minute)), other.did("assignment_submission", T.Add(time.Hour)),
		// d2 is in America/Chicago: 2026-11-04 03:00 UTC is 2026-11-03 21:00 there.
		evening.did("login", utc("2026-11-04 03:00:00")), evening.did("content_view", utc("2026-11-04 03:10:00")),
		evening.did("assignment_submission", utc("2026-11-04 03:20:00")),
	})
	const rng = "&from=2026-11-02&to=2026-11-08"
	const lcs = "/v1/funnels?steps=login,content_view,submission&window=1d" + rng
	tests := []struct {
		name, cred, path string
		status           int
		students         []uint64
	}{
		{"district", "d1-district", lcs, 200, []uint64{7, 4, 2}}, // a b c d e j k; a b c e; a b
		{"api key", "d1-key-dashboards", lcs, 200, []uint64{7, 4, 2}},
		{"window 2d", "d1-district", strings.Replace(lcs, "1d", "2d", 1), 200, []uint64{7, 4, 3}},
		{"window 86399s", "d1-district", strings.Replace(lcs, "1d", "86399s", 1), 200, []uint64{7, 4, 1}},
		{"school s1", "d1-district", lcs + "&school_id=s1", 200, []uint64{4, 3, 2}},
		{"school admin s1", "d1-school-s1", lcs + "&school_id=s1", 200, []uint64{4, 3, 2}},
		{"school admin, class c2", "d1-school-s1", lcs + "&class_id=c2", 200, []uint64{2, 1, 0}},
		{"teacher of c1", "d1-teacher-t1", lcs + "&class_id=c1", 200, []uint64{2, 2, 2}},
		{"custom names", "d1-district", "/v1/funnels?steps=login,custom:quiz_started,quiz_done&window=1h" + rng, 200, []uint64{7, 2, 1}},
		{"other district", "d2-district", lcs, 200, []uint64{2, 2, 2}},
		{"a day in Chicago", "d2-district", "/v1/funnels?steps=login,content_view,submission&from=2026-11-03&to=2026-11-03", 200, []uint64{2, 2, 2}},
		{"the next day in Chicago", "d2-district", "/v1/funnels?steps=login,content_view,submission&from=2026-11-04&to=2026-11-04", 200, []uint64{0, 0, 0}},
		{"teacher, another class", "d1-teacher-t1", lcs + "&class_id=c2", 403, nil},
		{"teacher, the district", "d1-teacher-t1", lcs, 403, nil},
		{"teacher, a school", "d1-teacher-t1", lcs + "&school_id=s1", 403, nil},
		{"school admin, the district", "d1-school-s1", lcs, 403, nil},
		{"school admin, another school", "d1-school-s1", lcs + "&school_id=s2", 403, nil},
		{"school admin, a class of another school", "d1-school-s1", lcs + "&class_id=c3", 403, nil},
		{"key without dashboards:read", "d1-key-events", lcs, 403, nil},
		{"no credential", "", lcs, 401, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := f.getBody(t, f.creds[tt.cred], tt.path)
			if status != tt.status {
				t.Fatalf("status %d, want %d: %s", status, tt.status, body)
			}
			if status != 200 {
				return
			}
			var fn api.Funnel
			if err := json.Unmarshal(body, &fn); err != nil {
				t.Fatal(err)
			}
			var got []uint64
			for _, s := range fn.Steps {
				got = append(got, s.Students)
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.students) {
				t.Fatalf("students per step = %v, want %v", got, tt.students)
			}
			for i, s := range fn.Steps {
				first := float64(tt.students[0])
				if first == 0 && s.FromFirst != nil || first > 0 && !near(s.FromFirst, float64(s.Students)/first) {
					t.Errorf("step %d conversion from first = %v, want %d/%v", i, s.FromFirst, s.Students, first)
				}
				if i == 0 && s.FromPrevious != nil {
					t.Errorf("first step has a conversion from a previous one: %v", *s.FromPrevious)
				}
				if prev := float64(tt.students[max(i-1, 0)]); i > 0 && prev > 0 && !near(s.FromPrevious, float64(s.Students)/prev) {
					t.Errorf("step %d conversion from previous = %v, want %d/%v", i, s.FromPrevious, s.Students, prev)
				}
			}
		})
	}

	var fn api.Funnel
	if status := f.get(t, f.creds["d1-district"], "/v1/funnels?steps=login,custom:quiz_started,quiz_done&window=1h"+rng, &fn); status != 200 {
		t.Fatal(status)
	}
	if fn.WindowSeconds != 3600 || fn.Level != "district" || fn.TimeZone != "UTC" || fn.TenantID != "d1" {
		t.Errorf("funnel header = %+v", fn.Steps)
	}
	if s := fn.Steps; s[0].Kind != "session" || s[1].Kind != "custom" || s[1].Name != "custom:quiz_started" || s[2].Kind != "custom" {
		t.Errorf("steps = %+v", s)
	}
}

// TestRetention: cohorts of the students active in a week and their shares active 1..n weeks later;
// attendance marks and teachers are not activity; events= narrows what is; a district's weeks are
// Monday to Sunday in its time zone.
func TestRetention(t *testing.T) {
	f := analyticsFixture(t)
	w0, w1, w2 := utc("2026-11-30 12:00:00"), utc("2026-12-07 12:00:00"), utc("2026-12-14 12:00:00") // Mondays
	r1, r2, r3, r4 := newActor("d1", "s1", "c1"), newActor("d1", "s1", "c1"), newActor("d1", "s1", "c2"), newActor("d1", "s2", "c3")
	teacher := newActor("d1", "s1", "c1")
	teacher.teacher = true
	z := newActor("d2", "s1", "c1")
	insertFacts(t, f.conn, []fact{
		r1.did("content_view", w0), r1.did("assignment_submission", w1.Add(6*24*time.Hour)), r1.did("quiz", w2),
		r2.did("content_view", w0.Add(-12*time.Hour)), r2.did("content_view", w2),
		r3.did("attendance", w0), r3.did("login", w1),
		r4.did("login", w0),
		teacher.did("login", w0), teacher.did("login", w1),
		// d2 is in America/Chicago: 2026-12-07 03:00 UTC is Sunday 2026-12-06 21:00 there, in the week
		// of 2026-11-30; in UTC it would be the next week.
		z.did("content_view", w0), z.did("content_view", utc("2026-12-07 03:00:00")),
	})
	type cohort struct {
		week     string
		students uint64
		retained []uint64
		shares   []float64
	}
	tests := []struct {
		name, cred, path string
		cohorts          []cohort
	}{
		{"one week", "d1-district", "/v1/retention?from=2026-11-30&to=2026-12-06&weeks=2",
			[]cohort{{"2026-11-30", 3, []uint64{1, 2}, []float64{1. / 3, 2. / 3}}}},
		{"two weeks, range inside them", "d1-district", "/v1/retention?from=2026-12-02&to=2026-12-07&weeks=2",
			[]cohort{{"2026-11-30", 3, []uint64{1, 2}, []float64{1. / 3, 2. / 3}}, {"2026-12-07", 2, []uint64{1, 0}, []float64{0.5, 0}}}},
		{"logins only", "d1-district", "/v1/retention?from=2026-11-30&to=2026-12-07&weeks=1&events=login",
			[]cohort{{"2026-11-30", 1, []uint64{0}, []float64{0}}, {"2026-12-07", 1, []uint64{0}, []float64{0}}}},
		{"school s1", "d1-school-s1", "/v1/retention?from=2026-11-30&to=2026-12-06&weeks=2&school_id=s1",
			[]cohort{{"2026-11-30", 2, []uint64{1, 2}, []float64{0.5, 1}}}},
		{"district in Chicago", "d2-district", "/v1/retention?from=2026-11-30&to=2026-12-06&weeks=1",
			[]cohort{{"2026-11-30", 1, []uint64{0}, []float64{0}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got api.Retention
			if status := f.get(t, f.creds[tt.cred], tt.path, &got); status != 200 {
				t.Fatalf("status %d", status)
			}
			if len(got.Cohorts) != len(tt.cohorts) {
				t.Fatalf("cohorts = %+v, want %+v", got.Cohorts, tt.cohorts)
			}
			for i, c := range got.Cohorts {
				want := tt.cohorts[i]
				if c.Week != want.week || c.Students != want.students || len(c.Retained) != len(want.retained) {
					t.Fatalf("cohort %d = %+v, want %+v", i, c, want)
				}
				for k, r := range c.Retained {
					if r.Offset != k+1 || r.Students != want.retained[k] || !near(r.Share, want.shares[k]) {
						t.Errorf("cohort %s week +%d = %+v (share %v), want %d students, share %v", c.Week, k+1, r, r.Share, want.retained[k], want.shares[k])
					}
				}
			}
		})
	}
	var chicago api.Retention
	f.get(t, f.creds["d2-district"], "/v1/retention?from=2026-11-30&to=2026-12-06&weeks=1", &chicago)
	if chicago.TimeZone != "America/Chicago" {
		t.Errorf("time zone = %q", chicago.TimeZone)
	}
	var empty api.Retention
	f.get(t, f.creds["d1-district"], "/v1/retention?from=2027-03-01&to=2027-03-07", &empty)
	if len(empty.Cohorts) != 1 || empty.Weeks != 4 || empty.Cohorts[0].Students != 0 || empty.Cohorts[0].Retained[0].Share != nil {
		t.Errorf("a week without activity = %+v", empty)
	}
	if status, _ := f.getBody(t, f.creds["d1-teacher-t1"], "/v1/retention?from=2026-11-30&to=2026-12-06&class_id=c3"); status != 403 {
		t.Errorf("teacher reading another class's retention: %d, want 403", status)
	}
}

// enroll adds a student to the district's roster with student enrollments in classes, from the begin
// dates given (class -> date).
func enroll(t *testing.T, pool *pgxpool.Pool, tenant string, student uuid.UUID, classes map[string]string) {
	t.Helper()
	schema := pgx.Identifier{"district_" + tenant}.Sanitize()
	user := "u-" + student.String()
	if _, err := pool.Exec(t.Context(), `INSERT INTO `+schema+`.roster_users (sourced_id, status, date_last_modified, enabled, given_name, family_name, internal_id)
		VALUES ($1, 'active', now(), true, 'New', 'Student', $2)`, user, student); err != nil {
		t.Fatal(err)
	}
	schools := map[string]string{"c1": "s1", "c2": "s1", "c3": "s2"}
	for class, begin := range classes {
		if _, err := pool.Exec(t.Context(), `INSERT INTO `+schema+`.roster_enrollments (sourced_id, status, date_last_modified, class_sourced_id,
			school_sourced_id, user_sourced_id, role, begin_date) VALUES ($1, 'active', now(), $2, $3, $4, 'student', $5::date)`,
			"e-"+class+"-"+user, class, schools[class], user, begin); err != nil {
			t.Fatal(err)
		}
	}
}

// TestActivation: of the students enrolled in the range (their earliest enrollment in the scope), the
// share with a meaningful event within N days of their enrollment day, in the district's days.
func TestActivation(t *testing.T) {
	f := analyticsFixture(t)
	e1, e2, e3, e4 := newActor("d1", "s1", "c1"), newActor("d1", "s1", "c2"), newActor("d1", "s1", "c1"), newActor("d1", "s2", "c3")
	e5, e6 := newActor("d1", "s1", "c1"), newActor("d1", "s1", "c1")
	q, q2 := newActor("d2", "s1", "c1"), newActor("d2", "s1", "c1")
	enroll(t, f.pool, "d1", e1.id, map[string]string{"c1": "2026-12-01"})
	enroll(t, f.pool, "d1", e2.id, map[string]string{"c2": "2026-12-01"})
	enroll(t, f.pool, "d1", e3.id, map[string]string{"c1": "2026-12-02"})
	enroll(t, f.pool, "d1", e4.id, map[string]string{"c3": "2026-12-05"})
	enroll(t, f.pool, "d1", e5.id, map[string]string{"c1": "2026-11-20"})                     // before the range
	enroll(t, f.pool, "d1", e6.id, map[string]string{"c2": "2026-11-25", "c1": "2026-12-02"}) // first enrolled before it
	enroll(t, f.pool, "d2", q.id, map[string]string{"c1": "2026-12-07"})
	enroll(t, f.pool, "d2", q2.id, map[string]string{"c1": "2026-12-07"})
	insertFacts(t, f.conn, []fact{
		e1.did("content_view", utc("2026-12-03 08:00:00")),                                              // day 2
		e2.did("login", utc("2026-12-01 08:00:00")), e2.did("content_view", utc("2026-12-08 08:00:00")), // a login on day 0, content on day 7
		e3.did("content_view", utc("2026-11-30 08:00:00")), e3.did("attendance", utc("2026-12-03 08:00:00")), // before enrollment; a mark
		e4.did("assignment_submission", utc("2026-12-05 00:00:00")), e4.did("quiz", utc("2026-12-06 00:00:00")), // day 0
		e5.did("content_view", utc("2026-12-01 08:00:00")),
		// d2 (America/Chicago): 2026-12-07 03:00 UTC would be q's day 0 in UTC but is the day before its
		// enrollment there; 2026-12-08 03:00 UTC, day 1 in UTC, is q2's day 0 there (2026-12-07 21:00).
		q.did("content_view", utc("2026-12-07 03:00:00")), q2.did("quiz", utc("2026-12-08 03:00:00")),
	})
	tests := []struct {
		name, cred, path   string
		enrolled, activate uint64
		byDay              []uint64
	}{
		{"district", "d1-district", "/v1/activation?from=2026-12-01&to=2026-12-05&days=7", 4, 2, []uint64{1, 0, 1, 0, 0, 0, 0}},
		{"8 days", "d1-district", "/v1/activation?from=2026-12-01&to=2026-12-05&days=8", 4, 3, []uint64{1, 0, 1, 0, 0, 0, 0, 1}},
		{"logins", "d1-district", "/v1/activation?from=2026-12-01&to=2026-12-05&days=3&events=login", 4, 1, []uint64{1, 0, 0}},
		{"custom name", "d1-district", "/v1/activation?from=2026-12-01&to=2026-12-05&days=3&events=quiz", 4, 1, []uint64{0, 1, 0}},
		{"school s2", "d1-district", "/v1/activation?from=2026-12-01&to=2026-12-05&days=7&school_id=s2", 1, 1, []uint64{1, 0, 0, 0, 0, 0, 0}},
		{"teacher of c1", "d1-teacher-t1", "/v1/activation?from=2026-12-01&to=2026-12-05&days=7&class_id=c1", 3, 1, []uint64{0, 0, 1, 0, 0, 0, 0}},
		{"nobody enrolled", "d1-district", "/v1/activation?from=2027-01-01&to=2027-01-31&days=2", 0, 0, []uint64{0, 0}},
		{"district in Chicago", "d2-district", "/v1/activation?from=2026-12-07&to=2026-12-07&days=2", 2, 1, []uint64{1, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got api.Activation
			if status := f.get(t, f.creds[tt.cred], tt.path, &got); status != 200 {
				t.Fatalf("status %d", status)
			}
			if got.Enrolled != tt.enrolled || got.Activated != tt.activate || fmt.Sprint(got.ByDay) != fmt.Sprint(tt.byDay) {
				t.Fatalf("enrolled %d, activated %d, by day %v; want %d, %d, %v", got.Enrolled, got.Activated, got.ByDay, tt.enrolled, tt.activate, tt.byDay)
			}
			if tt.enrolled == 0 && got.Share != nil || tt.enrolled > 0 && !near(got.Share, float64(tt.activate)/float64(tt.enrolled)) {
				t.Errorf("share = %v", got.Share)
			}
		})
	}
	if status, _ := f.getBody(t, f.creds["d1-teacher-t1"], "/v1/activation?from=2026-12-01&to=2026-12-05&class_id=c2"); status != 403 {
		t.Errorf("teacher reading another class's activation: %d, want 403", status)
	}
}

// TestAnalyticsBadParameters: every malformed parameter is a 400 naming it.
func TestAnalyticsBadParameters(t *testing.T) {
	f := analyticsFixture(t)
	const rng = "from=2026-11-02&to=2026-11-08"
	tests := []struct{ path, param string }{
		{"/v1/funnels?" + rng, "steps"},
		{"/v1/funnels?steps=login&" + rng, "steps"},
		{"/v1/funnels?steps=a,b,c,d,e,f,g,h,i&" + rng, "steps"},
		{"/v1/funnels?steps=login,login&" + rng, "steps"},
		{"/v1/funnels?steps=login,&" + rng, "steps"},
		{"/v1/funnels?steps=login,bad%20name&" + rng, "steps"},
		{"/v1/funnels?steps=login,custom:&" + rng, "steps"},
		{"/v1/funnels?steps=login,content_view&window=0d&" + rng, "window"},
		{"/v1/funnels?steps=login,content_view&window=2w&" + rng, "window"},
		{"/v1/funnels?steps=login,content_view&window=367d&" + rng, "window"},
		{"/v1/funnels?steps=login,content_view&window=-1h&" + rng, "window"},
		{"/v1/funnels?steps=login,content_view&from=2026-11-02", "to"},
		{"/v1/funnels?steps=login,content_view&from=11/02/2026&to=2026-11-08", "from"},
		{"/v1/funnels?steps=login,content_view&school_id=&" + rng, "school_id"},
		{"/v1/funnels?steps=login,content_view&class_id=c%01&" + rng, "class_id"},
		{"/v1/funnels?steps=login,content_view&class_id=c1&school_id=s1&" + rng, "class_id"},
		{"/v1/retention?weeks=0&" + rng, "weeks"},
		{"/v1/retention?weeks=27&" + rng, "weeks"},
		{"/v1/retention?weeks=two&" + rng, "weeks"},
		{"/v1/retention?events=&" + rng, "events"},
		{"/v1/activation?days=0&" + rng, "days"},
		{"/v1/activation?days=367&" + rng, "days"},
		{"/v1/activation?events=login,nope!&" + rng, "events"},
	}
	for _, tt := range tests {
		status, body := f.getBody(t, f.creds["d1-district"], tt.path)
		var p struct{ Type, Detail string }
		if err := json.Unmarshal(body, &p); err != nil || status != 400 || p.Type != "/problems/invalid-parameter" ||
			!strings.HasPrefix(p.Detail, tt.param+": ") {
			t.Errorf("%s: %d %s, want 400 invalid-parameter naming %s", tt.path, status, body, tt.param)
		}
	}
}
