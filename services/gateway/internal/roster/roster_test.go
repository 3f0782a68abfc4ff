package roster

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/edtech-analytics/platform/libs/records"
	"github.com/edtech-analytics/platform/services/gateway/internal/ingest"
)

var meta = ingest.Meta{TenantID: "d1", SourceID: "sis", ReceivedAt: time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)}

const modified = `"status":"active","dateLastModified":"2026-09-01T08:00:00.123456Z"`

// validJSON holds one valid record of each collection.
var validJSON = map[string]string{
	"orgs": `{"sourcedId":"org-1",` + modified + `,"metadata":{"ncesId":"0601","size":1200,"flags":{"a":true},"open":false,"none":null},
		"name":"Lincoln High","type":"school","identifier":"LHS",
		"parent":{"href":"https://sis/orgs/district-1","sourcedId":"district-1","type":"org"},"children":[{"sourcedId":"dept-1"}]}`,
	"academicSessions": `{"sourcedId":"term-1",` + modified + `,"title":"Fall 2026","type":"term",
		"startDate":"2026-08-15","endDate":"2026-12-20","parent":{"sourcedId":"year-2027"},"children":[],"schoolYear":"2027"}`,
	"courses": `{"sourcedId":"course-1",` + modified + `,"title":"Algebra I","schoolYear":{"sourcedId":"year-2027"},
		"courseCode":"MA101","grades":["09","10"],"subjects":["Math"],"org":{"sourcedId":"org-1"},"subjectCodes":["02052"]}`,
	"classes": `{"sourcedId":"class-1",` + modified + `,"title":"Algebra I - P1","classCode":"MA101-1","classType":"scheduled",
		"location":"Room 12","grades":["09"],"subjects":["Math"],"course":{"sourcedId":"course-1"},"school":{"sourcedId":"org-1"},
		"terms":[{"sourcedId":"term-1"}],"periods":["1"]}`,
	"users": `{"sourcedId":"stu-1",` + modified + `,"userMasterIdentifier":"M1","username":"ada",
		"userIds":[{"type":"LDAP","identifier":"ada@example.org"}],"enabledUser":true,"givenName":"Ada","familyName":"Lovelace",
		"middleName":"B","preferredFirstName":"Addie","preferredLastName":"L","pronouns":"she/her",
		"roles":[{"roleType":"secondary","role":"aide","org":{"sourcedId":"org-2"}},
			{"roleType":"primary","role":"student","org":{"sourcedId":"org-1"},"beginDate":"2026-08-15","endDate":"2027-06-15"}],
		"identifier":"12345","email":"ada@example.org","sms":"","phone":"555-0100","agents":[{"sourcedId":"parent-1"}],
		"grades":["09"],"password":"hunter2"}`,
	"enrollments": `{"sourcedId":"enr-1",` + modified + `,"class":{"sourcedId":"class-1"},"school":{"sourcedId":"org-1"},
		"user":{"sourcedId":"stu-1"},"role":"student","primary":false,"beginDate":"2026-08-15","endDate":"2027-06-15"}`,
	"demographics": `{"sourcedId":"stu-1",` + modified + `,"birthDate":"2012-03-04","sex":"female",
		"americanIndianOrAlaskaNative":false,"asian":"true","white":false,"demographicRaceTwoOrMoreRaces":false,
		"hispanicOrLatinoEthnicity":true,"countryOfBirthCode":"US","stateOfBirthAbbreviation":"CA","cityOfBirth":"Fresno"}`,
	"lineItems": `{"sourcedId":"li-1",` + modified + `,"title":"Quiz 1","description":"Chapter 1",
		"assignDate":"2026-09-01T08:00:00Z","dueDate":"2026-09-08","class":{"sourcedId":"class-1"},"school":{"sourcedId":"org-1"},
		"category":{"sourcedId":"cat-1"},"gradingPeriod":{"sourcedId":"term-1"},"scoreScale":{"sourcedId":"scale-1"},
		"resultValueMin":0,"resultValueMax":100}`,
	"results": `{"sourcedId":"res-1",` + modified + `,"lineItem":{"sourcedId":"li-1"},"student":{"sourcedId":"stu-1"},
		"class":{"sourcedId":"class-1"},"scoreStatus":"fully graded","score":92.5,"textScore":"A-","scoreDate":"2026-09-09",
		"comment":"Well done","inProgress":false,"late":true}`,
}

func body(collection string, recs ...string) []byte {
	return []byte(fmt.Sprintf(`{%q:[%s]}`, collection, strings.Join(recs, ",")))
}

func decodeOne(t *testing.T, collection, rec string) *records.RawEvent {
	t.Helper()
	acc, rej, err := DecodeJSON(collection, body(collection, rec), meta, Limits{MaxRecords: 10}, nil)
	if err != nil || len(rej) != 0 || len(acc) != 1 {
		t.Fatalf("DecodeJSON: err=%v rejected=%+v", err, rej)
	}
	return acc[0].Event
}

func day(s string) time.Time {
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		panic(err)
	}
	return t
}

func TestValidRecordOfEachCollection(t *testing.T) {
	wantModified := time.Date(2026, 9, 1, 8, 0, 0, 123_000_000, time.UTC)
	tests := []struct {
		collection string
		typ        string
		actor      records.Actor
		school     string
		class      string
		check      func(t *testing.T, ev *records.RawEvent) bool
	}{
		{"orgs", records.TypeRosterOrg, records.Actor{SISID: "org-1", Role: RoleSystem}, "", "", func(t *testing.T, ev *records.RawEvent) bool {
			o := ev.RosterOrg
			return o.Name == "Lincoln High" && o.Type == "school" && *o.Identifier == "LHS" && *o.ParentSourcedID == "district-1" &&
				slices.Equal(o.ChildrenSourcedIds, []string{"dept-1"}) &&
				fmt.Sprint(o.Metadata) == `map[flags:{"a":true} ncesId:0601 open:false size:1200]`
		}},
		{"academicSessions", records.TypeRosterAcademicSession, records.Actor{SISID: "term-1", Role: RoleSystem}, "", "", func(t *testing.T, ev *records.RawEvent) bool {
			s := ev.RosterAcademicSession
			return s.Title == "Fall 2026" && s.Type == "term" && s.StartDate.Equal(day("2026-08-15")) && s.EndDate.Equal(day("2026-12-20")) &&
				s.SchoolYear == "2027" && *s.ParentSourcedID == "year-2027" && s.ChildrenSourcedIds != nil && len(s.ChildrenSourcedIds) == 0
		}},
		{"courses", records.TypeRosterCourse, records.Actor{SISID: "course-1", Role: RoleSystem}, "", "", func(t *testing.T, ev *records.RawEvent) bool {
			c := ev.RosterCourse
			return c.Title == "Algebra I" && *c.SchoolYearSourcedID == "year-2027" && *c.CourseCode == "MA101" &&
				slices.Equal(c.Grades, []string{"09", "10"}) && slices.Equal(c.Subjects, []string{"Math"}) &&
				slices.Equal(c.SubjectCodes, []string{"02052"}) && c.OrgSourcedID == "org-1"
		}},
		{"classes", records.TypeRosterClass, records.Actor{SISID: "class-1", Role: RoleSystem}, "org-1", "", func(t *testing.T, ev *records.RawEvent) bool {
			c := ev.RosterClass
			return c.Title == "Algebra I - P1" && *c.ClassCode == "MA101-1" && c.ClassType == "scheduled" && *c.Location == "Room 12" &&
				c.CourseSourcedID == "course-1" && c.SchoolSourcedID == "org-1" && slices.Equal(c.TermSourcedIds, []string{"term-1"}) &&
				slices.Equal(c.Periods, []string{"1"}) && c.SubjectCodes != nil
		}},
		{"users", records.TypeRosterUser, records.Actor{SISID: "stu-1", Role: "student"}, "", "", func(t *testing.T, ev *records.RawEvent) bool {
			u := ev.RosterUser
			return u.EnabledUser && *u.Username == "ada" && u.GivenName == "Ada" && u.FamilyName == "Lovelace" && *u.MiddleName == "B" &&
				*u.PreferredFirstName == "Addie" && *u.PreferredLastName == "L" && *u.Pronouns == "she/her" &&
				*u.UserMasterIdentifier == "M1" && *u.Identifier == "12345" && *u.Email == "ada@example.org" && u.SMS == nil &&
				*u.Phone == "555-0100" && slices.Equal(u.AgentSourcedIds, []string{"parent-1"}) && slices.Equal(u.Grades, []string{"09"}) &&
				slices.Equal(u.UserIds, []records.RosterUserID{{Type: "LDAP", Identifier: "ada@example.org"}}) &&
				len(u.Roles) == 2 && u.Roles[0] == records.RosterRole{RoleType: "secondary", Role: "aide", OrgSourcedID: "org-2"} &&
				u.Roles[1].Role == "student" && u.Roles[1].BeginDate.Equal(day("2026-08-15")) && u.Roles[1].EndDate.Equal(day("2027-06-15")) &&
				slices.Equal(u.OrgSourcedIds, []string{"org-2", "org-1"}) && u.BirthDate == nil
		}},
		{"enrollments", records.TypeRosterEnrollment, records.Actor{SISID: "stu-1", Role: "student"}, "org-1", "class-1", func(t *testing.T, ev *records.RawEvent) bool {
			e := ev.RosterEnrollment
			return e.ClassSourcedID == "class-1" && e.SchoolSourcedID == "org-1" && e.UserSourcedID == "stu-1" && e.Role == "student" &&
				e.Primary != nil && !*e.Primary && e.BeginDate.Equal(day("2026-08-15")) && e.EndDate.Equal(day("2027-06-15"))
		}},
		{"demographics", records.TypeRosterDemographics, records.Actor{SISID: "stu-1", Role: RoleUnknown}, "", "", func(t *testing.T, ev *records.RawEvent) bool {
			d := ev.RosterDemographics
			return d.BirthDate.Equal(day("2012-03-04")) && *d.Sex == "female" && !*d.AmericanIndianOrAlaskaNative && *d.Asian &&
				d.BlackOrAfricanAmerican == nil && !*d.White && !*d.DemographicRaceTwoOrMoreRaces && *d.HispanicOrLatinoEthnicity &&
				*d.CountryOfBirthCode == "US" && *d.StateOfBirthAbbreviation == "CA" && *d.CityOfBirth == "Fresno" &&
				d.PublicSchoolResidenceStatus == nil
		}},
		{"lineItems", records.TypeRosterLineItem, records.Actor{SISID: "li-1", Role: RoleSystem}, "org-1", "class-1", func(t *testing.T, ev *records.RawEvent) bool {
			l := ev.RosterLineItem
			return l.Title == "Quiz 1" && *l.Description == "Chapter 1" && l.AssignDate.Equal(time.Date(2026, 9, 1, 8, 0, 0, 0, time.UTC)) &&
				l.DueDate.Equal(day("2026-09-08")) && l.ClassSourcedID == "class-1" && *l.SchoolSourcedID == "org-1" &&
				*l.CategorySourcedID == "cat-1" && *l.GradingPeriodSourcedID == "term-1" && l.AcademicSessionSourcedID == nil &&
				*l.ScoreScaleSourcedID == "scale-1" && *l.ResultValueMin == 0 && *l.ResultValueMax == 100
		}},
		{"results", records.TypeRosterResult, records.Actor{SISID: "stu-1", Role: "student"}, "", "class-1", func(t *testing.T, ev *records.RawEvent) bool {
			r := ev.RosterResult
			return r.LineItemSourcedID == "li-1" && r.StudentSourcedID == "stu-1" && *r.ClassSourcedID == "class-1" &&
				r.ScoreStatus == "fully graded" && *r.Score == 92.5 && *r.TextScore == "A-" && r.ScoreDate.Equal(day("2026-09-09")) &&
				*r.Comment == "Well done" && !*r.InProgress && *r.Late && r.Incomplete == nil && r.Missing == nil
		}},
	}
	if len(tests) != len(Collections()) {
		t.Fatalf("%d cases for %d collections", len(tests), len(Collections()))
	}
	for _, tt := range tests {
		t.Run(tt.collection, func(t *testing.T) {
			ev := decodeOne(t, tt.collection, validJSON[tt.collection])
			if err := ev.CheckPayload(); err != nil || ev.Type != tt.typ {
				t.Fatalf("type %q: %v", ev.Type, err)
			}
			if ev.TenantID != "d1" || ev.SourceID != "sis" || ev.SchemaVersion != 1 || !ev.ReceivedAt.Equal(meta.ReceivedAt) ||
				!ev.OccurredAt.Equal(wantModified) || ev.Actor != tt.actor || deref(ev.SchoolID) != tt.school || deref(ev.ClassID) != tt.class {
				t.Fatalf("envelope = %+v (actor %+v, school %v, class %v)", ev, ev.Actor, deref(ev.SchoolID), deref(ev.ClassID))
			}
			if sourcedIDOf(ev) == "" || !uuidV5.MatchString(ev.EventID) {
				t.Fatalf("sourcedId %q, event id %q", sourcedIDOf(ev), ev.EventID)
			}
			if !tt.check(t, ev) {
				b, _ := json.MarshalIndent(ev.Payloads(), "", " ")
				t.Fatalf("payload:\n%s", b)
			}
		})
	}
}

var uuidV5 = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

// edit returns the record with keys set (nil deletes them).
func edit(t *testing.T, rec string, set map[string]any) string {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(rec), &m); err != nil {
		t.Fatal(err)
	}
	for k, v := range set {
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

type obj = map[string]any

func ref(id string) obj { return obj{"sourcedId": id} }

func TestEachRuleRejectsWithItsFieldPath(t *testing.T) {
	tests := []struct {
		name       string
		collection string
		set        map[string]any
		want       []string // field paths, in any order
	}{
		{"sourcedId missing", "orgs", obj{"sourcedId": nil}, []string{"orgs[0].sourcedId"}},
		{"sourcedId too long", "orgs", obj{"sourcedId": strings.Repeat("x", 257)}, []string{"orgs[0].sourcedId"}},
		{"sourcedId not a string", "orgs", obj{"sourcedId": 12}, []string{"orgs[0].sourcedId"}},
		{"status unknown", "orgs", obj{"status": "inactive"}, []string{"orgs[0].status"}},
		{"status missing", "orgs", obj{"status": nil}, []string{"orgs[0].status"}},
		{"dateLastModified missing", "orgs", obj{"dateLastModified": nil}, []string{"orgs[0].dateLastModified"}},
		{"dateLastModified a date", "orgs", obj{"dateLastModified": "2026-09-01"}, []string{"orgs[0].dateLastModified"}},
		{"dateLastModified in the future", "orgs", obj{"dateLastModified": "2026-11-22T12:00:00Z"}, []string{"orgs[0].dateLastModified"}},
		{"metadata not an object", "orgs", obj{"metadata": []any{1}}, []string{"orgs[0].metadata"}},
		{"org type", "orgs", obj{"type": "campus"}, []string{"orgs[0].type"}},
		{"org name NUL", "orgs", obj{"name": "Lincoln\x00"}, []string{"orgs[0].name"}},
		{"org name escape character", "orgs", obj{"name": "Lincoln\x1b[31m"}, []string{"orgs[0].name"}},
		{"org name C1 control", "orgs", obj{"name": "Lincoln\u0085"}, []string{"orgs[0].name"}},
		{"sourcedId line break", "orgs", obj{"sourcedId": "org\n1"}, []string{"orgs[0].sourcedId"}},
		{"metadata value control", "orgs", obj{"metadata": obj{"note": "a\x07"}}, []string{"orgs[0].metadata"}},
		{"org name missing", "orgs", obj{"name": ""}, []string{"orgs[0].name"}},
		{"org parent a string", "orgs", obj{"parent": "district-1"}, []string{"orgs[0].parent"}},
		{"session type", "academicSessions", obj{"type": "quarter"}, []string{"academicSessions[0].type"}},
		{"session startDate", "academicSessions", obj{"startDate": "08/15/2026"}, []string{"academicSessions[0].startDate"}},
		{"session ends before it starts", "academicSessions", obj{"endDate": "2026-08-01"}, []string{"academicSessions[0].endDate"}},
		{"session schoolYear", "academicSessions", obj{"schoolYear": "26"}, []string{"academicSessions[0].schoolYear"}},
		{"course org missing", "courses", obj{"org": nil}, []string{"courses[0].org"}},
		{"course grades not strings", "courses", obj{"grades": []any{9}}, []string{"courses[0].grades"}},
		{"class type", "classes", obj{"classType": "lab"}, []string{"classes[0].classType"}},
		{"class terms empty", "classes", obj{"terms": []any{}}, []string{"classes[0].terms"}},
		{"class school and course missing", "classes", obj{"school": nil, "course": obj{"href": "x"}}, []string{"classes[0].school", "classes[0].course"}},
		{"user enabledUser", "users", obj{"enabledUser": "yes"}, []string{"users[0].enabledUser"}},
		{"user names missing", "users", obj{"givenName": nil, "familyName": ""}, []string{"users[0].givenName", "users[0].familyName"}},
		{"user roles missing", "users", obj{"roles": nil}, []string{"users[0].roles"}},
		{"user role and roleType", "users", obj{"roles": []any{obj{"roleType": "main", "role": "wizard", "org": ref("org-1"), "beginDate": "soon"}}},
			[]string{"users[0].roles[0].roleType", "users[0].roles[0].role", "users[0].roles[0].beginDate"}},
		{"user role org missing", "users", obj{"roles": []any{obj{"roleType": "primary", "role": "student"}}}, []string{"users[0].roles[0].org"}},
		{"user userIds", "users", obj{"userIds": []any{obj{"type": "LDAP"}}}, []string{"users[0].userIds"}},
		{"enrollment role", "enrollments", obj{"role": "student-teacher"}, []string{"enrollments[0].role"}},
		{"enrollment user missing", "enrollments", obj{"user": nil}, []string{"enrollments[0].user"}},
		{"enrollment dates", "enrollments", obj{"beginDate": "2026-8-15", "primary": "sometimes"}, []string{"enrollments[0].beginDate", "enrollments[0].primary"}},
		{"demographics sex", "demographics", obj{"sex": "M"}, []string{"demographics[0].sex"}},
		{"demographics birthDate", "demographics", obj{"birthDate": "2012-13-01"}, []string{"demographics[0].birthDate"}},
		{"demographics birthDate before 1900", "demographics", obj{"birthDate": "1899-12-31"}, []string{"demographics[0].birthDate"}},
		{"dateLastModified before 1970", "orgs", obj{"dateLastModified": "1969-12-31T23:59:59Z"}, []string{"orgs[0].dateLastModified"}},
		{"session startDate before 1970", "academicSessions", obj{"startDate": "1969-08-15"}, []string{"academicSessions[0].startDate"}},
		{"line item dueDate after 2105", "lineItems", obj{"dueDate": "2106-01-01"}, []string{"lineItems[0].dueDate"}},
		{"demographics boolean", "demographics", obj{"white": "maybe"}, []string{"demographics[0].white"}},
		{"line item dates", "lineItems", obj{"assignDate": "Monday", "dueDate": nil}, []string{"lineItems[0].assignDate", "lineItems[0].dueDate"}},
		{"line item value range", "lineItems", obj{"resultValueMin": 10, "resultValueMax": 5}, []string{"lineItems[0].resultValueMax"}},
		{"line item value not a number", "lineItems", obj{"resultValueMin": "ten"}, []string{"lineItems[0].resultValueMin"}},
		{"line item class missing", "lineItems", obj{"class": nil}, []string{"lineItems[0].class"}},
		{"result score status", "results", obj{"scoreStatus": "graded"}, []string{"results[0].scoreStatus"}},
		{"result scoreDate a timestamp", "results", obj{"scoreDate": "2026-09-09T10:00:00Z"}, []string{"results[0].scoreDate"}},
		{"result student and line item missing", "results", obj{"student": nil, "lineItem": nil}, []string{"results[0].student", "results[0].lineItem"}},
		{"result score", "results", obj{"score": true}, []string{"results[0].score"}},
		{"deleted enrollment still names its user", "enrollments", obj{"status": "tobedeleted", "user": nil, "class": nil}, []string{"enrollments[0].user"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := edit(t, validJSON[tt.collection], tt.set)
			acc, rej, err := DecodeJSON(tt.collection, body(tt.collection, rec), meta, Limits{MaxRecords: 10}, nil)
			if err != nil || len(acc) != 0 || len(rej) != 1 {
				t.Fatalf("err=%v accepted=%d rejected=%+v", err, len(acc), rej)
			}
			var got []string
			for _, fe := range rej[0].Errors {
				got = append(got, fe.Field)
			}
			slices.Sort(got)
			want := slices.Sorted(slices.Values(tt.want))
			if !slices.Equal(got, want) {
				t.Fatalf("fields = %v (%+v), want %v", got, rej[0].Errors, want)
			}
		})
	}
}

func TestLenientForms(t *testing.T) {
	tests := []struct {
		name       string
		collection string
		set        map[string]any
		check      func(ev *records.RawEvent) bool
	}{
		{"ext: org type", "orgs", obj{"type": "ext:campus"}, func(ev *records.RawEvent) bool { return ev.RosterOrg.Type == "ext:campus" }},
		{"deleted org needs no name or type", "orgs", obj{"status": "tobedeleted", "name": nil, "type": nil},
			func(ev *records.RawEvent) bool {
				return ev.RosterOrg.Status == "tobedeleted" && ev.RosterOrg.Name == ""
			}},
		{"OneRoster 1.1 user: role and orgs, enabledUser as text", "users",
			obj{"roles": nil, "role": "teacher", "orgs": []any{ref("org-1"), ref("org-2")}, "enabledUser": "False"},
			func(ev *records.RawEvent) bool {
				u := ev.RosterUser
				return ev.Actor.Role == "teacher" && !u.EnabledUser && len(u.Roles) == 2 && u.Roles[1].OrgSourcedID == "org-2" &&
					u.Roles[1].RoleType == "primary" && slices.Equal(u.OrgSourcedIds, []string{"org-1", "org-2"})
			}},
		{"no primary role: the first role", "users", obj{"roles": []any{obj{"roleType": "secondary", "role": "guardian", "org": ref("org-1")}}},
			func(ev *records.RawEvent) bool { return ev.Actor.Role == "guardian" }},
		{"numeric text score", "results", obj{"score": "88"}, func(ev *records.RawEvent) bool { return *ev.RosterResult.Score == 88 }},
		{"birth date before 1970", "demographics", obj{"birthDate": "1965-05-06"}, func(ev *records.RawEvent) bool { return ev.RosterDemographics.BirthDate.Equal(day("1965-05-06")) }},
		{"names and descriptions may hold line breaks", "lineItems", obj{"description": "Chapter 1:\r\n\tsums"},
			func(ev *records.RawEvent) bool { return *ev.RosterLineItem.Description == "Chapter 1:\r\n\tsums" }},
		{"date line item dates", "lineItems", obj{"assignDate": "2026-09-01"}, func(ev *records.RawEvent) bool { return ev.RosterLineItem.AssignDate.Equal(day("2026-09-01")) }},
		{"unknown keys ignored", "courses", obj{"resources": []any{ref("r1")}, "href": "https://sis/courses/course-1"},
			func(ev *records.RawEvent) bool { return ev.RosterCourse.Title == "Algebra I" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if ev := decodeOne(t, tt.collection, edit(t, validJSON[tt.collection], tt.set)); !tt.check(ev) {
				b, _ := json.Marshal(ev)
				t.Fatalf("event: %s", b)
			}
		})
	}
}

func TestGoodRecordsBesideBadOnes(t *testing.T) {
	bad := edit(t, validJSON["users"], obj{"sourcedId": "stu-2", "dateLastModified": "yesterday"})
	dup := edit(t, validJSON["users"], obj{"givenName": "Eve"})
	other := edit(t, validJSON["users"], obj{"sourcedId": "stu-3"})
	acc, rej, err := DecodeJSON("users", body("users", validJSON["users"], bad, `"not an object"`, dup, other), meta, Limits{MaxRecords: 10}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(acc) != 2 || acc[0].Index != 0 || acc[1].Index != 4 || acc[1].Event.RosterUser.SourcedID != "stu-3" {
		t.Fatalf("accepted = %+v", acc)
	}
	want := []ingest.Rejected{
		{Index: 1, Errors: []ingest.FieldError{{Field: "users[1].dateLastModified", Message: "must be an RFC 3339 timestamp such as 2026-09-01T08:30:00Z"}}},
		{Index: 2, Errors: []ingest.FieldError{{Field: "users[2]", Message: "must be a JSON object"}}},
		{Index: 3, Errors: []ingest.FieldError{{Field: "users[3].sourcedId", Message: "duplicate of users[0]"}}},
	}
	if len(rej) != len(want) {
		t.Fatalf("rejected = %+v", rej)
	}
	for i := range want {
		if rej[i].Index != want[i].Index || !slices.Equal(rej[i].Errors, want[i].Errors) {
			t.Fatalf("rejected[%d] = %+v, want %+v", i, rej[i], want[i])
		}
	}
	if strings.Contains(string(rej[0].Raw), "hunter2") || !strings.Contains(string(rej[0].Raw), `"stu-2"`) {
		t.Fatalf("raw copy of a rejected user = %s", rej[0].Raw)
	}
	for _, a := range acc {
		if b, _ := json.Marshal(a.Event); strings.Contains(string(b), "hunter2") {
			t.Fatalf("password carried: %s", b)
		}
	}
}

func TestWholeRequestErrors(t *testing.T) {
	tests := []struct {
		name       string
		collection string
		body       string
		check      func(err error) bool
	}{
		{"unknown collection", "students", `{"students":[]}`, func(err error) bool { return errors.Is(err, ErrUnknownCollection) }},
		{"not JSON", "users", `{"users":[{"sourcedId":}]}`, func(err error) bool {
			var se *ingest.SyntaxError
			return errors.As(err, &se) && se.Offset == 24
		}},
		{"empty", "users", ``, func(err error) bool {
			var se *ingest.SyntaxError
			return errors.As(err, &se) && se.Msg == "empty body"
		}},
		{"an array", "users", `[{}]`, func(err error) bool {
			var se *ingest.SyntaxError
			return errors.As(err, &se) && se.Msg == "body must be a JSON object"
		}},
		{"another collection's key", "users", `{"orgs":[]}`, func(err error) bool {
			var se *ingest.SyntaxError
			return errors.As(err, &se) && strings.Contains(se.Msg, `"users" array`)
		}},
		{"not an array", "users", `{"users":{}}`, func(err error) bool {
			var se *ingest.SyntaxError
			return errors.As(err, &se)
		}},
		{"trailing data", "users", `{"users":[]} {}`, func(err error) bool {
			var se *ingest.SyntaxError
			return errors.As(err, &se) && strings.Contains(se.Msg, "after the JSON document")
		}},
		{"too many records", "users", `{"users":[{},{},{}]}`, func(err error) bool { return errors.Is(err, ingest.ErrTooManyEvents) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			acc, rej, err := DecodeJSON(tt.collection, []byte(tt.body), meta, Limits{MaxRecords: 2}, nil)
			if acc != nil || rej != nil || !tt.check(err) {
				t.Fatalf("err = %v (%T), accepted %v, rejected %v", err, err, acc, rej)
			}
		})
	}
}

func TestEventIDs(t *testing.T) {
	id := func(m ingest.Meta, rec string) string {
		t.Helper()
		acc, rej, err := DecodeJSON("users", body("users", rec), m, Limits{MaxRecords: 1}, nil)
		if err != nil || len(acc) != 1 {
			t.Fatalf("err=%v rejected=%+v", err, rej)
		}
		return acc[0].Event.EventID
	}
	user := validJSON["users"]
	first := id(meta, user)
	later := meta
	later.ReceivedAt = later.ReceivedAt.Add(time.Hour)
	otherTenant := meta
	otherTenant.TenantID = "d2"
	tests := []struct {
		name string
		id   string
		same bool
	}{
		{"same record again", id(meta, user), true},
		{"same record received later", id(later, user), true},
		{"same instant written differently", id(meta, edit(t, user, obj{"dateLastModified": "2026-09-01T10:00:00.123+02:00"})), true},
		{"later modification", id(meta, edit(t, user, obj{"dateLastModified": "2026-09-02T08:00:00Z"})), false},
		{"changed content, same dateLastModified", id(meta, edit(t, user, obj{"familyName": "Byron"})), false},
		{"another tenant", id(otherTenant, user), false},
	}
	if !uuidV5.MatchString(first) {
		t.Fatalf("id %q is not a version 5 UUID", first)
	}
	for _, tt := range tests {
		if (tt.id == first) != tt.same {
			t.Errorf("%s: id %s, first %s, want same=%v", tt.name, tt.id, first, tt.same)
		}
	}
}
