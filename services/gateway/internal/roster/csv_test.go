package roster

import (
	"archive/zip"
	"bytes"
	"encoding/json"
	"errors"
	"hash/crc32"
	"io"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/edtech-analytics/platform/libs/records"
	"github.com/edtech-analytics/platform/services/gateway/internal/ingest"
)

// file is one file of a test package.
type file struct{ name, content string }

func zipOf(t testing.TB, files ...file) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := zip.NewWriter(&buf)
	for _, f := range files {
		fw, err := w.Create(f.name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(fw, f.content); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// fullPackage has every carried file: bulk files with status and dateLastModified left blank, a delta
// demographics file, OneRoster 1.2 users with their roles in roles.csv.
var fullPackage = []file{
	{"manifest.csv", "propertyName,value\nmanifest.version,1.0\noneroster.version,1.2\nfile.academicSessions,bulk\n" +
		"file.categories,absent\nfile.classes,bulk\nfile.courses,bulk\nfile.demographics,delta\nfile.enrollments,bulk\n" +
		"file.lineItems,bulk\nfile.orgs,bulk\nfile.results,bulk\nfile.users,bulk\nfile.roles,bulk\nsource.systemName,Example SIS\n"},
	{"orgs.csv", "\ufeffsourcedId,status,dateLastModified,name,type,identifier,parentSourcedId,metadata.ncesId\n" +
		"district-1,,,Springfield USD,district,,,\n" +
		"org-1,,,Lincoln High,school,LHS,district-1,0601\n"},
	{"academicSessions.csv", "sourcedId,status,dateLastModified,title,type,startDate,endDate,parentSourcedId,schoolYear\n" +
		"term-1,active,2026-09-01T08:00:00Z,Fall 2026,term,2026-08-15,2026-12-20,,2027\n"},
	{"courses.csv", "sourcedId,status,dateLastModified,schoolYearSourcedId,title,courseCode,grades,orgSourcedId,subjects,subjectCodes\n" +
		"course-1,,,,Algebra I,MA101,\"09,10\",org-1,Math,\n"},
	{"classes.csv", "sourcedId,status,dateLastModified,title,grades,courseSourcedId,classCode,classType,location,schoolSourcedId,termSourcedIds,subjects,subjectCodes,periods\n" +
		"class-1,,,Algebra I - P1,09,course-1,MA101-1,scheduled,Room 12,org-1,\"term-1,term-2\",Math,,\"1, 2\"\n"},
	{"users.csv", "sourcedId,status,dateLastModified,enabledUser,username,userIds,givenName,familyName,middleName,identifier,email,sms,phone," +
		"agentSourcedIds,grades,password,userMasterIdentifier,resourceSourcedIds,preferredGivenName,preferredMiddleName,preferredFamilyName,primaryOrgSourcedId,pronouns\n" +
		"stu-1,,,TRUE,ada,\"{LDAP:ada@example.org},{SIS: 12345}\",Ada,Lovelace,,12345,ada@example.org,,,parent-1,09,hunter2,M1,,Addie,,,org-1,she/her\n" +
		"tea-1,,,false,tom,,Tom,Turing,,,,,,,,,,,,,,,\n"},
	{"roles.csv", "sourcedId,status,dateLastModified,userSourcedId,roleType,role,beginDate,endDate,orgSourcedId,userProfileSourcedId\n" +
		"r1,,,stu-1,primary,student,2026-08-15,,org-1,\n" +
		"r2,,,tea-1,primary,teacher,,,org-1,\n" +
		"r3,tobedeleted,2026-09-02T00:00:00Z,tea-1,secondary,aide,,,org-1,\n"},
	{"enrollments.csv", "sourcedId,status,dateLastModified,classSourcedId,schoolSourcedId,userSourcedId,role,primary,beginDate,endDate\n" +
		"enr-1,,,class-1,org-1,stu-1,student,false,,\n" +
		"enr-2,,,class-1,org-1,tea-1,teacher,True,,\n"},
	{"demographics.csv", "sourcedId,status,dateLastModified,birthDate,sex,americanIndianOrAlaskaNative,asian,blackOrAfricanAmerican," +
		"nativeHawaiianOrOtherPacificIslander,white,demographicRaceTwoOrMoreRaces,hispanicOrLatinoEthnicity,countryOfBirthCode," +
		"stateOfBirthAbbreviation,cityOfBirth,publicSchoolResidenceStatus\n" +
		"stu-1,active,2026-09-03T10:00:00Z,2012-03-04,female,false,False,false,false,true,false,false,US,CA,Fresno,\n"},
	{"lineItems.csv", "sourcedId,status,dateLastModified,title,description,assignDate,dueDate,classSourcedId,categorySourcedId," +
		"academicSessionSourcedId,resultValueMin,resultValueMax,schoolSourcedId\n" +
		"li-1,,,Quiz 1,,2026-09-01,2026-09-08T23:59:00Z,class-1,cat-1,term-1,0,100,org-1\n"},
	{"results.csv", "sourcedId,status,dateLastModified,lineItemSourcedId,studentSourcedId,scoreStatus,score,scoreDate,comment,textScore," +
		"classSourcedId,inProgress,incomplete,late,missing\n" +
		"res-1,,,li-1,stu-1,fully graded,92.5,2026-09-09,\"Well done, Ada\",A-,class-1,false,,TRUE,\n"},
}

func decodePackage(t *testing.T, files ...file) *Package {
	t.Helper()
	pkg, err := DecodeCSVZip(zipOf(t, files...), meta, Limits{MaxRecords: 100}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return pkg
}

func TestPackageWithEveryFile(t *testing.T) {
	pkg := decodePackage(t, fullPackage...)
	if len(pkg.Rejected) != 0 || len(pkg.Ignored) != 0 {
		t.Fatalf("rejected %+v, ignored %v", pkg.Rejected, pkg.Ignored)
	}
	wantTypes := []string{records.TypeRosterOrg, records.TypeRosterOrg, records.TypeRosterAcademicSession, records.TypeRosterCourse,
		records.TypeRosterClass, records.TypeRosterUser, records.TypeRosterUser, records.TypeRosterEnrollment, records.TypeRosterEnrollment,
		records.TypeRosterDemographics, records.TypeRosterLineItem, records.TypeRosterResult}
	if len(pkg.Accepted) != len(wantTypes) {
		t.Fatalf("accepted %d records, want %d", len(pkg.Accepted), len(wantTypes))
	}
	ev := make([]*records.RawEvent, len(pkg.Accepted))
	for i, a := range pkg.Accepted {
		if a.Index != i || a.Event.Type != wantTypes[i] || a.Event.CheckPayload() != nil || !uuidV5.MatchString(a.Event.EventID) {
			t.Fatalf("accepted[%d]: index %d, type %s", i, a.Index, a.Event.Type)
		}
		if b, _ := json.Marshal(a.Event); strings.Contains(string(b), "hunter2") {
			t.Fatalf("password carried: %s", b)
		}
		ev[i] = a.Event
	}
	district, school, session, course, class, stu, tea := ev[0].RosterOrg, ev[1].RosterOrg, ev[2].RosterAcademicSession, ev[3].RosterCourse, ev[4].RosterClass, ev[5].RosterUser, ev[6].RosterUser

	// Bulk rows without status and dateLastModified: active, as new as their arrival.
	if district.Status != statusActive || !district.DateLastModified.Equal(meta.ReceivedAt) || !ev[0].OccurredAt.Equal(meta.ReceivedAt) ||
		len(district.Metadata) != 0 || school.Metadata["ncesId"] != "0601" || *school.ParentSourcedID == "" || school.Identifier == nil {
		t.Errorf("orgs: %+v %+v", district, school)
	}
	if !session.DateLastModified.Equal(time.Date(2026, 9, 1, 8, 0, 0, 0, time.UTC)) || !ev[2].OccurredAt.Equal(session.DateLastModified) ||
		!session.EndDate.Equal(day("2026-12-20")) || session.SchoolYear != "2027" {
		t.Errorf("session: %+v", session)
	}
	if !slices.Equal(course.Grades, []string{"09", "10"}) || course.SubjectCodes == nil || len(course.SubjectCodes) != 0 || course.SchoolYearSourcedID != nil {
		t.Errorf("course: %+v", course)
	}
	if !slices.Equal(class.TermSourcedIds, []string{"term-1", "term-2"}) || !slices.Equal(class.Periods, []string{"1", "2"}) || *ev[4].SchoolID != "org-1" {
		t.Errorf("class: %+v", class)
	}
	if !stu.EnabledUser || ev[5].Actor != (records.Actor{SISID: "stu-1", Role: "student"}) || *stu.PreferredFirstName != "Addie" ||
		!slices.Equal(stu.UserIds, []records.RosterUserID{{Type: "LDAP", Identifier: "ada@example.org"}, {Type: "SIS", Identifier: "12345"}}) ||
		len(stu.Roles) != 1 || !stu.Roles[0].BeginDate.Equal(day("2026-08-15")) || !slices.Equal(stu.OrgSourcedIds, []string{"org-1"}) ||
		!slices.Equal(stu.AgentSourcedIds, []string{"parent-1"}) || stu.MiddleName != nil {
		t.Errorf("student: %+v", stu)
	}
	// The deleted aide role is left out.
	if tea.EnabledUser || ev[6].Actor.Role != "teacher" || len(tea.Roles) != 1 || tea.Roles[0].Role != "teacher" {
		t.Errorf("teacher: %+v", tea)
	}
	if e := ev[8]; *e.RosterEnrollment.Primary != true || *e.SchoolID != "org-1" || *e.ClassID != "class-1" || e.Actor != (records.Actor{SISID: "tea-1", Role: "teacher"}) {
		t.Errorf("enrollment: %+v", e.RosterEnrollment)
	}
	// Demographics take their actor's role from the package's users.
	if d := ev[9]; d.Actor != (records.Actor{SISID: "stu-1", Role: "student"}) || *d.RosterDemographics.Asian || !*d.RosterDemographics.White ||
		d.RosterDemographics.PublicSchoolResidenceStatus != nil || !d.OccurredAt.Equal(time.Date(2026, 9, 3, 10, 0, 0, 0, time.UTC)) {
		t.Errorf("demographics: %+v", d.RosterDemographics)
	}
	if l := ev[10].RosterLineItem; !l.AssignDate.Equal(day("2026-09-01")) || !l.DueDate.Equal(time.Date(2026, 9, 8, 23, 59, 0, 0, time.UTC)) ||
		*l.AcademicSessionSourcedID != "term-1" || *l.ResultValueMax != 100 || *ev[10].SchoolID != "org-1" {
		t.Errorf("line item: %+v", l)
	}
	if r := ev[11]; *r.RosterResult.Comment != "Well done, Ada" || !*r.RosterResult.Late || r.RosterResult.Incomplete != nil || *r.RosterResult.Score != 92.5 ||
		r.Actor != (records.Actor{SISID: "stu-1", Role: "student"}) || *r.ClassID != "class-1" {
		t.Errorf("result: %+v", r.RosterResult)
	}
}

// replace returns the package with one file's content changed.
func replace(files []file, name, content string) []file {
	out := slices.Clone(files)
	for i := range out {
		if out[i].name == name {
			out[i].content = content
			return out
		}
	}
	return append(out, file{name, content})
}

const usersHeader = "sourcedId,status,dateLastModified,enabledUser,orgSourcedIds,role,username,givenName,familyName,password\n"

// TestLineEndingsAndByteOrderMarks: a package written on Windows (CRLF, every file with a byte order
// mark) decodes to the same records, event ids included, as the same package with LF.
func TestLineEndingsAndByteOrderMarks(t *testing.T) {
	windows := make([]file, len(fullPackage))
	for i, f := range fullPackage {
		windows[i] = file{f.name, "\ufeff" + strings.TrimPrefix(strings.ReplaceAll(f.content, "\n", "\r\n"), "\ufeff")}
	}
	lf, crlf := decodePackage(t, fullPackage...), decodePackage(t, windows...)
	if len(crlf.Rejected) != 0 || len(crlf.Accepted) != len(lf.Accepted) {
		t.Fatalf("CRLF: %d accepted, rejected %+v; LF: %d accepted", len(crlf.Accepted), crlf.Rejected, len(lf.Accepted))
	}
	for i := range lf.Accepted {
		a, b := lf.Accepted[i], crlf.Accepted[i]
		if a.Event.EventID != b.Event.EventID || !bytes.Equal(a.Hash, b.Hash) {
			t.Fatalf("record %d (%s) differs with CRLF: %s/%x against %s/%x", i, a.Event.Type, b.Event.EventID, b.Hash, a.Event.EventID, a.Hash)
		}
	}
}

func TestBadRowBesideGoodRows(t *testing.T) {
	users := usersHeader +
		"u1,active,2026-09-01T08:00:00Z,true,org-1,student,a,Ada,Lovelace,secret1\n" +
		"u2,active,yesterday,maybe,org-1,wizard,b,Bob,,secret2\n" +
		"u3,active,2026-09-01T08:00:00Z,true,org-1,teacher,c,Cy\n" +
		"u1,active,2026-09-01T08:00:00Z,true,org-1,student,a,Ada,Lovelace,\n" +
		"u4,active,2026-09-01T08:00:00Z,true,\"org-1,org-2\",teacher,d,Di,Ng,\n"
	pkg := decodePackage(t, file{"users.csv", users})
	if len(pkg.Accepted) != 2 || pkg.Accepted[0].Index != 0 || pkg.Accepted[1].Index != 4 {
		t.Fatalf("accepted = %+v", pkg.Accepted)
	}
	if u := pkg.Accepted[1].Event.RosterUser; len(u.Roles) != 2 || u.Roles[1].OrgSourcedID != "org-2" || u.Roles[1].Role != "teacher" {
		t.Fatalf("OneRoster 1.1 roles = %+v", u.Roles)
	}
	want := map[int][]string{
		1: {"users.csv:3:dateLastModified", "users.csv:3:enabledUser", "users.csv:3:familyName", "users.csv:3:role"},
		2: {"users.csv:4"},
		3: {"users.csv:5:sourcedId"},
	}
	if len(pkg.Rejected) != len(want) {
		t.Fatalf("rejected = %+v", pkg.Rejected)
	}
	for _, rj := range pkg.Rejected {
		var got []string
		for _, fe := range rj.Errors {
			got = append(got, fe.Field)
		}
		if !slices.Equal(got, want[rj.Index]) {
			t.Errorf("rejected %d: %+v, want fields %v", rj.Index, rj.Errors, want[rj.Index])
		}
		if strings.Contains(string(rj.Raw), "secret") || !strings.HasPrefix(string(rj.Raw), "sourcedId,") {
			t.Errorf("raw copy = %q", rj.Raw)
		}
	}
	if msg := pkg.Rejected[2].Errors[0].Message; msg != "duplicate of users.csv:2" {
		t.Errorf("duplicate message = %q", msg)
	}
}

func TestRolesJoinOntoUsers(t *testing.T) {
	users := "sourcedId,status,dateLastModified,enabledUser,givenName,familyName\n" +
		"u1,active,2026-09-01T08:00:00Z,true,Ada,Lovelace\n" +
		"u2,active,2026-09-01T08:00:00Z,true,Bob,Byron\n" +
		"u3,tobedeleted,2026-09-01T08:00:00Z,,,\n"
	roles := "sourcedId,status,dateLastModified,userSourcedId,roleType,role,beginDate,endDate,orgSourcedId\n" +
		"r1,active,2026-09-05T08:00:00Z,u1,primary,teacher,,,org-1\n" +
		"r2,active,2026-09-01T08:00:00Z,u2,primary,wizard,,,org-1\n" +
		"r3,active,2026-09-01T08:00:00Z,u9,primary,student,,,org-1\n" +
		"r4,active,2026-09-01T08:00:00Z,,primary,student,,,org-1\n" +
		"r5,tobedeleted,2026-09-01T08:00:00Z,u1,,,,,\n"
	pkg := decodePackage(t, file{"users.csv", users}, file{"roles.csv", roles})
	if len(pkg.Accepted) != 2 {
		t.Fatalf("accepted = %+v, rejected = %+v", pkg.Accepted, pkg.Rejected)
	}
	// A role newer than its user makes the user's event newer.
	if u := pkg.Accepted[0].Event; u.RosterUser.SourcedID != "u1" || u.Actor.Role != "teacher" || !u.OccurredAt.Equal(time.Date(2026, 9, 5, 8, 0, 0, 0, time.UTC)) {
		t.Fatalf("u1 = %+v", u)
	}
	// A deleted user needs no roles; its actor role is then unknown.
	if u := pkg.Accepted[1].Event; u.RosterUser.SourcedID != "u3" || u.Actor.Role != RoleUnknown || u.RosterUser.Status != statusDeleted {
		t.Fatalf("u3 = %+v", u)
	}
	want := []ingest.Rejected{
		{Index: 1, Errors: []ingest.FieldError{{Field: "roles.csv:3:role"}}},          // u2, rejected for its role
		{Index: 3, Errors: []ingest.FieldError{{Field: "roles.csv:4:userSourcedId"}}}, // a role of nobody in users.csv
		{Index: 4, Errors: []ingest.FieldError{{Field: "roles.csv:5:userSourcedId"}}},
	}
	if len(pkg.Rejected) != len(want) {
		t.Fatalf("rejected = %+v", pkg.Rejected)
	}
	for i, w := range want {
		if got := pkg.Rejected[i]; got.Index != w.Index || len(got.Errors) != 1 || got.Errors[0].Field != w.Errors[0].Field {
			t.Errorf("rejected[%d] = %+v, want %+v", i, got, w)
		}
	}
}

func TestDeltaFilesNeedStatusAndDateLastModified(t *testing.T) {
	manifest := file{"manifest.csv", "propertyName,value\nfile.orgs,delta\n"}
	orgs := "sourcedId,status,dateLastModified,name,type\n" +
		"o1,,2026-09-01T08:00:00Z,A,school\n" +
		"o2,tobedeleted,,,\n" +
		"o3,tobedeleted,2026-09-01T08:00:00Z,,\n"
	pkg := decodePackage(t, manifest, file{"orgs.csv", orgs})
	if len(pkg.Accepted) != 1 || pkg.Accepted[0].Event.RosterOrg.SourcedID != "o3" || len(pkg.Rejected) != 2 ||
		pkg.Rejected[0].Errors[0].Field != "orgs.csv:2:status" || pkg.Rejected[1].Errors[0].Field != "orgs.csv:3:dateLastModified" {
		t.Fatalf("accepted %+v, rejected %+v", pkg.Accepted, pkg.Rejected)
	}
	_, err := DecodeCSVZip(zipOf(t, manifest, file{"orgs.csv", "sourcedId,name,type\no1,A,school\n"}), meta, Limits{MaxRecords: 10}, nil)
	if !errors.Is(err, ErrInvalidPackage) || !strings.Contains(err.Error(), `missing column "status"`) {
		t.Fatalf("delta file without a status column: %v", err)
	}
}

func TestIgnoredFilesAreListed(t *testing.T) {
	pkg := decodePackage(t, file{"orgs.csv", "sourcedId,name,type\no1,A,school\n"},
		file{"resources.csv", "sourcedId,vendorResourceId\nr1,v1\n"}, file{"categories.csv", "sourcedId,title\nc1,Quizzes\n"},
		file{"__MACOSX/._orgs.csv", "resource fork"})
	if len(pkg.Accepted) != 1 || !slices.Equal(pkg.Ignored, []string{"categories.csv", "resources.csv"}) {
		t.Fatalf("accepted %d, ignored %v", len(pkg.Accepted), pkg.Ignored)
	}
}

func TestPackageErrors(t *testing.T) {
	orgs := file{"orgs.csv", "sourcedId,name,type\no1,A,school\n"}
	tests := []struct {
		name  string
		body  []byte
		want  error
		quote string // part of the message
	}{
		{"not a zip", []byte("sourcedId,name\n"), ErrInvalidPackage, "not a zip"},
		{"unknown file", zipOf(t, orgs, file{"students.csv", "x\n"}), ErrInvalidPackage, `unknown file "students.csv"`},
		{"file in a folder", zipOf(t, file{"export/orgs.csv", orgs.content}), ErrInvalidPackage, `unknown file "export/orgs.csv"`},
		{"file twice", zipOf(t, orgs, orgs), ErrInvalidPackage, "appears twice"},
		{"names differing only in case", zipOf(t, orgs, file{"Orgs.csv", orgs.content}), ErrInvalidPackage,
			`unknown file "Orgs.csv": OneRoster file names are case-sensitive; the file is "orgs.csv"`},
		{"a known name in another case", zipOf(t, file{"USERS.CSV", "x\n"}), ErrInvalidPackage, `the file is "users.csv"`},
		{"the manifest in another case", zipOf(t, file{"Manifest.csv", "x\n"}), ErrInvalidPackage, `the file is "manifest.csv"`},
		{"unknown column", zipOf(t, file{"orgs.csv", "sourcedId,name,type,nces\no1,A,school,1\n"}), ErrInvalidPackage, `orgs.csv: unknown column "nces"`},
		{"missing column", zipOf(t, file{"orgs.csv", "sourcedId,name\no1,A\n"}), ErrInvalidPackage, `orgs.csv: missing column "type"`},
		{"column twice", zipOf(t, file{"orgs.csv", "sourcedId,name,type,name\no1,A,school,B\n"}), ErrInvalidPackage, `column "name" appears twice`},
		{"no header", zipOf(t, file{"orgs.csv", ""}), ErrInvalidPackage, "no header row"},
		{"bad quoting", zipOf(t, file{"orgs.csv", "sourcedId,name,type\no1,\"A\"B,school\n"}), ErrInvalidPackage, "orgs.csv: parse error on line 2"},
		{"declared absent but present", zipOf(t, file{"manifest.csv", "propertyName,value\nfile.orgs,absent\n"}, orgs), ErrInvalidPackage, "declares orgs.csv absent"},
		{"declared but missing", zipOf(t, file{"manifest.csv", "propertyName,value\nfile.users,bulk\n"}, orgs), ErrInvalidPackage, "declares users.csv bulk"},
		{"bad mode", zipOf(t, file{"manifest.csv", "propertyName,value\nfile.orgs,full\n"}, orgs), ErrInvalidPackage, "absent, bulk or delta"},
		{"unsupported version", zipOf(t, file{"manifest.csv", "propertyName,value\noneroster.version,2.0\n"}, orgs), ErrInvalidPackage, "oneroster.version"},
		{"too many rows", zipOf(t, file{"orgs.csv", "sourcedId,name,type\no1,A,school\no2,B,school\no3,C,school\n"}), ingest.ErrTooManyEvents, "more than 2 rows"},
		{"too many files", zipOf(t, slices.Repeat([]file{orgs}, MaxPackageFiles+1)...), ErrPackageTooLarge, "files"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pkg, err := DecodeCSVZip(tt.body, meta, Limits{MaxRecords: 2}, nil)
			if pkg != nil || !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.quote) {
				t.Fatalf("err = %v, want %v with %q", err, tt.want, tt.quote)
			}
		})
	}
}

// deflated is a package of one file of n zeros: a few KiB that inflate to n bytes.
func deflated(t *testing.T, files map[string]int) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := zip.NewWriter(&buf)
	zeros := make([]byte, 64<<10)
	for _, name := range slices.Sorted(maps.Keys(files)) {
		fw, err := w.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		for left := files[name]; left > 0; left -= len(zeros) {
			if _, err := fw.Write(zeros[:min(left, len(zeros))]); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestZipBomb(t *testing.T) {
	lim := Limits{MaxRecords: 10, MaxFileBytes: 1 << 20, MaxUnzippedBytes: 3 << 19}
	for _, tt := range []struct {
		name  string
		files map[string]int
		want  string
	}{
		{"a file over its bound", map[string]int{"users.csv": 2 << 20}, "users.csv: 2097152 bytes unzipped, at most 1048576 a file"},
		{"files over the package's bound", map[string]int{"orgs.csv": 1 << 20, "users.csv": 1 << 20},
			"users.csv: the files up to this one hold 2097152 bytes unzipped, at most 1572864 a package"},
		{"a file within its bound without a line break", map[string]int{"users.csv": 1 << 20},
			"users.csv line 1: a header of 1048576 bytes, at most 65536"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			body := deflated(t, tt.files)
			if _, err := DecodeCSVZip(body, meta, lim, nil); !errors.Is(err, ErrPackageTooLarge) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("bomb of %d bytes zipped: err = %v, want %q", len(body), err, tt.want)
			}
		})
	}

	// A file that lies about its size is caught while it is read.
	content := "sourcedId,name,type\n" + strings.Repeat("o1,A,school\n", 1000)
	var lie bytes.Buffer
	w := zip.NewWriter(&lie)
	raw, err := w.CreateRaw(&zip.FileHeader{Name: "orgs.csv", Method: zip.Store, CRC32: crc32.ChecksumIEEE([]byte(content)),
		CompressedSize64: uint64(len(content)), UncompressedSize64: 30})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(raw, content); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := DecodeCSVZip(lie.Bytes(), meta, Limits{MaxRecords: 10_000}, nil); !errors.Is(err, ErrInvalidPackage) {
		t.Fatalf("a file larger than it claims: err = %v", err)
	}
}

func TestBudgetStopsReading(t *testing.T) {
	d := &csvDecoder{left: 10, lim: &Limits{MaxUnzippedBytes: 10}}
	n, err := io.Copy(io.Discard, &budgetReader{r: strings.NewReader(strings.Repeat("x", 100)), d: d})
	if !errors.Is(err, ErrPackageTooLarge) || n > 11 {
		t.Fatalf("read %d bytes: %v", n, err)
	}
}

// TestRecordBounds: a header or record over its bounds stops the file with an error naming the file, the
// line the record starts on and the bound; records within them, quoted line breaks included, are read.
func TestRecordBounds(t *testing.T) {
	lim := Limits{MaxRecords: 10, MaxColumns: 5, MaxHeaderBytes: 40, MaxRecordBytes: 60}
	const header = "sourcedId,name,type\n"
	tests := []struct {
		name, content, want string
	}{
		{"header columns", "sourcedId,name,type,metadata.a,metadata.b,metadata.c,metadata.d\n", "orgs.csv line 1: 7 columns, at most 5"},
		{"header bytes", "sourcedId,name,type,metadata.aaaaaaaaaaaaaaaaaaaaaaaaaaaa\n", "orgs.csv line 1: a header of 57 bytes, at most 40"},
		{"both", "\n" + strings.Repeat("metadata.abcdefghij,", 9) + "type\n",
			"orgs.csv line 2: 10 columns, at most 5; a header of 184 bytes, at most 40"},
		{"quoted header", `"sourcedId","name","type","metadata.a,b,c,d,e,f"` + "\n", "orgs.csv line 1: 4 columns, at most 5; a header of 48 bytes"},
		{"record bytes", header + "o1,A,school\n" + "o2,\"" + strings.Repeat("x\n", 40) + "\",school\n", "orgs.csv line 3: a record of more than 60 bytes, at most 60"},
		{"record fields", header + "o1,A,school\n\n" + "o2,A,school,,,,\n", "orgs.csv line 4: more than 5 fields, at most 5"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeCSVZip(zipOf(t, file{"orgs.csv", tt.content}), meta, lim, nil)
			if tt.name == "quoted header" {
				// Four columns, one of them with commas in its name: only the header's size is over.
				if err == nil || strings.Contains(err.Error(), "columns") || !strings.Contains(err.Error(), "orgs.csv line 1: a header of 48 bytes, at most 40") {
					t.Fatalf("err = %v", err)
				}
				return
			}
			if !errors.Is(err, ErrPackageTooLarge) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
	// Within the bounds: a quoted field over several lines is one record, and lines keep their numbers.
	pkg, err := DecodeCSVZip(zipOf(t, file{"orgs.csv", header + "o1,\"A\nB\",school\n" + "o2,A,bogus\n"}), meta, lim, nil)
	if err != nil || len(pkg.Accepted) != 1 || len(pkg.Rejected) != 1 || pkg.Rejected[0].Errors[0].Field != "orgs.csv:4:type" {
		t.Fatalf("err = %v, package %+v", err, pkg)
	}
}

func TestPackageEventIDs(t *testing.T) {
	ids := func(m ingest.Meta, files ...file) []string {
		pkg, err := DecodeCSVZip(zipOf(t, files...), m, Limits{MaxRecords: 100}, nil)
		if err != nil || len(pkg.Rejected) != 0 {
			t.Fatalf("err = %v, rejected %+v", err, pkg.Rejected)
		}
		var out []string
		for _, a := range pkg.Accepted {
			out = append(out, a.Event.EventID)
		}
		return out
	}
	first := ids(meta, fullPackage...)
	later := meta
	later.ReceivedAt = later.ReceivedAt.Add(48 * time.Hour)
	if again := ids(later, fullPackage...); !slices.Equal(first, again) {
		t.Fatalf("a re-sent package got new ids:\n%v\n%v", first, again)
	}
	// A bulk row without dateLastModified: new content is a new event, the rest keep their ids.
	renamed := replace(fullPackage, "orgs.csv", strings.Replace(fullPackage[1].content, "Springfield USD", "Springfield Unified", 1))
	if changed := ids(meta, renamed...); changed[0] == first[0] || !slices.Equal(changed[1:], first[1:]) {
		t.Fatalf("after renaming the district:\n%v\n%v", first, changed)
	}
	// A later dateLastModified is a new event.
	touched := replace(fullPackage, "demographics.csv", strings.Replace(fullPackage[8].content, "2026-09-03T10:00:00Z", "2026-09-04T10:00:00Z", 1))
	if changed := ids(meta, touched...); changed[9] == first[9] {
		t.Fatal("a later dateLastModified kept the event id")
	}
	// The same user through JSON and CSV is one event.
	csvUser := ids(meta, file{"users.csv", "sourcedId,status,dateLastModified,enabledUser,orgSourcedIds,role,givenName,familyName\n" +
		"u1,active,2026-09-01T08:00:00Z,true,org-1,teacher,Ada,Lovelace\n"})
	acc, _, err := DecodeJSON("users", []byte(`{"users":[{"sourcedId":"u1","status":"active","dateLastModified":"2026-09-01T08:00:00Z",
		"enabledUser":true,"givenName":"Ada","familyName":"Lovelace","roles":[{"roleType":"primary","role":"teacher","org":{"sourcedId":"org-1"}}]}]}`), meta, Limits{MaxRecords: 1}, nil)
	if err != nil || len(acc) != 1 || acc[0].Event.EventID != csvUser[0] {
		t.Fatalf("JSON %+v (err %v) and CSV %v differ", acc, err, csvUser)
	}
}

func TestCSVValues(t *testing.T) {
	tests := []struct {
		name  string
		users string
		field string // the rejected field, or "" when accepted
	}{
		{"userIds without braces", "u1,true,LDAP:x,Ada,L", "users.csv:2:userIds"},
		{"userIds without a type", "u1,true,{x},Ada,L", "users.csv:2:userIds"},
		{"userIds with an empty identifier", "u1,true,{LDAP:},Ada,L", "users.csv:2:userIds"},
		{"userIds joined without a comma", "u1,true,{a:1}{b:2},Ada,L", "users.csv:2:userIds"},
		{"enabledUser yes", "u1,yes,,Ada,L", "users.csv:2:enabledUser"},
		{"invalid UTF-8", "u1,true,,Ada\xff,L", "users.csv:2:givenName"},
		{"well-formed", "u1,False,\" {a:1} , {b: 2} \",Ada,L", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			users := "sourcedId,enabledUser,userIds,givenName,familyName,role,orgSourcedIds\n" + tt.users + ",student,org-1\n"
			pkg := decodePackage(t, file{"users.csv", users})
			switch {
			case tt.field == "" && len(pkg.Accepted) != 1:
				t.Fatalf("rejected: %+v", pkg.Rejected)
			case tt.field != "" && (len(pkg.Rejected) != 1 || pkg.Rejected[0].Errors[0].Field != tt.field):
				t.Fatalf("rejected %+v, want %s", pkg.Rejected, tt.field)
			}
		})
	}
}
