package ingest

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/edtech-analytics/platform/libs/records"
	"github.com/go-json-experiment/json/jsontext"
)

var meta = Meta{TenantID: "d1", SourceID: "lms", ReceivedAt: time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)}

const validAttendance = `{"event_id":"6f1c2b7e-8a3d-4c1e-9f00-000000000001","type":"attendance","occurred_at":"2026-11-20T08:00:00Z",
 "actor":{"sis_id":"S1","role":"student"},"school_id":"sch1","class_id":"c1",
 "payload":{"status":"present","date":"2026-11-20"}}`

func TestValidEventsOfEveryType(t *testing.T) {
	payloads := map[string]string{
		records.TypeAttendance:           `{"status":"tardy","date":"2026-11-20","minutes_present":300}`,
		records.TypeAssessmentResult:     `{"assessment_id":"a1","score":7.5,"max_score":10,"completed_at":"2026-11-20T09:00:00Z"}`,
		records.TypeAssignmentSubmission: `{"assignment_id":"hw1","due_at":"2026-11-19T23:59:00Z","submitted_at":"2026-11-20T07:00:00Z","status":"submitted","score":3,"max_score":5}`,
		records.TypeSession:              `{"action":"logout","duration_seconds":1200}`,
		records.TypeContentView:          `{"content_id":"v1","content_type":"video","duration_seconds":90,"percent_complete":50}`,
		records.TypeCustom:               `{"name":"quiz.hint_opened","properties":{"step":"2","plan":"trial"}}`,
		records.TypeGeneric:              `{"standard":"caliper","type":"ToolUseEvent","action":"Used","object_id":"https://example.edu/tool","object_type":"SoftwareApplication"}`,
	}
	i := 0
	for typ, p := range payloads {
		i++
		t.Run(typ, func(t *testing.T) {
			ev := fmt.Sprintf(`{"event_id":"6f1c2b7e-8a3d-4c1e-9f00-%012d","type":%q,"occurred_at":"2026-11-20T08:00:00.123456Z",
				"actor":{"sis_id":"S1","role":"student"},"school_id":"sch1","payload":%s}`, i, typ, p)
			acc, rej := Validate([]json.RawMessage{json.RawMessage(ev)}, meta)
			if len(rej) != 0 || len(acc) != 1 {
				t.Fatalf("rejected: %+v", rej)
			}
			got := acc[0].Event
			if err := got.CheckPayload(); err != nil || got.Type != typ {
				t.Fatalf("payload check: %v", err)
			}
			if got.TenantID != "d1" || got.SourceID != "lms" || got.OccurredAt.Nanosecond() != 123_000_000 || !got.ReceivedAt.Equal(meta.ReceivedAt) {
				t.Fatalf("envelope = %+v", got)
			}
		})
	}
}

func TestInvalidEventsNameTheirFields(t *testing.T) {
	tests := []struct {
		name   string
		event  string
		fields []string
	}{
		{"missing everything", `{}`, []string{"event_id", "occurred_at", "actor", "type"}},
		{"bad uuid and time", strings.Replace(strings.Replace(validAttendance, "6f1c2b7e-8a3d-4c1e-9f00-000000000001", "nope", 1), "2026-11-20T08:00:00Z", "yesterday", 1), []string{"event_id", "occurred_at"}},
		{"unknown type", strings.Replace(validAttendance, `"type":"attendance"`, `"type":"telepathy"`, 1), []string{"type"}},
		{"wrong status", strings.Replace(validAttendance, `"present"`, `"asleep"`, 1), []string{"payload.status"}},
		{"bad date", strings.Replace(validAttendance, `"date":"2026-11-20"`, `"date":"20/11/2026"`, 1), []string{"payload.date"}},
		{"string where number", `{"event_id":"6f1c2b7e-8a3d-4c1e-9f00-000000000001","type":"assessment_result","occurred_at":"2026-11-20T08:00:00Z","actor":{"sis_id":"S1","role":"student"},"payload":{"assessment_id":"a","score":"high","max_score":10}}`, []string{"payload.score"}},
		{"score above max", `{"event_id":"6f1c2b7e-8a3d-4c1e-9f00-000000000001","type":"assessment_result","occurred_at":"2026-11-20T08:00:00Z","actor":{"sis_id":"S1","role":"student"},"payload":{"assessment_id":"a","score":11,"max_score":10}}`, []string{"payload.score"}},
		{"unknown field", strings.Replace(validAttendance, `"class_id":"c1",`, `"class_id":"c1","nickname":"x",`, 1), []string{"nickname"}},
		{"unknown payload field", strings.Replace(validAttendance, `"status":"present"`, `"status":"present","mood":"ok"`, 1), []string{"payload.mood"}},
		{"bad role", strings.Replace(validAttendance, `"role":"student"`, `"role":"wizard"`, 1), []string{"actor.role"}},
		{"far future", strings.Replace(validAttendance, "2026-11-20T08:00:00Z", "2027-11-20T08:00:00Z", 1), []string{"occurred_at"}},
		{"missing payload", `{"event_id":"6f1c2b7e-8a3d-4c1e-9f00-000000000001","type":"session","occurred_at":"2026-11-20T08:00:00Z","actor":{"sis_id":"S1","role":"student"}}`, []string{"payload"}},
		{"attendance without school", strings.Replace(validAttendance, `"school_id":"sch1",`, ``, 1), []string{"school_id"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			acc, rej := Validate([]json.RawMessage{json.RawMessage(tt.event)}, meta)
			if len(acc) != 0 || len(rej) != 1 {
				t.Fatalf("accepted %d rejected %d", len(acc), len(rej))
			}
			got := map[string]bool{}
			for _, e := range rej[0].Errors {
				got[e.Field] = true
				if e.Message == "" {
					t.Errorf("field %s has no message", e.Field)
				}
			}
			for _, f := range tt.fields {
				if !got[f] {
					t.Errorf("no error for %s; got %+v", f, rej[0].Errors)
				}
			}
		})
	}
}

func TestPartialAcceptanceAndDuplicates(t *testing.T) {
	bad := strings.Replace(validAttendance, `"present"`, `"asleep"`, 1)
	dup := validAttendance
	other := strings.Replace(validAttendance, "000000000001", "000000000002", 1)
	acc, rej := Validate([]json.RawMessage{json.RawMessage(validAttendance), json.RawMessage(bad), json.RawMessage(dup), json.RawMessage(other)}, meta)
	if len(acc) != 2 || acc[0].Index != 0 || acc[1].Index != 3 {
		t.Fatalf("accepted = %+v", acc)
	}
	if len(rej) != 2 || rej[0].Index != 1 || rej[1].Index != 2 || rej[1].Errors[0].Field != "event_id" {
		t.Fatalf("rejected = %+v", rej)
	}
	if rej[0].EventID != "6f1c2b7e-8a3d-4c1e-9f00-000000000001" {
		t.Fatalf("rejected event id = %q", rej[0].EventID)
	}
}

func TestSplitting(t *testing.T) {
	var se *SyntaxError
	if _, err := SplitJSON([]byte(`{"events":[{"a":1},]}`), 10); !errors.As(err, &se) || se.Offset == 0 {
		t.Fatalf("trailing comma: %v", err)
	}
	if _, err := SplitJSON([]byte(`[]`), 10); !errors.As(err, &se) {
		t.Fatalf("array body: %v", err)
	}
	if _, err := SplitJSON([]byte(`{"events":[{},{},{}]}`), 2); !errors.Is(err, ErrTooManyEvents) {
		t.Fatalf("too many: %v", err)
	}
	evs, lines, err := SplitNDJSON([]byte("{\"a\":1}\n\n{\"b\":2}\n"), 10)
	if err != nil || len(evs) != 2 || !slices.Equal(lines, []int{1, 3}) {
		t.Fatalf("ndjson: %v %d %v", err, len(evs), lines)
	}
	// A malformed line is an event of its own, rejected by Validate with its line; the others stand.
	evs, lines, err = SplitNDJSON([]byte(validAttendance[:1]+"\n{oops\r\n\n"+strings.ReplaceAll(validAttendance, "\n", "")+"\n"), 10)
	if err != nil || len(evs) != 3 || !slices.Equal(lines, []int{1, 2, 4}) {
		t.Fatalf("ndjson with malformed lines: %v %q %v", err, evs, lines)
	}
	acc, rej := Validate(evs, meta)
	SetLines(rej, lines)
	if len(acc) != 1 || acc[0].Index != 2 || len(rej) != 2 || rej[0].Index != 0 || rej[0].Line != 1 || rej[1].Index != 1 || rej[1].Line != 2 {
		t.Fatalf("accepted %+v, rejected %+v", acc, rej)
	}
	if _, _, err := SplitNDJSON([]byte("{}\n{}\n{}\n"), 2); !errors.Is(err, ErrTooManyEvents) {
		t.Fatalf("too many lines: %v", err)
	}
}

// FuzzDecode feeds arbitrary bodies through both splitters and the validator: nothing panics, and every
// event of a body that splits is either accepted or rejected with at least one error.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"events":[` + validAttendance + `]}`))
	f.Add([]byte(validAttendance + "\n" + validAttendance))
	f.Add([]byte(`{"events":[{"type":"session","payload":{"action":1}}]}`))
	f.Add([]byte(`{"events":[{"event_id":"6f1c2b7e-8a3d-4c1e-9f00-000000000001","type":"assessment_result","occurred_at":"2026-11-20T08:00:00Z","actor":{"sis_id":"S1","role":"student"},"payload":{"assessment_id":"a","score":1e309,"max_score":10}}]}`))
	// Shapes the one-pass splitter and the strict decoder treat differently from encoding/json v1.
	f.Add([]byte(`{"events":[],"events":[` + validAttendance + `]}`))
	f.Add([]byte("{\"events\":[{\"event_id\":\"\xff\",\"type\":\"session\"}]}"))
	f.Add([]byte(`{"events":[{"EVENT_ID":"6f1c2b7e-8a3d-4c1e-9f00-000000000001","type":"session","type":"attendance"}]}`))
	f.Add([]byte(`{"events":[[[[[[[[[[[[[[[[[[[[{}]]]]]]]]]]]]]]]]]]]],"x":{"events":1}}`))
	f.Add([]byte(strings.Replace(validAttendance, `"date":"2026-11-20"`, `"date":"2026-11-20","minutes_present":-1e400`, 1) + "\r\n\r\n{}"))
	f.Fuzz(func(t *testing.T, body []byte) {
		ndjson := func(b []byte, n int) ([]json.RawMessage, error) {
			evs, _, err := SplitNDJSON(b, n)
			return evs, err
		}
		for _, split := range []func([]byte, int) ([]json.RawMessage, error){SplitJSON, ndjson} {
			evs, err := split(body, 1000)
			if err != nil {
				continue
			}
			acc, rej := Validate(evs, meta)
			if len(acc)+len(rej) != len(evs) {
				t.Fatalf("%d events, %d accepted + %d rejected", len(evs), len(acc), len(rej))
			}
			for _, a := range acc {
				if err := a.Event.CheckPayload(); err != nil || !IsUUID(a.Event.EventID) {
					t.Fatalf("accepted an event that breaks the record's rules: %+v (%v)", a.Event, err)
				}
				if !jsontext.Value(evs[a.Index]).IsValid() {
					t.Fatalf("accepted invalid JSON %q", evs[a.Index])
				}
				checkStrings(t, "", evs[a.Index])
			}
			for _, r := range rej {
				if len(r.Errors) == 0 {
					t.Fatalf("rejected without errors: %+v", r)
				}
			}
		}
	})
}

// TestStrictEventDecoding: names match exactly, a repeated member and invalid UTF-8 are errors, and a
// number too large for its field is named.
func TestStrictEventDecoding(t *testing.T) {
	tests := []struct {
		name  string
		event string
		field string
	}{
		{"name in the wrong case", strings.Replace(validAttendance, `"event_id"`, `"Event_ID"`, 1), "Event_ID"},
		{"repeated member", strings.Replace(validAttendance, `"class_id":"c1",`, `"class_id":"c1","class_id":"c2",`, 1), "class_id"},
		{"repeated payload member", strings.Replace(validAttendance, `"status":"present"`, `"status":"present","status":"absent"`, 1), "payload.status"},
		{"invalid utf-8", strings.Replace(validAttendance, `"S1"`, "\"S\xff\"", 1), "actor.sis_id"},
		{"integer overflow", strings.Replace(validAttendance, `"date":"2026-11-20"`, `"date":"2026-11-20","minutes_present":1e30`, 1), "payload.minutes_present"},
		{"fraction for an integer", strings.Replace(validAttendance, `"date":"2026-11-20"`, `"date":"2026-11-20","minutes_present":1.5`, 1), "payload.minutes_present"},
		{"object for a string", strings.Replace(validAttendance, `"school_id":"sch1"`, `"school_id":{}`, 1), "school_id"},
		{"uuid with a bad digit", strings.Replace(validAttendance, "000000000001", "00000000000g", 1), "event_id"},
		{"uuid without dashes", strings.Replace(validAttendance, "6f1c2b7e-8a3d-4c1e-9f00-000000000001", "6f1c2b7e8a3d4c1e9f00000000000001", 1), "event_id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			acc, rej := Validate([]json.RawMessage{json.RawMessage(tt.event)}, meta)
			if len(acc) != 0 || len(rej) != 1 {
				t.Fatalf("accepted %d rejected %d", len(acc), len(rej))
			}
			for _, e := range rej[0].Errors {
				if e.Field == tt.field && e.Message != "" {
					return
				}
			}
			t.Errorf("no error for %s: %+v", tt.field, rej[0].Errors)
		})
	}
	if acc, _ := Validate([]json.RawMessage{json.RawMessage(strings.ToUpper(validAttendance[:60]) + validAttendance[60:])}, meta); len(acc) != 0 {
		t.Error("upper-case member names were accepted")
	}
}

func TestSplitJSONShapes(t *testing.T) {
	tests := []struct {
		name   string
		body   string
		events []string // nil: a syntax error
	}{
		{"spaces and nesting", " {\n\"events\" : [ {\"a\":[1,{\"b\":\"]\"}]} ,\t{}\n] }\n", []string{`{"a":[1,{"b":"]"}]}`, `{}`}},
		{"other members ignored", `{"meta":{"x":[1]},"events":[{"a":1}],"more":true}`, []string{`{"a":1}`}},
		{"empty", `{"events":[]}`, []string{}},
		{"not only objects", `{"events":[1,"x",null]}`, []string{`1`, `"x"`, `null`}},
		{"no events member", `{"evnts":[]}`, nil},
		{"events not an array", `{"events":{}}`, nil},
		{"repeated events", `{"events":[],"events":[{}]}`, nil},
		{"trailing data", `{"events":[]} {}`, nil},
		{"empty body", ``, nil},
		{"truncated", `{"events":[{"a":1}`, nil},
		{"repeated other member", `{"x":1,"events":[],"x":2}`, nil},
		{"control byte outside a string", "{\"events\":[{}\x00]}", nil},
		{"unbalanced event", `{"events":[{"a":[1}]}`, nil},
		// An event that is not valid JSON only inside its strings or names is split out, to be rejected
		// on its own.
		{"invalid utf-8", "{\"events\":[\"\xff\",{}]}", []string{"\"\xff\"", `{}`}},
		{"raw nul in a string", "{\"events\":[{\"a\":\"x\x00y\"},{\"b\":\"\\\"\x01\"}]}", []string{"{\"a\":\"x\x00y\"}", "{\"b\":\"\\\"\x01\"}"}},
		{"repeated name in an event", `{"events":[{"a":1,"a":2}]}`, []string{`{"a":1,"a":2}`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := SplitJSON([]byte(tt.body), 10)
			if tt.events == nil {
				var se *SyntaxError
				if !errors.As(err, &se) {
					t.Fatalf("SplitJSON = %q, %v; want a syntax error", got, err)
				}
				return
			}
			if err != nil || len(got) != len(tt.events) {
				t.Fatalf("SplitJSON = %q, %v", got, err)
			}
			for i := range got {
				if string(got[i]) != tt.events[i] {
					t.Errorf("event %d = %q, want %q", i, got[i], tt.events[i])
				}
			}
		})
	}
}

func TestIsUUID(t *testing.T) {
	for s, want := range map[string]bool{
		"6f1c2b7e-8a3d-4c1e-9f00-000000000001": true, "6F1C2B7E-8A3D-4C1E-9F00-00000000000A": true,
		"6f1c2b7e-8a3d-4c1e-9f00-00000000001": false, "6f1c2b7e-8a3d-4c1e-9f00_000000000001": false,
		"6f1c2b7e-8a3d-4c1e-9f00-00000000000z": false, "": false, "6f1c2b7e8a3d4c1e9f00000000000001----": false,
	} {
		if IsUUID(s) != want {
			t.Errorf("IsUUID(%q) = %v", s, !want)
		}
	}
}

// TestTrailingDataIsRefused: nothing may follow the JSON document, not even a stray closing bracket
// (encoding/json's Decoder.More does not notice those).
func TestTrailingDataIsRefused(t *testing.T) {
	for _, b := range []string{`{"events":[]} }`, `{"events":[]} ]`, `{"events":[]}x`, `{"events":[]} {"events":[]}`} {
		if _, err := SplitJSON([]byte(b), 10); err == nil {
			t.Errorf("accepted %q", b)
		}
	}
}

// fullEvents are valid events of every type with every string field present.
var fullEvents = []string{
	`{"event_id":"6f1c2b7e-8a3d-4c1e-9f00-000000000001","type":"attendance","occurred_at":"2026-11-20T08:00:00Z",
	  "actor":{"sis_id":"S1","role":"student"},"school_id":"sch1","class_id":"c1","session_id":"s1",
	  "payload":{"status":"excused","date":"2026-11-20","reason":"doctor"}}`,
	`{"event_id":"6f1c2b7e-8a3d-4c1e-9f00-000000000002","type":"assessment_result","occurred_at":"2026-11-20T08:00:00Z",
	  "actor":{"sis_id":"S1","role":"student"},"payload":{"assessment_id":"a","score":1,"max_score":2,"scale":"pct","grade":"B","completed_at":"2026-11-20T08:00:00Z"}}`,
	`{"event_id":"6f1c2b7e-8a3d-4c1e-9f00-000000000003","type":"assignment_submission","occurred_at":"2026-11-20T08:00:00Z",
	  "actor":{"sis_id":"S1","role":"student"},"payload":{"assignment_id":"hw","due_at":"2026-11-20T08:00:00Z","submitted_at":"2026-11-20T08:00:00Z","status":"submitted"}}`,
	`{"event_id":"6f1c2b7e-8a3d-4c1e-9f00-000000000004","type":"session","occurred_at":"2026-11-20T08:00:00Z",
	  "actor":{"sis_id":"S1","role":"student"},"payload":{"action":"login","session_id":"x","device":"ipad","app":"lms"}}`,
	`{"event_id":"6f1c2b7e-8a3d-4c1e-9f00-000000000005","type":"content_view","occurred_at":"2026-11-20T08:00:00Z",
	  "actor":{"sis_id":"S1","role":"student"},"payload":{"content_id":"v","content_type":"video","duration_seconds":1}}`,
	`{"event_id":"6f1c2b7e-8a3d-4c1e-9f00-000000000006","type":"custom","occurred_at":"2026-11-20T08:00:00Z",
	  "actor":{"sis_id":"S1","role":"student"},"payload":{"name":"checkout","properties":{"plan":"pro","step":"3"}}}`,
	`{"event_id":"6f1c2b7e-8a3d-4c1e-9f00-000000000007","type":"generic","occurred_at":"2026-11-20T08:00:00Z",
	  "actor":{"sis_id":"S1","role":"student"},"payload":{"standard":"xapi","type":"http://adlnet.gov/expapi/verbs/experienced",
	  "action":"experienced","object_id":"http://example.edu/act/1","object_type":"http://adlnet.gov/expapi/activities/lesson",
	  "statement_id":"0b8c1f2e-1111-4a55-9d0b-0c9c1f7d3a11","extensions":{"level":"4"}}}`,
}

// stringFields returns the dotted path of every string value of a JSON object.
func stringFields(prefix string, v any) []string {
	var out []string
	switch v := v.(type) {
	case string:
		return []string{prefix}
	case map[string]any:
		for k, e := range v {
			out = append(out, stringFields(join(prefix, k), e)...)
		}
	}
	return out
}

// setField replaces the string at path in the decoded object m with f of it.
func setField(m map[string]any, path string, f func(string) string) {
	parts := strings.Split(path, ".")
	for _, p := range parts[:len(parts)-1] {
		m = m[p].(map[string]any)
	}
	last := parts[len(parts)-1]
	m[last] = f(m[last].(string))
}

// TestEveryStringFieldIsChecked: in every string field of every event type, a control character (NUL,
// escape, DEL, C1; a line break outside free text) and a value over the field's limit are rejected
// with an error naming that field; free text keeps its tabs and line breaks.
func TestEveryStringFieldIsChecked(t *testing.T) {
	mutations := []struct {
		name, msg string
		f         func(string) string
	}{
		{"nul", "must not contain control characters", func(s string) string { return s + "\x00x" }},
		{"escape", "must not contain control characters", func(s string) string { return "\x1b" + s }},
		{"del", "must not contain control characters", func(s string) string { return s + "\x7f" }},
		{"c1", "must not contain control characters", func(s string) string { return s + "\u0085" }},
		{"one megabyte", "must be at most", func(s string) string { return s + strings.Repeat("x", 1<<20) }},
	}
	checked := 0
	for _, valid := range fullEvents {
		var m map[string]any
		if err := json.Unmarshal([]byte(valid), &m); err != nil {
			t.Fatal(err)
		}
		if acc, rej := Validate([]json.RawMessage{json.RawMessage(valid)}, meta); len(acc) != 1 {
			t.Fatalf("valid event rejected: %+v", rej)
		}
		for _, field := range stringFields("", m) {
			checked++
			for _, mu := range mutations {
				var bad map[string]any
				_ = json.Unmarshal([]byte(valid), &bad)
				setField(bad, field, mu.f)
				b, err := json.Marshal(bad)
				if err != nil {
					t.Fatal(err)
				}
				acc, rej := Validate([]json.RawMessage{b}, meta)
				if len(acc) != 0 || len(rej) != 1 || !hasError(rej[0].Errors, field, mu.msg) {
					t.Errorf("%s in %s of %s: accepted %d, rejected %+v", mu.name, field, m["type"], len(acc), rej)
				}
			}
		}
	}
	if checked != 65 {
		t.Fatalf("checked %d string fields, want 65", checked)
	}
	multiline := strings.Replace(fullEvents[0], `"doctor"`, `"doctor:\r\n\tflu"`, 1)
	if acc, rej := Validate([]json.RawMessage{json.RawMessage(multiline)}, meta); len(acc) != 1 {
		t.Fatalf("a reason with a tab and line breaks was rejected: %+v", rej)
	}
	for _, field := range []string{"sis_id", "school_id"} {
		bad := strings.Replace(fullEvents[0], `"`+field+`":"`, `"`+field+`":"a\n`, 1)
		if _, rej := Validate([]json.RawMessage{json.RawMessage(bad)}, meta); len(rej) != 1 {
			t.Errorf("a line break in %s was accepted", field)
		}
	}
}

func hasError(errs []FieldError, field, msgPrefix string) bool {
	for _, e := range errs {
		if e.Field == field && strings.HasPrefix(e.Message, msgPrefix) {
			return true
		}
	}
	return false
}

// checkStrings fails t if a string in the JSON value b holds a control character other than tab, line
// feed and carriage return (those only free text may hold).
func checkStrings(t *testing.T, field string, b []byte) {
	t.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("accepted event does not decode: %v", err)
	}
	var walk func(field string, v any)
	walk = func(field string, v any) {
		switch v := v.(type) {
		case string:
			if msg := records.CheckText(v, 1<<20, records.Multiline); msg != "" {
				t.Fatalf("accepted %s %q: it %s", field, v, msg)
			}
		case map[string]any:
			for k, e := range v {
				walk(join(field, k), e)
			}
		}
	}
	walk(field, v)
}

// A custom event's properties become two arrays sorted by key; a generic event keeps its fields.
func TestCustomAndGenericPayloads(t *testing.T) {
	acc, rej := Validate([]json.RawMessage{json.RawMessage(fullEvents[5]), json.RawMessage(fullEvents[6])}, meta)
	if len(rej) != 0 || len(acc) != 2 {
		t.Fatalf("rejected: %+v", rej)
	}
	c := acc[0].Event.Custom
	if c == nil || c.Name != "checkout" || !slices.Equal(c.PropertyKeys, []string{"plan", "step"}) ||
		!slices.Equal(c.PropertyValues, []string{"pro", "3"}) {
		t.Fatalf("custom = %+v", c)
	}
	g := acc[1].Event.Generic
	if g == nil || g.Standard != "xapi" || g.Type != "http://adlnet.gov/expapi/verbs/experienced" || g.Action != "experienced" ||
		g.ObjectID != "http://example.edu/act/1" || g.StatementID == nil || !slices.Equal(g.ExtensionKeys, []string{"level"}) ||
		!slices.Equal(g.ExtensionValues, []string{"4"}) {
		t.Fatalf("generic = %+v", g)
	}
	// Without properties or extensions, the arrays are empty (Avro arrays are never null).
	bare := `{"event_id":"6f1c2b7e-8a3d-4c1e-9f00-000000000008","type":"custom","occurred_at":"2026-11-20T08:00:00Z",
	  "actor":{"sis_id":"S1","role":"student"},"payload":{"name":"opened"}}`
	if acc, rej := Validate([]json.RawMessage{json.RawMessage(bare)}, meta); len(acc) != 1 || acc[0].Event.Custom.PropertyKeys == nil {
		t.Fatalf("bare custom event: accepted %+v, rejected %+v", acc, rej)
	}
}

func TestCustomAndGenericFieldErrors(t *testing.T) {
	custom := func(p string) string {
		return `{"event_id":"6f1c2b7e-8a3d-4c1e-9f00-000000000001","type":"custom","occurred_at":"2026-11-20T08:00:00Z",
		  "actor":{"sis_id":"S1","role":"student"},"payload":` + p + `}`
	}
	generic := func(p string) string {
		return strings.Replace(custom(p), `"type":"custom"`, `"type":"generic"`, 1)
	}
	many := func(n int) string {
		var b strings.Builder
		for i := range n {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `"k%d":"v"`, i)
		}
		return "{" + b.String() + "}"
	}
	tests := []struct {
		name, event, field, msg string
	}{
		{"no name", custom(`{"properties":{}}`), "payload.name", "is required"},
		{"name with a space", custom(`{"name":"hint opened"}`), "payload.name", "must hold only"},
		{"name too long", custom(`{"name":"` + strings.Repeat("n", 129) + `"}`), "payload.name", "must be at most 128 bytes"},
		{"number value", custom(`{"name":"n","properties":{"score":7}}`), "payload.properties.score", "must be a string"},
		{"bool value", custom(`{"name":"n","properties":{"ok":true}}`), "payload.properties.ok", "must be a string"},
		{"null value", custom(`{"name":"n","properties":{"ok":null}}`), "payload.properties.ok", "must be a string"},
		{"object value", custom(`{"name":"n","properties":{"ok":{"a":"b"}}}`), "payload.properties.ok", "must be a string"},
		{"value too long", custom(`{"name":"n","properties":{"note":"` + strings.Repeat("v", 1025) + `"}}`), "payload.properties.note", "must be at most 1024 bytes"},
		{"key too long", custom(`{"name":"n","properties":{"` + strings.Repeat("k", 65) + `":"v"}}`), "payload.properties", "key"},
		{"empty key", custom(`{"name":"n","properties":{"":"v"}}`), "payload.properties", "must not have an empty key"},
		{"51 properties", custom(`{"name":"n","properties":` + many(51) + `}`), "payload.properties", "must have at most 50 members"},
		{"properties not an object", custom(`{"name":"n","properties":["a"]}`), "payload.properties", ""},
		{"unknown standard", generic(`{"standard":"scorm","type":"T"}`), "payload.standard", "must be one of"},
		{"no type", generic(`{"standard":"caliper"}`), "payload.type", "is required"},
		{"number extension", generic(`{"standard":"xapi","type":"T","extensions":{"level":4}}`), "payload.extensions.level", "must be a string"},
		{"51 extensions", generic(`{"standard":"xapi","type":"T","extensions":` + many(51) + `}`), "payload.extensions", "must have at most 50 members"},
		{"object id too long", generic(`{"standard":"xapi","type":"T","object_id":"` + strings.Repeat("o", 1025) + `"}`), "payload.object_id", "must be at most 1024 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			acc, rej := Validate([]json.RawMessage{json.RawMessage(tt.event)}, meta)
			if len(acc) != 0 || len(rej) != 1 || !hasError(rej[0].Errors, tt.field, tt.msg) {
				t.Fatalf("accepted %d, rejected %+v; want an error on %s starting %q", len(acc), rej, tt.field, tt.msg)
			}
		})
	}
	if acc, _ := Validate([]json.RawMessage{json.RawMessage(custom(`{"name":"n","properties":` + many(50) + `}`))}, meta); len(acc) != 1 {
		t.Fatal("50 properties were refused")
	}
}
