package records

import (
	"testing"
	"time"

	"github.com/hamba/avro/v2"

	"github.com/edtech-analytics/platform/schemas"
)

func embeddedCatalog(t testing.TB) *Catalog {
	t.Helper()
	c, err := EmbeddedCatalog()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// sources returns the resolved source schemas by name.
func sources(t testing.TB) map[string]avro.Schema {
	t.Helper()
	s, err := ParseSources(schemas.FS)
	if err != nil {
		t.Fatalf("parsing schemas/*.avsc: %v", err)
	}
	return s
}

func ptr[T any](v T) *T { return &v }

// at is a timestamp as it survives timestamp-millis: UTC, whole milliseconds.
func at(minute int) time.Time {
	return time.Date(2026, 3, 2, 8, minute, 30, 123_000_000, time.UTC)
}

// day is a date as it survives the Avro date type: midnight UTC.
func day(m, d int) time.Time { return time.Date(2026, time.Month(m), d, 0, 0, 0, 0, time.UTC) }

func common() (string, string, time.Time, map[string]string) {
	return "7f0c6a1e-4d2b-4f7a-9c1e-2a6b8e5d3c10", RosterActive, at(1), map[string]string{"vendor.note": "x"}
}

// samplePayload returns a fully populated payload of the given type: every optional field set, every
// array and map non-empty, so a round trip exercises all of them.
func samplePayload(t testing.TB, typ string) any {
	t.Helper()
	id, status, modified, meta := common()
	switch typ {
	case TypeAttendance:
		return &Attendance{Status: AttendanceTardy, Date: day(3, 2), MinutesPresent: ptr(41), Reason: ptr("bus")}
	case TypeAssessmentResult:
		return &AssessmentResult{AssessmentID: "quiz-7", Score: 17.5, MaxScore: 20, Scale: ptr("percent"),
			Grade: ptr("B+"), Attempt: 2, CompletedAt: ptr(at(5))}
	case TypeAssignmentSubmission:
		return &AssignmentSubmission{AssignmentID: "essay-1", DueAt: ptr(at(0)), SubmittedAt: at(9),
			Status: "submitted", Score: ptr(8.0), MaxScore: ptr(10.0)}
	case TypeSession:
		return &SessionEvent{Action: SessionLogout, SessionID: ptr("s-1"), Device: ptr("chromebook"),
			App: ptr("reader"), DurationSeconds: ptr(int64(1800))}
	case TypeContentView:
		return &ContentView{ContentID: "video-3", ContentType: "video", DurationSeconds: 95, PercentComplete: ptr(62.5)}
	case TypeCustom:
		return &CustomEvent{Name: "quiz.hint_opened", PropertyKeys: []string{"hint", "step"}, PropertyValues: []string{"2", "checkout"}}
	case TypeGeneric:
		return &GenericEvent{Standard: "caliper", Type: "ToolUseEvent", Action: "Used", ObjectID: "https://example.edu/tools/1",
			ObjectType: "SoftwareApplication", StatementID: ptr("urn:uuid:3f0e2b0c-5a0e-4a55-9d0b-0c9c1f7d3a11"),
			ExtensionKeys: []string{"https://example.edu/ext/level"}, ExtensionValues: []string{"4"}}
	case TypeRosterOrg:
		return &RosterOrg{SourcedID: id, Status: status, DateLastModified: modified, Metadata: meta, Name: "Lincoln High",
			Type: "school", Identifier: ptr("NCES-1"), ParentSourcedID: ptr("district-1"),
			ChildrenSourcedIds: []string{"dept-1"}}
	case TypeRosterAcademicSession:
		return &RosterAcademicSession{SourcedID: id, Status: status, DateLastModified: modified, Metadata: meta,
			Title: "Fall", Type: "term", StartDate: day(8, 20), EndDate: day(12, 18), SchoolYear: "2026",
			ParentSourcedID: ptr("sy-2026"), ChildrenSourcedIds: []string{"gp-1", "gp-2"}}
	case TypeRosterCourse:
		return &RosterCourse{SourcedID: id, Status: status, DateLastModified: modified, Metadata: meta, Title: "Algebra I",
			SchoolYearSourcedID: ptr("sy-2026"), CourseCode: ptr("MATH-101"), Grades: []string{"09"},
			Subjects: []string{"math"}, SubjectCodes: []string{"02052"}, OrgSourcedID: "school-1"}
	case TypeRosterClass:
		return &RosterClass{SourcedID: id, Status: status, DateLastModified: modified, Metadata: meta, Title: "Algebra I - 3",
			ClassCode: ptr("ALG-3"), ClassType: "scheduled", Location: ptr("Room 12"), Grades: []string{"09"},
			Subjects: []string{"math"}, SubjectCodes: []string{"02052"}, Periods: []string{"3"},
			CourseSourcedID: "course-1", SchoolSourcedID: "school-1", TermSourcedIds: []string{"term-1"}}
	case TypeRosterUser:
		return &RosterUser{SourcedID: id, Status: status, DateLastModified: modified, Metadata: meta, EnabledUser: true,
			Username: ptr("ada"), UserIds: []RosterUserID{{Type: "state", Identifier: "S-99"}}, GivenName: "Ada",
			FamilyName: "Lovelace", MiddleName: ptr("A"), PreferredFirstName: ptr("Ada"),
			PreferredLastName: ptr("L"), Pronouns: ptr("she/her"),
			Roles: []RosterRole{{RoleType: "primary", Role: "student", OrgSourcedID: "school-1", BeginDate: ptr(day(8, 20)),
				EndDate: ptr(day(6, 1))}},
			Identifier: ptr("1234"), UserMasterIdentifier: ptr("M-1"), Email: ptr("ada@example.org"),
			SMS: ptr("+15550100"), Phone: ptr("+15550101"), AgentSourcedIds: []string{"parent-1"},
			Grades: []string{"09"}, OrgSourcedIds: []string{"school-1"}, BirthDate: ptr(day(5, 17).AddDate(-14, 0, 0))}
	case TypeRosterEnrollment:
		return &RosterEnrollment{SourcedID: id, Status: status, DateLastModified: modified, Metadata: meta,
			ClassSourcedID: "class-1", SchoolSourcedID: "school-1", UserSourcedID: "user-1", Role: "student",
			Primary: ptr(true), BeginDate: ptr(day(8, 20)), EndDate: ptr(day(6, 1))}
	case TypeRosterDemographics:
		return &RosterDemographics{SourcedID: id, Status: status, DateLastModified: modified, Metadata: meta,
			BirthDate: ptr(day(5, 17).AddDate(-14, 0, 0)), Sex: ptr("female"), AmericanIndianOrAlaskaNative: ptr(false),
			Asian: ptr(false), BlackOrAfricanAmerican: ptr(false), NativeHawaiianOrOtherPacificIslander: ptr(false),
			White: ptr(true), DemographicRaceTwoOrMoreRaces: ptr(false), HispanicOrLatinoEthnicity: ptr(false),
			CountryOfBirthCode: ptr("US"), StateOfBirthAbbreviation: ptr("OH"), CityOfBirth: ptr("Dayton"),
			PublicSchoolResidenceStatus: ptr("01652")}
	case TypeRosterLineItem:
		return &RosterLineItem{SourcedID: id, Status: status, DateLastModified: modified, Metadata: meta, Title: "Essay",
			Description: ptr("Five paragraphs"), AssignDate: at(0), DueDate: at(30), ClassSourcedID: "class-1",
			SchoolSourcedID: ptr("school-1"), CategorySourcedID: ptr("cat-1"), GradingPeriodSourcedID: ptr("gp-1"),
			AcademicSessionSourcedID: ptr("term-1"), ScoreScaleSourcedID: ptr("scale-1"),
			ResultValueMin: ptr(0.0), ResultValueMax: ptr(100.0)}
	case TypeRosterResult:
		return &RosterResult{SourcedID: id, Status: RosterToBeDeleted, DateLastModified: modified, Metadata: meta,
			LineItemSourcedID: "li-1", StudentSourcedID: "user-1", ClassSourcedID: ptr("class-1"),
			ScoreScaleSourcedID: ptr("scale-1"), ScoreStatus: "fully graded", Score: ptr(91.0),
			TextScore: ptr("A-"), ScoreDate: day(3, 2), Comment: ptr("well argued"), InProgress: ptr(false),
			Incomplete: ptr(false), Late: ptr(true), Missing: ptr(false)}
	}
	t.Fatalf("no sample for type %q", typ)
	return nil
}

func samplePayloads(t testing.TB, typ string) Payloads {
	t.Helper()
	var p Payloads
	got, err := p.Set(samplePayload(t, typ))
	if err != nil || got != typ {
		t.Fatalf("Set(%s) = %q, %v", typ, got, err)
	}
	return p
}

func withPayloads[E interface{ SetPayloads(Payloads) }](e E, p Payloads) E {
	e.SetPayloads(p)
	return e
}

func sampleRaw(t testing.TB, typ string) *RawEvent {
	t.Helper()
	return withPayloads(&RawEvent{
		EventID: "0f8fad5b-d9cb-469f-a165-70867728950e", TenantID: "district-42", SourceID: "lms-1", Type: typ,
		OccurredAt: at(10), ReceivedAt: at(11), SchemaVersion: 1,
		Actor:    Actor{SISID: "stu-1001", Role: "student"},
		SchoolID: ptr("school-1"), ClassID: ptr("class-1"), SessionID: ptr("sess-9"),
	}, samplePayloads(t, typ))
}

func sampleEnriched(t testing.TB, typ string) *EnrichedEvent {
	t.Helper()
	return withPayloads(&EnrichedEvent{
		EventID: "0f8fad5b-d9cb-469f-a165-70867728950e", TenantID: "district-42", SourceID: "lms-1", Type: typ,
		OccurredAt: at(10), ReceivedAt: at(11), SchemaVersion: 1,
		Actor: EnrichedActor{InternalID: "5b1e2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d", Pseudonym: "p-7c1a", Role: "student",
			SISID: ptr("stu-1001")},
		SchoolID: ptr("school-1"), ClassID: ptr("class-1"), SessionID: ptr("sess-9"),
		PolicyVersion: 3, EnrichedAt: at(12), LocalDate: ptr(time.Date(2026, 10, 5, 0, 0, 0, 0, time.UTC)),
		Derived: Derived{AgeBand: ptr("13_17"), Under13: ptr(false), Under18: ptr(true), Late: ptr(true),
			SessionSeconds: ptr(int64(1800)), GradeLevel: ptr("09")},
	}, samplePayloads(t, typ))
}

func sampleDLQ() *DLQRecord {
	return &DLQRecord{
		Reason: ReasonInvalidField, Detail: "1 invalid field",
		Errors: []FieldError{{Field: "attendance.status", Message: "unknown status \"late\""}},
		Stage:  StageEnricher, TenantID: ptr("district-42"), EventID: ptr("0f8fad5b-d9cb-469f-a165-70867728950e"),
		SourceTopic: ptr("edtech.raw"), SourcePartition: ptr(3), SourceOffset: ptr(int64(1 << 40)),
		Original: []byte{0, 0, 0, 0, 1, 0xff}, Headers: []Header{{Key: "traceparent", Value: []byte("00-abc-01")}},
		FailedAt: at(20),
	}
}

func sampleControl() *ControlCommand {
	return &ControlCommand{
		CommandID: "c0a80101-0000-4000-8000-000000000001", Type: CommandEraseStudent, TenantID: "district-42",
		IssuedAt: at(30), IssuedBy: "ops@example.org", StudentInternalID: ptr("5b1e2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"),
		SourceID: ptr("sis-1"), SISID: ptr("stu-1001"), Reason: ptr("parent request"),
	}
}
