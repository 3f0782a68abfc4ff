// Package records holds the platform's Avro records and the codec that frames them on Kafka.
//
// The Go types (types_gen.go) are generated from the schemas in the schemas module by hamba/avro's
// avrogen (`go generate`, pinned by the tool directive in go.mod; TestGeneratedTypesAreCurrent fails
// when they are stale); there are no hand-written encoders. Record and field names follow the schemas
// (edtech.v1.RosterUser is RosterUser, roster_user its field RosterUser). Timestamps are time.Time and
// travel as Avro timestamp-millis (dates as Avro date); decoded values are UTC. Optional fields are
// pointers (nil is Avro null); arrays and maps decode as empty, never nil.
//
// Each topic carries one envelope record (TopicNameStrategy): raw carries RawEvent, enriched
// EnrichedEvent, dlq DLQRecord and control ControlCommand. An envelope has one optional field per
// payload type instead of a union, and its type field is a plain string, so adding an event type is a
// compatible change in both directions.
//
// Values on the wire use the Confluent framing (magic byte 0, 4-byte big-endian schema id, Avro
// binary); see Codec. Schema ids come from a registry or from the catalog of snapshots embedded from
// schemas/versions; see Catalog.
package records

//go:generate go run ./cmd/schemasnap -dir ../../schemas
//go:generate go tool avrogen -pkg records -o types_gen.go -tags json:original -initialisms DLQ,SIS,SMS ../../schemas/attendance.avsc ../../schemas/assessment_result.avsc ../../schemas/assignment_submission.avsc ../../schemas/session_event.avsc ../../schemas/content_view.avsc ../../schemas/custom_event.avsc ../../schemas/generic_event.avsc ../../schemas/roster_org.avsc ../../schemas/roster_academic_session.avsc ../../schemas/roster_course.avsc ../../schemas/roster_class.avsc ../../schemas/roster_user.avsc ../../schemas/roster_enrollment.avsc ../../schemas/roster_demographics.avsc ../../schemas/roster_line_item.avsc ../../schemas/roster_result.avsc ../../schemas/raw_event.avsc ../../schemas/enriched_event.avsc ../../schemas/dlq_record.avsc ../../schemas/control_command.avsc

import "time"

// Kind names one of the four top-level records, one per topic.
type Kind int

// The kinds, one per topic. The zero Kind is invalid.
const (
	KindRaw Kind = iota + 1
	KindEnriched
	KindDLQ
	KindControl
)

// Kinds returns every valid Kind.
func Kinds() []Kind { return []Kind{KindRaw, KindEnriched, KindDLQ, KindControl} }

// String returns the topic-style name of the kind: raw, enriched, dlq or control.
func (k Kind) String() string {
	switch k {
	case KindRaw:
		return "raw"
	case KindEnriched:
		return "enriched"
	case KindDLQ:
		return "dlq"
	case KindControl:
		return "control"
	}
	return "invalid"
}

// SchemaName returns the name of the kind's schema in the catalog and in schemas/ (raw_event,
// enriched_event, dlq_record, control_command), or "" for an invalid kind.
func (k Kind) SchemaName() string {
	switch k {
	case KindRaw:
		return "raw_event"
	case KindEnriched:
		return "enriched_event"
	case KindDLQ:
		return "dlq_record"
	case KindControl:
		return "control_command"
	}
	return ""
}

// Event types: the value of RawEvent.Type and EnrichedEvent.Type. Each names the one payload field
// that is set; the Avro field name is the type with "." replaced by "_".
const (
	TypeAttendance           = "attendance"
	TypeAssessmentResult     = "assessment_result"
	TypeAssignmentSubmission = "assignment_submission"
	TypeSession              = "session"
	TypeContentView          = "content_view"
	// TypeCustom is a product's own event: a name and bounded string properties (ADR 0018).
	TypeCustom = "custom"
	// TypeGeneric is a Caliper event or xAPI statement that maps to no other type (ADR 0018).
	TypeGeneric = "generic"

	TypeRosterOrg             = "roster.org"
	TypeRosterAcademicSession = "roster.academic_session"
	TypeRosterCourse          = "roster.course"
	TypeRosterClass           = "roster.class"
	TypeRosterUser            = "roster.user"
	TypeRosterEnrollment      = "roster.enrollment"
	TypeRosterDemographics    = "roster.demographics"
	TypeRosterLineItem        = "roster.line_item"
	TypeRosterResult          = "roster.result"
)

// TypeStudentErased marks, in the enriched topic only, that a student was erased: each store's consumer of
// the partition deletes what it holds of the student (Actor.InternalID) when it reaches the marker, in
// order with the records before and after it, so a replay of enriched applies the erasure again in turn.
// It carries no payload and is not an event type a client can send.
const TypeStudentErased = "privacy.student_erased"

// NewStudentErased returns the marker of a student's erasure; id identifies it (the erasure job's id).
func NewStudentErased(id, tenantID, internalID string, at time.Time) *EnrichedEvent {
	at = at.UTC().Truncate(time.Millisecond)
	return &EnrichedEvent{EventID: id, TenantID: tenantID, SourceID: "privacy", Type: TypeStudentErased,
		OccurredAt: at, ReceivedAt: at, EnrichedAt: at, SchemaVersion: 1,
		Actor: EnrichedActor{InternalID: internalID, Role: "student"}}
}

// TypeClickHouseRebuild marks, in the enriched topic only, the point of a partition at which the
// aggregator swaps a district's ClickHouse rows for the ones a rebuild staged (ctl rebuild --store
// clickhouse): EventID names the rebuild. Other stores skip it. It carries no payload and is not an event
// type a client can send.
const TypeClickHouseRebuild = "store.clickhouse_rebuild"

// NewClickHouseRebuild returns the marker of a district's ClickHouse rebuild; id names the rebuild.
func NewClickHouseRebuild(id, tenantID string, at time.Time) *EnrichedEvent {
	at = at.UTC().Truncate(time.Millisecond)
	return &EnrichedEvent{EventID: id, TenantID: tenantID, SourceID: "ctl", Type: TypeClickHouseRebuild,
		OccurredAt: at, ReceivedAt: at, EnrichedAt: at, SchemaVersion: 1, Actor: EnrichedActor{Role: "system"}}
}

// EventTypes returns every known event type, learning events first, then roster entities.
func EventTypes() []string {
	return []string{
		TypeAttendance, TypeAssessmentResult, TypeAssignmentSubmission, TypeSession, TypeContentView,
		TypeCustom, TypeGeneric,
		TypeRosterOrg, TypeRosterAcademicSession, TypeRosterCourse, TypeRosterClass, TypeRosterUser,
		TypeRosterEnrollment, TypeRosterDemographics, TypeRosterLineItem, TypeRosterResult,
	}
}

// IsKnownType reports whether t is one of EventTypes.
func IsKnownType(t string) bool {
	switch t {
	case TypeAttendance, TypeAssessmentResult, TypeAssignmentSubmission, TypeSession, TypeContentView,
		TypeCustom, TypeGeneric:
		return true
	}
	return IsRosterType(t)
}

// IsRosterType reports whether t is a known OneRoster entity type (roster.*).
func IsRosterType(t string) bool {
	switch t {
	case TypeRosterOrg, TypeRosterAcademicSession, TypeRosterCourse, TypeRosterClass, TypeRosterUser,
		TypeRosterEnrollment, TypeRosterDemographics, TypeRosterLineItem, TypeRosterResult:
		return true
	}
	return false
}

// Values of the open string fields that code branches on. Others may appear; validators decide.
const (
	AttendancePresent = "present"
	AttendanceAbsent  = "absent"
	AttendanceTardy   = "tardy"
	AttendanceExcused = "excused"

	SessionLogin  = "login"
	SessionLogout = "logout"

	// RosterActive and RosterToBeDeleted are the OneRoster statuses; tobedeleted deletes the entity.
	RosterActive      = "active"
	RosterToBeDeleted = "tobedeleted"
)

// DLQ reasons (DLQRecord.Reason).
const (
	ReasonUndecodable     = "undecodable"
	ReasonUnknownSchema   = "unknown_schema"
	ReasonInvalidField    = "invalid_field"
	ReasonPolicyViolation = "policy_violation"
	ReasonStoreRefused    = "store_refused" // a store refused a value of the record (a database's data or constraint error)
	ReasonOther           = "other"
)

// DLQ stages (DLQRecord.Stage).
const (
	StageGateway    = "gateway"
	StageEnricher   = "enricher"
	StageAggregator = "aggregator"
	StageSink       = "sink"
)

// Control command types (ControlCommand.Type).
const (
	CommandEraseStudent  = "erase_student"
	CommandEraseDistrict = "erase_district"
	CommandTenantCreated = "tenant_created"
	CommandTenantDeleted = "tenant_deleted"
	CommandPolicyUpdated = "policy_updated"
)

// CommandTypes returns every known control command type.
func CommandTypes() []string {
	return []string{
		CommandEraseStudent, CommandEraseDistrict, CommandTenantCreated, CommandTenantDeleted,
		CommandPolicyUpdated,
	}
}
