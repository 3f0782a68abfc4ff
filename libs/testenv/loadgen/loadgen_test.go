package loadgen

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

func TestLoopbackOnly(t *testing.T) {
	for _, c := range []struct {
		host string
		ok   bool
	}{
		{"127.0.0.1:8080", true}, {"127.5.6.7", true}, {"[::1]:9000", true}, {"::1", true}, {"localhost:5432", true},
		{"10.0.0.1:8080", false}, {"example.com:80", false}, {"0.0.0.0:80", false}, {"", false},
	} {
		if err := LoopbackHost("-addr", c.host); (err == nil) != c.ok {
			t.Errorf("LoopbackHost(%q) = %v, want ok %v", c.host, err, c.ok)
		} else if err != nil && !strings.HasPrefix(err.Error(), "-addr: ") {
			t.Errorf("LoopbackHost(%q) = %v, want the flag named", c.host, err)
		}
	}
	for _, c := range []struct {
		raw string
		ok  bool
	}{
		{"http://127.0.0.1:8080", true}, {"postgres://u@localhost:5432/db", true}, {"postgres://u@/db?host=/run/pg", true},
		{"http://192.168.1.2:8080", false}, {"postgres://u@db.internal/db", false}, {"not a url", false}, {"%zz", false},
	} {
		if err := LoopbackURL("-target", c.raw); (err == nil) != c.ok {
			t.Errorf("LoopbackURL(%q) = %v, want ok %v", c.raw, err, c.ok)
		}
	}
}

func TestScheduleSendsEveryDueTimeUntilTheEnd(t *testing.T) {
	start := time.Now().Add(-time.Hour) // every time is already due: the schedule does not wait
	var got []time.Time
	for at := range Schedule(context.Background(), start, start.Add(10*time.Millisecond), time.Millisecond, 1) {
		got = append(got, at)
	}
	if len(got) != 10 {
		t.Fatalf("got %d due times, want 10", len(got))
	}
	for i, at := range got {
		if want := start.Add(time.Duration(i) * time.Millisecond); !at.Equal(want) {
			t.Errorf("due time %d = %v, want %v", i, at, want)
		}
	}
	if !Late(got[0], time.Millisecond) {
		t.Error("a request an hour behind its schedule is not late")
	}
}

func TestScheduleStopsWithItsContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	due := Schedule(ctx, time.Now().Add(-time.Hour), time.Time{}, time.Millisecond, 0)
	<-due
	cancel()
	for range due { // closes once the context is done, though the schedule has no end
	}
}

func TestStudentIDsAreVersion4AndSpreadInTheirFirstHalf(t *testing.T) {
	seen := map[string]bool{}
	for n := range uint64(1000) {
		id := StudentID(n)
		u, err := uuid.Parse(id)
		if err != nil || u.Version() != 4 || u.Variant() != uuid.RFC4122 {
			t.Fatalf("StudentID(%d) = %q (%v): not a version 4 UUID", n, id, err)
		}
		seen[id[:8]] = true
	}
	if len(seen) != 1000 {
		t.Errorf("1000 ids have %d distinct first halves", len(seen))
	}
	if got, want := StudentID(1<<48+5), StudentID(5)[9:]; got[9:] != want {
		t.Errorf("StudentID keeps the low 48 bits of n: %q vs %q", got, want)
	}
}

func TestCheckMode(t *testing.T) {
	for _, c := range []struct {
		mode string
		rate int
		ok   bool
	}{{"saturate", 0, true}, {"rate", 1000, true}, {"rate", 0, false}, {"burst", 10, false}} {
		if err := CheckMode(c.mode, c.rate); (err == nil) != c.ok {
			t.Errorf("CheckMode(%q, %d) = %v", c.mode, c.rate, err)
		}
	}
}
