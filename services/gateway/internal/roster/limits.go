package roster

import (
	"fmt"
	"io"
)

// Limits bound what one request may make the decoder read and hold. A zero field takes its value from
// DefaultLimits.
type Limits struct {
	// MaxRecords bounds the records of a JSON collection and the data rows of a CSV package.
	MaxRecords int
	// MaxColumns bounds the columns of a CSV file's header and the fields of any of its rows.
	MaxColumns int
	// MaxHeaderBytes bounds a CSV header record; MaxRecordBytes bounds any other CSV record (a line, or
	// several when a quoted field holds line breaks).
	MaxHeaderBytes int
	MaxRecordBytes int
	// MaxFileBytes bounds one file of a package once unzipped, MaxUnzippedBytes all of them together.
	MaxFileBytes     int64
	MaxUnzippedBytes int64
}

// WithDefaults returns l with its zero fields set to DefaultLimits'.
func (l Limits) WithDefaults() Limits { return l.withDefaults() }

// DefaultLimits are the bounds a gateway applies unless configured otherwise. The OneRoster files seen
// in practice have a few dozen columns, headers of a few hundred bytes and rows well under a kilobyte.
// A request may carry a large district's whole roster: 250,000 rows (a users.csv of 200,000 students
// and their staff at about 120 bytes a row is about 25 MB unzipped), decoded a chunk at a time.
func DefaultLimits() Limits {
	return Limits{
		MaxRecords:       250_000,
		MaxColumns:       1000,
		MaxHeaderBytes:   64 << 10,
		MaxRecordBytes:   1 << 20,
		MaxFileBytes:     32 << 20,
		MaxUnzippedBytes: 64 << 20,
	}
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	if l.MaxRecords <= 0 {
		l.MaxRecords = d.MaxRecords
	}
	if l.MaxColumns <= 0 {
		l.MaxColumns = d.MaxColumns
	}
	if l.MaxHeaderBytes <= 0 {
		l.MaxHeaderBytes = d.MaxHeaderBytes
	}
	if l.MaxRecordBytes <= 0 {
		l.MaxRecordBytes = d.MaxRecordBytes
	}
	if l.MaxFileBytes <= 0 {
		l.MaxFileBytes = d.MaxFileBytes
	}
	if l.MaxUnzippedBytes <= 0 {
		l.MaxUnzippedBytes = d.MaxUnzippedBytes
	}
	return l
}

// Memory is charged with the bytes decoding is about to hold, before it holds them. An error from Grow
// stops decoding; the decoder returns it wrapped with the file and line (or record) it was reading.
// A nil Memory charges nothing.
type Memory interface {
	Grow(n int64) error
}

// What decoding holds, as charged to Memory. The bytes of the input are charged once (a zip's files by
// their declared unzipped size before any is read, a JSON body twice for its copies); each record is
// charged the rest: its decoded event and bookkeeping, a string header per field, a map entry per
// metadata value, and a rejected record's report twice (the answer and its dead letter). The figures
// are measured (TestChargesCoverWhatDecodingHolds) with some margin.
const (
	recordCost   = 1 << 10 // a record's event, payload structs and bookkeeping
	fieldCost    = 16      // a field's string header
	metadataCost = 48      // a metadata value's map entry
)

func grow(mem Memory, n int64) error {
	if mem == nil || n <= 0 {
		return nil
	}
	return mem.Grow(n)
}

// csvGuard sits between a file of the package and the CSV reader and bounds what encoding/csv does not:
// it reads a whole record into memory, however long, and splits it into as many fields as it has,
// before the caller sees any of it. The guard follows the records as they stream by (quotes, separators
// and line breaks; RFC 4180, as the reader parses them) and fails the read as soon as a record goes over
// its bounds, so the reader never holds more than one bounded record. A header over its bounds is read
// to its end (without keeping it) so that the error can say how large it is.
type csvGuard struct {
	r    io.Reader
	file string
	lim  *Limits

	line   int  // line of the next byte, from 1
	start  int  // line the current record starts on
	quoted bool // inside a quoted field
	size   int  // bytes of the current record so far, its line break included
	fields int  // fields of the current record so far; 0 before its first byte
	header bool // the header record has been read
	blank  bool // the current record has only line-break bytes so far
	err    error
}

func newCSVGuard(r io.Reader, file string, lim *Limits) *csvGuard {
	return &csvGuard{r: r, file: file, lim: lim, line: 1}
}

func (g *csvGuard) Read(p []byte) (int, error) {
	if g.err != nil {
		return 0, g.err
	}
	n, err := g.r.Read(p)
	if i := g.scan(p[:n]); i < n {
		return i, g.fail(p[i+1 : n])
	}
	return n, err
}

// scan follows p and returns the length of its prefix within the bounds (len(p) when all of it is).
func (g *csvGuard) scan(p []byte) int {
	for i, b := range p {
		if g.fields == 0 {
			g.start, g.fields, g.size, g.blank = g.line, 1, 0, true
		}
		if b == '\n' && !g.quoted { // the record's end; its line break is not counted
			g.line++
			g.header = g.header || !g.blank // the reader skips blank lines: they are not the header
			g.fields = 0
			continue
		}
		g.size++
		switch b {
		case '"':
			g.quoted = !g.quoted
		case ',':
			if !g.quoted {
				g.fields++
			}
		case '\n':
			g.line++
		}
		if b != '\r' {
			g.blank = false
		}
		if g.over() {
			return i
		}
	}
	return len(p)
}

func (g *csvGuard) over() bool {
	if !g.header {
		return g.size > g.lim.MaxHeaderBytes || g.fields > g.lim.MaxColumns
	}
	return g.size > g.lim.MaxRecordBytes || g.fields > g.lim.MaxColumns
}

// fail builds the error of the record over its bounds.
func (g *csvGuard) fail(rest []byte) error {
	where := fmt.Sprintf("%s line %d", g.file, g.start)
	if g.header {
		if g.fields > g.lim.MaxColumns {
			g.err = fmt.Errorf("%w: %s: more than %d fields, at most %d", ErrPackageTooLarge, where, g.lim.MaxColumns, g.lim.MaxColumns)
		} else {
			g.err = fmt.Errorf("%w: %s: a record of more than %d bytes, at most %d", ErrPackageTooLarge, where, g.lim.MaxRecordBytes, g.lim.MaxRecordBytes)
		}
		return g.err
	}
	// Read the rest of the header, keeping only its size and field count.
	complete := g.drain(rest)
	var msgs []string
	if g.fields > g.lim.MaxColumns {
		msgs = append(msgs, fmt.Sprintf("%s%d columns, at most %d", atLeast(complete), g.fields, g.lim.MaxColumns))
	}
	if g.size > g.lim.MaxHeaderBytes {
		msgs = append(msgs, fmt.Sprintf("a header of %s%d bytes, at most %d", atLeast(complete), g.size, g.lim.MaxHeaderBytes))
	}
	detail := msgs[0]
	if len(msgs) > 1 {
		detail += "; " + msgs[1]
	}
	g.err = fmt.Errorf("%w: %s: %s", ErrPackageTooLarge, where, detail)
	return g.err
}

// drain counts the rest of the current record, in rest (what the last read returned after the byte
// that went over the bounds) and then read on, without keeping it. It reports whether it reached the
// record's end (false when reading failed first, e.g. at the file's bound).
func (g *csvGuard) drain(rest []byte) bool {
	if g.tail(rest) {
		return true
	}
	buf := make([]byte, 32<<10)
	for {
		n, err := g.r.Read(buf)
		if g.tail(buf[:n]) || err == io.EOF {
			return true
		}
		if err != nil {
			return false
		}
	}
}

// tail counts the bytes and fields of p up to the end of the current record, its line break left out,
// and reports whether it reached that end.
func (g *csvGuard) tail(p []byte) bool {
	for _, b := range p {
		switch {
		case b == '"':
			g.quoted = !g.quoted
		case b == ',' && !g.quoted:
			g.fields++
		case b == '\n' && !g.quoted:
			return true
		}
		g.size++
	}
	return false
}

func atLeast(complete bool) string {
	if complete {
		return ""
	}
	return "at least "
}
