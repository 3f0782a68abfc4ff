package mapping

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
	"time"
)

// Sentinel errors callers branch on. Every error this package returns wraps one of them.
var (
	// ErrInvalidRules is a rules document that cannot be used: bad YAML, an unknown key, a rule that
	// contradicts itself or names a field its collection lacks.
	ErrInvalidRules = errors.New("invalid mapping rules")
	// ErrInvalidExport is an export file that cannot be mapped as a whole: a header without a column a
	// required rule reads, duplicate column names, no array at the records path, a syntax error the
	// reader cannot get past, a row above Limits.MaxRowBytes.
	ErrInvalidExport = errors.New("invalid export file")
	// ErrWrongFormat is MapCSV called on a JSON export, or MapJSON on a CSV one.
	ErrWrongFormat = errors.New("wrong export format")
)

// Limits bound what one row may make the engine read and hold. A zero field takes its value from
// DefaultLimits.
type Limits struct {
	// MaxFieldBytes bounds one CSV field or JSON value a rule reads; a larger one is a row error.
	MaxFieldBytes int
	// MaxRowBytes bounds one CSV record (a line, or several when a quoted field holds line breaks) or one
	// JSON element of the records array. A row up to a few kilobytes larger is read and rejected; a larger
	// one stops the file with ErrInvalidExport, so memory stays bounded.
	MaxRowBytes int
	// MaxColumns bounds the columns of a CSV header.
	MaxColumns int
}

// DefaultLimits are 64 KiB per field, 1 MiB per row and 1000 columns: far above what SIS exports hold
// (rows well under a kilobyte), low enough that a corrupt file cannot exhaust memory.
func DefaultLimits() Limits {
	return Limits{MaxFieldBytes: 64 << 10, MaxRowBytes: 1 << 20, MaxColumns: 1000}
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	if l.MaxFieldBytes <= 0 {
		l.MaxFieldBytes = d.MaxFieldBytes
	}
	if l.MaxRowBytes <= 0 {
		l.MaxRowBytes = d.MaxRowBytes
	}
	if l.MaxColumns <= 0 {
		l.MaxColumns = d.MaxColumns
	}
	return l
}

// Position is where a value came from. For CSV, Line is the 1-based line where the record starts and
// Column the header's name of the column, ColumnIndex its 1-based position. For JSON, Line is the
// 0-based index of the element in the records array, Column the rule's JSON path relative to the
// element (e.g. $.name.first) and ColumnIndex 0. Column is empty for a problem of the whole row.
type Position struct {
	File        string
	Line        int
	Column      string
	ColumnIndex int
}

func (p Position) String() string {
	var b strings.Builder
	b.WriteString(p.File)
	if p.ColumnIndex > 0 || p.Column == "" || !strings.HasPrefix(p.Column, "$") {
		fmt.Fprintf(&b, ":%d", p.Line)
		if p.Column != "" {
			fmt.Fprintf(&b, ": column %q (%d)", p.Column, p.ColumnIndex)
		}
		return b.String()
	}
	fmt.Fprintf(&b, "[%d] %s", p.Line, p.Column)
	return b.String()
}

// FieldError is a problem that rejects a row: a required value missing, a value no rule can convert,
// a malformed row.
type FieldError struct {
	Position
	Target  string // the OneRoster field, e.g. givenName or roles[0].org.sourcedId; "" for the whole row
	Message string
}

func (e FieldError) Error() string {
	if e.Target == "" {
		return e.String() + ": " + e.Message
	}
	return e.String() + ": " + e.Target + ": " + e.Message
}

// Kinds of Finding.
const (
	// FindingEmpty is an empty value where a rule reads one: the column (or JSON key) is present but
	// blank, and the rule is optional and has no default.
	FindingEmpty = "empty"
	// FindingUnmapped is a value missing from a rule's map, kept, defaulted or dropped as the rule's
	// unmapped says.
	FindingUnmapped = "unmapped"
	// FindingIncomplete is an object of roles or userIds left out of the record because a field the
	// gateway requires (a role's roleType, role and org; a userId's type and identifier) has no value.
	FindingIncomplete = "incomplete"
)

// Finding is a data-quality observation that does not reject the row.
type Finding struct {
	Position
	Target  string
	Kind    string // FindingEmpty, FindingUnmapped or FindingIncomplete
	Message string
}

func (f Finding) String() string {
	return f.Position.String() + ": " + f.Target + ": " + f.Kind + ": " + f.Message
}

// Row is one mapped row. Exactly one of Record and Errors is set.
type Row struct {
	File string
	// Line is, for CSV, the 1-based line where the record starts; for JSON, the 0-based index of the
	// element in the records array.
	Line int
	// Index is the row's 0-based position among the file's rows.
	Index      int
	Collection string
	// Record is the OneRoster JSON object, its keys in a fixed order (sourcedId, status,
	// dateLastModified, the collection's fields in the binding's order, metadata keys sorted), so the
	// same input gives the same bytes.
	Record json.RawMessage
	// Values is the record as values, key by key as Record writes them, when the export was asked for
	// them (Export.WithValues); valid until the callback returns.
	Values   []Value
	Errors   []FieldError
	Findings []Finding
	// Raw is the row as received: the CSV record's bytes without its line break, or the JSON element.
	Raw []byte
}

// Rules is a compiled rules document: its exports, each ready to map files. It is immutable and safe for
// concurrent use.
type Rules struct {
	exports []*Export
	actors  Actors
}

// Export returns the export with the given name.
func (r *Rules) Export(name string) (*Export, bool) {
	for _, e := range r.exports {
		if e.name == name {
			return e, true
		}
	}
	return nil, false
}

// Match returns the first export, in the order of the rules document, whose match glob matches the base
// name of fileName, ignoring case.
func (r *Rules) Match(fileName string) (*Export, bool) {
	for _, e := range r.exports {
		if e.Matches(fileName) {
			return e, true
		}
	}
	return nil, false
}

// Exports returns the names of the exports in the order of the rules document.
func (r *Rules) Exports() []string {
	out := make([]string, len(r.exports))
	for i, e := range r.exports {
		out[i] = e.name
	}
	return out
}

type format int

const (
	formatCSV format = iota
	formatJSON
)

// Export maps one export shape into one OneRoster collection. It is immutable and safe for concurrent use.
type Export struct {
	name, match, collection string
	format                  format
	comma                   rune
	records                 jsonPath
	rules                   []*rule
	plan                    []outNode
	lim                     Limits
	modified                string // dateLastModified for records whose rules set none; "" for none
	values                  bool   // rows carry their record as Values too
}

// Name returns the export's name.
func (e *Export) Name() string { return e.name }

// Collection returns the OneRoster collection the export produces.
func (e *Export) Collection() string { return e.collection }

// Format returns "csv" or "json".
func (e *Export) Format() string {
	if e.format == formatJSON {
		return "json"
	}
	return "csv"
}

// WithModified returns a copy of the export that writes t (RFC 3339, UTC, milliseconds) as the
// dateLastModified of records whose rules do not set one. The gateway requires dateLastModified in the
// JSON binding; the time the SIS produced the export is the usual choice. A zero t writes none.
func (e *Export) WithModified(t time.Time) *Export {
	c := *e
	c.modified = ""
	if !t.IsZero() {
		c.modified = t.UTC().Truncate(time.Millisecond).Format("2006-01-02T15:04:05.000Z")
	}
	return &c
}

// Map maps a file in the export's format: MapCSV or MapJSON.
func (e *Export) Map(fileName string, r io.Reader, fn func(Row) error) error {
	if e.format == formatJSON {
		return e.MapJSON(fileName, r, fn)
	}
	return e.MapCSV(fileName, r, fn)
}

// Matches reports whether the export's match glob matches the base name of fileName, ignoring case.
func (e *Export) Matches(fileName string) bool {
	if e.match == "" {
		return false
	}
	base := strings.ToLower(path.Base(strings.ReplaceAll(fileName, `\`, "/")))
	ok, _ := path.Match(e.match, base) // the pattern was checked by Parse
	return ok
}
