package caliper

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/edtech-analytics/platform/services/gateway/internal/ingest"
)

// example builds a Caliper 1.2 event in the shape of the spec's examples: the learner of
// https://example.edu/users/554433 acting on object, with the given extra properties.
func example(n int, typ, action, object, extra string) string {
	if extra != "" {
		extra = "," + extra
	}
	return fmt.Sprintf(`{"@context":"http://purl.imsglobal.org/ctx/caliper/v1p2","id":"urn:uuid:%08d-3740-4298-9bec-1154571dc211",`+
		`"type":%q,"actor":{"id":"https://example.edu/users/554433","type":"Person"},"action":%q,"object":%s,`+
		`"eventTime":"2026-11-15T10:15:00.000Z","edApp":{"id":"https://example.edu","type":"SoftwareApplication"},`+
		`"group":{"id":"https://example.edu/terms/201801/courses/7/sections/1","type":"CourseSection","courseNumber":"CPS 435-01"},`+
		`"membership":{"id":"https://example.edu/terms/201801/courses/7/sections/1/rosters/1","type":"Membership",`+
		`"member":"https://example.edu/users/554433","organization":"https://example.edu/terms/201801/courses/7/sections/1",`+
		`"roles":["Learner"],"status":"Active"}%s}`, n, typ, action, object, extra)
}

const (
	document   = `{"id":"https://example.edu/etexts/201.epub","type":"Document","name":"IMS Caliper Implementation Guide"}`
	assessment = `{"id":"https://example.edu/terms/201801/courses/7/sections/1/assess/1","type":"Assessment","maxScore":15.0}`
	attempt    = `{"id":"https://example.edu/terms/201801/courses/7/sections/1/assess/1/users/554433/attempts/1","type":"Attempt",` +
		`"assignee":{"id":"https://example.edu/users/554433","type":"Person"},` +
		`"assignable":{"id":"https://example.edu/terms/201801/courses/7/sections/1/assess/1","type":"Assessment"},"count":2,` +
		`"endedAtTime":"2026-11-15T10:55:30.000Z"}`
	score = `"generated":{"id":"https://example.edu/terms/201801/courses/7/sections/1/assess/1/users/554433/attempts/1/scores/1",` +
		`"type":"Score","scoreGiven":12.5,"maxScore":15.0}`
)

// TestEveryEventTypeIsTaken: an example of every Caliper 1.2 event type (and an action of each) maps onto
// the platform's type the package comment names, or onto a generic event.
func TestEveryEventTypeIsTaken(t *testing.T) {
	tests := []struct {
		typ, action, object, extra string
		want                       string
		check                      func(p map[string]any) bool
	}{
		{"AnnotationEvent", "Bookmarked", document, `"generated":{"id":"https://example.com/users/554433/texts/imscaliperimplguide/bookmarks/1","type":"BookmarkAnnotation"}`, "generic", nil},
		{"AssessmentEvent", "Started", assessment, "", "generic", nil},
		{"AssessmentEvent", "Submitted", assessment, `"generated":{"id":"https://example.edu/attempts/1","type":"Attempt","count":1}`, "generic", nil},
		{"AssessmentEvent", "Submitted", assessment, score, "assessment_result",
			func(p map[string]any) bool { return p["score"] == 12.5 && p["max_score"] == 15.0 }},
		{"AssessmentItemEvent", "Completed", `{"id":"https://example.edu/assess/1/items/3","type":"AssessmentItem"}`, "", "generic", nil},
		{"AssignableEvent", "Activated", assessment, "", "generic", nil},
		{"AssignableEvent", "Submitted", `{"id":"https://example.edu/assignments/7","type":"AssignableDigitalResource","dateToSubmit":"2026-11-20T23:59:59.000Z"}`, "",
			"assignment_submission", func(p map[string]any) bool {
				return p["assignment_id"] == "https://example.edu/assignments/7" && p["due_at"] == "2026-11-20T23:59:59.000Z" && p["status"] == "submitted"
			}},
		{"AssignableEvent", "Completed", assessment, "", "assignment_submission", nil},
		{"FeedbackEvent", "Ranked", document, `"generated":{"id":"https://example.edu/ratings/1","type":"Rating"}`, "generic", nil},
		{"ForumEvent", "Subscribed", `{"id":"https://example.edu/forums/1","type":"Forum"}`, "", "generic", nil},
		{"GradeEvent", "Graded", attempt, score, "assessment_result", func(p map[string]any) bool {
			return p["assessment_id"] == "https://example.edu/terms/201801/courses/7/sections/1/assess/1" && p["attempt"] == 2.0 &&
				p["completed_at"] == "2026-11-15T10:55:30.000Z"
		}},
		{"MediaEvent", "Paused", `{"id":"https://example.edu/videos/1225","type":"VideoObject","duration":"PT1H12M27S"}`, "", "content_view",
			func(p map[string]any) bool {
				return p["duration_seconds"] == 4347.0 && p["content_type"] == "VideoObject"
			}},
		{"MessageEvent", "Posted", `{"id":"https://example.edu/forums/1/topics/1/messages/2","type":"Message"}`, "", "generic", nil},
		{"NavigationEvent", "NavigatedTo", `{"id":"https://example.edu/terms/201801/courses/7/sections/1/pages/2","type":"WebPage"}`, "", "content_view",
			func(p map[string]any) bool { return p["duration_seconds"] == 0.0 }},
		{"QuestionnaireEvent", "Started", `{"id":"https://example.edu/surveys/100/questionnaires/30","type":"Questionnaire"}`, "", "generic", nil},
		{"QuestionnaireItemEvent", "Completed", `{"id":"https://example.edu/surveys/100/questionnaires/30/items/1","type":"QuestionnaireItem"}`, "", "generic", nil},
		{"ReadingEvent", "Viewed", document, "", "content_view", nil},
		{"ResourceManagementEvent", "Copied", document, "", "generic", nil},
		{"SearchEvent", "Searched", `{"id":"https://example.edu/catalog","type":"SoftwareApplication"}`, "", "generic", nil},
		{"SessionEvent", "LoggedIn", `{"id":"https://example.edu","type":"SoftwareApplication"}`,
			`"session":{"id":"https://example.edu/sessions/1f6442a482de72ea6ad134943812bff564a76259","type":"Session"}`, "session",
			func(p map[string]any) bool {
				return p["action"] == "login" && p["session_id"] == "https://example.edu/sessions/1f6442a482de72ea6ad134943812bff564a76259"
			}},
		{"SessionEvent", "LoggedOut", `{"id":"https://example.edu","type":"SoftwareApplication"}`, "", "session",
			func(p map[string]any) bool { return p["action"] == "logout" }},
		{"SessionEvent", "TimedOut", `{"id":"https://example.edu","type":"SoftwareApplication"}`, "", "generic", nil},
		{"SurveyEvent", "OptedIn", `{"id":"https://example.edu/surveys/100","type":"Survey"}`, "", "generic", nil},
		{"SurveyInvitationEvent", "Sent", `{"id":"https://example.edu/surveys/100/invitations/users/554433","type":"SurveyInvitation"}`, "", "generic", nil},
		{"ThreadEvent", "MarkedAsRead", `{"id":"https://example.edu/forums/1/topics/1","type":"Thread"}`, "", "generic", nil},
		{"ToolLaunchEvent", "Launched", `{"id":"https://example.com/lti/tool","type":"SoftwareApplication"}`, "", "generic", nil},
		{"ToolUseEvent", "Used", `{"id":"https://example.edu","type":"SoftwareApplication"}`,
			`"extensions":{"com.example.progress":"0.4","com.example.steps":3}`, "generic",
			func(p map[string]any) bool {
				ext, _ := p["extensions"].(map[string]any)
				return p["standard"] == "caliper" && p["type"] == "ToolUseEvent" && p["action"] == "Used" && ext["com.example.progress"] == "0.4" && ext["com.example.steps"] == "3"
			}},
		{"ViewEvent", "Viewed", document, "", "content_view", func(p map[string]any) bool {
			return p["content_id"] == "https://example.edu/etexts/201.epub" && p["content_type"] == "Document"
		}},
		{"Event", "Created", document, "", "generic", nil},
	}
	seen := map[string]bool{}
	for i, tt := range tests {
		seen[tt.typ] = true
		t.Run(tt.typ+" "+tt.action, func(t *testing.T) {
			out, errs := Convert(i, json.RawMessage(example(i, tt.typ, tt.action, tt.object, tt.extra)), "")
			if errs != nil {
				t.Fatalf("refused: %+v", errs)
			}
			var got struct {
				EventID  string            `json:"event_id"`
				Type     string            `json:"type"`
				Actor    map[string]string `json:"actor"`
				ClassID  string            `json:"class_id"`
				Occurred string            `json:"occurred_at"`
				Payload  map[string]any    `json:"payload"`
			}
			if err := json.Unmarshal(out, &got); err != nil {
				t.Fatal(err)
			}
			if got.Type != tt.want || got.EventID != fmt.Sprintf("%08d-3740-4298-9bec-1154571dc211", i) || got.Occurred != "2026-11-15T10:15:00.000Z" ||
				got.Actor["sis_id"] != "554433" || got.Actor["role"] != "student" || got.ClassID != "1" {
				t.Fatalf("mapped to %s", out)
			}
			if tt.check != nil && !tt.check(got.Payload) {
				t.Fatalf("payload %v", got.Payload)
			}
		})
	}
	for typ := range Actions {
		if !seen[typ] {
			t.Errorf("no example of %s", typ)
		}
	}
}

// TestMappedEventsPassThePlatformsChecks: what Convert makes of the examples is an event POST /v1/events
// takes, generic events included.
func TestMappedEventsPassThePlatformsChecks(t *testing.T) {
	var raws []json.RawMessage
	for i, e := range []string{
		example(1, "SessionEvent", "LoggedIn", `"https://example.edu"`, ""),
		example(2, "GradeEvent", "Graded", attempt, score),
		example(3, "AssignableEvent", "Submitted", assessment, ""),
		example(4, "ViewEvent", "Viewed", document, ""),
		example(5, "MediaEvent", "Ended", `{"id":"https://example.edu/videos/1","type":"VideoObject","duration":"PT30M"}`, ""),
		example(6, "ToolUseEvent", "Used", `{"id":"https://example.edu","type":"SoftwareApplication"}`, `"extensions":{"com.example.level":4}`),
		example(7, "AnnotationEvent", "Tagged", document, ""),
	} {
		out, errs := Convert(i, json.RawMessage(e), "")
		if errs != nil {
			t.Fatalf("event %d refused: %+v", i, errs)
		}
		raws = append(raws, out)
	}
	accepted, rejected := ingest.Validate(raws, ingest.Meta{TenantID: "d1", SourceID: "lms", ReceivedAt: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)})
	if len(rejected) != 0 || len(accepted) != len(raws) {
		t.Fatalf("rejected %+v", rejected)
	}
}

// TestPersonsAndRoles: the SIS id comes from otherIdentifiers, then the IRI's last segment, then the IRI;
// the role from the membership.
func TestPersonsAndRoles(t *testing.T) {
	for _, tt := range []struct {
		actor, membership, sis, role string
	}{
		{`{"id":"https://example.edu/users/554433","type":"Person","otherIdentifiers":[{"type":"SystemIdentifier","identifier":"lti-9","identifierType":"LtiUserId"},` +
			`{"type":"SystemIdentifier","identifier":"stu-0042","identifierType":"SisSourcedId"}]}`, "", "stu-0042", "student"},
		{`"https://example.edu/users/554433/"`, `{"id":"urn:m","type":"Membership","roles":["Instructor#TeachingAssistant"]}`, "554433", "teacher"},
		{`{"id":"urn:uuid:ff9ec22a-fc59-4ae1-ae8d-2c9463ee2f8f","type":"Person"}`, `{"id":"urn:m","type":"Membership","roles":["Mentor"]}`,
			"urn:uuid:ff9ec22a-fc59-4ae1-ae8d-2c9463ee2f8f", "aide"},
	} {
		e := fmt.Sprintf(`{"id":"urn:uuid:6d1b3e4a-3740-4298-9bec-1154571dc211","type":"ViewEvent","actor":%s,"action":"Viewed","object":%q,`+
			`"eventTime":"2026-11-15T10:15:00Z"`, tt.actor, "https://example.edu/doc")
		if tt.membership != "" {
			e += `,"membership":` + tt.membership
		}
		out, errs := Convert(0, json.RawMessage(e+"}"), "")
		if errs != nil {
			t.Fatalf("refused: %+v", errs)
		}
		var got struct{ Actor map[string]string }
		if err := json.Unmarshal(out, &got); err != nil || got.Actor["sis_id"] != tt.sis || got.Actor["role"] != tt.role {
			t.Fatalf("actor %v from %s, want %s %s", got.Actor, tt.actor, tt.sis, tt.role)
		}
	}
}

// TestRefusedEvents: each error names a JSON pointer into the envelope.
func TestRefusedEvents(t *testing.T) {
	valid := example(7, "ViewEvent", "Viewed", document, "")
	swap := func(old, repl string) string { return strings.Replace(valid, old, repl, 1) }
	for _, tt := range []struct{ name, in, field, msg string }{
		{"not an object", `[1]`, "/data/3", "must be a Caliper event object"},
		{"id not urn:uuid", swap(`"id":"urn:uuid:00000007-3740-4298-9bec-1154571dc211"`, `"id":"https://example.edu/events/7"`), "/data/3/id", "urn:uuid"},
		{"unknown type", swap(`"type":"ViewEvent"`, `"type":"WatchEvent"`), "/data/3/type", "not a Caliper 1.2 event type"},
		{"action not allowed", swap(`"action":"Viewed"`, `"action":"Graded"`), "/data/3/action", "ViewEvent allows only Viewed"},
		{"no action", swap(`"action":"Viewed",`, ``), "/data/3/action", "is required"},
		{"no actor", swap(`"actor":{"id":"https://example.edu/users/554433","type":"Person"},`, ``), "/data/3/actor", "is required"},
		{"object without type", swap(`"type":"Document",`, ``), "/data/3/object", "needs a type"},
		{"bad time", swap(`"eventTime":"2026-11-15T10:15:00.000Z"`, `"eventTime":"15/11/2026"`), "/data/3/eventTime", "ISO 8601"},
		{"other context", swap(`"@context":"http://purl.imsglobal.org/ctx/caliper/v1p2"`, `"@context":"http://purl.imsglobal.org/ctx/caliper/v1p1"`),
			"/data/3/@context", "Caliper 1.2 context"},
		{"grade without score", example(7, "GradeEvent", "Graded", attempt, ""), "/data/3/generated/scoreGiven", "is required"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, errs := Convert(3, json.RawMessage(tt.in), "")
			for _, e := range errs {
				if e.Field == tt.field && strings.Contains(e.Message, tt.msg) {
					return
				}
			}
			t.Fatalf("errors %+v, want %s: %s", errs, tt.field, tt.msg)
		})
	}
	// Both forms of the context, and a list holding it, are taken.
	for _, ctx := range []string{`"https://purl.imsglobal.org/ctx/caliper/v1p2"`, `["http://purl.imsglobal.org/ctx/caliper/v1p2",{"ex":"https://example.edu/ctx"}]`} {
		if _, errs := Convert(0, json.RawMessage(strings.Replace(valid, `"http://purl.imsglobal.org/ctx/caliper/v1p2"`, ctx, 1)), ""); errs != nil {
			t.Fatalf("context %s refused: %+v", ctx, errs)
		}
	}
}

func TestEnvelope(t *testing.T) {
	data := `[` + example(1, "ViewEvent", "Viewed", document, "") + `]`
	env := func(sensor, sendTime, version, data string) []byte {
		return []byte(fmt.Sprintf(`{"sensor":%q,"sendTime":%q,"dataVersion":%q,"data":%s}`, sensor, sendTime, version, data))
	}
	ok := env("https://example.edu/sensors/1", "2026-11-15T11:05:01.000Z", Contexts[0], data)
	if e, err := DecodeEnvelope(ok, 10); err != nil || len(e.Data) != 1 {
		t.Fatalf("envelope: %v", err)
	}
	if _, err := DecodeEnvelope(env("https://example.edu/sensors/1", "2026-11-15T11:05:01Z", Contexts[1], data), 10); err != nil {
		t.Fatalf("the https context: %v", err)
	}
	for _, tt := range []struct {
		name string
		in   []byte
		want error
		msg  string
	}{
		{"not JSON", []byte(`{"sensor":`), ErrEnvelope, ""},
		{"platform batch", []byte(`{"events":[]}`), ErrEnvelope, "/sensor"},
		{"no sendTime", env("https://example.edu/sensors/1", "", Contexts[0], data), ErrEnvelope, "/sendTime"},
		{"bad sendTime", env("https://example.edu/sensors/1", "yesterday", Contexts[0], data), ErrEnvelope, "/sendTime"},
		{"data not an array", env("https://example.edu/sensors/1", "2026-11-15T11:05:01Z", Contexts[0], `{}`), ErrEnvelope, "data"},
		{"no data", []byte(`{"sensor":"s","sendTime":"2026-11-15T11:05:01Z","dataVersion":"http://purl.imsglobal.org/ctx/caliper/v1p2"}`), ErrEnvelope, "/data"},
		{"Caliper 1.1", env("https://example.edu/sensors/1", "2026-11-15T11:05:01Z", "http://purl.imsglobal.org/ctx/caliper/v1p1", data), ErrDataVersion, "v1p1"},
		{"too many", env("https://example.edu/sensors/1", "2026-11-15T11:05:01Z", Contexts[0], `[`+strings.Repeat(`{},`, 10)+`{}]`), ingest.ErrTooManyEvents, "10"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := DecodeEnvelope(tt.in, 10); !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("err = %v, want %v with %q", err, tt.want, tt.msg)
			}
		})
	}
}

func TestActorRules(t *testing.T) {
	person := `{"id":"https://example.edu/users/554433","type":"Person","otherIdentifiers":[{"type":"SystemIdentifier","identifier":"lti-9","identifierType":"LtiUserId"}]}`
	for _, tt := range []struct{ rule, sis string }{
		{"", "554433"}, {"iri", "https://example.edu/users/554433"}, {"iri_last_segment", "554433"}, {"identifier:LtiUserId", "lti-9"},
	} {
		e := strings.Replace(example(1, "ViewEvent", "Viewed", document, ""), `{"id":"https://example.edu/users/554433","type":"Person"}`, person, 1)
		out, errs := Convert(0, json.RawMessage(e), tt.rule)
		var got struct{ Actor map[string]string }
		if errs != nil || json.Unmarshal(out, &got) != nil || got.Actor["sis_id"] != tt.sis {
			t.Fatalf("rule %q: %s %+v, want %s", tt.rule, out, errs, tt.sis)
		}
	}
	e := strings.Replace(example(1, "ViewEvent", "Viewed", document, ""), `{"id":"https://example.edu/users/554433","type":"Person"}`, person, 1)
	if _, errs := Convert(0, json.RawMessage(e), "identifier:SisSourcedId"); len(errs) != 1 || errs[0].Field != "/data/0/actor" {
		t.Fatalf("a person without the rule's identifier: %+v", errs)
	}
}
