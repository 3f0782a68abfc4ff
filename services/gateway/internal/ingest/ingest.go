// Package ingest decodes and validates the gateway's public event API: a JSON batch or NDJSON body of
// events, each checked on its own so that good events are accepted beside bad ones, and each error names
// the field it is about.
package ingest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"time"

	"github.com/edtech-analytics/platform/libs/records"
	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// FieldError is one problem with one field of one event.
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// Rejected is an event that failed validation.
type Rejected struct {
	Index   int          `json:"index"`
	Line    int          `json:"line,omitempty"` // 1-based line of the event in an NDJSON body
	EventID string       `json:"event_id,omitempty"`
	Errors  []FieldError `json:"errors"`
	Raw     []byte       `json:"-"`
}

// Accepted is a valid event, converted to its raw record.
type Accepted struct {
	Index int
	Event *records.RawEvent
	// Hash is a roster record's content hash (without dateLastModified), by which the roster import
	// step tells a changed record from one sent again; nil for events.
	Hash []byte
	// File is the file a record of a mapped upload came from.
	File string
	// Size is a roster record's content in bytes as JSON, a measure of how large its Kafka record is.
	Size int
}

// SyntaxError is a body whose structure does not parse (not a JSON object with an "events" array):
// nothing in it is accepted.
type SyntaxError struct {
	Offset int64 // byte offset of the problem in the body
	Msg    string
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("byte offset %d: %s", e.Offset, e.Msg)
}

// ErrTooManyEvents is returned when a batch holds more events than allowed.
var ErrTooManyEvents = errors.New("too many events in one request")

// SplitJSON splits a `{"events":[...]}` body into its raw events in one pass. Other members of the
// object are ignored; a repeated member name is a syntax error. Only the structure of the body must
// parse: an event holding invalid UTF-8, a repeated member name or a raw control character in a string
// is split out like any other and rejected on its own by Validate, which names the field. The events
// alias body.
func SplitJSON(body []byte, maxEvents int) ([]json.RawMessage, error) {
	dec := jsontext.NewDecoder(bytes.NewReader(maskControls(body)),
		jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true))
	if tok, err := dec.ReadToken(); err != nil {
		return nil, syntaxError(err, dec)
	} else if tok.Kind() != '{' {
		return nil, &SyntaxError{Offset: 0, Msg: `body must be an object with an "events" array`}
	}
	var events []json.RawMessage
	names := map[string]bool{} // the decoder allows repeated names inside events; here they are errors
	for dec.PeekKind() != '}' {
		offset := dec.InputOffset()
		name, err := dec.ReadToken()
		if err != nil {
			return nil, syntaxError(err, dec)
		}
		if names[name.String()] {
			return nil, &SyntaxError{Offset: offset, Msg: fmt.Sprintf("repeated member %s", name)}
		}
		names[name.String()] = true
		if name.String() != "events" {
			if err := dec.SkipValue(); err != nil {
				return nil, syntaxError(err, dec)
			}
			continue
		}
		if events, err = splitEvents(dec, body, maxEvents); err != nil {
			return nil, err
		}
	}
	if _, err := dec.ReadToken(); err != nil {
		return nil, syntaxError(err, dec)
	}
	if _, err := dec.ReadToken(); !errors.Is(err, io.EOF) {
		return nil, &SyntaxError{Offset: dec.InputOffset(), Msg: "unexpected data after the JSON document"}
	}
	if events == nil {
		return nil, &SyntaxError{Offset: 0, Msg: `body must be an object with an "events" array`}
	}
	return events, nil
}

// splitEvents reads the value of "events" from dec: an array whose elements are returned as
// sub-slices of body (dec reads a copy of body of the same length).
func splitEvents(dec *jsontext.Decoder, body []byte, maxEvents int) ([]json.RawMessage, error) {
	if dec.PeekKind() != '[' {
		if err := dec.SkipValue(); err != nil {
			return nil, syntaxError(err, dec)
		}
		return nil, &SyntaxError{Offset: dec.InputOffset(), Msg: `"events" must be an array`}
	}
	if _, err := dec.ReadToken(); err != nil {
		return nil, syntaxError(err, dec)
	}
	events := []json.RawMessage{}
	for dec.PeekKind() != ']' {
		v, err := dec.ReadValue()
		if err != nil {
			return nil, syntaxError(err, dec)
		}
		if len(events) == maxEvents {
			return nil, fmt.Errorf("%w: more than %d", ErrTooManyEvents, maxEvents)
		}
		end := dec.InputOffset()
		start := end - int64(len(v))
		events = append(events, json.RawMessage(body[start:end:end]))
	}
	if _, err := dec.ReadToken(); err != nil {
		return nil, syntaxError(err, dec)
	}
	return events, nil
}

// maskControls returns body with every raw control byte inside a JSON string replaced by a space (body
// itself when there is none), so that such a byte, which JSON does not allow, does not hide the
// structure of the whole body: the events are split on the masked copy, then each is decoded from its
// original bytes, where the strict decoder names the field that holds the byte.
func maskControls(body []byte) []byte {
	var out []byte
	inString := false
	for i := 0; i < len(body); i++ {
		c := body[i]
		switch {
		case !inString:
			inString = c == '"'
		case c == '\\':
			i++ // the escaped byte; an escaped control byte is malformed either way
		case c == '"':
			inString = false
		case c < 0x20:
			if out == nil {
				out = bytes.Clone(body)
			}
			out[i] = ' '
		}
	}
	if out == nil {
		return body
	}
	return out
}

// SplitNDJSON splits an NDJSON body (one event per line; blank lines ignored) into its events and the
// 1-based line of each. Every other line is an event: one that is not a JSON object is rejected on its
// own by Validate. The events alias body.
func SplitNDJSON(body []byte, maxEvents int) ([]json.RawMessage, []int, error) {
	var (
		out   []json.RawMessage
		lines []int
	)
	for line := 1; len(body) > 0; line++ {
		text, rest, _ := bytes.Cut(body, []byte{'\n'})
		body = rest
		b := bytes.TrimSpace(text)
		if len(b) == 0 {
			continue
		}
		if len(out) == maxEvents {
			return nil, nil, fmt.Errorf("%w: more than %d", ErrTooManyEvents, maxEvents)
		}
		out = append(out, json.RawMessage(b[:len(b):len(b)]))
		lines = append(lines, line)
	}
	return out, lines, nil
}

// SetLines records the NDJSON line of each rejected event (lines as SplitNDJSON returned them).
func SetLines(rejected []Rejected, lines []int) {
	for i := range rejected {
		rejected[i].Line = lines[rejected[i].Index]
	}
}

func syntaxError(err error, dec *jsontext.Decoder) error {
	var se *jsontext.SyntacticError
	switch {
	case errors.As(err, &se):
		return &SyntaxError{Offset: se.ByteOffset, Msg: strings.TrimPrefix(se.Error(), "jsontext: ")}
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		if dec.InputOffset() == 0 {
			return &SyntaxError{Offset: 0, Msg: "empty body"}
		}
		return &SyntaxError{Offset: dec.InputOffset(), Msg: "unexpected end of body"}
	}
	return &SyntaxError{Offset: dec.InputOffset(), Msg: err.Error()}
}

func orRoot(f string) string {
	if f == "" {
		return "body"
	}
	return f
}

// Meta is what the gateway knows of a request: the tenant and source of its API key and when it arrived.
type Meta struct {
	TenantID   string
	SourceID   string
	ReceivedAt time.Time
}

// Validate decodes and checks each event. Events with a duplicate event_id inside the batch are rejected
// after the first. The order of accepted events is the order of the batch.
func Validate(raw []json.RawMessage, meta Meta) ([]Accepted, []Rejected) {
	accepted := make([]Accepted, 0, len(raw))
	var rejected []Rejected
	seen := make(map[string]int, len(raw))
	for i, r := range raw {
		ev, id, errs := decodeEvent(r, meta)
		if records.CheckText(id, records.MaxIDBytes, records.Line) != "" {
			id = "" // not echoed: the answer and the DLQ record carry only what they can hold
		}
		if len(errs) == 0 {
			if first, dup := seen[id]; dup {
				errs = append(errs, FieldError{Field: "event_id", Message: fmt.Sprintf("duplicate of event %d in this batch", first)})
			} else {
				seen[id] = i
			}
		}
		if len(errs) > 0 {
			rejected = append(rejected, Rejected{Index: i, EventID: id, Errors: errs, Raw: r})
			continue
		}
		accepted = append(accepted, Accepted{Index: i, Event: ev})
	}
	return accepted, rejected
}

// event is the public JSON shape of one event.
type event struct {
	EventID       string         `json:"event_id"`
	Type          string         `json:"type"`
	OccurredAt    string         `json:"occurred_at"`
	SchemaVersion *int           `json:"schema_version"`
	Actor         *actor         `json:"actor"`
	SchoolID      *string        `json:"school_id"`
	ClassID       *string        `json:"class_id"`
	SessionID     *string        `json:"session_id"`
	Payload       jsontext.Value `json:"payload"`
}

type actor struct {
	SISID string `json:"sis_id"`
	Role  string `json:"role"`
}

// maxSkew bounds how far in the future occurred_at may be (client clocks drift).
const maxSkew = 24 * time.Hour

var roles = set("student", "teacher", "administrator", "aide", "guardian", "parent", "proctor")

func decodeEvent(b []byte, meta Meta) (*records.RawEvent, string, []FieldError) {
	var in event
	v := &validator{}
	if err := strictUnmarshal(b, &in); err != nil {
		v.add(jsonField(err, ""), jsonMessage(err))
		// Recover the event id for the error report if the envelope is otherwise readable.
		var idOnly struct {
			EventID string `json:"event_id"`
		}
		_ = jsonv2.Unmarshal(b, &idOnly, jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true))
		return nil, idOnly.EventID, v.errs
	}
	ev := &records.RawEvent{
		EventID:       strings.ToLower(in.EventID),
		TenantID:      meta.TenantID,
		SourceID:      meta.SourceID,
		Type:          in.Type,
		ReceivedAt:    meta.ReceivedAt.UTC().Truncate(time.Millisecond),
		SchemaVersion: 1,
		SchoolID:      nonEmpty(in.SchoolID),
		ClassID:       nonEmpty(in.ClassID),
		SessionID:     nonEmpty(in.SessionID),
	}
	v.uuid("event_id", in.EventID)
	if in.SchemaVersion != nil {
		if *in.SchemaVersion != 1 {
			v.add("schema_version", "unsupported version; supported: 1")
		}
	}
	ev.OccurredAt = v.timestamp("occurred_at", in.OccurredAt, true)
	if !ev.OccurredAt.IsZero() && ev.OccurredAt.After(meta.ReceivedAt.Add(maxSkew)) {
		v.add("occurred_at", "is more than 24h in the future")
	}
	if in.Actor == nil {
		v.add("actor", "is required")
	} else {
		v.id("actor.sis_id", in.Actor.SISID, true)
		v.oneOf("actor.role", in.Actor.Role, roles, "student, teacher, administrator, aide, guardian, parent, proctor")
		ev.Actor = records.Actor{SISID: in.Actor.SISID, Role: in.Actor.Role}
	}
	v.id("school_id", deref(in.SchoolID), false)
	v.id("class_id", deref(in.ClassID), false)
	v.id("session_id", deref(in.SessionID), false)

	decode, ok := payloadDecoders[in.Type]
	switch {
	case in.Type == "":
		v.add("type", "is required")
	case !ok && !v.text("type", in.Type, records.MaxIDBytes, records.Line):
	case !ok:
		v.add("type", fmt.Sprintf("unknown event type %q; known: %s", in.Type, strings.Join(eventTypes(), ", ")))
	case len(in.Payload) == 0 || string(in.Payload) == "null":
		v.add("payload", "is required")
	default:
		decode(v, in.Payload, ev)
	}
	return ev, ev.EventID, v.errs
}

// strictUnmarshal decodes an event or payload: unknown members are errors, and so (by the decoder's
// defaults) are repeated names and invalid UTF-8; names match exactly.
func strictUnmarshal(b []byte, v any) error {
	return jsonv2.Unmarshal(b, v, jsonv2.RejectUnknownMembers(true))
}

// jsonField names the field a decoding error is about, under prefix.
func jsonField(err error, prefix string) string {
	var ptr jsontext.Pointer
	var se *jsonv2.SemanticError
	var syn *jsontext.SyntacticError
	switch {
	case errors.As(err, &se):
		ptr = se.JSONPointer
	case errors.As(err, &syn):
		ptr = syn.JSONPointer
	}
	f := prefix
	for tok := range ptr.Tokens() {
		f = join(f, tok)
	}
	return orRoot(f)
}

func jsonMessage(err error) string {
	var se *jsonv2.SemanticError
	if errors.As(err, &se) {
		switch {
		case errors.Is(err, jsonv2.ErrUnknownName):
			return "is not a known field"
		case se.GoType != nil && se.JSONKind != 0 && kindOf(se.GoType) != jsonKind(se.JSONKind):
			return fmt.Sprintf("must be a JSON %s, not %s", kindOf(se.GoType), jsonKind(se.JSONKind))
		case se.GoType != nil && isInt(se.GoType):
			return "must be a whole number in range"
		case se.Err != nil:
			return se.Err.Error()
		}
	}
	var syn *jsontext.SyntacticError
	if errors.As(err, &syn) && syn.Err != nil {
		return syn.Err.Error()
	}
	return strings.TrimPrefix(strings.TrimPrefix(err.Error(), "json: "), "jsontext: ")
}

// kindOf names the JSON kind a Go type decodes from.
func kindOf(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "string"
	case reflect.Float32, reflect.Float64, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "number"
	case reflect.Bool:
		return "boolean"
	case reflect.Slice, reflect.Array:
		return "array"
	}
	return "object"
}

func isInt(t reflect.Type) bool {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t.Kind() >= reflect.Int && t.Kind() <= reflect.Uint64
}

func jsonKind(k jsontext.Kind) string {
	switch k {
	case '"':
		return "string"
	case '0':
		return "number"
	case 't', 'f':
		return "boolean"
	case 'n':
		return "null"
	case '[':
		return "array"
	}
	return "object"
}

func join(prefix, f string) string {
	if prefix == "" {
		return f
	}
	return prefix + "." + f
}

func nonEmpty(s *string) *string {
	if s == nil || *s == "" {
		return nil
	}
	return s
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func set(vals ...string) map[string]bool {
	m := make(map[string]bool, len(vals))
	for _, v := range vals {
		m[v] = true
	}
	return m
}
