package ingest

import (
	"fmt"
	"math"
	"time"
	"unicode/utf8"
)

// validator collects field errors.
type validator struct{ errs []FieldError }

func (v *validator) add(field, msg string) {
	v.errs = append(v.errs, FieldError{Field: field, Message: msg})
}

func (v *validator) uuid(field, s string) {
	switch {
	case s == "":
		v.add(field, "is required")
	case !isUUID(s):
		v.add(field, "must be a UUID")
	}
}

// isUUID reports whether s is a UUID in its 36-character text form (8-4-4-4-12 hex digits, either case).
func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case i == 8 || i == 13 || i == 18 || i == 23:
			if c != '-' {
				return false
			}
		case '0' <= c && c <= '9', 'a' <= c && c <= 'f', 'A' <= c && c <= 'F':
		default:
			return false
		}
	}
	return true
}

// maxIDLen bounds identifiers (SIS ids, school, class, content ids).
const maxIDLen = 256

func (v *validator) id(field, s string, required bool) {
	switch {
	case s == "" && required:
		v.add(field, "is required")
	case len(s) > maxIDLen:
		v.add(field, fmt.Sprintf("must be at most %d bytes", maxIDLen))
	case !utf8.ValidString(s):
		v.add(field, "must be valid UTF-8")
	}
}

func (v *validator) oneOf(field, s string, allowed map[string]bool, list string) {
	switch {
	case s == "":
		v.add(field, "is required")
	case !allowed[s]:
		v.add(field, "must be one of "+list)
	}
}

// earliest bounds timestamps from below: nothing in the platform predates it.
var earliest = time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC)

// timestamp parses an RFC 3339 timestamp, truncated to milliseconds (the wire precision).
func (v *validator) timestamp(field, s string, required bool) time.Time {
	if s == "" {
		if required {
			v.add(field, "is required")
		}
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		v.add(field, "must be an RFC 3339 timestamp such as 2026-09-01T08:30:00Z")
		return time.Time{}
	}
	if t.Before(earliest) || t.Year() > 9999 {
		v.add(field, "is out of range")
		return time.Time{}
	}
	return t.UTC().Truncate(time.Millisecond)
}

func (v *validator) optTimestamp(field string, s *string) *time.Time {
	if s == nil {
		return nil
	}
	t := v.timestamp(field, *s, true)
	if t.IsZero() {
		return nil
	}
	return &t
}

// date parses a calendar date (YYYY-MM-DD).
func (v *validator) date(field, s string) time.Time {
	if s == "" {
		v.add(field, "is required")
		return time.Time{}
	}
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		v.add(field, "must be a date such as 2026-09-01")
		return time.Time{}
	}
	if t.Before(earliest) {
		v.add(field, "is out of range")
		return time.Time{}
	}
	return t
}

func (v *validator) number(field string, f float64, lo, hi float64) {
	if math.IsNaN(f) || math.IsInf(f, 0) || f < lo || f > hi {
		v.add(field, fmt.Sprintf("must be between %g and %g", lo, hi))
	}
}
