package records

import (
	"fmt"
	"time"
	"unicode/utf8"
)

// Bounds of the values a record may carry: what every store downstream can hold. The gateway checks
// them once, on ingest; consumers check them again only to guard against other producers and replays.

// MaxIDBytes bounds identifiers (SIS ids, sourcedIds, school, class, content ids) and short labels.
const MaxIDBytes = 256

// Timestamps and dates of records lie in [MinTime, EndTime): ClickHouse's Date ends with 2105 and its
// DateTime starts at the Unix epoch, and nothing before 1970 is a learning event of this platform.
var (
	MinTime = time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC)
	EndTime = time.Date(2106, 1, 1, 0, 0, 0, 0, time.UTC)
)

// OutOfRange is the field error message of a timestamp or date outside [MinTime, EndTime).
const OutOfRange = "is out of range (1970-01-01 to 2105-12-31)"

// InTimeRange reports whether t lies in [MinTime, EndTime).
func InTimeRange(t time.Time) bool {
	return !t.Before(MinTime) && t.Before(EndTime)
}

// Text says which control characters a text field may hold.
type Text int

const (
	// Line is single-line text (identifiers, labels, enumerations): no control characters at all.
	Line Text = iota
	// Multiline is free text that may hold tab, line feed and carriage return, and no other control
	// character.
	Multiline
)

// CheckText returns what is wrong with s as the value of a text field of at most limit bytes, or "" when
// nothing is: it must be valid UTF-8 and hold no control characters (C0, DEL, C1) beyond those kind
// allows. PostgreSQL refuses NUL in text, and a control character in an id or label is never
// intended.
func CheckText(s string, limit int, kind Text) string {
	if len(s) > limit {
		return fmt.Sprintf("must be at most %d bytes", limit)
	}
	for i, r := range s {
		switch {
		case r == utf8.RuneError && isInvalidAt(s, i):
			return "must be valid UTF-8"
		case isControl(r) && (kind != Multiline || !isLineSpace(r)):
			return "must not contain control characters"
		}
	}
	return ""
}

// isInvalidAt reports whether the RuneError decoded at s[i:] stands for an invalid byte rather than an
// encoded U+FFFD.
func isInvalidAt(s string, i int) bool {
	_, size := utf8.DecodeRuneInString(s[i:])
	return size == 1
}

// isLineSpace reports whether r is one of the control characters free text may hold.
func isLineSpace(r rune) bool { return r == '\t' || r == '\n' || r == '\r' }

// isControl reports whether r is a C0 control, DEL or a C1 control (Unicode category Cc).
func isControl(r rune) bool {
	return r < 0x20 || (r >= 0x7f && r <= 0x9f)
}
