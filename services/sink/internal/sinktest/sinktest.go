// Package sinktest is the sink's test kit: a generator of enriched events of every type, a model of
// the district state they must produce, and readers of that state from PostgreSQL in the same form.
package sinktest

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/edtech-analytics/platform/libs/kafkax"
	"github.com/edtech-analytics/platform/libs/records"
	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/edtech-analytics/platform/libs/testenv/devenv"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kgo"
)

func Ptr[T any](v T) *T { return &v }

func UUIDFrom(rng *rand.Rand) string {
	var b [16]byte
	for i := range b {
		b[i] = byte(rng.UintN(256))
	}
	b[6], b[8] = b[6]&0x0f|0x40, b[8]&0x3f|0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// GenEvents returns n events for the given tenants, 12 students each: about a fifth are roster records
// (see GenRoster), the rest of the five learning types. Times fall on whole minutes of one morning so
// that many events of a student tie.
func GenEvents(rng *rand.Rand, tenants []string, n int) []*records.EnrichedEvent {
	students := map[string][]string{}
	for _, tn := range tenants {
		for range 12 {
			students[tn] = append(students[tn], UUIDFrom(rng))
		}
	}
	base := time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC)
	minute := func() time.Time { return base.Add(time.Duration(rng.IntN(90)) * time.Minute) }
	types := []string{records.TypeAttendance, records.TypeAssessmentResult, records.TypeAssignmentSubmission,
		records.TypeSession, records.TypeContentView}
	statuses := []string{records.AttendancePresent, records.AttendanceAbsent, records.AttendanceTardy, records.AttendanceExcused}
	out := make([]*records.EnrichedEvent, n)
	for i := range out {
		tn := tenants[rng.IntN(len(tenants))]
		if rng.IntN(5) == 0 {
			out[i] = GenRoster(rng, tn, students[tn])
			continue
		}
		ev := &records.EnrichedEvent{
			EventID: UUIDFrom(rng), TenantID: tn, SourceID: "lms", Type: types[rng.IntN(len(types))],
			OccurredAt: minute(), ReceivedAt: base.Add(2 * time.Hour), SchemaVersion: 1,
			Actor:      records.EnrichedActor{InternalID: students[tn][rng.IntN(12)], Pseudonym: "p", Role: "student"},
			EnrichedAt: base.Add(2 * time.Hour),
		}
		if rng.IntN(2) == 0 {
			ev.SchoolID, ev.ClassID = Ptr(fmt.Sprintf("school-%d", rng.IntN(3))), Ptr(fmt.Sprintf("class-%d", rng.IntN(5)))
		}
		switch ev.Type {
		case records.TypeAttendance:
			ev.Attendance = &records.Attendance{Status: statuses[rng.IntN(len(statuses))], Date: base.AddDate(0, 0, rng.IntN(3)).Truncate(24 * time.Hour)}
		case records.TypeAssessmentResult:
			ev.AssessmentResult = &records.AssessmentResult{AssessmentID: fmt.Sprintf("quiz-%d", rng.IntN(4)),
				Score: float64(rng.IntN(41)) / 2, MaxScore: 20, Attempt: 1}
		case records.TypeAssignmentSubmission:
			sub := &records.AssignmentSubmission{AssignmentID: fmt.Sprintf("essay-%d", rng.IntN(4)),
				SubmittedAt: minute(), Status: "submitted"}
			if rng.IntN(3) > 0 {
				sub.DueAt = Ptr(base.Add(45 * time.Minute))
			}
			if rng.IntN(2) == 0 {
				sub.Score = Ptr(float64(rng.IntN(11)))
			}
			if rng.IntN(3) == 0 {
				ev.Derived.Late = Ptr(rng.IntN(2) == 0) // the enricher's word wins over the due time
			}
			ev.AssignmentSubmission = sub
		case records.TypeSession:
			ev.Session = &records.SessionEvent{Action: records.SessionLogin}
		case records.TypeContentView:
			ev.ContentView = &records.ContentView{ContentID: "video-1", ContentType: "video", DurationSeconds: 60}
		}
		out[i] = ev
	}
	return out
}

var RosterTypes = []string{records.TypeRosterOrg, records.TypeRosterAcademicSession, records.TypeRosterCourse,
	records.TypeRosterClass, records.TypeRosterUser, records.TypeRosterEnrollment, records.TypeRosterDemographics,
	records.TypeRosterLineItem, records.TypeRosterResult}

// GenRoster returns a roster record of a random type for one of 4 entities per type, with one of 6
// modification times (so records tie and arrive out of order), deleting the entity one time in four.
// Its content field (RosterContent) is a fresh random value; a user is enabled or not, and its actor
// is the user's internal id (one of students) or unknown.
func GenRoster(rng *rand.Rand, tenant string, students []string) *records.EnrichedEvent {
	base := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	id := fmt.Sprintf("e%d", rng.IntN(4))
	dlm := base.Add(time.Duration(rng.IntN(6)) * time.Hour)
	status := records.RosterActive
	if rng.IntN(4) == 0 {
		status = records.RosterToBeDeleted
	}
	v := fmt.Sprintf("v%d", rng.IntN(1_000_000))
	ev := &records.EnrichedEvent{
		EventID: UUIDFrom(rng), TenantID: tenant, SourceID: "sis", OccurredAt: base, ReceivedAt: base,
		SchemaVersion: 1, EnrichedAt: base, Actor: records.EnrichedActor{Role: "system"},
	}
	switch ev.Type = RosterTypes[rng.IntN(len(RosterTypes))]; ev.Type {
	case records.TypeRosterOrg:
		ev.RosterOrg = &records.RosterOrg{SourcedID: id, Status: status, DateLastModified: dlm, Name: v, Type: "school"}
	case records.TypeRosterAcademicSession:
		ev.RosterAcademicSession = &records.RosterAcademicSession{SourcedID: id, Status: status, DateLastModified: dlm, Title: v, Type: "term",
			StartDate: base, EndDate: base.AddDate(0, 4, 0), SchoolYear: "2026"}
	case records.TypeRosterCourse:
		ev.RosterCourse = &records.RosterCourse{SourcedID: id, Status: status, DateLastModified: dlm, Title: v, OrgSourcedID: "e0"}
	case records.TypeRosterClass:
		ev.RosterClass = &records.RosterClass{SourcedID: id, Status: status, DateLastModified: dlm, Title: v, ClassType: "scheduled",
			CourseSourcedID: "e1", SchoolSourcedID: "e0"}
	case records.TypeRosterUser:
		idx := int(id[1] - '0')
		if rng.IntN(3) > 0 {
			ev.Actor.InternalID, ev.Actor.Role = students[idx], "student"
		}
		ev.RosterUser = &records.RosterUser{SourcedID: id, Status: status, DateLastModified: dlm, EnabledUser: rng.IntN(3) > 0,
			GivenName: v, FamilyName: "Doe", Roles: []records.RosterRole{{RoleType: "primary", Role: "student", OrgSourcedID: "e0"}}}
	case records.TypeRosterEnrollment:
		ev.RosterEnrollment = &records.RosterEnrollment{SourcedID: id, Status: status, DateLastModified: dlm, ClassSourcedID: "e1",
			SchoolSourcedID: "e0", UserSourcedID: id, Role: v}
	case records.TypeRosterDemographics:
		ev.RosterDemographics = &records.RosterDemographics{SourcedID: id, Status: status, DateLastModified: dlm, Sex: &v}
	case records.TypeRosterLineItem:
		ev.RosterLineItem = &records.RosterLineItem{SourcedID: id, Status: status, DateLastModified: dlm, Title: v, AssignDate: base,
			DueDate: base.AddDate(0, 0, 7), ClassSourcedID: "e1"}
	case records.TypeRosterResult:
		ev.RosterResult = &records.RosterResult{SourcedID: id, Status: status, DateLastModified: dlm, LineItemSourcedID: "e2",
			StudentSourcedID: id, ScoreStatus: v, ScoreDate: base}
	}
	return ev
}

// RosterTable and RosterContent name each roster type's table and the column GenRoster varies.
var (
	RosterTable = map[string]string{records.TypeRosterOrg: "roster_orgs", records.TypeRosterAcademicSession: "roster_academic_sessions",
		records.TypeRosterCourse: "roster_courses", records.TypeRosterClass: "roster_classes", records.TypeRosterUser: "roster_users",
		records.TypeRosterEnrollment: "roster_enrollments", records.TypeRosterDemographics: "roster_demographics",
		records.TypeRosterLineItem: "roster_line_items", records.TypeRosterResult: "roster_results"}
	RosterContent = map[string]string{records.TypeRosterOrg: "name", records.TypeRosterAcademicSession: "title",
		records.TypeRosterCourse: "title", records.TypeRosterClass: "title", records.TypeRosterUser: "given_name",
		records.TypeRosterEnrollment: "role", records.TypeRosterDemographics: "sex", records.TypeRosterLineItem: "title",
		records.TypeRosterResult: "score_status"}
)

// RosterFacts extracts what the state model tracks of a roster record: id, status, time, content.
func RosterFacts(ev *records.EnrichedEvent) (id, status string, dlm time.Time, content string) {
	switch p := ev.Payloads(); ev.Type {
	case records.TypeRosterOrg:
		return p.RosterOrg.SourcedID, p.RosterOrg.Status, p.RosterOrg.DateLastModified, p.RosterOrg.Name
	case records.TypeRosterAcademicSession:
		return p.RosterAcademicSession.SourcedID, p.RosterAcademicSession.Status, p.RosterAcademicSession.DateLastModified, p.RosterAcademicSession.Title
	case records.TypeRosterCourse:
		return p.RosterCourse.SourcedID, p.RosterCourse.Status, p.RosterCourse.DateLastModified, p.RosterCourse.Title
	case records.TypeRosterClass:
		return p.RosterClass.SourcedID, p.RosterClass.Status, p.RosterClass.DateLastModified, p.RosterClass.Title
	case records.TypeRosterUser:
		return p.RosterUser.SourcedID, p.RosterUser.Status, p.RosterUser.DateLastModified, p.RosterUser.GivenName
	case records.TypeRosterEnrollment:
		return p.RosterEnrollment.SourcedID, p.RosterEnrollment.Status, p.RosterEnrollment.DateLastModified, p.RosterEnrollment.Role
	case records.TypeRosterDemographics:
		return p.RosterDemographics.SourcedID, p.RosterDemographics.Status, p.RosterDemographics.DateLastModified, *p.RosterDemographics.Sex
	case records.TypeRosterLineItem:
		return p.RosterLineItem.SourcedID, p.RosterLineItem.Status, p.RosterLineItem.DateLastModified, p.RosterLineItem.Title
	case records.TypeRosterResult:
		return p.RosterResult.SourcedID, p.RosterResult.Status, p.RosterResult.DateLastModified, p.RosterResult.ScoreStatus
	}
	return "", "", time.Time{}, ""
}

// State is district state flattened to comparable strings: table/tenant/key -> columns.
type State map[string]string

func ts(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

func optStr[T any](p *T) string {
	if p == nil {
		return "null"
	}
	return fmt.Sprint(*p)
}

func fl(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

// Expected applies events, in the order they were produced (the order of each tenant's partition), the
// way the sink must: counts add up, the latest by time wins with ties going to the later record (the
// attendance mark by occurred_at, a roster entity by date_last_modified), a roster delete removes the
// row and blocks older records, and a user's internal id stays known until the user is deleted.
func Expected(evs []*records.EnrichedEvent) State {
	type act struct {
		n    int
		at   time.Time
		last string
	}
	acts := map[string]*act{}
	times := map[string]time.Time{}
	st := State{}
	type entity struct {
		dlm              time.Time
		deleted          bool
		content, enabled string
		internalID       string
	}
	roster := map[string]*entity{}
	for _, ev := range evs {
		if records.IsRosterType(ev.Type) {
			id, status, dlm, content := RosterFacts(ev)
			k := ev.TenantID + "/" + ev.Type + "/" + id
			cur := roster[k]
			if cur != nil && cur.dlm.After(dlm) {
				continue
			}
			next := &entity{dlm: dlm, deleted: status == records.RosterToBeDeleted, content: content, internalID: ev.Actor.InternalID}
			if ev.RosterUser != nil {
				next.enabled = fmt.Sprint(ev.RosterUser.EnabledUser)
				if next.internalID == "" && cur != nil && !cur.deleted {
					next.internalID = cur.internalID
				}
			}
			roster[k] = next
			continue
		}
		sk := ev.TenantID + "/" + ev.Actor.InternalID
		a := acts[sk]
		if a == nil {
			a = &act{at: ev.OccurredAt}
			acts[sk] = a
		}
		a.n++
		if !ev.OccurredAt.Before(a.at) {
			a.at, a.last = ev.OccurredAt, ev.Type
		}
		switch ev.Type {
		case records.TypeAttendance:
			p := ev.Attendance
			k := "attendance/" + sk + "/" + p.Date.Format(time.DateOnly)
			if prev, ok := times[k]; !ok || !ev.OccurredAt.Before(prev) {
				times[k] = ev.OccurredAt
				st[k] = fmt.Sprint(p.Status, "|", optStr(ev.SchoolID), "|", optStr(ev.ClassID), "|", ev.EventID, "|", ts(ev.OccurredAt))
			}
		case records.TypeAssessmentResult:
			p := ev.AssessmentResult
			k := "result/" + sk + "/" + p.AssessmentID
			if prev, ok := times[k]; !ok || !ev.OccurredAt.Before(prev) {
				times[k] = ev.OccurredAt
				st[k] = fmt.Sprint(fl(p.Score), "|", fl(p.MaxScore), "|", ts(ev.OccurredAt), "|", ev.EventID)
			}
		case records.TypeAssignmentSubmission:
			p := ev.AssignmentSubmission
			k := "submission/" + sk + "/" + p.AssignmentID
			if prev, ok := times[k]; !ok || !p.SubmittedAt.Before(prev) {
				times[k] = p.SubmittedAt
				late := ev.Derived.Late
				if late == nil && p.DueAt != nil {
					late = Ptr(p.DueAt.Before(p.SubmittedAt))
				}
				score := "null"
				if p.Score != nil {
					score = fl(*p.Score)
				}
				st[k] = fmt.Sprint(ts(p.SubmittedAt), "|", optStr(late), "|", score, "|", ev.EventID)
			}
		}
	}
	for k, a := range acts {
		st["activity/"+k] = fmt.Sprint(a.n, "|", ts(a.at), "|", a.last)
	}
	for k, e := range roster {
		if e.deleted {
			st["deleted/"+k] = ts(e.dlm)
			continue
		}
		id := e.internalID
		if id == "" {
			id = "null"
		}
		st["roster/"+k] = fmt.Sprint(ts(e.dlm), "|", e.content, "|", id, "|", e.enabled)
	}
	return st
}

// ReadState reads the district tables of the given tenants, each from its pool, in the form Expected
// gives.
func ReadState(t testing.TB, poolOf func(tenant string) *pgxpool.Pool, tenants []string) State {
	t.Helper()
	st := State{}
	read := func(tenant, table, cols, prefix string, format func(vals []any) (string, string)) {
		schema, err := tenancy.SchemaName(tenant)
		if err != nil {
			t.Fatal(err)
		}
		rows, err := poolOf(tenant).Query(t.Context(), "SELECT internal_id::text, "+cols+" FROM "+pgx.Identifier{schema, table}.Sanitize())
		if err != nil {
			t.Fatalf("reading %s.%s: %v", schema, table, err)
		}
		defer rows.Close()
		for rows.Next() {
			vals, err := rows.Values()
			if err != nil {
				t.Fatal(err)
			}
			key, val := format(vals[1:])
			st[prefix+"/"+tenant+"/"+vals[0].(string)+key] = val
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
	}
	null := func(v any) string {
		switch v := v.(type) {
		case nil:
			return "null"
		case float64:
			return fl(v)
		case time.Time:
			return ts(v)
		}
		return fmt.Sprint(v)
	}
	for _, tn := range tenants {
		read(tn, "student_activity", "event_count, last_event_at, last_event_type", "activity", func(v []any) (string, string) {
			return "", fmt.Sprint(v[0], "|", ts(v[1].(time.Time)), "|", v[2])
		})
		read(tn, "attendance_daily", "day, status, school_id, class_id, event_id::text, occurred_at", "attendance", func(v []any) (string, string) {
			return "/" + v[0].(time.Time).Format(time.DateOnly), fmt.Sprint(v[1], "|", null(v[2]), "|", null(v[3]), "|", v[4], "|", null(v[5]))
		})
		read(tn, "assessment_results_latest", "assessment_id, score, max_score, occurred_at, event_id::text", "result", func(v []any) (string, string) {
			return "/" + v[0].(string), fmt.Sprint(null(v[1]), "|", null(v[2]), "|", null(v[3]), "|", v[4])
		})
		read(tn, "submissions", "assignment_id, submitted_at, late, score, event_id::text", "submission", func(v []any) (string, string) {
			return "/" + v[0].(string), fmt.Sprint(null(v[1]), "|", null(v[2]), "|", null(v[3]), "|", v[4])
		})
		schema, _ := tenancy.SchemaName(tn)
		for _, typ := range RosterTypes {
			enabled := "''"
			if typ == records.TypeRosterUser {
				enabled = "enabled::text"
			}
			rows, err := poolOf(tn).Query(t.Context(), fmt.Sprintf(`SELECT sourced_id, date_last_modified, %s, coalesce(%s::text, 'null'), %s
				FROM %s WHERE status = 'active'`, RosterContent[typ], internalIDColumn(typ), enabled,
				pgx.Identifier{schema, RosterTable[typ]}.Sanitize()))
			if err != nil {
				t.Fatal(err)
			}
			var id, content, internal, en string
			var dlm time.Time
			if _, err := pgx.ForEachRow(rows, []any{&id, &dlm, &content, &internal, &en}, func() error {
				st["roster/"+tn+"/"+typ+"/"+id] = fmt.Sprint(ts(dlm), "|", content, "|", internal, "|", en)
				return nil
			}); err != nil {
				t.Fatal(err)
			}
		}
		rows, err := poolOf(tn).Query(t.Context(), "SELECT entity, sourced_id, date_last_modified FROM "+pgx.Identifier{schema, "roster_deletions"}.Sanitize())
		if err != nil {
			t.Fatal(err)
		}
		var typ, id string
		var dlm time.Time
		if _, err := pgx.ForEachRow(rows, []any{&typ, &id, &dlm}, func() error {
			st["deleted/"+tn+"/"+typ+"/"+id] = ts(dlm)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	return st
}

// internalIDColumn is the internal id of a roster table's rows: users have one, the rest none.
func internalIDColumn(typ string) string {
	if typ == records.TypeRosterUser {
		return "internal_id"
	}
	return "NULL"
}

// AssertState fails the test with the first differences when the database does not hold want.
func AssertState(t testing.TB, poolOf func(tenant string) *pgxpool.Pool, tenants []string, want State) {
	t.Helper()
	got := ReadState(t, poolOf, tenants)
	if maps.Equal(got, want) {
		return
	}
	var diffs []string
	for _, k := range slices.Sorted(maps.Keys(want)) {
		if got[k] != want[k] {
			diffs = append(diffs, fmt.Sprintf("%s: got %q, want %q", k, got[k], want[k]))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(got)) {
		if _, ok := want[k]; !ok {
			diffs = append(diffs, fmt.Sprintf("%s: got %q, want no row", k, got[k]))
		}
	}
	t.Fatalf("state differs in %d rows (of %d expected), e.g.:\n%v", len(diffs), len(want), diffs[:min(len(diffs), 8)])
}

// Encode turns events into records keyed by tenant.
func Encode(t testing.TB, codec *records.Codec, topic string, evs []*records.EnrichedEvent) []*kgo.Record {
	t.Helper()
	recs := make([]*kgo.Record, len(evs))
	for i, ev := range evs {
		b, err := codec.Encode(ev)
		if err != nil {
			t.Fatal(err)
		}
		recs[i] = &kgo.Record{Topic: topic, Key: []byte(ev.TenantID), Value: b}
	}
	return recs
}

// Produce creates the topic of recs (4 partitions) if needed, writes recs and returns the end offset (last + 1) of every partition written.
func Produce(t testing.TB, kcfg kafkax.Config, recs []*kgo.Record) map[int32]int64 {
	t.Helper()
	cl, err := kafkax.NewClient(kcfg, kafkax.Deps{}, "", kafkax.ProducerOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := kafkax.EnsureTopics(t.Context(), cl.Client, 4, 1, []kafkax.TopicSpec{{Name: recs[0].Topic}}); err != nil {
		t.Fatal(err)
	}
	if err := cl.ProduceSync(t.Context(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	ends := map[int32]int64{}
	for _, r := range recs {
		ends[r.Partition] = max(ends[r.Partition], r.Offset+1)
	}
	return ends
}

func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second) // generous: tests share a busy machine
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// SetConnectable lets clients connect to database name or not; when not, it also ends the connections
// open to it, as a server going away would, and empties the test's own pools given as readers, so that
// no reader of the test keeps a connection the server has terminated (the code under test must cope
// with those itself).
func SetConnectable(t testing.TB, name string, ok bool, readers ...*pgxpool.Pool) {
	t.Helper()
	ctx := context.Background()
	url, err := devenv.Postgres(ctx)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := conn.Close(ctx); err != nil {
			t.Error(err)
		}
	}()
	if _, err := conn.Exec(ctx, fmt.Sprintf("ALTER DATABASE %s ALLOW_CONNECTIONS %v", pgx.Identifier{name}.Sanitize(), ok)); err != nil {
		t.Fatal(err)
	}
	if !ok {
		if _, err := conn.Exec(ctx, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name); err != nil {
			t.Fatal(err)
		}
		for _, p := range readers {
			p.Reset()
		}
	}
}

// Students returns n random student ids for each district.
func Students(rng *rand.Rand, districts []string, n int) map[string][]string {
	out := map[string][]string{}
	for _, d := range districts {
		for range n {
			out[d] = append(out[d], UUIDFrom(rng))
		}
	}
	return out
}

// LearningEvents returns n learning events (a third content views, then sessions, attendance, results and
// submissions) spread evenly over the districts, each about one of the district's students, on one of
// five school days: the sink's everyday load, for benchmarks.
func LearningEvents(rng *rand.Rand, districts []string, students map[string][]string, n int) []*records.EnrichedEvent {
	types := []string{records.TypeContentView, records.TypeContentView, records.TypeSession, records.TypeAttendance,
		records.TypeAssessmentResult, records.TypeAssignmentSubmission}
	day := time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)
	out := make([]*records.EnrichedEvent, n)
	for i := range out {
		d := districts[i%len(districts)]
		ev := &records.EnrichedEvent{EventID: UUIDFrom(rng), TenantID: d, SourceID: "lms",
			OccurredAt: day.Add(time.Duration(rng.IntN(86400)) * time.Second), ReceivedAt: day, EnrichedAt: day,
			Actor: records.EnrichedActor{InternalID: students[d][rng.IntN(len(students[d]))], Pseudonym: "p", Role: "student"}}
		switch ev.Type = types[rng.IntN(len(types))]; ev.Type {
		case records.TypeContentView:
			ev.ContentView = &records.ContentView{ContentID: "video-1", ContentType: "video", DurationSeconds: 60}
		case records.TypeSession:
			ev.Session = &records.SessionEvent{Action: records.SessionLogin}
		case records.TypeAttendance:
			ev.Attendance = &records.Attendance{Status: records.AttendancePresent, Date: day.AddDate(0, 0, rng.IntN(5))}
		case records.TypeAssessmentResult:
			ev.AssessmentResult = &records.AssessmentResult{AssessmentID: fmt.Sprintf("quiz-%d", rng.IntN(10)), Score: 7, MaxScore: 10, Attempt: 1}
		case records.TypeAssignmentSubmission:
			ev.AssignmentSubmission = &records.AssignmentSubmission{AssignmentID: fmt.Sprintf("essay-%d", rng.IntN(10)),
				SubmittedAt: ev.OccurredAt, Status: "submitted"}
		}
		out[i] = ev
	}
	return out
}
