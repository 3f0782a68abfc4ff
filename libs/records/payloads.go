package records

import (
	"errors"
	"fmt"
	"strings"
)

// Errors returned by Payloads.Check and Payloads.Set.
var (
	// ErrUnknownType means an event type outside EventTypes.
	ErrUnknownType = errors.New("records: unknown event type")
	// ErrPayloadMismatch means the payload fields set do not match the event type.
	ErrPayloadMismatch = errors.New("records: payload does not match event type")
)

// Payloads is the set of payload fields of RawEvent and EnrichedEvent as one value, for code that
// handles payloads whatever the envelope: the enricher copies it across with
// enriched.SetPayloads(raw.Payloads()). It has no wire form of its own; the envelopes carry the fields
// flat (embedding the struct would cost hamba/avro a type lookup per field on every decode).
type Payloads struct {
	Attendance           *Attendance
	AssessmentResult     *AssessmentResult
	AssignmentSubmission *AssignmentSubmission
	Session              *SessionEvent
	ContentView          *ContentView
	// Custom and Generic are left out of a JSON encoding when nil, so the encoding of every other
	// payload is what it was before they existed: the gateway's roster event ids hash it.
	Custom                *CustomEvent  `json:",omitempty"`
	Generic               *GenericEvent `json:",omitempty"`
	RosterOrg             *RosterOrg
	RosterAcademicSession *RosterAcademicSession
	RosterCourse          *RosterCourse
	RosterClass           *RosterClass
	RosterUser            *RosterUser
	RosterEnrollment      *RosterEnrollment
	RosterDemographics    *RosterDemographics
	RosterLineItem        *RosterLineItem
	RosterResult          *RosterResult
}

// Payloads returns the event's payload fields.
func (e *RawEvent) Payloads() Payloads {
	return Payloads{e.Attendance, e.AssessmentResult, e.AssignmentSubmission, e.Session, e.ContentView, e.Custom, e.Generic,
		e.RosterOrg, e.RosterAcademicSession, e.RosterCourse, e.RosterClass, e.RosterUser, e.RosterEnrollment, e.RosterDemographics, e.RosterLineItem, e.RosterResult}
}

// SetPayloads replaces the event's payload fields with p.
func (e *RawEvent) SetPayloads(p Payloads) {
	e.Attendance, e.AssessmentResult, e.AssignmentSubmission, e.Session, e.ContentView = p.Attendance,
		p.AssessmentResult, p.AssignmentSubmission, p.Session, p.ContentView
	e.Custom, e.Generic = p.Custom, p.Generic
	e.RosterOrg, e.RosterAcademicSession, e.RosterCourse, e.RosterClass, e.RosterUser, e.RosterEnrollment, e.RosterDemographics, e.RosterLineItem, e.RosterResult =
		p.RosterOrg, p.RosterAcademicSession, p.RosterCourse, p.RosterClass, p.RosterUser, p.RosterEnrollment, p.RosterDemographics, p.RosterLineItem, p.RosterResult
}

// SetPayload makes v (a pointer to a payload type) the event's only payload and sets Type to match.
func (e *RawEvent) SetPayload(v any) error {
	var p Payloads
	typ, err := p.Set(v)
	if err != nil {
		return err
	}
	e.Type = typ
	e.SetPayloads(p)
	return nil
}

// CheckPayload reports whether Type is known and its payload is the only one set.
func (e *RawEvent) CheckPayload() error {
	p := e.Payloads()
	return p.Check(e.Type)
}

// Payloads returns the event's payload fields.
func (e *EnrichedEvent) Payloads() Payloads {
	return Payloads{e.Attendance, e.AssessmentResult, e.AssignmentSubmission, e.Session, e.ContentView, e.Custom, e.Generic,
		e.RosterOrg, e.RosterAcademicSession, e.RosterCourse, e.RosterClass, e.RosterUser, e.RosterEnrollment, e.RosterDemographics, e.RosterLineItem, e.RosterResult}
}

// SetPayloads replaces the event's payload fields with p.
func (e *EnrichedEvent) SetPayloads(p Payloads) {
	e.Attendance, e.AssessmentResult, e.AssignmentSubmission, e.Session, e.ContentView = p.Attendance,
		p.AssessmentResult, p.AssignmentSubmission, p.Session, p.ContentView
	e.Custom, e.Generic = p.Custom, p.Generic
	e.RosterOrg, e.RosterAcademicSession, e.RosterCourse, e.RosterClass, e.RosterUser, e.RosterEnrollment, e.RosterDemographics, e.RosterLineItem, e.RosterResult =
		p.RosterOrg, p.RosterAcademicSession, p.RosterCourse, p.RosterClass, p.RosterUser, p.RosterEnrollment, p.RosterDemographics, p.RosterLineItem, p.RosterResult
}

// SetPayload makes v (a pointer to a payload type) the event's only payload and sets Type to match.
func (e *EnrichedEvent) SetPayload(v any) error {
	var p Payloads
	typ, err := p.Set(v)
	if err != nil {
		return err
	}
	e.Type = typ
	e.SetPayloads(p)
	return nil
}

// CheckPayload reports whether Type is known and its payload is the only one set.
func (e *EnrichedEvent) CheckPayload() error {
	p := e.Payloads()
	return p.Check(e.Type)
}

// Types returns the event types whose payload field is set, in EventTypes order. A valid record has
// exactly one.
func (p *Payloads) Types() []string {
	var out []string
	add := func(set bool, typ string) {
		if set {
			out = append(out, typ)
		}
	}
	add(p.Attendance != nil, TypeAttendance)
	add(p.AssessmentResult != nil, TypeAssessmentResult)
	add(p.AssignmentSubmission != nil, TypeAssignmentSubmission)
	add(p.Session != nil, TypeSession)
	add(p.ContentView != nil, TypeContentView)
	add(p.Custom != nil, TypeCustom)
	add(p.Generic != nil, TypeGeneric)
	add(p.RosterOrg != nil, TypeRosterOrg)
	add(p.RosterAcademicSession != nil, TypeRosterAcademicSession)
	add(p.RosterCourse != nil, TypeRosterCourse)
	add(p.RosterClass != nil, TypeRosterClass)
	add(p.RosterUser != nil, TypeRosterUser)
	add(p.RosterEnrollment != nil, TypeRosterEnrollment)
	add(p.RosterDemographics != nil, TypeRosterDemographics)
	add(p.RosterLineItem != nil, TypeRosterLineItem)
	add(p.RosterResult != nil, TypeRosterResult)
	return out
}

// Check reports whether typ is a known event type and its payload field is the only one set.
// Errors wrap ErrUnknownType or ErrPayloadMismatch.
func (p *Payloads) Check(typ string) error {
	if !IsKnownType(typ) {
		return fmt.Errorf("%w: %q", ErrUnknownType, typ)
	}
	set := p.Types()
	if len(set) == 1 && set[0] == typ {
		return nil
	}
	if len(set) == 0 {
		return fmt.Errorf("%w: type %q but no payload is set", ErrPayloadMismatch, typ)
	}
	return fmt.Errorf("%w: type %q but payload set for %s", ErrPayloadMismatch, typ, strings.Join(set, ", "))
}

// Set clears every payload field, stores v (a pointer to a payload type) in its field and returns the
// event type that names it. A nil pointer or any other type wraps ErrUnknownType.
func (p *Payloads) Set(v any) (string, error) {
	var next Payloads
	typ := ""
	switch v := v.(type) {
	case *Attendance:
		next.Attendance, typ = v, TypeAttendance
	case *AssessmentResult:
		next.AssessmentResult, typ = v, TypeAssessmentResult
	case *AssignmentSubmission:
		next.AssignmentSubmission, typ = v, TypeAssignmentSubmission
	case *SessionEvent:
		next.Session, typ = v, TypeSession
	case *ContentView:
		next.ContentView, typ = v, TypeContentView
	case *CustomEvent:
		next.Custom, typ = v, TypeCustom
	case *GenericEvent:
		next.Generic, typ = v, TypeGeneric
	case *RosterOrg:
		next.RosterOrg, typ = v, TypeRosterOrg
	case *RosterAcademicSession:
		next.RosterAcademicSession, typ = v, TypeRosterAcademicSession
	case *RosterCourse:
		next.RosterCourse, typ = v, TypeRosterCourse
	case *RosterClass:
		next.RosterClass, typ = v, TypeRosterClass
	case *RosterUser:
		next.RosterUser, typ = v, TypeRosterUser
	case *RosterEnrollment:
		next.RosterEnrollment, typ = v, TypeRosterEnrollment
	case *RosterDemographics:
		next.RosterDemographics, typ = v, TypeRosterDemographics
	case *RosterLineItem:
		next.RosterLineItem, typ = v, TypeRosterLineItem
	case *RosterResult:
		next.RosterResult, typ = v, TypeRosterResult
	default:
		return "", fmt.Errorf("%w: payload of Go type %T", ErrUnknownType, v)
	}
	if len(next.Types()) != 1 {
		return "", fmt.Errorf("%w: nil %T payload", ErrUnknownType, v)
	}
	*p = next
	return typ, nil
}
