package roster_test

import (
	"os"
	"slices"
	"testing"
	"time"

	"github.com/edtech-analytics/platform/libs/pgutil/pgtest"
	"github.com/edtech-analytics/platform/libs/records"
	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/edtech-analytics/platform/libs/tenancy/fleet"
	"github.com/edtech-analytics/platform/libs/tenancy/tenants"
	"github.com/edtech-analytics/platform/services/enricher/internal/roster"
	"github.com/jackc/pgx/v5"
)

const person = "11111111-1111-4111-8111-111111111111"

var day0 = time.Date(2026, 9, 1, 0, 0, 0, 0, time.UTC)

func rosterEvent(payload any) *records.RawEvent {
	ev := &records.RawEvent{TenantID: "d1", SourceID: "sis"}
	if err := ev.SetPayload(payload); err != nil {
		panic(err) // a test bug: only payload pointers are passed
	}
	return ev
}

func user(status string, modified time.Time, birth *time.Time, grades []string, consent string) *records.RawEvent {
	meta := map[string]string{}
	if consent != "" {
		meta["edtech.consent"] = consent
	}
	return rosterEvent(&records.RosterUser{SourcedID: "S1", Status: status, DateLastModified: modified, Metadata: meta,
		Roles: []records.RosterRole{{RoleType: "primary", Role: "student", OrgSourcedID: "sch1"}}, BirthDate: birth, Grades: grades})
}

func TestContextIsReplaySafe(t *testing.T) {
	pool, _ := pgtest.New(t)
	ctx := t.Context()
	if err := tenancy.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	if _, err := tenants.New(fleet.New(pool, os.Getenv)).Create(ctx, "d1", "D1"); err != nil {
		t.Fatal(err)
	}
	s := roster.New(fleet.NewDistrictPools(fleet.New(pool, os.Getenv)), 1000)
	apply := func(ev *records.RawEvent, who string) {
		t.Helper()
		if err := s.Apply(ctx, ev, who, "edtech.consent"); err != nil {
			t.Fatal(err)
		}
	}
	student := func() roster.Student {
		t.Helper()
		st, err := s.Student(ctx, "d1", person)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	if st := student(); st.Rostered || st.BirthDate != nil { // unknown: a cached negative answer
		t.Fatalf("unknown student = %+v", st)
	}

	birth := time.Date(2014, 5, 6, 0, 0, 0, 0, time.UTC)
	apply(user(records.RosterActive, day0, &birth, []string{"06"}, "granted"), person)
	if st := student(); !st.Rostered || !st.IsStudent || !st.BirthDate.Equal(birth) || !slices.Equal(st.Grades, []string{"06"}) || st.Consent != "granted" {
		t.Fatalf("after roster.user: %+v", st) // the write also refreshed the cached negative answer
	}
	// An older record (a bulk export replayed after a delta) changes nothing; a newer one applies.
	apply(user(records.RosterActive, day0.Add(-time.Hour), &birth, []string{"05"}, ""), person)
	if st := student(); !slices.Equal(st.Grades, []string{"06"}) || st.Consent != "granted" {
		t.Fatalf("an older record moved the context back: %+v", st)
	}
	apply(user(records.RosterActive, day0.Add(time.Hour), &birth, []string{"07"}, "revoked"), person)
	if st := student(); !slices.Equal(st.Grades, []string{"07"}) || st.Consent != "revoked" {
		t.Fatalf("a newer record did not apply: %+v", st)
	}
	// tobedeleted is a tombstone: the user is gone, and replaying an older active record keeps it gone.
	apply(user(records.RosterToBeDeleted, day0.Add(2*time.Hour), nil, nil, ""), person)
	apply(user(records.RosterActive, day0.Add(time.Hour), &birth, []string{"07"}, ""), person)
	if st := student(); st.Rostered || st.BirthDate != nil {
		t.Fatalf("deleted user came back: %+v", st)
	}

	// Demographics supply the birth date; enrollments the schools.
	other := "22222222-2222-4222-8222-222222222222"
	apply(rosterEvent(&records.RosterDemographics{SourcedID: "S2", Status: records.RosterActive, DateLastModified: day0, BirthDate: &birth}), other)
	for i, sch := range []string{"sch2", "sch1", "sch2"} {
		apply(rosterEvent(&records.RosterEnrollment{SourcedID: "E" + string(rune('0'+i)), Status: records.RosterActive, DateLastModified: day0,
			ClassSourcedID: "c1", SchoolSourcedID: sch, UserSourcedID: "S2", Role: "student"}), other)
	}
	if st, err := s.Student(ctx, "d1", other); err != nil || !st.BirthDate.Equal(birth) || !slices.Equal(st.Schools, []string{"sch1", "sch2"}) {
		t.Fatalf("demographics and enrollments: %+v, %v", st, err)
	}

	// Classes take their grades from their course when they have none.
	apply(rosterEvent(&records.RosterClass{SourcedID: "c1", Status: records.RosterActive, DateLastModified: day0, SchoolSourcedID: "sch1",
		CourseSourcedID: "math7", TermSourcedIds: []string{"t1"}}), "")
	if c, _ := s.Class(ctx, "d1", "c1"); c.School != "sch1" || len(c.Grades) != 0 {
		t.Fatalf("class = %+v", c)
	}
	apply(rosterEvent(&records.RosterCourse{SourcedID: "math7", Status: records.RosterActive, DateLastModified: day0, Grades: []string{"07"}}), "")
	if c, _ := s.Class(ctx, "d1", "c1"); !slices.Equal(c.Grades, []string{"07"}) || c.Course != "math7" || !slices.Equal(c.Terms, []string{"t1"}) {
		t.Fatalf("class after its course = %+v", c)
	}
	due := day0.Add(72 * time.Hour)
	apply(rosterEvent(&records.RosterLineItem{SourcedID: "hw1", Status: records.RosterActive, DateLastModified: day0, ClassSourcedID: "c1", DueDate: due}), "")
	if li, _ := s.LineItem(ctx, "d1", "hw1"); !li.DueAt.Equal(due) || li.Class != "c1" {
		t.Fatalf("line item = %+v", li)
	}
	// Academic sessions: the class's, resolved by date to the shortest that holds it. Sessions sent after
	// the class was cached reach it (the cache of the district's classes is dropped).
	if c, _ := s.Class(ctx, "d1", "c1"); c.SessionAt(day0) != "" {
		t.Fatalf("session before the roster sent any = %q", c.SessionAt(day0))
	}
	apply(rosterEvent(&records.RosterAcademicSession{SourcedID: "t1", Status: records.RosterActive, DateLastModified: day0, Type: "term",
		StartDate: day0, EndDate: day0.AddDate(0, 4, 0), SchoolYear: "2027"}), "")
	apply(rosterEvent(&records.RosterAcademicSession{SourcedID: "gp1", Status: records.RosterActive, DateLastModified: day0, Type: "gradingPeriod",
		StartDate: day0, EndDate: day0.AddDate(0, 1, 0), SchoolYear: "2027"}), "")
	apply(rosterEvent(&records.RosterClass{SourcedID: "c1", Status: records.RosterActive, DateLastModified: day0.Add(time.Hour), SchoolSourcedID: "sch1",
		CourseSourcedID: "math7", TermSourcedIds: []string{"t1", "gp1", "unknown"}}), "")
	c, err := s.Class(ctx, "d1", "c1")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		day  time.Time
		want string
	}{
		{day0.Add(13 * time.Hour), "gp1"}, // inside both: the grading period
		{day0.AddDate(0, 1, 0), "gp1"},    // its last day is inclusive
		{day0.AddDate(0, 2, 0), "t1"},     // after the grading period, inside the term
		{day0.AddDate(0, 6, 0), ""},       // after both
		{day0.AddDate(0, 0, -1), ""},      // before both
	} {
		if got := c.SessionAt(tc.day); got != tc.want {
			t.Errorf("session at %s = %q, want %q (class %+v)", tc.day.Format(time.DateOnly), got, tc.want, c)
		}
	}

	// A fresh store (another instance) reads the same context from PostgreSQL, also in a batch.
	cold := roster.New(fleet.NewDistrictPools(fleet.New(pool, os.Getenv)), 1000)
	third := "33333333-3333-4333-8333-333333333333"
	apply(rosterEvent(&records.RosterUser{SourcedID: "S3", Status: records.RosterActive, DateLastModified: day0, Grades: []string{"11"}}), third)
	if err := cold.PrefetchStudents(ctx, "d1", []string{person, other, third}); err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string]roster.Student{person: {}, third: {Rostered: true, Grades: []string{"11"}, Schools: []string{}}} {
		if st, _ := cold.Student(ctx, "d1", id); st.Rostered != want.Rostered || !slices.Equal(st.Grades, want.Grades) {
			t.Fatalf("prefetched %s = %+v, want %+v", id, st, want)
		}
	}
	if st, _ := cold.Student(ctx, "d1", other); !slices.Equal(st.Schools, []string{"sch1", "sch2"}) {
		t.Fatalf("cold read = %+v", st)
	}
	// Erasure deletes a person's rows.
	if err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return cold.Erase(ctx, tx, "d1", other) }); err != nil {
		t.Fatal(err)
	}
	if st, _ := cold.Student(ctx, "d1", other); st.BirthDate != nil || len(st.Schools) != 0 {
		t.Fatalf("erased person's context = %+v", st)
	}
	var n int
	if err := pool.QueryRow(ctx, "SELECT (SELECT count(*) FROM district_d1.enricher_sessions) + "+
		"(SELECT count(*) FROM district_d1.enricher_enrollments WHERE internal_id = $1)", other).Scan(&n); err != nil || n != 2 { // t1 and gp1
		t.Fatalf("rows after erase: %d, %v", n, err)
	}
}
