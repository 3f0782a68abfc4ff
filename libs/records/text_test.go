package records

import (
	"slices"
	"testing"
)

func TestTextErrorsNamesEveryBadField(t *testing.T) {
	bad := "a\x00b"
	u := &RosterUser{SourcedID: "u1", GivenName: bad, MiddleName: &bad, Grades: []string{"05", bad},
		Metadata: map[string]string{"ok": "fine", "note": bad, bad: "x"}, Roles: []RosterRole{{Role: bad}}}
	var got []string
	for _, e := range TextErrors(u, "roster_user") {
		got = append(got, e.Field)
	}
	slices.Sort(got)
	want := []string{"roster_user.given_name", "roster_user.grades", "roster_user.metadata", "roster_user.metadata.note",
		"roster_user.middle_name", "roster_user.roles.role"}
	if !slices.Equal(got, want) {
		t.Fatalf("fields %v, want %v", got, want)
	}
	if errs := TextErrors(&RosterUser{SourcedID: "u1", GivenName: "Ada"}, "roster_user"); len(errs) != 0 {
		t.Fatalf("clean user: %v", errs)
	}
}

func BenchmarkTextErrorsEvent(b *testing.B) {
	school, reason := "school-7", "bus late"
	ev := &RawEvent{EventID: "6f1c1f4e-0d7a-4c59-9d0b-3f7f2a1c9e01", TenantID: "d1", SourceID: "lms", Type: TypeAttendance,
		Actor: Actor{SISID: "S-1234", Role: "student"}, SchoolID: &school, Attendance: &Attendance{Status: "present", Reason: &reason}}
	for b.Loop() {
		if errs := TextErrors(ev, ""); len(errs) != 0 {
			b.Fatal(errs)
		}
	}
}
