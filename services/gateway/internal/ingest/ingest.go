// Package ingest decodes and validates the gateway's public event API: a JSON batch or NDJSON body of
// events, each checked on its own so that good events are accepted beside bad ones, and each error names
// the field it is about.
package ingest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/edtech-analytics/platform/libs/records"
)

// FieldError is one problem with one field of one event.
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// Rejected is an event that failed validation.
type Rejected struct {
	Index   int          `json:"index"`
	EventID string       `json:"event_id,omitempty"`
	Errors  []FieldError `json:"errors"`
	Raw     []byte       `json:"-"`
}

// Accepted is a valid event, converted to its raw record.
type Accepted struct {
	Index int
	Event *records.RawEvent
}

// SyntaxError is a body that is not valid JSON or NDJSON: nothing in it is accepted.
type SyntaxError struct {
	Offset int64 // byte offset of the problem in the body
	Line   int   // 1-based line, for NDJSON
	Msg    string
}

func (e *SyntaxError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("line %d: %s", e.Line, e.Msg)
	}
	return fmt.Sprintf("byte offset %d: %s", e.Offset, e.Msg)
}

// ErrTooManyEvents is returned when a batch holds more events than allowed.
var ErrTooManyEvents = errors.New("too many events in one request")

// SplitJSON splits a `{"events":[...]}` body into its raw events.
func SplitJSON(body []byte, maxEvents int) ([]json.RawMessage, error) {
	var doc struct {
		Events []json.RawMessage `json:"events"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&doc); err != nil {
		return nil, syntaxError(err, dec.InputOffset())
	}
	if dec.More() {
		return nil, &SyntaxError{Offset: dec.InputOffset(), Msg: "unexpected data after the JSON document"}
	}
	if doc.Events == nil {
		return nil, &SyntaxError{Offset: 0, Msg: `body must be an object with an "events" array`}
	}
	if len(doc.Events) > maxEvents {
		return nil, fmt.Errorf("%w: %d events, at most %d", ErrTooManyEvents, len(doc.Events), maxEvents)
	}
	return doc.Events, nil
}

// SplitNDJSON splits an NDJSON body (one event object per line; blank lines ignored) into its events.
func SplitNDJSON(body []byte, maxEvents int) ([]json.RawMessage, error) {
	var out []json.RawMessage
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 0, 64<<10), len(body)+1)
	var offset int64
	for line := 1; sc.Scan(); line++ {
		b := bytes.TrimSpace(sc.Bytes())
		start := offset
		offset += int64(len(sc.Bytes())) + 1
		if len(b) == 0 {
			continue
		}
		if !json.Valid(b) || b[0] != '{' {
			return nil, &SyntaxError{Offset: start, Line: line, Msg: "not a JSON object"}
		}
		if len(out) == maxEvents {
			return nil, fmt.Errorf("%w: more than %d", ErrTooManyEvents, maxEvents)
		}
		out = append(out, json.RawMessage(bytes.Clone(b)))
	}
	if err := sc.Err(); err != nil {
		return nil, &SyntaxError{Offset: offset, Msg: err.Error()}
	}
	return out, nil
}

func syntaxError(err error, offset int64) error {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return &SyntaxError{Offset: se.Offset, Msg: se.Error()}
	case errors.As(err, &te):
		return &SyntaxError{Offset: te.Offset, Msg: fmt.Sprintf("%s must be %s", orRoot(te.Field), te.Type)}
	case errors.Is(err, io.EOF):
		return &SyntaxError{Offset: 0, Msg: "empty body"}
	case errors.Is(err, io.ErrUnexpectedEOF):
		return &SyntaxError{Offset: offset, Msg: "unexpected end of body"}
	}
	return &SyntaxError{Offset: offset, Msg: err.Error()}
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
	EventID       string          `json:"event_id"`
	Type          string          `json:"type"`
	OccurredAt    string          `json:"occurred_at"`
	SchemaVersion *int            `json:"schema_version"`
	Actor         *actor          `json:"actor"`
	SchoolID      *string         `json:"school_id"`
	ClassID       *string         `json:"class_id"`
	SessionID     *string         `json:"session_id"`
	Payload       json.RawMessage `json:"payload"`
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
		_ = json.Unmarshal(b, &idOnly)
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
		if !roles[in.Actor.Role] {
			v.add("actor.role", "must be one of student, teacher, administrator, aide, guardian, parent, proctor")
		}
		ev.Actor = records.Actor{SISID: in.Actor.SISID, Role: in.Actor.Role}
	}
	v.id("school_id", deref(in.SchoolID), false)
	v.id("class_id", deref(in.ClassID), false)
	v.id("session_id", deref(in.SessionID), false)

	decode, ok := payloadDecoders[in.Type]
	switch {
	case in.Type == "":
		v.add("type", "is required")
	case !ok:
		v.add("type", fmt.Sprintf("unknown event type %q; known: %s", in.Type, strings.Join(eventTypes(), ", ")))
	case len(in.Payload) == 0 || string(in.Payload) == "null":
		v.add("payload", "is required")
	default:
		decode(v, in.Payload, ev)
	}
	return ev, ev.EventID, v.errs
}

func strictUnmarshal(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// jsonField names the field a decoding error is about, under prefix.
func jsonField(err error, prefix string) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field != "" {
		return join(prefix, te.Field)
	}
	if f, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return join(prefix, strings.Trim(f, `"`))
	}
	return orRoot(prefix)
}

func jsonMessage(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Sprintf("must be a JSON %s, not %s", jsonKind(te.Type.Kind().String()), te.Value)
	}
	if strings.HasPrefix(err.Error(), "json: unknown field ") {
		return "is not a known field"
	}
	return strings.TrimPrefix(err.Error(), "json: ")
}

func jsonKind(goKind string) string {
	switch goKind {
	case "string":
		return "string"
	case "float64", "float32", "int", "int64", "int32":
		return "number"
	case "bool":
		return "boolean"
	case "slice":
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
