package sampledata

import (
	"testing"
	"time"
)

func TestEventsAreDeterministicUniqueAndComplete(t *testing.T) {
	s := Spec{TenantID: "d1", Schools: 2, ClassesPerSchool: 2, StudentsPerClass: 5, Days: 3, EventsPerStudent: 6,
		Start: time.Date(2026, 11, 16, 0, 0, 0, 0, time.UTC), Seed: 7}
	a, b := s.Events(), s.Events()
	if len(a) != len(b) || len(a) == 0 {
		t.Fatalf("lengths %d %d", len(a), len(b))
	}
	ids := map[string]bool{}
	types := map[string]int{}
	attendance := 0
	for i := range a {
		if a[i].EventID != b[i].EventID {
			t.Fatal("not deterministic")
		}
		if ids[a[i].EventID] {
			t.Fatalf("duplicate id %s", a[i].EventID)
		}
		ids[a[i].EventID] = true
		types[a[i].Type]++
		if a[i].Type == "attendance" {
			attendance++
		}
	}
	if attendance != 2*2*5*3 {
		t.Fatalf("attendance marks = %d, want one per student per day", attendance)
	}
	for _, typ := range []string{"attendance", "session", "content_view", "assignment_submission", "assessment_result"} {
		if types[typ] == 0 {
			t.Fatalf("no %s events: %v", typ, types)
		}
	}
	bodies, err := Batches(a, 100)
	if err != nil || len(bodies) != (len(a)+99)/100 {
		t.Fatalf("batches: %v %d", err, len(bodies))
	}
}
