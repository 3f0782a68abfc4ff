package records

import (
	"strings"
	"testing"
	"time"
)

func TestCheckText(t *testing.T) {
	tests := []struct {
		name string
		s    string
		kind Text
		want string
	}{ // every value is checked against a limit of 10 bytes
		{"plain", "seca-st9", Line, ""},
		{"unicode", "Zë学\ufffd", Line, ""},
		{"empty", "", Line, ""},
		{"nul", "st9\x00x", Line, "must not contain control characters"},
		{"nul in free text", "doctor\x00", Multiline, "must not contain control characters"},
		{"escape", "a\x1bb", Multiline, "must not contain control characters"},
		{"del", "a\x7f", Line, "must not contain control characters"},
		{"c1", "a\u0085b", Multiline, "must not contain control characters"},
		{"c1 last", "a\u009f", Line, "must not contain control characters"},
		{"newline in a line", "a\nb", Line, "must not contain control characters"},
		{"tab in a line", "a\tb", Line, "must not contain control characters"},
		{"newline, tab and cr in free text", "l1\r\n\tl2", Multiline, ""},
		{"invalid utf-8", "a\xff\xfeb", Line, "must be valid UTF-8"},
		{"truncated sequence", "a\xe2\x82", Multiline, "must be valid UTF-8"},
		{"at the limit", strings.Repeat("é", 5), Line, ""},
		{"over the limit", strings.Repeat("é", 5) + "x", Line, "must be at most 10 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := CheckText(tt.s, 10, tt.kind); got != tt.want {
				t.Errorf("CheckText(%q) = %q, want %q", tt.s, got, tt.want)
			}
		})
	}
}

func TestInTimeRange(t *testing.T) {
	for at, want := range map[time.Time]bool{
		MinTime:                        true,
		MinTime.Add(-time.Millisecond): false,
		time.Date(1969, 12, 31, 23, 0, 0, 0, time.FixedZone("x", -3600)): true, // 1970-01-01T00:00Z
		time.Date(2105, 12, 31, 23, 59, 59, 999e6, time.UTC):             true,
		EndTime: false,
		time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC): false,
		{}: false,
	} {
		if InTimeRange(at) != want {
			t.Errorf("InTimeRange(%s) = %v", at, !want)
		}
	}
}
