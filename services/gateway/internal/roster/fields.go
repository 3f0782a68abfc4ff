package roster

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/edtech-analytics/platform/libs/records"
	"github.com/edtech-analytics/platform/services/gateway/internal/ingest"
)

// field names one field in both bindings: its JSON key and its CSV column ("" when the binding has
// no such column).
type field struct{ json, csv string }

// same is a field with the same name in both bindings.
func same(name string) field { return field{name, name} }

// source is one record as its binding gives it. Getters return the value ("" or nil when absent or
// empty) or a problem with its form; the rules of what is required or valid live in rec.
type source interface {
	at(f field) string // the field's path in error reports
	where() string     // the record's own position, e.g. users[3] or users.csv:12
	problem() string   // what makes the whole record unreadable (a CSV row of the wrong width), or ""
	text(f field) (string, string)
	texts(f field) ([]string, string) // a list of strings: JSON array, CSV comma-separated
	ref(f field) (string, string)     // a reference: JSON {"sourcedId": ...}, CSV the id
	refs(f field) ([]string, string)
	flag(f field) (*bool, string)
	number(f field) (*float64, string)
	userIDs(f field) ([]records.RosterUserID, string)
	metadata() (map[string]string, string)
	roles() ([]source, string) // a user's 1.2 roles, each its own source; nil when none are given
}

// need says when a missing value is an error.
type need int

const (
	optional need = iota
	required      // required unless the record is tobedeleted
	always        // required even for tobedeleted: what a deletion must still say
)

// textLimit is what a text field may hold: at most bytes bytes, and the control characters kind allows.
type textLimit struct {
	bytes int
	kind  records.Text
}

var (
	// idText is sourcedIds, references, enumerations, dates and metadata keys: single-line.
	idText = textLimit{records.MaxIDBytes, records.Line}
	// freeText is any other text (names, titles, descriptions, comments): it may hold tab and line breaks.
	freeText = textLimit{1 << 16, records.Multiline}
)

const maxSkew = 24 * time.Hour

// earliestBirth bounds birth dates from below. Other dates and timestamps lie in the range every store
// holds (records.InTimeRange); birth dates predate 1970 for staff, and they are kept only in PostgreSQL
// and the archive, which hold any date, never in ClickHouse.
var earliestBirth = time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC)

const birthOutOfRange = "is out of range (1900-01-01 to 2105-12-31)"

// rec reads and checks one record's fields, collecting field errors.
type rec struct {
	src    source
	bulk   bool                // a CSV bulk row: status and dateLastModified may be blank
	now    time.Time           // arrival of the request, bounds dateLastModified
	roleOf func(string) string // primary role of a user of the same package, for demographics
	errs   []ingest.FieldError
	hash   []byte // the content hash, set once the record is whole
	size   int    // the content's bytes as JSON

	// Set by base.
	sourcedID string
	status    string
	deleting  bool
	modified  time.Time // dateLastModified; zero when a bulk row leaves it blank
	occurred  time.Time // OccurredAt: modified, or later for a user whose roles changed later
	meta      map[string]string
}

const (
	statusActive  = "active"
	statusDeleted = "tobedeleted"
)

// base reads the fields every OneRoster record has.
func (r *rec) base() {
	r.sourcedID = r.id(same("sourcedId"), always)
	n := always
	if r.bulk {
		n = optional
	}
	r.status = r.enum(same("status"), statuses, n)
	if r.status == "" {
		r.status = statusActive
	}
	r.deleting = r.status == statusDeleted
	if t := r.modifiedAt(same("dateLastModified"), n); t != nil {
		r.modified, r.occurred = *t, *t
	}
	r.meta = r.metadata()
}

func (r *rec) add(f field, msg string) {
	r.errs = append(r.errs, ingest.FieldError{Field: r.src.at(f), Message: msg})
}

// msgRequired is the error of a missing value that is required.
const msgRequired = "is required"

func (r *rec) missing(f field, n need) {
	if n == always || n == required && !r.deleting {
		r.add(f, msgRequired)
	}
}

// checkText returns what is wrong with a text value, or "".
func checkText(v string, l textLimit) string { return records.CheckText(v, l.bytes, l.kind) }

func (r *rec) scalar(f field, n need, v, problem string, limit textLimit) string {
	if problem != "" {
		r.add(f, problem)
		return ""
	}
	if v == "" {
		r.missing(f, n)
		return ""
	}
	if msg := checkText(v, limit); msg != "" {
		r.add(f, msg)
		return ""
	}
	return v
}

func (r *rec) list(f field, n need, vs []string, problem string, limit textLimit) []string {
	if problem != "" {
		r.add(f, problem)
		return []string{}
	}
	if len(vs) == 0 {
		r.missing(f, n)
		return []string{}
	}
	for i, v := range vs {
		if msg := checkText(v, limit); msg != "" {
			r.add(f, fmt.Sprintf("entry %d %s", i+1, msg))
			return []string{}
		}
	}
	return vs
}

// str is a text field.
func (r *rec) str(f field, n need) string {
	v, p := r.src.text(f)
	return r.scalar(f, n, v, p, freeText)
}

// opt is an optional text field, nil when absent.
func (r *rec) opt(f field) *string { return ptr(r.str(f, optional)) }

// id is an identifier field.
func (r *rec) id(f field, n need) string {
	v, p := r.src.text(f)
	return r.scalar(f, n, v, p, idText)
}

func (r *rec) strs(f field) []string {
	vs, p := r.src.texts(f)
	return r.list(f, optional, vs, p, freeText)
}

// ref is a reference to another record by sourcedId.
func (r *rec) ref(f field, n need) string {
	v, p := r.src.ref(f)
	return r.scalar(f, n, v, p, idText)
}

func (r *rec) optRef(f field) *string { return ptr(r.ref(f, optional)) }

func (r *rec) refs(f field, n need) []string {
	vs, p := r.src.refs(f)
	return r.list(f, n, vs, p, idText)
}

// enumSet is the values of a OneRoster enumeration; extensible ones also take "ext:" values.
type enumSet struct {
	values     []string
	extensible bool
}

func (s enumSet) has(v string) bool {
	return slices.Contains(s.values, v) || s.extensible && strings.HasPrefix(v, "ext:") && len(v) > len("ext:")
}

func (s enumSet) String() string {
	out := strings.Join(s.values, ", ")
	if s.extensible {
		out += " or an ext: value"
	}
	return out
}

func (r *rec) enum(f field, s enumSet, n need) string {
	v := r.id(f, n)
	if v != "" && !s.has(v) {
		r.add(f, "must be one of "+s.String())
		return ""
	}
	return v
}

// date is a calendar date, YYYY-MM-DD, in the range every store holds.
func (r *rec) date(f field, n need) *time.Time {
	t := r.calendarDate(f, n)
	if t == nil {
		return nil
	}
	return r.inRange(f, *t)
}

// birthDate is a date of birth, from 1900 on.
func (r *rec) birthDate(f field) *time.Time {
	t := r.calendarDate(f, optional)
	if t != nil && (t.Before(earliestBirth) || !t.Before(records.EndTime)) {
		r.add(f, birthOutOfRange)
		return nil
	}
	return t
}

// calendarDate parses a YYYY-MM-DD date.
func (r *rec) calendarDate(f field, n need) *time.Time {
	v := r.id(f, n)
	if v == "" {
		return nil
	}
	t, err := time.Parse(time.DateOnly, v)
	if err != nil {
		r.add(f, "must be a date such as 2026-09-01")
		return nil
	}
	return &t
}

// instant is an RFC 3339 timestamp or, where dateOK, also a date (midnight UTC), truncated to
// milliseconds, the wire precision.
func (r *rec) instant(f field, n need, dateOK bool) *time.Time {
	v := r.id(f, n)
	if v == "" {
		return nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil && dateOK {
		t, err = time.Parse(time.DateOnly, v)
	}
	if err != nil {
		if dateOK {
			r.add(f, "must be a date such as 2026-09-01 or an RFC 3339 timestamp such as 2026-09-01T08:30:00Z")
		} else {
			r.add(f, "must be an RFC 3339 timestamp such as 2026-09-01T08:30:00Z")
		}
		return nil
	}
	return r.inRange(f, t.UTC().Truncate(time.Millisecond))
}

// modifiedAt is a dateLastModified: an RFC 3339 timestamp not more than maxSkew ahead of arrival.
func (r *rec) modifiedAt(f field, n need) *time.Time {
	t := r.instant(f, n, false)
	if t != nil && !r.now.IsZero() && t.After(r.now.Add(maxSkew)) {
		r.add(f, "is more than 24h in the future")
		return nil
	}
	return t
}

// inRange returns t, or nil with a field error when a store could not hold it.
func (r *rec) inRange(f field, t time.Time) *time.Time {
	if !records.InTimeRange(t) {
		r.add(f, records.OutOfRange)
		return nil
	}
	return &t
}

// ordered checks that an end is not before its start.
func (r *rec) ordered(start *time.Time, end field, until *time.Time, startName string) {
	if start != nil && until != nil && until.Before(*start) {
		r.add(end, "must not be before "+startName)
	}
}

func (r *rec) flag(f field, n need) *bool {
	v, p := r.src.flag(f)
	switch {
	case p != "":
		r.add(f, p)
		return nil
	case v == nil:
		r.missing(f, n)
	}
	return v
}

func (r *rec) number(f field) *float64 {
	v, p := r.src.number(f)
	switch {
	case p != "":
		r.add(f, p)
		return nil
	case v != nil && (math.IsNaN(*v) || math.IsInf(*v, 0)):
		r.add(f, "must be a finite number")
		return nil
	}
	return v
}

func (r *rec) userIDs(f field) []records.RosterUserID {
	ids, p := r.src.userIDs(f)
	if p != "" {
		r.add(f, p)
		return []records.RosterUserID{}
	}
	for i, id := range ids {
		for _, part := range []struct{ name, v string }{{"type", id.Type}, {"identifier", id.Identifier}} {
			msg := checkText(part.v, idText)
			if part.v == "" {
				msg = msgRequired
			}
			if msg != "" {
				r.add(f, fmt.Sprintf("entry %d: %s %s", i+1, part.name, msg))
				return []records.RosterUserID{}
			}
		}
	}
	return ids
}

func (r *rec) metadata() map[string]string {
	f := same("metadata")
	m, p := r.src.metadata()
	if p != "" {
		r.add(f, p)
		return map[string]string{}
	}
	for _, k := range slices.Sorted(maps.Keys(m)) {
		v := m[k]
		msg := checkText(k, idText)
		if msg == "" {
			msg = checkText(v, freeText)
		}
		if msg != "" {
			r.add(f, fmt.Sprintf("%q: %s", k, msg))
			return map[string]string{}
		}
	}
	return m
}

func ptr(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}
