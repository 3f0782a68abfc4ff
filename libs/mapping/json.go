package mapping

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"
)

// MapJSON maps a JSON export, calling fn once per element of the array at the export's records path, in
// order. Elements are decoded one at a time: memory is bounded by Limits, not by the file. An element
// that cannot be mapped (not an object, a value no rule can convert) is passed to fn with Errors. A
// document with no array at the records path, a syntax error (after which JSON cannot be resynchronised)
// or an element above Limits.MaxRowBytes stops the file with an error wrapping ErrInvalidExport, after
// the rows before it. An error from fn stops the file and is returned wrapped.
func (e *Export) MapJSON(fileName string, r io.Reader, fn func(Row) error) error {
	if e.format != formatJSON {
		return fmt.Errorf("%w: export %q reads CSV: use MapCSV", ErrWrongFormat, e.name)
	}
	br := bufio.NewReader(r)
	if b, err := br.Peek(len(bom)); err == nil && bytes.Equal(b, bom) {
		if _, err := br.Discard(len(bom)); err != nil {
			return fmt.Errorf("%s: skipping the byte order mark: %w", fileName, err)
		}
	}
	lr := &limitReader{r: br, limit: int64(e.lim.MaxRowBytes) + readSlack}
	dec := json.NewDecoder(lr)
	if err := seek(dec, lr, e.records); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrInvalidExport, fileName, err)
	}
	j := &jsonRow{e: e, name: fileName}
	var s rowState
	for i := 0; ; i++ {
		lr.mark = dec.InputOffset()
		if !dec.More() {
			break
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return fmt.Errorf("%w: %s%s[%d]: %s; the rest of the file could not be read",
				ErrInvalidExport, fileName, e.records.text, i, jsonMessage(err, e.lim))
		}
		row := j.mapRow(&s, i, raw)
		row.Index = i
		if err := fn(row); err != nil {
			return fmt.Errorf("%s%s[%d]: %w", fileName, e.records.text, i, err)
		}
	}
	if _, err := dec.Token(); err != nil { // the array's closing ]
		return fmt.Errorf("%w: %s: at the end of %s: %s", ErrInvalidExport, fileName, e.records.text, jsonMessage(err, e.lim))
	}
	for {
		lr.mark = dec.InputOffset()
		_, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%w: %s: after %s: %s", ErrInvalidExport, fileName, e.records.text, jsonMessage(err, e.lim))
		}
	}
}

func jsonMessage(err error, lim Limits) string {
	switch {
	case errors.Is(err, errRowTooLarge):
		return fmt.Sprintf("a value longer than %d bytes (Limits.MaxRowBytes)", lim.MaxRowBytes)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "unexpected end of the document"
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("invalid JSON at byte %d: %v", se.Offset, se)
	}
	return err.Error()
}

// seek reads the document up to the opening [ of the array at p.
func seek(dec *json.Decoder, lr *limitReader, p jsonPath) error {
	at := "$"
	for _, s := range p.segs {
		lr.mark = dec.InputOffset()
		tok, err := dec.Token()
		if err != nil {
			return fmt.Errorf("reading %s: %s", at, jsonMessage(err, Limits{MaxRowBytes: int(lr.limit - readSlack)}))
		}
		if s.index < 0 {
			if tok != json.Delim('{') {
				return fmt.Errorf("%s is not an object, so it has no %q", at, s.key)
			}
			at += "." + s.key
			for {
				lr.mark = dec.InputOffset()
				if !dec.More() {
					return fmt.Errorf("no key %s in the document", at)
				}
				k, err := dec.Token()
				if err != nil {
					return fmt.Errorf("reading %s: %s", at, jsonMessage(err, Limits{MaxRowBytes: int(lr.limit - readSlack)}))
				}
				if k == s.key {
					break
				}
				if err := skip(dec, lr); err != nil {
					return fmt.Errorf("reading %s: %s", at, jsonMessage(err, Limits{MaxRowBytes: int(lr.limit - readSlack)}))
				}
			}
			continue
		}
		if tok != json.Delim('[') {
			return fmt.Errorf("%s is not an array, so it has no element %d", at, s.index)
		}
		at += fmt.Sprintf("[%d]", s.index)
		for range s.index {
			if !dec.More() {
				return fmt.Errorf("no element %s in the document", at)
			}
			if err := skip(dec, lr); err != nil {
				return fmt.Errorf("reading %s: %s", at, jsonMessage(err, Limits{MaxRowBytes: int(lr.limit - readSlack)}))
			}
		}
		if !dec.More() {
			return fmt.Errorf("no element %s in the document", at)
		}
	}
	lr.mark = dec.InputOffset()
	tok, err := dec.Token()
	if err != nil {
		return fmt.Errorf("reading %s: %s", at, jsonMessage(err, Limits{MaxRowBytes: int(lr.limit - readSlack)}))
	}
	if tok != json.Delim('[') {
		return fmt.Errorf("%s is not an array of records", at)
	}
	return nil
}

// skip reads past one value, token by token, so a large value is never held whole.
func skip(dec *json.Decoder, lr *limitReader) error {
	depth := 0
	for {
		lr.mark = dec.InputOffset()
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			depth++
		case json.Delim('}'), json.Delim(']'):
			depth--
		}
		if depth == 0 {
			return nil
		}
	}
}

// limitReader fails once more than limit bytes have been read past mark, and reads at most readSlack
// bytes at a time, so a JSON decoder cannot hold more than one oversized value.
type limitReader struct {
	r      io.Reader
	pulled int64
	mark   int64
	limit  int64
}

func (l *limitReader) Read(p []byte) (int, error) {
	if l.pulled-l.mark > l.limit {
		return 0, errRowTooLarge
	}
	if len(p) > readSlack {
		p = p[:readSlack]
	}
	n, err := l.r.Read(p)
	l.pulled += int64(n)
	return n, err
}

// jsonRow is the element being mapped; it is the source of its values.
type jsonRow struct {
	e     *Export
	name  string
	index int
	raw   json.RawMessage
	top   map[string]json.RawMessage
	s     *rowState
	one   [1]string
	list  []string
}

func (j *jsonRow) mapRow(s *rowState, i int, raw json.RawMessage) Row {
	row := Row{File: j.name, Line: i, Collection: j.e.collection, Raw: raw}
	whole := Position{File: j.name, Line: i, Column: "$"}
	if len(raw) > j.e.lim.MaxRowBytes {
		row.Errors = []FieldError{{Position: whole, Message: fmt.Sprintf("the element is %d bytes, more than %d (Limits.MaxRowBytes)", len(raw), j.e.lim.MaxRowBytes)}}
		return row
	}
	j.top = nil
	if t := bytes.TrimSpace(raw); len(t) == 0 || t[0] != '{' || json.Unmarshal(raw, &j.top) != nil {
		row.Errors = []FieldError{{Position: whole, Message: "the element is not a JSON object"}}
		return row
	}
	j.index, j.raw, j.s = i, raw, s
	s.reset(len(j.e.rules))
	for _, r := range j.e.rules {
		s.eval(r, j)
	}
	if len(s.errs) == 0 {
		row.Record, row.Values = j.e.record(s, Position{File: j.name, Line: i, Column: "$"})
	}
	row.Errors, row.Findings = s.errs, s.findings
	return row
}

func (j *jsonRow) at(p jsonPath) Position {
	return Position{File: j.name, Line: j.index, Column: p.text}
}

// scalar returns the text of a string, number or boolean; null is "". ok is false (and an error is
// reported) for anything else.
func (j *jsonRow) scalar(r *rule, p jsonPath, v json.RawMessage) (string, bool) {
	v = bytes.TrimSpace(v)
	if len(v) > j.e.lim.MaxFieldBytes {
		j.s.fail(j.at(p), r.tgt.canon, "the value is %d bytes, more than %d (Limits.MaxFieldBytes)", len(v), j.e.lim.MaxFieldBytes)
		return "", false
	}
	if len(v) == 0 {
		return "", true
	}
	switch v[0] {
	case 'n':
		return "", true
	case '"':
		var s string
		if !utf8.Valid(v) {
			j.s.fail(j.at(p), r.tgt.canon, "the value is not valid UTF-8")
			return "", false
		}
		if err := json.Unmarshal(v, &s); err != nil {
			j.s.fail(j.at(p), r.tgt.canon, "the value is not a JSON string")
			return "", false
		}
		return s, true
	case '{':
		j.s.fail(j.at(p), r.tgt.canon, "the value is an object, not a string, number or boolean")
		return "", false
	case '[':
		j.s.fail(j.at(p), r.tgt.canon, "the value is an array: only a list target such as grades[] takes one")
		return "", false
	}
	return string(v), true // a number, true or false, as written
}

func (j *jsonRow) from(r *rule, i int) ([]string, bool, bool) {
	p := r.paths[i]
	v, err := p.lookup(j.top, j.raw)
	if err != nil {
		return nil, false, true
	}
	if t := bytes.TrimSpace(v); len(t) > 0 && t[0] == '[' && r.tgt.leafList() {
		var elems []json.RawMessage
		if json.Unmarshal(t, &elems) != nil {
			return nil, true, true
		}
		j.list = j.list[:0]
		for _, el := range elems {
			s, ok := j.scalar(r, p, el)
			if !ok {
				return nil, true, false
			}
			j.list = append(j.list, s)
		}
		return j.list, true, true
	}
	s, ok := j.scalar(r, p, v)
	if !ok {
		return nil, true, false
	}
	j.one[0] = s
	return j.one[:], true, true
}

func (j *jsonRow) part(r *rule, i int) (string, bool) {
	v, err := r.parts[i].lookup(j.top, j.raw)
	if err != nil {
		return "", true
	}
	return j.scalar(r, r.parts[i], v)
}

func (j *jsonRow) pos(r *rule, i int) Position {
	if r.from != nil {
		return j.at(r.paths[i])
	}
	for k, p := range r.concat {
		if !p.literal {
			return j.at(r.parts[k])
		}
	}
	return Position{File: j.name, Line: j.index}
}
