package api_test

import (
	"strings"
	"testing"

	"github.com/edtech-analytics/platform/libs/tenancy/credentials"
	"github.com/edtech-analytics/platform/services/query/internal/api"
)

// TestListsAreScopedByRole proves that the lists the dashboards navigate by (schools of the district,
// classes of a school, a teacher's classes, a class's students) hold exactly what the caller may read,
// with the rollups' counts, and that reading a class list is audited.
func TestListsAreScopedByRole(t *testing.T) {
	f := newFixture(t, 5, nil)
	ids := func(l api.EntityList) string {
		var out []string
		for _, e := range l.Items {
			out = append(out, e.ID)
		}
		return strings.Join(out, ",")
	}
	var l api.EntityList
	if code := f.get(t, f.creds["d1-district"], "/v1/district/schools"+span, &l); code != 200 || ids(l) != "s1,s2" {
		t.Fatalf("district admin's schools: %d %+v", code, l)
	}
	want := f.w.expect(func(e event) bool { return e.tenant == "d1" && e.school == "s1" })
	if l.Items[0].Events != want.events || l.Items[0].ActiveStudents != want.students {
		t.Errorf("s1 listed with %+v, want %d events of %d students", l.Items[0], want.events, want.students)
	}
	if code := f.get(t, f.creds["d1-school-s1"], "/v1/district/schools"+span, &l); code != 200 || ids(l) != "s1" {
		t.Errorf("school admin of s1's schools: %d %+v", code, l)
	}
	if code := f.get(t, f.creds["d1-school-s1"], "/v1/schools/s1/classes"+span, &l); code != 200 || ids(l) != "c1,c2" || l.Parent != "s1" {
		t.Errorf("classes of s1: %d %+v", code, l)
	}
	if code := f.get(t, f.creds["d1-teacher-t1"], "/v1/teacher/classes"+span, &l); code != 200 || ids(l) != "c1" {
		t.Errorf("teacher's classes: %d %+v", code, l)
	}
	var cl api.ClassList
	if code := f.get(t, f.creds["d1-teacher-t1"], "/v1/classes/c1/students", &cl); code != 200 || len(cl.Students) != 1 ||
		cl.Students[0].InternalID != f.w.students["d1"]["c1"] || cl.Students[0].SourcedID != "u-c1" {
		t.Errorf("class list of c1: %d %+v", code, cl)
	}
	for _, c := range []struct{ cred, path string }{
		{"d1-teacher-t1", "/v1/district/schools" + span},
		{"d1-teacher-t1", "/v1/schools/s1/classes" + span},
		{"d1-school-s1", "/v1/schools/s2/classes" + span},
		{"d1-school-s1", "/v1/teacher/classes" + span},
		{"d1-teacher-t1", "/v1/classes/c2/students"},
		{"d1-school-s1", "/v1/classes/c3/students"},
		{"d2-teacher-t1", "/v1/classes/c2/students"},
	} {
		if code := f.get(t, f.creds[c.cred], c.path, nil); code != 403 {
			t.Errorf("%s as %s: %d, want 403", c.path, c.cred, code)
		}
	}
	entries, err := f.audit.Entries(t.Context(), 1, 100)
	if err != nil {
		t.Fatal(err)
	}
	var reads int
	for _, e := range entries {
		if e.Action == "class_list.read" && e.TenantID == "d1" && strings.Contains(e.Detail, `"class_id":"c1"`) {
			reads++
		}
	}
	if reads != 1 {
		t.Errorf("%d audited reads of c1's class list, want 1", reads)
	}
}

// TestParentsSeeTheirChildrenOnly proves that a parent token reads the summaries of the students it
// names and nothing else: not another student of its district, not the same roster id in another
// district, and no district, school, class, list, benchmark or analytics answer.
func TestParentsSeeTheirChildrenOnly(t *testing.T) {
	f := newFixture(t, 5, nil)
	keys := credentials.New(f.pool)
	parent, _, err := keys.CreateDashboardToken(t.Context(), credentials.DashboardToken{TenantID: "d1", Role: credentials.RoleParent,
		StudentIDs: []string{"u-c1"}})
	if err != nil {
		t.Fatal(err)
	}
	child := f.w.students["d1"]["c1"]
	var kids api.ParentList
	if code := f.get(t, parent, "/v1/parent/students", &kids); code != 200 || len(kids.Students) != 1 || kids.Students[0].InternalID != child {
		t.Fatalf("parent's children: %d %+v", code, kids)
	}
	var mine, admins api.Summary
	if code := f.get(t, parent, "/v1/students/"+child+"/summary"+span, &mine); code != 200 {
		t.Fatalf("parent reading its child: %d", code)
	}
	f.get(t, f.creds["d1-district"], "/v1/students/"+child+"/summary"+span, &admins)
	if mine.Totals.Events == 0 || mine.Totals.Events != admins.Totals.Events {
		t.Errorf("parent's view of its child: %d events, the district admin's %d", mine.Totals.Events, admins.Totals.Events)
	}
	for _, path := range []string{
		"/v1/students/" + f.w.students["d1"]["c2"] + "/summary" + span,
		"/v1/students/" + f.w.students["d2"]["c1"] + "/summary" + span, // u-c1 of the other district
		"/v1/district/summary" + span, "/v1/schools/s1/summary" + span, "/v1/classes/c1/summary" + span,
		"/v1/district/schools" + span, "/v1/schools/s1/classes" + span, "/v1/teacher/classes" + span, "/v1/classes/c1/students",
		"/v1/benchmarks/attendance_rate" + span, "/v1/schools/s1/daily" + span,
		"/v1/funnels?steps=login,content_view&class_id=c1&" + span[1:], "/v1/retention?weeks=2&" + span[1:],
	} {
		if code := f.get(t, parent, path, nil); code != 403 {
			t.Errorf("parent on %s: %d, want 403", path, code)
		}
	}
	if code := f.get(t, f.creds["d1-teacher-t1"], "/v1/parent/students", nil); code != 403 {
		t.Errorf("a teacher asking for a parent's children: %d, want 403", code)
	}
}
