package ingest

import (
	"fmt"
	"slices"
	"sort"

	"github.com/edtech-analytics/platform/libs/records"
	"github.com/go-json-experiment/json/jsontext"
)

// payloadDecoders decode and check each event type's payload into the raw record.
var payloadDecoders = map[string]func(v *validator, b jsontext.Value, ev *records.RawEvent){
	records.TypeAttendance:           decodeAttendance,
	records.TypeAssessmentResult:     decodeAssessment,
	records.TypeAssignmentSubmission: decodeSubmission,
	records.TypeSession:              decodeSession,
	records.TypeContentView:          decodeContentView,
	records.TypeCustom:               decodeCustom,
	records.TypeGeneric:              decodeGeneric,
}

func eventTypes() []string {
	out := make([]string, 0, len(payloadDecoders))
	for t := range payloadDecoders {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}

// payload decodes b strictly into dst, reporting a decoding problem against its payload field.
func payload(v *validator, b jsontext.Value, dst any) bool {
	if err := strictUnmarshal(b, dst); err != nil {
		v.add(jsonField(err, "payload"), jsonMessage(err))
		return false
	}
	return true
}

var attendanceStatuses = set("present", "absent", "tardy", "excused", "early_departure", "remote")

func decodeAttendance(v *validator, b jsontext.Value, ev *records.RawEvent) {
	var in struct {
		Status         string  `json:"status"`
		Date           string  `json:"date"`
		MinutesPresent *int    `json:"minutes_present"`
		Reason         *string `json:"reason"`
	}
	if !payload(v, b, &in) {
		return
	}
	v.oneOf("payload.status", in.Status, attendanceStatuses, "present, absent, tardy, excused, early_departure, remote")
	v.optText("payload.reason", in.Reason, maxReasonBytes, records.Multiline)
	a := &records.Attendance{Status: in.Status, Date: v.date("payload.date", in.Date), MinutesPresent: in.MinutesPresent, Reason: in.Reason}
	if in.MinutesPresent != nil && (*in.MinutesPresent < 0 || *in.MinutesPresent > 24*60) {
		v.add("payload.minutes_present", "must be between 0 and 1440")
	}
	if ev.SchoolID == nil {
		v.add("school_id", "is required for attendance")
	}
	ev.Attendance = a
}

func decodeAssessment(v *validator, b jsontext.Value, ev *records.RawEvent) {
	var in struct {
		AssessmentID string   `json:"assessment_id"`
		Score        *float64 `json:"score"`
		MaxScore     *float64 `json:"max_score"`
		Scale        *string  `json:"scale"`
		Grade        *string  `json:"grade"`
		Attempt      *int     `json:"attempt"`
		CompletedAt  *string  `json:"completed_at"`
	}
	if !payload(v, b, &in) {
		return
	}
	v.id("payload.assessment_id", in.AssessmentID, true)
	v.optText("payload.scale", in.Scale, records.MaxIDBytes, records.Line)
	v.optText("payload.grade", in.Grade, records.MaxIDBytes, records.Line)
	r := &records.AssessmentResult{AssessmentID: in.AssessmentID, Scale: in.Scale, Grade: in.Grade, Attempt: 1,
		CompletedAt: v.optTimestamp("payload.completed_at", in.CompletedAt)}
	switch in.MaxScore {
	case nil:
		v.add("payload.max_score", "is required")
	default:
		v.number("payload.max_score", *in.MaxScore, 1e-9, 1e9)
		r.MaxScore = *in.MaxScore
	}
	switch {
	case in.Score == nil:
		v.add("payload.score", "is required")
	case in.MaxScore != nil:
		v.number("payload.score", *in.Score, 0, *in.MaxScore)
		r.Score = *in.Score
	}
	if in.Attempt != nil {
		if *in.Attempt < 1 {
			v.add("payload.attempt", "must be at least 1")
		}
		r.Attempt = *in.Attempt
	}
	ev.AssessmentResult = r
}

var submissionStatuses = set("submitted", "resubmitted", "graded", "returned", "missing")

func decodeSubmission(v *validator, b jsontext.Value, ev *records.RawEvent) {
	var in struct {
		AssignmentID string   `json:"assignment_id"`
		DueAt        *string  `json:"due_at"`
		SubmittedAt  string   `json:"submitted_at"`
		Status       string   `json:"status"`
		Score        *float64 `json:"score"`
		MaxScore     *float64 `json:"max_score"`
	}
	if !payload(v, b, &in) {
		return
	}
	v.id("payload.assignment_id", in.AssignmentID, true)
	v.oneOf("payload.status", in.Status, submissionStatuses, "submitted, resubmitted, graded, returned, missing")
	s := &records.AssignmentSubmission{AssignmentID: in.AssignmentID, Status: in.Status, Score: in.Score, MaxScore: in.MaxScore,
		DueAt: v.optTimestamp("payload.due_at", in.DueAt), SubmittedAt: v.timestamp("payload.submitted_at", in.SubmittedAt, true)}
	if in.MaxScore != nil {
		v.number("payload.max_score", *in.MaxScore, 1e-9, 1e9)
	}
	if in.Score != nil {
		hi := 1e9
		if in.MaxScore != nil {
			hi = *in.MaxScore
		}
		v.number("payload.score", *in.Score, 0, hi)
	}
	ev.AssignmentSubmission = s
}

var sessionActions = set("login", "logout")

func decodeSession(v *validator, b jsontext.Value, ev *records.RawEvent) {
	var in struct {
		Action          string  `json:"action"`
		SessionID       *string `json:"session_id"`
		Device          *string `json:"device"`
		App             *string `json:"app"`
		DurationSeconds *int64  `json:"duration_seconds"`
	}
	if !payload(v, b, &in) {
		return
	}
	v.oneOf("payload.action", in.Action, sessionActions, "login, logout")
	v.optText("payload.session_id", in.SessionID, records.MaxIDBytes, records.Line)
	v.optText("payload.device", in.Device, maxClientBytes, records.Line)
	v.optText("payload.app", in.App, maxClientBytes, records.Line)
	if in.DurationSeconds != nil && (*in.DurationSeconds < 0 || *in.DurationSeconds > 7*24*3600) {
		v.add("payload.duration_seconds", "must be between 0 and 604800")
	}
	if in.DurationSeconds != nil && in.Action == "login" {
		v.add("payload.duration_seconds", "is only allowed on logout")
	}
	ev.Session = &records.SessionEvent{Action: in.Action, SessionID: in.SessionID, Device: in.Device, App: in.App, DurationSeconds: in.DurationSeconds}
}

func decodeContentView(v *validator, b jsontext.Value, ev *records.RawEvent) {
	var in struct {
		ContentID       string   `json:"content_id"`
		ContentType     string   `json:"content_type"`
		DurationSeconds *int64   `json:"duration_seconds"`
		PercentComplete *float64 `json:"percent_complete"`
	}
	if !payload(v, b, &in) {
		return
	}
	v.id("payload.content_id", in.ContentID, true)
	v.id("payload.content_type", in.ContentType, true)
	c := &records.ContentView{ContentID: in.ContentID, ContentType: in.ContentType, PercentComplete: in.PercentComplete}
	switch {
	case in.DurationSeconds == nil:
		v.add("payload.duration_seconds", "is required")
	case *in.DurationSeconds < 0 || *in.DurationSeconds > 24*3600:
		v.add("payload.duration_seconds", "must be between 0 and 86400")
	default:
		c.DurationSeconds = *in.DurationSeconds
	}
	if in.PercentComplete != nil {
		v.number("payload.percent_complete", *in.PercentComplete, 0, 100)
	}
	ev.ContentView = c
}

// Bounds of custom and generic events (ADR 0018): what the events table's arrays hold per row.
const (
	maxCustomNameBytes = 128  // payload.name of a custom event
	maxPairs           = 50   // properties of a custom event, extensions of a generic one
	maxPropertyKey     = 64   // a custom property's key
	maxExtensionKey    = 256  // a generic extension's key: Caliper and xAPI name extensions by IRI
	maxPairValueBytes  = 1024 // a property's or extension's value
	maxObjectIDBytes   = 1024 // payload.object_id of a generic event: an IRI
)

// decodeCustom decodes a product's own event: a name and string properties, kept as two parallel
// arrays sorted by key.
func decodeCustom(v *validator, b jsontext.Value, ev *records.RawEvent) {
	var in struct {
		Name       string                    `json:"name"`
		Properties map[string]jsontext.Value `json:"properties"`
	}
	if !payload(v, b, &in) {
		return
	}
	switch {
	case in.Name == "":
		v.add("payload.name", "is required")
	case !v.text("payload.name", in.Name, maxCustomNameBytes, records.Line):
	case !isEventName(in.Name):
		v.add("payload.name", "must hold only A-Z, a-z, 0-9, '_', '.', ':' and '-'")
	}
	keys, values := v.pairs("payload.properties", in.Properties, maxPropertyKey)
	ev.Custom = &records.CustomEvent{Name: in.Name, PropertyKeys: keys, PropertyValues: values}
}

// isEventName reports whether s holds only the characters of a custom event's name.
func isEventName(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '_', c == '.', c == ':', c == '-':
		default:
			return false
		}
	}
	return true
}

var genericStandards = set("caliper", "xapi")

// decodeGeneric decodes a Caliper event or xAPI statement that maps to no platform type.
func decodeGeneric(v *validator, b jsontext.Value, ev *records.RawEvent) {
	var in struct {
		Standard    string                    `json:"standard"`
		Type        string                    `json:"type"`
		Action      string                    `json:"action"`
		ObjectID    string                    `json:"object_id"`
		ObjectType  string                    `json:"object_type"`
		StatementID *string                   `json:"statement_id"`
		Extensions  map[string]jsontext.Value `json:"extensions"`
	}
	if !payload(v, b, &in) {
		return
	}
	v.oneOf("payload.standard", in.Standard, genericStandards, "caliper, xapi")
	v.id("payload.type", in.Type, true)
	v.id("payload.action", in.Action, false)
	v.text("payload.object_id", in.ObjectID, maxObjectIDBytes, records.Line)
	v.id("payload.object_type", in.ObjectType, false)
	v.optText("payload.statement_id", in.StatementID, records.MaxIDBytes, records.Line)
	keys, values := v.pairs("payload.extensions", in.Extensions, maxExtensionKey)
	ev.Generic = &records.GenericEvent{Standard: in.Standard, Type: in.Type, Action: in.Action, ObjectID: in.ObjectID,
		ObjectType: in.ObjectType, StatementID: in.StatementID, ExtensionKeys: keys, ExtensionValues: values}
}

// pairs checks a JSON object of string values (at most maxPairs members, keys of 1 to keyLimit bytes,
// values of at most maxPairValueBytes, single-line) and returns its keys, sorted, and their values. An
// error about one member is named field.<key>.
func (v *validator) pairs(field string, m map[string]jsontext.Value, keyLimit int) (keys, values []string) {
	if len(m) > maxPairs {
		v.add(field, fmt.Sprintf("must have at most %d members", maxPairs))
		return []string{}, []string{}
	}
	keys = make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	values = make([]string, len(keys))
	for i, k := range keys {
		f := field + "." + k
		if k == "" {
			v.add(field, "must not have an empty key")
			continue
		}
		if msg := records.CheckText(k, keyLimit, records.Line); msg != "" {
			v.add(field, fmt.Sprintf("key %.64q: %s", k, msg)) // the key is no field name: it may be huge
			continue
		}
		raw := m[k]
		if raw.Kind() != '"' {
			v.add(f, "must be a string")
			continue
		}
		var s string
		if err := strictUnmarshal(raw, &s); err != nil {
			v.add(f, jsonMessage(err))
			continue
		}
		if v.text(f, s, maxPairValueBytes, records.Line) {
			values[i] = s
		}
	}
	return keys, values
}
