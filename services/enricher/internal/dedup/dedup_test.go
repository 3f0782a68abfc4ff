package dedup

import (
	"testing"
	"time"
)

func TestPendingCommitAbortAndExpiry(t *testing.T) {
	now := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
	s := New(24 * time.Hour)
	s.Own(0, map[string]time.Time{"d1/restored": now.Add(time.Hour), "d1/old": now.Add(-time.Hour)})

	if seen, _ := s.SeenOrAdd(0, "d1", "restored", now); !seen {
		t.Fatal("restored id not seen")
	}
	if seen, _ := s.SeenOrAdd(0, "d1", "old", now); seen {
		t.Fatal("expired id seen")
	}
	if seen, exp := s.SeenOrAdd(0, "d1", "a", now); seen || !exp.Equal(now.Add(24*time.Hour)) {
		t.Fatalf("new id: seen=%v exp=%v", seen, exp)
	}
	if seen, _ := s.SeenOrAdd(0, "d1", "a", now); !seen {
		t.Fatal("retry inside the same transaction not seen")
	}
	if seen, _ := s.SeenOrAdd(0, "d2", "a", now); seen {
		t.Fatal("same event id of another tenant seen")
	}
	s.Abort()
	if seen, _ := s.SeenOrAdd(0, "d1", "a", now); seen {
		t.Fatal("aborted id still seen")
	}
	s.Commit()
	if seen, _ := s.SeenOrAdd(0, "d1", "a", now.Add(23*time.Hour)); !seen {
		t.Fatal("committed id not seen within the window")
	}
	if seen, _ := s.SeenOrAdd(0, "d1", "a", now.Add(25*time.Hour)); seen {
		t.Fatal("id seen after the window")
	}
	s.Abort()
	if n := s.Expire(now.Add(2 * time.Hour)); n != 1 { // "a" remains; "restored" expired
		t.Fatalf("entries after expiry = %d", n)
	}
	s.Disown(0)
	if s.Owned(0) {
		t.Fatal("partition still owned")
	}
}
