// Package sampledata generates realistic, deterministic learning events in the gateway's public JSON
// shape: districts with schools, classes and students, and a stream of attendance, assessment results,
// assignment submissions, logins/logouts and content views over school days. The demo, the end-to-end
// tests and the load tools all use it.
package sampledata

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"time"
)

// Spec sizes one district.
type Spec struct {
	TenantID         string
	Schools          int
	ClassesPerSchool int
	StudentsPerClass int
	Days             int       // school days of activity
	Start            time.Time // first day (UTC midnight)
	EventsPerStudent int       // per day
	Seed             uint64
}

// Event is one event in the gateway's JSON shape.
type Event struct {
	EventID    string         `json:"event_id"`
	Type       string         `json:"type"`
	OccurredAt string         `json:"occurred_at"`
	Actor      Actor          `json:"actor"`
	SchoolID   string         `json:"school_id,omitempty"`
	ClassID    string         `json:"class_id,omitempty"`
	Payload    map[string]any `json:"payload"`
}

// Actor is who an event is about.
type Actor struct {
	SISID string `json:"sis_id"`
	Role  string `json:"role"`
}

// Student is a generated student.
type Student struct {
	SISID    string
	SchoolID string
	ClassID  string
}

// Students lists the district's students (each in one class).
func (s Spec) Students() []Student {
	var out []Student
	for sc := 0; sc < s.Schools; sc++ {
		for c := 0; c < s.ClassesPerSchool; c++ {
			for st := 0; st < s.StudentsPerClass; st++ {
				out = append(out, Student{
					SISID:    fmt.Sprintf("%s-s%03d-c%02d-%03d", s.TenantID, sc, c, st),
					SchoolID: s.SchoolID(sc),
					ClassID:  s.ClassID(sc, c),
				})
			}
		}
	}
	return out
}

// Events returns the district's events in time order. Each student gets one attendance mark per day and
// EventsPerStudent-1 other events (a login, content views, submissions, assessments, a logout).
func (s Spec) Events() []Event {
	rng := rand.New(rand.NewPCG(s.Seed, uint64(len(s.TenantID))))
	students := s.Students()
	var out []Event
	n := 0
	id := func() string {
		n++
		return fmt.Sprintf("%08x-%04x-4%03x-8%03x-%012x", s.Seed&0xffffffff, hash(s.TenantID)&0xffff, (n>>24)&0xfff, (n>>12)&0xfff, n)
	}
	statuses := []string{"present", "present", "present", "present", "present", "present", "tardy", "absent", "excused"}
	for d := 0; d < s.Days; d++ {
		day := s.Start.AddDate(0, 0, d)
		for _, st := range students {
			at := day.Add(8*time.Hour + time.Duration(rng.IntN(30))*time.Minute)
			base := func(typ string, t time.Time, payload map[string]any) Event {
				return Event{EventID: id(), Type: typ, OccurredAt: t.UTC().Format(time.RFC3339), Actor: Actor{SISID: st.SISID, Role: "student"},
					SchoolID: st.SchoolID, ClassID: st.ClassID, Payload: payload}
			}
			status := statuses[rng.IntN(len(statuses))]
			out = append(out, base("attendance", at, map[string]any{"status": status, "date": day.Format(time.DateOnly)}))
			if status == "absent" || s.EventsPerStudent <= 1 {
				continue
			}
			out = append(out, base("session", at.Add(time.Minute), map[string]any{"action": "login", "app": "lms"}))
			t := at.Add(2 * time.Minute)
			for k := 0; k < s.EventsPerStudent-3; k++ {
				t = t.Add(time.Duration(5+rng.IntN(40)) * time.Minute)
				switch rng.IntN(3) {
				case 0:
					out = append(out, base("content_view", t, map[string]any{
						"content_id": fmt.Sprintf("video-%d", rng.IntN(50)), "content_type": "video",
						"duration_seconds": 30 + rng.IntN(900), "percent_complete": float64(rng.IntN(101))}))
				case 1:
					due := day.Add(time.Duration(12+rng.IntN(8)) * time.Hour)
					out = append(out, base("assignment_submission", t, map[string]any{
						"assignment_id": fmt.Sprintf("hw-%d-%d", d, rng.IntN(5)), "due_at": due.Format(time.RFC3339),
						"submitted_at": t.Format(time.RFC3339), "status": "submitted", "score": float64(rng.IntN(11)), "max_score": 10.0}))
				default:
					out = append(out, base("assessment_result", t, map[string]any{
						"assessment_id": fmt.Sprintf("quiz-%d", rng.IntN(20)), "score": float64(rng.IntN(101)), "max_score": 100.0}))
				}
			}
			out = append(out, base("session", t.Add(10*time.Minute), map[string]any{
				"action": "logout", "app": "lms", "duration_seconds": int(t.Add(9 * time.Minute).Sub(at).Seconds())}))
		}
	}
	return out
}

func hash(s string) uint64 {
	var h uint64 = 1469598103934665603
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

// Batches splits events into JSON request bodies of at most size events.
func Batches(events []Event, size int) ([][]byte, error) {
	var out [][]byte
	for i := 0; i < len(events); i += size {
		body, err := json.Marshal(map[string]any{"events": events[i:min(i+size, len(events))]})
		if err != nil {
			return nil, err
		}
		out = append(out, body)
	}
	return out, nil
}
