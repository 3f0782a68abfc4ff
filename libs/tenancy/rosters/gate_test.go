package rosters

import (
	"strings"
	"testing"
)

func TestQualityGate(t *testing.T) {
	pct := func(v float64) *float64 { return &v }
	withFindings := DefaultSettings
	withFindings.MaxFindingsPct = pct(20)
	file := func(received, accepted, rejected, held, findings int) FileCounts {
		return FileCounts{File: "users.csv", Entity: Users, Received: received, Accepted: accepted, Rejected: rejected, Held: held, Findings: findings}
	}
	for _, tt := range []struct {
		name     string
		settings Settings
		files    []FileCounts
		gate     string
		reason   string
	}{
		{"clean", DefaultSettings, []FileCounts{file(100, 100, 0, 0, 0)}, "", ""},
		{"rejected at the bound", DefaultSettings, []FileCounts{file(100, 95, 5, 0, 0)}, "", ""},
		{"rejected over the bound", DefaultSettings, []FileCounts{file(100, 94, 6, 0, 0)}, "rejected", "rejected 6 of 100 rows (6.0%), over the district's 5%"},
		{"summed over files", DefaultSettings, []FileCounts{file(50, 47, 3, 0, 0), file(50, 47, 3, 0, 0)}, "rejected", "rejected 6 of 100 rows"},
		{"a small upload is not checked", DefaultSettings, []FileCounts{file(9, 1, 8, 0, 0)}, "", ""},
		{"held references", DefaultSettings, []FileCounts{file(100, 100, 0, 6, 0)}, "held_references", "6 of 100 records (6.0%) reference entities not known"},
		{"findings are not checked by default", DefaultSettings, []FileCounts{file(100, 100, 0, 0, 500)}, "", ""},
		{"findings when set", withFindings, []FileCounts{file(100, 100, 0, 0, 21)}, "findings", "21 data-quality findings in 100 rows (21.0 per hundred), over the district's 20"},
		{"findings within", withFindings, []FileCounts{file(100, 100, 0, 0, 20)}, "", ""},
		{"nothing received", DefaultSettings, nil, "", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := tt.settings.gate(tt.files)
			if tt.gate == "" {
				if h != nil {
					t.Fatalf("held: %+v", h)
				}
				return
			}
			if h == nil || h.Gate != tt.gate || !strings.Contains(h.Reason, tt.reason) {
				t.Fatalf("hold %+v, want gate %s with %q", h, tt.gate, tt.reason)
			}
		})
	}
}

func TestColumnsDiff(t *testing.T) {
	added, gone := columnsDiff([]string{"Student_Number", "First_Name", "Room"}, []string{" student_number", "First_Name", "Nickname", "Email"})
	if strings.Join(added, ",") != "Nickname,Email" || strings.Join(gone, ",") != "Room" {
		t.Fatalf("added %q, gone %q", added, gone)
	}
	if added, gone := columnsDiff([]string{"a", "b"}, []string{"B", "A"}); added != nil || gone != nil {
		t.Fatalf("reordered columns: added %q, gone %q", added, gone)
	}
}
