package ingest

import (
	"fmt"
	"math"
	"time"

	"github.com/edtech-analytics/platform/libs/records"
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
	case !v.text(field, s, records.MaxIDBytes, records.Line):
	case !IsUUID(s):
		v.add(field, "must be a UUID")
	}
}

// IsUUID reports whether s is a UUID in its 36-character text form (8-4-4-4-12 hex digits, either case).
func IsUUID(s string) bool {
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

// Limits of the event's text fields beyond identifiers (records.MaxIDBytes), in bytes of UTF-8. Every
// string field has one, documented as maxLength in api/openapi.yaml: a value Kafka or a store cannot take
// must be refused here, as that event's error, not found later.
const (
	maxClientBytes = 1024 // payload.device and payload.app: single-line text such as a user agent
	maxReasonBytes = 4096 // payload.reason: free text, the one field that may hold tab and line breaks
	maxTimeBytes   = 64   // timestamps and dates, far longer than any RFC 3339 form
)

// text checks a value of a text field: valid UTF-8, no control characters beyond those kind allows, at
// most limit bytes.
func (v *validator) text(field, s string, limit int, kind records.Text) bool {
	if msg := records.CheckText(s, limit, kind); msg != "" {
		v.add(field, msg)
		return false
	}
	return true
}

// optText checks an optional text field.
func (v *validator) optText(field string, s *string, limit int, kind records.Text) {
	if s != nil {
		v.text(field, *s, limit, kind)
	}
}

// id checks an identifier.
func (v *validator) id(field, s string, required bool) {
	if s == "" {
		if required {
			v.add(field, "is required")
		}
		return
	}
	v.text(field, s, records.MaxIDBytes, records.Line)
}

func (v *validator) oneOf(field, s string, allowed map[string]bool, list string) {
	switch {
	case s == "":
		v.add(field, "is required")
	case !v.text(field, s, records.MaxIDBytes, records.Line):
	case !allowed[s]:
		v.add(field, "must be one of "+list)
	}
}

// timestamp parses an RFC 3339 timestamp, truncated to milliseconds (the wire precision).
func (v *validator) timestamp(field, s string, required bool) time.Time {
	if s == "" {
		if required {
			v.add(field, "is required")
		}
		return time.Time{}
	}
	if !v.text(field, s, maxTimeBytes, records.Line) {
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		v.add(field, "must be an RFC 3339 timestamp such as 2026-09-01T08:30:00Z")
		return time.Time{}
	}
	return v.inRange(field, t.UTC().Truncate(time.Millisecond))
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
	if !v.text(field, s, maxTimeBytes, records.Line) {
		return time.Time{}
	}
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		v.add(field, "must be a date such as 2026-09-01")
		return time.Time{}
	}
	return v.inRange(field, t)
}

// inRange returns t, or the zero time with a field error when a store could not hold it (checked here
// once: the enricher, ClickHouse and PostgreSQL then take every accepted time).
func (v *validator) inRange(field string, t time.Time) time.Time {
	if !records.InTimeRange(t) {
		v.add(field, records.OutOfRange)
		return time.Time{}
	}
	return t
}

func (v *validator) number(field string, f float64, lo, hi float64) {
	if math.IsNaN(f) || math.IsInf(f, 0) || f < lo || f > hi {
		v.add(field, fmt.Sprintf("must be between %g and %g", lo, hi))
	}
}
