// Package caliper reads 1EdTech Caliper Analytics 1.2 Sensor API envelopes and turns each event into the
// platform's own event (the JSON shape of POST /v1/events), which the gateway then checks, seals and
// sends like any other:
//
//   - SessionEvent LoggedIn and LoggedOut: a session (login, logout);
//   - GradeEvent Graded, and AssessmentEvent Submitted when its generated entity carries a score: an
//     assessment result, about the graded student (the Attempt's assignee), not the grader;
//   - AssignableEvent Submitted and Completed: an assignment submission;
//   - ViewEvent, NavigationEvent, ReadingEvent and MediaEvent: a content view (duration 0 when the event
//     has none);
//   - every other valid event: a generic event (type, action, object, extensions).
//
// Caliper's urn:uuid event ids become the platform's event ids, so a resent event is dropped as a retry.
//
// A person is identified by the first of its otherIdentifiers of a SIS type (SisSourcedId,
// OneRosterSourcedId, LisSourcedId), else by the last path segment of an http(s) IRI, else by its IRI;
// the role by the event's membership (Learner: student, Instructor: teacher, ...), student when none.
package caliper

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/edtech-analytics/platform/services/gateway/internal/ingest"
	"github.com/edtech-analytics/platform/services/gateway/internal/standard"
)

// Contexts are the JSON-LD contexts of Caliper 1.2, in both forms the spec's examples use.
var Contexts = []string{"http://purl.imsglobal.org/ctx/caliper/v1p2", "https://purl.imsglobal.org/ctx/caliper/v1p2"}

// Actions are the actions each Caliper 1.2 event type allows (Caliper 1.2, appendix B). Event, the
// supertype, allows any action.
var Actions = map[string][]string{
	"AnnotationEvent":         {"Bookmarked", "Highlighted", "Shared", "Tagged"},
	"AssessmentEvent":         {"Started", "Paused", "Resumed", "Restarted", "Reset", "Submitted"},
	"AssessmentItemEvent":     {"Started", "Skipped", "Completed"},
	"AssignableEvent":         {"Activated", "Deactivated", "Started", "Completed", "Submitted", "Reviewed"},
	"FeedbackEvent":           {"Commented", "Ranked"},
	"ForumEvent":              {"Subscribed", "Unsubscribed"},
	"GradeEvent":              {"Graded"},
	"MediaEvent":              mediaActions,
	"MessageEvent":            {"MarkedAsRead", "MarkedAsUnRead", "Posted"},
	"NavigationEvent":         {"NavigatedTo"},
	"QuestionnaireEvent":      {"Started", "Submitted"},
	"QuestionnaireItemEvent":  {"Started", "Skipped", "Completed"},
	"ReadingEvent":            {"NavigatedTo", "Searched", "Viewed"}, // deprecated in 1.2, still read
	"ResourceManagementEvent": {"Archived", "Copied", "Created", "Deleted", "Described", "Downloaded", "Modified", "Printed", "Published", "Restored", "Retrieved", "Saved", "Unpublished", "Uploaded"},
	"SearchEvent":             {"Searched"},
	"SessionEvent":            {"LoggedIn", "LoggedOut", "TimedOut"},
	"SurveyEvent":             {"OptedIn", "OptedOut"},
	"SurveyInvitationEvent":   {"Accepted", "Declined", "Sent"},
	"ThreadEvent":             {"MarkedAsRead", "MarkedAsUnRead"},
	"ToolLaunchEvent":         {"Launched", "Returned"},
	"ToolUseEvent":            {"Used"},
	"ViewEvent":               {"Viewed"},
	"Event":                   nil,
}

var mediaActions = []string{"Started", "Ended", "Paused", "Resumed", "Restarted", "ForwardedTo", "JumpedTo", "ChangedResolution",
	"ChangedSize", "ChangedSpeed", "ChangedVolume", "EnabledClosedCaptioning", "DisabledClosedCaptioning", "EnteredFullScreen",
	"ExitedFullScreen", "Muted", "Unmuted", "OpenedPopout", "ClosedPopout"}

var (
	// ErrEnvelope is an envelope the Sensor API cannot take: 400.
	ErrEnvelope = errors.New("malformed Caliper envelope")
	// ErrDataVersion is an envelope of another Caliper version: 422.
	ErrDataVersion = errors.New("unsupported Caliper dataVersion")
)

// Envelope is a Sensor API envelope.
type Envelope struct {
	Sensor      string            `json:"sensor"`
	SendTime    string            `json:"sendTime"`
	DataVersion string            `json:"dataVersion"`
	Data        []json.RawMessage `json:"data"`
}

// DecodeEnvelope reads and checks an envelope of at most maxEvents events.
func DecodeEnvelope(body []byte, maxEvents int) (*Envelope, error) {
	var env Envelope
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&env); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrEnvelope, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: text after the envelope", ErrEnvelope)
	}
	switch {
	case env.Sensor == "":
		return nil, fmt.Errorf("%w: /sensor is required", ErrEnvelope)
	case env.SendTime == "":
		return nil, fmt.Errorf("%w: /sendTime is required", ErrEnvelope)
	case env.DataVersion == "":
		return nil, fmt.Errorf("%w: /dataVersion is required", ErrEnvelope)
	case env.Data == nil:
		return nil, fmt.Errorf("%w: /data must be an array of events", ErrEnvelope)
	}
	if _, err := time.Parse(time.RFC3339Nano, env.SendTime); err != nil {
		return nil, fmt.Errorf("%w: /sendTime must be an ISO 8601 date and time with a zone: %q", ErrEnvelope, env.SendTime)
	}
	if !slices.Contains(Contexts, env.DataVersion) {
		return nil, fmt.Errorf("%w %q: this endpoint takes %s", ErrDataVersion, env.DataVersion, Contexts[0])
	}
	if len(env.Data) > maxEvents {
		return nil, fmt.Errorf("%w: more than %d events", ingest.ErrTooManyEvents, maxEvents)
	}
	return &env, nil
}

// event is a Caliper event as read here: entities stay raw, each is an object or an IRI.
type event struct {
	Context    json.RawMessage            `json:"@context"`
	ID         string                     `json:"id"`
	Type       string                     `json:"type"`
	Actor      json.RawMessage            `json:"actor"`
	Action     string                     `json:"action"`
	Object     json.RawMessage            `json:"object"`
	EventTime  string                     `json:"eventTime"`
	Generated  json.RawMessage            `json:"generated"`
	Target     json.RawMessage            `json:"target"`
	EdApp      json.RawMessage            `json:"edApp"`
	Group      json.RawMessage            `json:"group"`
	Membership json.RawMessage            `json:"membership"`
	Session    json.RawMessage            `json:"session"`
	Extensions map[string]json.RawMessage `json:"extensions"`
}

// entity is the part of a Caliper entity the mapping reads.
type entity struct {
	ID               string            `json:"id"`
	Type             string            `json:"type"`
	Name             string            `json:"name"`
	OtherIdentifiers []json.RawMessage `json:"otherIdentifiers"`
	Roles            []string          `json:"roles"`
	Member           json.RawMessage   `json:"member"`
	Assignee         json.RawMessage   `json:"assignee"`
	Assignable       json.RawMessage   `json:"assignable"`
	Attempt          json.RawMessage   `json:"attempt"`
	Count            *int              `json:"count"`
	ScoreGiven       *float64          `json:"scoreGiven"`
	MaxScore         *float64          `json:"maxScore"`
	Duration         string            `json:"duration"`
	DateToSubmit     string            `json:"dateToSubmit"`
	EndedAtTime      string            `json:"endedAtTime"`
	IRI              bool              `json:"-"` // given as a bare IRI
}

// Convert turns an envelope's event i into the platform's event JSON, or says what is wrong with it,
// each error naming a JSON pointer into the envelope (/data/i/...). rule is the source's rule for its
// people's SIS ids (mapping.Actors.Caliper: identifier:<type>, iri_last_segment, iri); empty takes the
// default order.
func Convert(i int, raw json.RawMessage, rule string) (json.RawMessage, []ingest.FieldError) {
	at := func(p string) string { return "/data/" + strconv.Itoa(i) + p }
	var errs []ingest.FieldError
	add := func(p, msg string) { errs = append(errs, ingest.FieldError{Field: at(p), Message: msg}) }
	var ev event
	if err := json.Unmarshal(raw, &ev); err != nil {
		add("", "must be a Caliper event object: "+err.Error())
		return nil, errs
	}
	if len(ev.Context) > 0 && !contextOK(ev.Context) { // without one, the envelope's dataVersion says it
		add("/@context", "must be (or include) the Caliper 1.2 context "+Contexts[0])
	}
	id, ok := strings.CutPrefix(ev.ID, "urn:uuid:")
	if !ok || !ingest.IsUUID(id) {
		add("/id", "must be a urn:uuid: IRI")
	}
	allowed, known := Actions[ev.Type]
	switch {
	case ev.Type == "":
		add("/type", "is required")
	case !known:
		add("/type", fmt.Sprintf("%q is not a Caliper 1.2 event type", ev.Type))
	}
	switch {
	case ev.Action == "":
		add("/action", "is required")
	case known && allowed != nil && !slices.Contains(allowed, ev.Action):
		add("/action", fmt.Sprintf("%s allows only %s", ev.Type, strings.Join(allowed, ", ")))
	}
	if _, err := time.Parse(time.RFC3339Nano, ev.EventTime); err != nil {
		add("/eventTime", "is required, an ISO 8601 date and time with a zone")
	}
	actor, aerr := readEntity(ev.Actor)
	if aerr != "" {
		add("/actor", aerr)
	}
	object, oerr := readEntity(ev.Object)
	if oerr != "" {
		add("/object", oerr)
	}
	if len(errs) > 0 {
		return nil, errs
	}

	out := map[string]any{"event_id": strings.ToLower(id), "occurred_at": ev.EventTime}
	person := actor
	var payload map[string]any
	switch {
	case ev.Type == "SessionEvent" && (ev.Action == "LoggedIn" || ev.Action == "LoggedOut"):
		payload = map[string]any{"action": map[string]string{"LoggedIn": "login", "LoggedOut": "logout"}[ev.Action]}
		if s, _ := readEntity(ev.Session); s.ID != "" {
			payload["session_id"] = s.ID
		}
		if app, _ := readEntity(ev.EdApp); app.ID != "" {
			payload["app"] = app.ID
		}
		out["type"] = "session"
	case ev.Type == "GradeEvent" || ev.Type == "AssessmentEvent" && ev.Action == "Submitted" && hasScore(ev.Generated):
		p, who, perr := assessmentResult(ev, object)
		if perr != nil {
			errs = append(errs, ingest.FieldError{Field: at(perr.Field), Message: perr.Message})
			return nil, errs
		}
		payload, out["type"] = p, "assessment_result"
		if who.ID != "" {
			person = who
		}
	case ev.Type == "AssignableEvent" && (ev.Action == "Submitted" || ev.Action == "Completed"):
		payload = map[string]any{"assignment_id": object.ID, "submitted_at": ev.EventTime, "status": "submitted"}
		if object.DateToSubmit != "" {
			payload["due_at"] = object.DateToSubmit
		}
		out["type"] = "assignment_submission"
	case ev.Type == "ViewEvent" || ev.Type == "NavigationEvent" || ev.Type == "ReadingEvent" || ev.Type == "MediaEvent":
		payload = map[string]any{"content_id": object.ID, "content_type": orDefault(object.Type, "DigitalResource"),
			"duration_seconds": standard.DurationSeconds(object.Duration)}
		out["type"] = "content_view"
	default:
		payload = map[string]any{"standard": "caliper", "type": ev.Type, "action": ev.Action, "object_id": object.ID, "statement_id": ev.ID}
		if object.Type != "" {
			payload["object_type"] = object.Type
		}
		if ext := extensions(ev.Extensions); len(ext) > 0 {
			payload["extensions"] = ext
		}
		out["type"] = "generic"
	}
	out["payload"] = payload
	sis, ok := sisIDBy(person, rule)
	if !ok {
		add("/actor", fmt.Sprintf("the source's rule reads the SIS id from otherIdentifiers of type %s, and the person has none",
			strings.TrimPrefix(rule, "identifier:")))
		return nil, errs
	}
	out["actor"] = map[string]string{"sis_id": sis, "role": role(ev.Membership)}
	if g, _ := readEntity(ev.Group); g.ID != "" && (g.Type == "CourseSection" || g.Type == "CourseOffering" || g.Type == "Group") {
		out["class_id"] = sisID(g)
	}
	b, err := json.Marshal(out)
	if err != nil {
		add("", err.Error())
		return nil, errs
	}
	return b, nil
}

// assessmentResult maps a GradeEvent (its object an Attempt, its generated a Score) or an
// AssessmentEvent Submitted whose generated entity carries a score; it returns the payload and the
// person the result is about (the Attempt's assignee).
func assessmentResult(ev event, object entity) (map[string]any, entity, *ingest.FieldError) {
	score, _ := readEntity(ev.Generated)
	attempt := object
	if ev.Type == "AssessmentEvent" {
		if a, _ := readEntity(object.Attempt); a.ID != "" {
			attempt = a
		}
	}
	if score.ScoreGiven == nil {
		return nil, entity{}, &ingest.FieldError{Field: "/generated/scoreGiven", Message: "is required to record a grade"}
	}
	max := score.MaxScore
	if max == nil {
		max = object.MaxScore
	}
	if max == nil {
		return nil, entity{}, &ingest.FieldError{Field: "/generated/maxScore", Message: "is required to record a grade"}
	}
	assessment := object.ID
	if a, _ := readEntity(attempt.Assignable); a.ID != "" {
		assessment = a.ID
	}
	n := 1
	if attempt.Count != nil && *attempt.Count > 0 {
		n = *attempt.Count
	}
	p := map[string]any{"assessment_id": assessment, "score": *score.ScoreGiven, "max_score": *max, "attempt": n}
	if attempt.EndedAtTime != "" {
		p["completed_at"] = attempt.EndedAtTime
	}
	who, _ := readEntity(attempt.Assignee)
	return p, who, nil
}

// hasScore reports whether a generated entity carries a score.
func hasScore(raw json.RawMessage) bool {
	e, _ := readEntity(raw)
	return e.ScoreGiven != nil
}

// readEntity reads an entity given as an object or as an IRI; a missing one is an error for the
// required ones.
func readEntity(raw json.RawMessage) (entity, string) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return entity{}, "is required, an entity object or its IRI"
	}
	if raw[0] == '"' {
		var iri string
		if err := json.Unmarshal(raw, &iri); err != nil || iri == "" {
			return entity{}, "must be an entity object or its IRI"
		}
		return entity{ID: iri, IRI: true}, ""
	}
	var e entity
	if err := json.Unmarshal(raw, &e); err != nil {
		return entity{}, "must be an entity object or its IRI: " + err.Error()
	}
	switch {
	case e.ID == "":
		return e, "needs an id (an IRI)"
	case e.Type == "":
		return e, "needs a type"
	}
	return e, ""
}

// sisIdentifierTypes are the otherIdentifiers types that carry a SIS id, in order of preference.
var sisIdentifierTypes = []string{"SisSourcedId", "OneRosterSourcedId", "LisSourcedId"}

// sisID returns the SIS id of a person or group entity (see the package comment).
func sisID(e entity) string {
	for _, want := range sisIdentifierTypes {
		if id := identifier(e, want); id != "" {
			return id
		}
	}
	if last := lastSegment(e.ID); last != "" {
		return last
	}
	return e.ID
}

// sisIDBy returns the SIS id of a person by the source's rule; false when the rule names an
// identifier type the person lacks.
func sisIDBy(e entity, rule string) (string, bool) {
	switch t, isIdentifier := strings.CutPrefix(rule, "identifier:"); {
	case isIdentifier:
		id := identifier(e, t)
		return id, id != ""
	case rule == "iri":
		return e.ID, true
	case rule == "iri_last_segment":
		if last := lastSegment(e.ID); last != "" {
			return last, true
		}
		return e.ID, true
	}
	return sisID(e), true
}

// identifier returns the entity's otherIdentifiers entry of the type, or "".
func identifier(e entity, typ string) string {
	for _, raw := range e.OtherIdentifiers {
		var sid struct {
			Identifier     string `json:"identifier"`
			IdentifierType string `json:"identifierType"`
		}
		if json.Unmarshal(raw, &sid) == nil && sid.IdentifierType == typ && sid.Identifier != "" {
			return sid.Identifier
		}
	}
	return ""
}

// lastSegment returns the last path segment of an http(s) IRI, or "".
func lastSegment(iri string) string {
	if u, err := url.Parse(iri); err == nil && (u.Scheme == "http" || u.Scheme == "https") {
		if last := path.Base(strings.TrimSuffix(u.Path, "/")); last != "" && last != "/" && last != "." {
			return last
		}
	}
	return ""
}

// roleOf maps Caliper membership roles to the platform's actor roles.
var roleOf = map[string]string{"Learner": "student", "Instructor": "teacher", "Administrator": "administrator",
	"TeachingAssistant": "aide", "Mentor": "aide", "Manager": "administrator", "ContentDeveloper": "teacher", "Member": "student"}

// role returns the actor's role from the event's membership, student when it names none.
func role(raw json.RawMessage) string {
	m, _ := readEntity(raw)
	for _, r := range m.Roles {
		base, _, _ := strings.Cut(r, "#") // sub-roles: Instructor#TeachingAssistant
		if to, ok := roleOf[base]; ok {
			return to
		}
	}
	return "student"
}

// extensions flattens an event's extensions into strings.
func extensions(ext map[string]json.RawMessage) map[string]string {
	out := make(map[string]string, len(ext))
	standard.Strings(out, ext)
	return out
}

// contextOK reports whether @context is, or includes, the Caliper 1.2 context.
func contextOK(raw json.RawMessage) bool {
	var one string
	if json.Unmarshal(raw, &one) == nil {
		return slices.Contains(Contexts, one)
	}
	var many []json.RawMessage
	if json.Unmarshal(raw, &many) != nil {
		return false
	}
	for _, c := range many {
		if json.Unmarshal(c, &one) == nil && slices.Contains(Contexts, one) {
			return true
		}
	}
	return false
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
