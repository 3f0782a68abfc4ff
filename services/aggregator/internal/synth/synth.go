// Package synth generates enriched events for the aggregator's tests and computes, independently of
// ClickHouse, the rollups they must produce; Got reads the same shape back from a migrated database.
package synth

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"sort"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/edtech-analytics/platform/libs/records"
	"github.com/google/uuid"
)

// FirstDay is the first day events occur on; they span six UTC days across a month boundary, so one
// batch of a partition writes into two partitions of events.
var FirstDay = time.Date(2025, 9, 28, 0, 0, 0, 0, time.UTC)

const (
	days              = 6
	schoolsPerTenant  = 3
	studentsPerSchool = 15
	teachersPerSchool = 2
)

// LocalZone is the time zone of the first tenant (district_1): its events carry the local date the
// enricher stamps (local_date), so an evening event counts on the day before its UTC date. The other
// tenants' events carry none, as records enriched before local dates, and count on their UTC date.
var LocalZone = time.FixedZone("UTC-6", -6*60*60)

// Day is the day the rollups count ev on: the attendance date of an attendance event, else its local
// date, else the UTC date it occurred on.
func Day(ev *records.EnrichedEvent) string {
	switch {
	case ev.Attendance != nil:
		return ev.Attendance.Date.UTC().Format(time.DateOnly)
	case ev.LocalDate != nil:
		return ev.LocalDate.UTC().Format(time.DateOnly)
	}
	return ev.OccurredAt.UTC().Format(time.DateOnly)
}

// LocalDate is the date at falls on in loc, as the enricher stamps it (midnight UTC of that date).
func LocalDate(at time.Time, loc *time.Location) *time.Time {
	y, m, d := at.In(loc).Date()
	day := time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
	return &day
}

// Regular is the student with at least one event on every day.
type Regular struct{ Tenant, School, Student string }

// Events returns n learning events (n >= days) of the five types for the given number of tenants, from
// seed: three schools per tenant, fifteen students and two teachers per school, about one event in
// twenty without a school. The first days events belong to the Regular student, one per day.
func Events(seed uint64, tenants, n int) ([]records.EnrichedEvent, Regular) {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	ids := rand.NewChaCha8(key) // an io.Reader for deterministic UUIDs

	type actor struct{ id, pseudonym, role string }
	people := map[[2]int][]actor{} // (tenant, school) -> students, then teachers
	for t := range tenants {
		for s := range schoolsPerTenant {
			for i := range studentsPerSchool + teachersPerSchool {
				role := "student"
				if i >= studentsPerSchool {
					role = "teacher"
				}
				people[[2]int{t, s}] = append(people[[2]int{t, s}], actor{
					id: uuid.Must(uuid.NewRandomFromReader(ids)).String(), pseudonym: fmt.Sprintf("p-%d-%d-%d", t, s, i), role: role,
				})
			}
		}
	}
	regular := Regular{Tenant: tenantID(0), School: schoolID(0), Student: people[[2]int{0, 0}][0].id}

	evs := make([]records.EnrichedEvent, n)
	for i := range evs {
		t, s, who, day := rng.IntN(tenants), rng.IntN(schoolsPerTenant), rng.IntN(studentsPerSchool+teachersPerSchool), rng.IntN(days)
		if i < days {
			t, s, who, day = 0, 0, 0, i
		}
		a := people[[2]int{t, s}][who]
		at := FirstDay.AddDate(0, 0, day).Add(time.Duration(rng.Int64N(int64(24 * time.Hour))).Truncate(time.Millisecond))
		ev := records.EnrichedEvent{
			EventID: uuid.Must(uuid.NewRandomFromReader(ids)).String(), TenantID: tenantID(t), SourceID: "lms-1",
			OccurredAt: at, ReceivedAt: at.Add(2 * time.Second), SchemaVersion: 1,
			Actor:    records.EnrichedActor{InternalID: a.id, Pseudonym: a.pseudonym, Role: a.role},
			SchoolID: ptr(schoolID(s)), ClassID: ptr(fmt.Sprintf("class-%d", rng.IntN(4))), PolicyVersion: 3,
			EnrichedAt: at.Add(3 * time.Second), Derived: records.Derived{GradeLevel: ptr("07")},
		}
		if i >= days && rng.IntN(20) == 0 {
			ev.SchoolID = nil
		}
		if t == 0 {
			ev.LocalDate = LocalDate(at, LocalZone)
		}
		setPayload(rng, &ev, at)
		evs[i] = ev
	}
	return evs, regular
}

func setPayload(rng *rand.Rand, ev *records.EnrichedEvent, at time.Time) {
	var p any
	switch rng.IntN(5) {
	case 0:
		statuses := []string{records.AttendancePresent, records.AttendanceAbsent, records.AttendanceTardy, records.AttendanceExcused}
		p = &records.Attendance{Status: statuses[rng.IntN(len(statuses))], Date: at.Truncate(24 * time.Hour), MinutesPresent: ptr(rng.IntN(400))}
	case 1:
		p = &records.AssessmentResult{AssessmentID: fmt.Sprintf("quiz-%d", rng.IntN(9)), Score: float64(rng.IntN(21)), MaxScore: 20, Attempt: 1}
	case 2:
		due := at.Add(time.Duration(rng.IntN(48)-24) * time.Hour)
		late := at.After(due)
		ev.Derived.Late = &late
		p = &records.AssignmentSubmission{AssignmentID: fmt.Sprintf("hw-%d", rng.IntN(9)), DueAt: &due, SubmittedAt: at, Status: "submitted"}
	case 3:
		s := &records.SessionEvent{Action: records.SessionLogin}
		if rng.IntN(2) == 0 {
			s.Action = records.SessionLogout
			ev.Derived.SessionSeconds = ptr(int64(60 + rng.IntN(3600)))
		}
		p = s
	default:
		p = &records.ContentView{ContentID: fmt.Sprintf("video-%d", rng.IntN(30)), ContentType: "video",
			DurationSeconds: int64(rng.IntN(900)), PercentComplete: ptr(rng.Float64() * 100)}
	}
	_ = ev.SetPayload(p) // cannot fail: p is a non-nil payload pointer
}

// Roster returns a roster.user record with a name and SIS ids: not a fact, never stored.
func Roster(tenant string, i int) records.EnrichedEvent {
	at := FirstDay.Add(time.Duration(i) * time.Minute)
	ev := records.EnrichedEvent{
		EventID: uuid.NewSHA1(uuid.NameSpaceOID, fmt.Appendf(nil, "roster-%s-%d", tenant, i)).String(), TenantID: tenant,
		SourceID: "sis-1", OccurredAt: at, ReceivedAt: at, SchemaVersion: 1, EnrichedAt: at,
		Actor: records.EnrichedActor{InternalID: uuid.NewSHA1(uuid.NameSpaceOID, fmt.Appendf(nil, "user-%d", i)).String(), Role: "student"},
	}
	_ = ev.SetPayload(&records.RosterUser{ // cannot fail: a non-nil payload pointer
		SourcedID: fmt.Sprintf("SIS-%d", i), Status: records.RosterActive,
		DateLastModified: at, EnabledUser: true, GivenName: "Ada", FamilyName: "Lovelace"})
	return ev
}

func tenantID(i int) string { return fmt.Sprintf("district_%d", i+1) }
func schoolID(i int) string { return fmt.Sprintf("school-%d", i+1) }
func ptr[T any](v T) *T     { return &v }

// SchoolDay keys school_daily.
type SchoolDay struct{ Tenant, School, Day string }

// SchoolDayTotals are the merged values of one school_daily key.
type SchoolDayTotals struct{ ActiveStudents, Events, ContentSeconds uint64 }

// AttendanceKey keys attendance_daily.
type AttendanceKey struct{ Tenant, School, Day, Status string }

// Rollups are the merged contents of the rollup tables.
type Rollups struct {
	SchoolDaily map[SchoolDay]SchoolDayTotals
	Attendance  map[AttendanceKey]uint64
	Metrics     map[MetricKey]Metrics // metrics_daily and metrics_student_daily
}

// Want computes the rollups events must produce, each counted once.
func Want(events []records.EnrichedEvent) Rollups {
	r := Rollups{SchoolDaily: map[SchoolDay]SchoolDayTotals{}, Attendance: map[AttendanceKey]uint64{}, Metrics: wantMetrics(events)}
	active := map[SchoolDay]map[string]bool{}
	for _, ev := range events {
		school := ""
		if ev.SchoolID != nil {
			school = *ev.SchoolID
		}
		day := ev.OccurredAt.UTC().Format(time.DateOnly)
		if ev.LocalDate != nil {
			day = ev.LocalDate.UTC().Format(time.DateOnly)
		}
		k := SchoolDay{ev.TenantID, school, day}
		tot := r.SchoolDaily[k]
		tot.Events++
		if ev.ContentView != nil {
			tot.ContentSeconds += uint64(ev.ContentView.DurationSeconds)
		}
		if ev.Actor.Role == "student" {
			if active[k] == nil {
				active[k] = map[string]bool{}
			}
			active[k][ev.Actor.InternalID] = true
		}
		tot.ActiveStudents = uint64(len(active[k]))
		r.SchoolDaily[k] = tot
		if a := ev.Attendance; a != nil {
			r.Attendance[AttendanceKey{ev.TenantID, school, a.Date.UTC().Format(time.DateOnly), a.Status}]++
		}
	}
	return r
}

// Got reads the rollups from the database conn is on, merging partial rows as an analyst query would.
func Got(ctx context.Context, conn driver.Conn) (Rollups, error) {
	r := Rollups{SchoolDaily: map[SchoolDay]SchoolDayTotals{}, Attendance: map[AttendanceKey]uint64{}}
	var daily []struct {
		Tenant         string `ch:"tenant_id"`
		School         string `ch:"school_id"`
		Day            string `ch:"day"`
		ActiveStudents uint64 `ch:"active_students"`
		Events         uint64 `ch:"events"`
		ContentSeconds uint64 `ch:"content_seconds"`
	}
	if err := conn.Select(ctx, &daily, `SELECT tenant_id, school_id, toString(day) AS day,
		uniqExactMerge(active_students) AS active_students, countMerge(events) AS events,
		sumMerge(content_seconds) AS content_seconds
		FROM school_daily GROUP BY tenant_id, school_id, day`); err != nil {
		return r, fmt.Errorf("reading school_daily: %w", err)
	}
	for _, d := range daily {
		r.SchoolDaily[SchoolDay{d.Tenant, d.School, d.Day}] = SchoolDayTotals{d.ActiveStudents, d.Events, d.ContentSeconds}
	}
	var att []struct {
		Tenant string `ch:"tenant_id"`
		School string `ch:"school_id"`
		Day    string `ch:"day"`
		Status string `ch:"status"`
		Marks  uint64 `ch:"marks"`
	}
	if err := conn.Select(ctx, &att, `SELECT tenant_id, school_id, toString(day) AS day, status, sum(marks) AS marks
		FROM attendance_daily GROUP BY tenant_id, school_id, day, status`); err != nil {
		return r, fmt.Errorf("reading attendance_daily: %w", err)
	}
	for _, a := range att {
		r.Attendance[AttendanceKey{a.Tenant, a.School, a.Day, a.Status}] = a.Marks
	}
	var err error
	r.Metrics, err = gotMetrics(ctx, conn)
	return r, err
}

// Diff lists the differences between want and got, sorted; none means equal.
func Diff(want, got Rollups) []string {
	var out []string
	for k, w := range want.SchoolDaily {
		if g, ok := got.SchoolDaily[k]; !ok || g != w {
			out = append(out, fmt.Sprintf("school_daily %v = %+v, want %+v", k, g, w))
		}
	}
	for k, g := range got.SchoolDaily {
		if _, ok := want.SchoolDaily[k]; !ok {
			out = append(out, fmt.Sprintf("school_daily %v = %+v, want no row", k, g))
		}
	}
	for k, w := range want.Attendance {
		if g := got.Attendance[k]; g != w {
			out = append(out, fmt.Sprintf("attendance_daily %v = %d, want %d", k, g, w))
		}
	}
	for k, g := range got.Attendance {
		if _, ok := want.Attendance[k]; !ok {
			out = append(out, fmt.Sprintf("attendance_daily %v = %d, want no row", k, g))
		}
	}
	out = append(out, diffMetrics(want.Metrics, got.Metrics)...)
	sort.Strings(out)
	return out
}
