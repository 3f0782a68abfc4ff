package mapping

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

var bom = []byte{0xEF, 0xBB, 0xBF}

// readSlack is how far a reader may read past a row's end: the CSV and JSON readers' buffers.
const readSlack = 64 << 10

var errRowTooLarge = errors.New("row too large")

// MapCSV maps a CSV export with a header row, calling fn once per data row in file order. It reads one
// row at a time: memory is bounded by Limits, not by the file. A UTF-8 byte order mark is skipped and
// lines may end in CRLF. A row that cannot be mapped is passed to fn with Errors (and the rows around
// it are still mapped); problems of the whole file (the header, a quoted field that never closes, a
// row above Limits.MaxRowBytes) stop the file with an error wrapping ErrInvalidExport, after the rows
// before them. An error from fn stops the file and is returned wrapped.
func (e *Export) MapCSV(fileName string, r io.Reader, fn func(Row) error) error {
	if e.format != formatCSV {
		return fmt.Errorf("%w: export %q reads JSON: use MapJSON", ErrWrongFormat, e.name)
	}
	br := bufio.NewReader(r)
	if b, err := br.Peek(len(bom)); err == nil && bytes.Equal(b, bom) {
		if _, err := br.Discard(len(bom)); err != nil {
			return fmt.Errorf("%s: skipping the byte order mark: %w", fileName, err)
		}
	}
	t := &tee{r: br, limit: int64(e.lim.MaxRowBytes) + readSlack}
	cr := csv.NewReader(t)
	cr.Comma = e.comma
	cr.FieldsPerRecord = -1
	cr.ReuseRecord = true
	f := &csvFile{e: e, name: fileName}
	if err := f.readHeader(cr, t); err != nil {
		return err
	}
	var s rowState
	for index := 0; ; index++ {
		rec, err := cr.Read()
		off := cr.InputOffset()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if errors.Is(err, errRowTooLarge) {
			return fmt.Errorf("%w: %s: after line %d: a row longer than %d bytes (Limits.MaxRowBytes); the rest of the file was not read",
				ErrInvalidExport, fileName, f.line, e.lim.MaxRowBytes)
		}
		raw := trimEOL(t.take(off))
		var row Row
		var pe *csv.ParseError
		switch {
		case errors.As(err, &pe):
			if errors.Is(pe.Err, csv.ErrQuote) && pe.Line > pe.StartLine && t.eof && off == t.end() {
				return fmt.Errorf("%w: %s:%d: a quoted field opened on line %d never closes: the file from line %d to its end (line %d) could not be read",
					ErrInvalidExport, fileName, pe.StartLine, pe.StartLine, pe.StartLine, pe.Line)
			}
			row = f.syntaxRow(pe, raw)
		case err != nil:
			return fmt.Errorf("%s: reading after line %d: %w", fileName, f.line, err)
		default:
			f.line, _ = cr.FieldPos(0)
			row = f.mapRow(&s, rec, raw)
		}
		row.Index = index
		f.line = max(f.line, row.Line)
		if err := fn(row); err != nil {
			return fmt.Errorf("%s:%d: %w", fileName, row.Line, err)
		}
	}
}

func trimEOL(b []byte) []byte {
	b = bytes.TrimSuffix(b, []byte("\n"))
	return bytes.TrimSuffix(b, []byte("\r"))
}

// csvFile is the state of one CSV file being mapped; it is the source of its rows' values.
type csvFile struct {
	e      *Export
	name   string
	header []string
	cols   [][]int // per rule: the column of each from, -1 when absent
	parts  [][]int // per rule: the column of each concat item, -1 for literals and absent columns
	used   []int   // the columns any rule reads
	bad    []bool  // per column: its value in the current row is unusable
	rec    []string
	line   int
	one    [1]string
}

func (f *csvFile) fileErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s:1: %s", ErrInvalidExport, f.name, fmt.Sprintf(format, args...))
}

func (f *csvFile) readHeader(cr *csv.Reader, t *tee) error {
	header, err := cr.Read()
	switch {
	case errors.Is(err, io.EOF):
		return f.fileErr("the file is empty: a header row is required")
	case errors.Is(err, errRowTooLarge):
		return f.fileErr("the header is longer than %d bytes (Limits.MaxRowBytes)", f.e.lim.MaxRowBytes)
	case err != nil:
		return fmt.Errorf("%w: %s: reading the header: %w", ErrInvalidExport, f.name, err)
	}
	t.take(cr.InputOffset())
	f.line, _ = cr.FieldPos(0)
	if len(header) > f.e.lim.MaxColumns {
		return f.fileErr("the header has %d columns, more than %d (Limits.MaxColumns)", len(header), f.e.lim.MaxColumns)
	}
	f.header = append([]string(nil), header...)
	var errs []error
	seen := make(map[string]int, len(header))
	for i, h := range f.header {
		if h == "" {
			continue
		}
		if j, dup := seen[h]; dup {
			errs = append(errs, f.fileErr("columns %d and %d are both named %q", j+1, i+1, h))
			continue
		}
		seen[h] = i
	}
	usedCol := make([]bool, len(header))
	resolve := func(r *rule, name string) int {
		c, err := f.column(name)
		if err != nil {
			errs = append(errs, fmt.Errorf("%w (field rule at rules line %d, %s)", err, r.line, r.tgt.canon))
		}
		if c >= 0 {
			usedCol[c] = true
		}
		return c
	}
	f.cols, f.parts = make([][]int, len(f.e.rules)), make([][]int, len(f.e.rules))
	for _, r := range f.e.rules {
		found := false
		for _, name := range r.from {
			c := resolve(r, name)
			f.cols[r.idx] = append(f.cols[r.idx], c)
			found = found || c >= 0
		}
		for _, p := range r.concat {
			c := -1
			if !p.literal {
				c = resolve(r, p.text)
			}
			f.parts[r.idx] = append(f.parts[r.idx], c)
			found = found || c >= 0
		}
		if r.required && !found && !r.hasConst && (r.from != nil || r.concat != nil) {
			errs = append(errs, f.fileErr("no column %s, which the required field %s reads (rules line %d)",
				strings.Join(quoteAll(r.columns()), " or "), r.tgt.canon, r.line))
		}
	}
	for c, u := range usedCol {
		if u {
			f.used = append(f.used, c)
		}
	}
	f.bad = make([]bool, len(header))
	return errors.Join(errs...)
}

// columns are the columns a rule reads.
func (r *rule) columns() []string {
	if r.from != nil {
		return r.from
	}
	var out []string
	for _, p := range r.concat {
		if !p.literal {
			out = append(out, p.text)
		}
	}
	return out
}

func quoteAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = fmt.Sprintf("%q", s)
	}
	return out
}

// column finds a column by its exact name, else by its name ignoring case and surrounding spaces; -1
// when the header lacks it.
func (f *csvFile) column(name string) (int, error) {
	for i, h := range f.header {
		if h == name {
			return i, nil
		}
	}
	found := -1
	for i, h := range f.header {
		if strings.EqualFold(strings.TrimSpace(h), strings.TrimSpace(name)) {
			if found >= 0 {
				return -1, f.fileErr("column %q matches both %q (%d) and %q (%d): name one exactly", name, f.header[found], found+1, h, i+1)
			}
			found = i
		}
	}
	return found, nil
}

// syntaxRow is the row of a record encoding/csv could not parse.
func (f *csvFile) syntaxRow(pe *csv.ParseError, raw []byte) Row {
	p := Position{File: f.name, Line: pe.StartLine}
	if pe.Line == pe.StartLine {
		if c := fieldAt(raw, pe.Column, f.e.comma); c < len(f.header) {
			p.Column, p.ColumnIndex = f.header[c], c+1
		}
	}
	msg := fmt.Sprintf("%v (line %d, byte %d)", pe.Err, pe.Line, pe.Column)
	return Row{File: f.name, Line: pe.StartLine, Collection: f.e.collection, Raw: bytes.Clone(raw),
		Errors: []FieldError{{Position: p, Message: msg}}}
}

// fieldAt returns the 0-based field of a one-line record holding the 1-based byte column col.
func fieldAt(line []byte, col int, comma rune) int {
	field, quoted := 0, false
	for i, c := range string(line) {
		if i >= col-1 {
			break
		}
		switch {
		case c == '"':
			quoted = !quoted
		case c == comma && !quoted:
			field++
		}
	}
	return field
}

// mapRow maps one parsed record.
func (f *csvFile) mapRow(s *rowState, rec []string, raw []byte) Row {
	row := Row{File: f.name, Line: f.line, Collection: f.e.collection, Raw: bytes.Clone(raw)}
	whole := Position{File: f.name, Line: f.line}
	switch {
	case len(raw) > f.e.lim.MaxRowBytes:
		row.Errors = []FieldError{{Position: whole, Message: fmt.Sprintf("the row is %d bytes, more than %d (Limits.MaxRowBytes)", len(raw), f.e.lim.MaxRowBytes)}}
		return row
	case len(rec) != len(f.header):
		row.Errors = []FieldError{{Position: whole, Message: fmt.Sprintf("the row has %d fields, the header %d", len(rec), len(f.header))}}
		return row
	}
	f.rec = rec
	s.reset(len(f.e.rules))
	for _, c := range f.used {
		v := rec[c]
		f.bad[c] = true
		switch {
		case len(v) > f.e.lim.MaxFieldBytes:
			s.fail(f.at(c), "", "the value is %d bytes, more than %d (Limits.MaxFieldBytes)", len(v), f.e.lim.MaxFieldBytes)
		case !utf8.ValidString(v):
			s.fail(f.at(c), "", "the value is not valid UTF-8")
		default:
			f.bad[c] = false
		}
	}
	for _, r := range f.e.rules {
		s.eval(r, f)
	}
	if len(s.errs) == 0 {
		row.Record, row.Values = f.e.record(s, Position{File: f.name, Line: f.line})
	}
	row.Errors, row.Findings = s.errs, s.findings
	return row
}

func (f *csvFile) at(c int) Position {
	return Position{File: f.name, Line: f.line, Column: f.header[c], ColumnIndex: c + 1}
}

func (f *csvFile) from(r *rule, i int) ([]string, bool, bool) {
	c := f.cols[r.idx][i]
	switch {
	case c < 0:
		return nil, false, true
	case f.bad[c]:
		return nil, true, false
	}
	f.one[0] = f.rec[c]
	return f.one[:], true, true
}

func (f *csvFile) part(r *rule, i int) (string, bool) {
	c := f.parts[r.idx][i]
	switch {
	case c < 0:
		return "", true
	case f.bad[c]:
		return "", false
	}
	return f.rec[c], true
}

func (f *csvFile) pos(r *rule, i int) Position {
	if r.from == nil { // concat: the first column it reads that the header has
		first := -1
		for j, p := range r.concat {
			if p.literal {
				continue
			}
			if c := f.parts[r.idx][j]; c >= 0 {
				return f.at(c)
			}
			if first < 0 {
				first = j
			}
		}
		p := Position{File: f.name, Line: f.line}
		if first >= 0 {
			p.Column = r.concat[first].text
		}
		return p
	}
	if c := f.cols[r.idx][i]; c >= 0 {
		return f.at(c)
	}
	return Position{File: f.name, Line: f.line, Column: r.from[i]}
}

// tee keeps the bytes a reader reads since the end of the last row taken, so each row's raw bytes can be
// handed on; it fails once a row runs past limit.
type tee struct {
	r     io.Reader
	buf   []byte
	base  int64 // offset of buf[0]
	start int64 // offset of the end of the last row taken
	limit int64
	eof   bool
}

func (t *tee) Read(p []byte) (int, error) {
	if t.end()-t.start > t.limit {
		return 0, errRowTooLarge
	}
	n, err := t.r.Read(p)
	t.buf = append(t.buf, p[:n]...)
	if errors.Is(err, io.EOF) {
		t.eof = true
	}
	return n, err
}

func (t *tee) end() int64 { return t.base + int64(len(t.buf)) }

// take returns the bytes from the end of the last row taken up to off, valid until the next call.
func (t *tee) take(off int64) []byte {
	if d := int(t.start - t.base); d > readSlack && d > len(t.buf)/2 {
		n := copy(t.buf, t.buf[d:])
		t.buf, t.base = t.buf[:n], t.start
	}
	if off < t.start || off > t.end() {
		return nil
	}
	raw := t.buf[t.start-t.base : off-t.base]
	t.start = off
	return raw
}
