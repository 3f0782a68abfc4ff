package roster

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/edtech-analytics/platform/libs/records"
	"github.com/edtech-analytics/platform/services/gateway/internal/ingest"
)

// splitCollection splits a {"<collection>":[...]} body into its records.
func splitCollection(body []byte, collection string, maxRecords int) ([]json.RawMessage, error) {
	var doc map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&doc); err != nil {
		return nil, syntaxError(err, dec.InputOffset())
	}
	// Not dec.More: it reports false for a stray "]" or "}" after the document.
	if len(bytes.TrimSpace(body[dec.InputOffset():])) > 0 {
		return nil, &ingest.SyntaxError{Offset: dec.InputOffset(), Msg: "unexpected data after the JSON document"}
	}
	shape := fmt.Sprintf("body must be an object with a %q array", collection)
	raw := doc[collection]
	if isNull(raw) {
		return nil, &ingest.SyntaxError{Msg: shape}
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, &ingest.SyntaxError{Msg: shape}
	}
	if len(items) > maxRecords {
		return nil, fmt.Errorf("%w: %d records, at most %d", ingest.ErrTooManyEvents, len(items), maxRecords)
	}
	return items, nil
}

func syntaxError(err error, offset int64) error {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return &ingest.SyntaxError{Offset: se.Offset, Msg: se.Error()}
	case errors.As(err, &te):
		return &ingest.SyntaxError{Offset: te.Offset, Msg: "body must be a JSON object"}
	case errors.Is(err, io.EOF):
		return &ingest.SyntaxError{Msg: "empty body"}
	case errors.Is(err, io.ErrUnexpectedEOF):
		return &ingest.SyntaxError{Offset: offset, Msg: "unexpected end of body"}
	}
	return &ingest.SyntaxError{Offset: offset, Msg: err.Error()}
}

func isNull(b json.RawMessage) bool {
	return len(b) == 0 || string(bytes.TrimSpace(b)) == "null"
}

// jsonSource is one record of a OneRoster JSON collection. Absent keys, null and "" all mean no value;
// keys outside the binding are ignored.
type jsonSource struct {
	prefix string // the record's path, e.g. users[3]
	m      map[string]json.RawMessage
}

func newJSONSource(prefix string, b []byte) (*jsonSource, bool) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil || m == nil {
		return nil, false
	}
	return &jsonSource{prefix: prefix, m: m}, true
}

func (s *jsonSource) at(f field) string { return s.prefix + "." + f.json }
func (s *jsonSource) where() string     { return s.prefix }
func (s *jsonSource) problem() string   { return "" }

func (s *jsonSource) raw(f field) json.RawMessage {
	b := s.m[f.json]
	if isNull(b) {
		return nil
	}
	return b
}

// scrubbed is the record's JSON for a rejection report, without its password.
func (s *jsonSource) scrubbed() []byte {
	if _, ok := s.m["password"]; !ok {
		b, _ := json.Marshal(s.m)
		return b
	}
	m := make(map[string]json.RawMessage, len(s.m))
	for k, v := range s.m {
		if k != "password" {
			m[k] = v
		}
	}
	b, _ := json.Marshal(m) // re-encoding decoded JSON cannot fail
	return b
}

func (s *jsonSource) text(f field) (string, string) {
	b := s.raw(f)
	if b == nil {
		return "", ""
	}
	var v string
	if json.Unmarshal(b, &v) != nil {
		return "", "must be a JSON string"
	}
	return v, ""
}

// elements splits a JSON array; nil when absent.
func (s *jsonSource) elements(f field) ([]json.RawMessage, bool) {
	b := s.raw(f)
	if b == nil {
		return nil, true
	}
	var out []json.RawMessage
	return out, json.Unmarshal(b, &out) == nil
}

func (s *jsonSource) texts(f field) ([]string, string) {
	const problem = "must be an array of strings"
	elems, ok := s.elements(f)
	if !ok {
		return nil, problem
	}
	out := make([]string, 0, len(elems))
	for _, e := range elems {
		var v string
		if json.Unmarshal(e, &v) != nil {
			return nil, problem
		}
		if v != "" {
			out = append(out, v)
		}
	}
	return out, ""
}

// sourcedID reads a OneRoster GUIDRef, {"href": ..., "sourcedId": ..., "type": ...}.
func sourcedID(b json.RawMessage) (string, bool) {
	var ref map[string]json.RawMessage
	if json.Unmarshal(b, &ref) != nil || ref == nil {
		return "", false
	}
	var id string
	if json.Unmarshal(ref["sourcedId"], &id) != nil || id == "" {
		return "", false
	}
	return id, true
}

func (s *jsonSource) ref(f field) (string, string) {
	b := s.raw(f)
	if b == nil {
		return "", ""
	}
	id, ok := sourcedID(b)
	if !ok {
		return "", `must be an object with a "sourcedId" string`
	}
	return id, ""
}

func (s *jsonSource) refs(f field) ([]string, string) {
	const problem = `must be an array of objects with a "sourcedId" string`
	elems, ok := s.elements(f)
	if !ok {
		return nil, problem
	}
	out := make([]string, 0, len(elems))
	for _, e := range elems {
		id, ok := sourcedID(e)
		if !ok {
			return nil, problem
		}
		out = append(out, id)
	}
	return out, ""
}

// flag is a JSON boolean or, as OneRoster 1.1 sent them, a "true"/"false" string.
func (s *jsonSource) flag(f field) (*bool, string) {
	b := s.raw(f)
	if b == nil {
		return nil, ""
	}
	var v bool
	if json.Unmarshal(b, &v) == nil {
		return &v, ""
	}
	var text string
	if json.Unmarshal(b, &text) == nil {
		if v, ok := parseBool(text); ok {
			return &v, ""
		}
	}
	return nil, "must be a JSON boolean"
}

func parseBool(s string) (bool, bool) {
	switch {
	case strings.EqualFold(s, "true"):
		return true, true
	case strings.EqualFold(s, "false"):
		return false, true
	}
	return false, false
}

// number is a JSON number or, as OneRoster 1.1 sent some, a numeric string.
func (s *jsonSource) number(f field) (*float64, string) {
	b := s.raw(f)
	if b == nil {
		return nil, ""
	}
	var v float64
	if json.Unmarshal(b, &v) == nil {
		return &v, ""
	}
	var text string
	if json.Unmarshal(b, &text) == nil {
		if text == "" {
			return nil, ""
		}
		if v, err := strconv.ParseFloat(text, 64); err == nil {
			return &v, ""
		}
	}
	return nil, "must be a JSON number"
}

func (s *jsonSource) userIDs(f field) ([]records.RosterUserID, string) {
	const problem = `must be an array of {"type", "identifier"} objects with string values`
	elems, ok := s.elements(f)
	if !ok {
		return nil, problem
	}
	out := make([]records.RosterUserID, 0, len(elems))
	for _, e := range elems {
		var id struct {
			Type       *string `json:"type"`
			Identifier *string `json:"identifier"`
		}
		if isNull(e) || json.Unmarshal(e, &id) != nil {
			return nil, problem
		}
		out = append(out, records.RosterUserID{Type: deref(id.Type), Identifier: deref(id.Identifier)})
	}
	return out, ""
}

// metadata flattens the metadata object: strings as they are, other scalars as their JSON text,
// nested objects and arrays as compact JSON; null values are left out.
func (s *jsonSource) metadata() (map[string]string, string) {
	out := map[string]string{}
	b := s.raw(same("metadata"))
	if b == nil {
		return out, ""
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(b, &m) != nil {
		return nil, "must be a JSON object"
	}
	for k, v := range m {
		if isNull(v) {
			continue
		}
		var text string
		if json.Unmarshal(v, &text) == nil {
			out[k] = text
			continue
		}
		var buf bytes.Buffer
		if err := json.Compact(&buf, v); err != nil {
			return nil, "must be a JSON object" // unreachable: v came from a valid document
		}
		out[k] = buf.String()
	}
	return out, ""
}

func (s *jsonSource) roles() ([]source, string) {
	f := field{"roles", ""}
	elems, ok := s.elements(f)
	if !ok {
		return nil, "must be an array of role objects"
	}
	out := make([]source, 0, len(elems))
	for i, e := range elems {
		prefix := fmt.Sprintf("%s.roles[%d]", s.prefix, i)
		src, ok := newJSONSource(prefix, e)
		if !ok {
			return nil, fmt.Sprintf("entry %d must be a role object", i+1)
		}
		out = append(out, src)
	}
	return out, ""
}
