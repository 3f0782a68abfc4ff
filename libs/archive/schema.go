package archive

import (
	"time"

	"github.com/edtech-analytics/platform/libs/records"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Envelope holds the columns both layers share. Ids are strings; timestamps are millisecond UTC.
type Envelope struct {
	EventID       string    `parquet:"event_id"`
	TenantID      string    `parquet:"tenant_id"`
	SourceID      string    `parquet:"source_id"`
	Type          string    `parquet:"type"`
	OccurredAt    time.Time `parquet:"occurred_at,timestamp(millisecond)"`
	ReceivedAt    time.Time `parquet:"received_at,timestamp(millisecond)"`
	SchemaVersion int32     `parquet:"schema_version"`
	SchoolID      *string   `parquet:"school_id,optional"`
	ClassID       *string   `parquet:"class_id,optional"`
	SessionID     *string   `parquet:"session_id,optional"`
}

// Learning flattens the payloads of the learning event types; the columns of the types an event is not
// are null. Roster payloads stay in the record column only.
type Learning struct {
	AttendanceStatus         *string    `parquet:"attendance_status,optional"`
	AttendanceDate           *int32     `parquet:"attendance_date,optional,date"` // days since 1970-01-01 (DATE)
	AttendanceMinutesPresent *int32     `parquet:"attendance_minutes_present,optional"`
	AttendanceReason         *string    `parquet:"attendance_reason,optional"`
	AssessmentID             *string    `parquet:"assessment_id,optional"`
	AssessmentScore          *float64   `parquet:"assessment_score,optional"`
	AssessmentMaxScore       *float64   `parquet:"assessment_max_score,optional"`
	AssessmentAttempt        *int32     `parquet:"assessment_attempt,optional"`
	AssessmentCompletedAt    *time.Time `parquet:"assessment_completed_at,optional,timestamp(millisecond)"`
	AssignmentID             *string    `parquet:"assignment_id,optional"`
	SubmissionDueAt          *time.Time `parquet:"submission_due_at,optional,timestamp(millisecond)"`
	SubmissionSubmittedAt    *time.Time `parquet:"submission_submitted_at,optional,timestamp(millisecond)"`
	SubmissionStatus         *string    `parquet:"submission_status,optional"`
	SubmissionScore          *float64   `parquet:"submission_score,optional"`
	SubmissionMaxScore       *float64   `parquet:"submission_max_score,optional"`
	SessionAction            *string    `parquet:"session_action,optional"`
	SessionDevice            *string    `parquet:"session_device,optional"`
	SessionApp               *string    `parquet:"session_app,optional"`
	SessionDurationSeconds   *int64     `parquet:"session_duration_seconds,optional"`
	ContentID                *string    `parquet:"content_id,optional"`
	ContentType              *string    `parquet:"content_type,optional"`
	ContentDurationSeconds   *int64     `parquet:"content_duration_seconds,optional"`
	ContentPercentComplete   *float64   `parquet:"content_percent_complete,optional"`
}

// Position holds the record as it was in Kafka: its Avro value (any field can be recovered from it), its
// key (the tenant, or tenant/shard for a district spread over sub-keys) and where it was. DecodeError is set only in the files of undecodable records, whose other columns are empty.
type Position struct {
	Record         []byte  `parquet:"record"`
	KafkaKey       string  `parquet:"kafka_key"`
	KafkaPartition int32   `parquet:"kafka_partition"`
	KafkaOffset    int64   `parquet:"kafka_offset"`
	DecodeError    *string `parquet:"decode_error,optional"`
}

// RawRow is one row of the raw layer. Identifying fields (actor_sis_id, sealed) are kept as the topic
// holds them: sealed per person (ADR 0010), never opened here.
type RawRow struct {
	Envelope
	ActorSISID string  `parquet:"actor_sis_id"`
	ActorRole  string  `parquet:"actor_role"`
	Sealed     *string `parquet:"sealed,optional"`
	Learning
	Position
}

// EnrichedRow is one row of the enriched layer, identifying fields kept sealed as in RawRow.
type EnrichedRow struct {
	Envelope
	ActorInternalID string    `parquet:"actor_internal_id"`
	ActorPseudonym  string    `parquet:"actor_pseudonym"`
	ActorRole       string    `parquet:"actor_role"`
	ActorSISID      *string   `parquet:"actor_sis_id,optional"`
	PolicyVersion   int32     `parquet:"policy_version"`
	EnrichedAt      time.Time `parquet:"enriched_at,timestamp(millisecond)"`
	// LocalDate is the date the event happened on in its district's time zone, the day the rollups count
	// it on (days since 1970-01-01, DATE); null in files written before it existed and on records
	// enriched before it, whose day is the UTC date of occurred_at.
	LocalDate                *int32  `parquet:"local_date,optional,date"`
	DerivedAgeBand           *string `parquet:"derived_age_band,optional"`
	DerivedUnder13           *bool   `parquet:"derived_under_13,optional"`
	DerivedUnder18           *bool   `parquet:"derived_under_18,optional"`
	DerivedLate              *bool   `parquet:"derived_late,optional"`
	DerivedSessionSeconds    *int64  `parquet:"derived_session_seconds,optional"`
	DerivedGradeLevel        *string `parquet:"derived_grade_level,optional"`
	DerivedAcademicSessionID *string `parquet:"derived_academic_session_id,optional"`
	Sealed                   *string `parquet:"sealed,optional"`
	Learning
	Position
}

// Layer describes how the records of one topic become rows of type T.
type Layer[T any] struct {
	Name string // raw or enriched: the first element of every key
	// Row decodes r into a row, returning the tenant and the instant that place it in the layout.
	Row func(codec *records.Codec, r *kgo.Record) (T, string, time.Time, error)
	// Undecodable keeps the bytes of a record that did not decode.
	Undecodable func(r *kgo.Record, err error) T
}

// RawLayer is the layer of the raw topic.
func RawLayer() Layer[RawRow] {
	return Layer[RawRow]{
		Name: "raw",
		Row: func(codec *records.Codec, r *kgo.Record) (RawRow, string, time.Time, error) {
			var e records.RawEvent
			if err := codec.Decode(r.Value, &e); err != nil {
				return RawRow{}, "", time.Time{}, err
			}
			row := RawRow{
				Envelope: envelope(e.EventID, e.TenantID, e.SourceID, e.Type, e.OccurredAt, e.ReceivedAt, e.SchemaVersion,
					e.SchoolID, e.ClassID, e.SessionID),
				ActorSISID: e.Actor.SISID, ActorRole: e.Actor.Role, Sealed: e.Sealed,
				Learning: learning(e.Payloads()), Position: position(r),
			}
			return row, e.TenantID, e.OccurredAt, nil
		},
		Undecodable: func(r *kgo.Record, err error) RawRow { return RawRow{Position: undecodable(r, err)} },
	}
}

// EnrichedLayer is the layer of the enriched topic.
func EnrichedLayer() Layer[EnrichedRow] {
	return Layer[EnrichedRow]{
		Name: "enriched",
		Row: func(codec *records.Codec, r *kgo.Record) (EnrichedRow, string, time.Time, error) {
			var e records.EnrichedEvent
			if err := codec.Decode(r.Value, &e); err != nil {
				return EnrichedRow{}, "", time.Time{}, err
			}
			d := e.Derived
			row := EnrichedRow{
				Envelope: envelope(e.EventID, e.TenantID, e.SourceID, e.Type, e.OccurredAt, e.ReceivedAt, e.SchemaVersion,
					e.SchoolID, e.ClassID, e.SessionID),
				ActorInternalID: e.Actor.InternalID, ActorPseudonym: e.Actor.Pseudonym, ActorRole: e.Actor.Role, ActorSISID: e.Actor.SISID,
				PolicyVersion: int32(e.PolicyVersion), EnrichedAt: e.EnrichedAt.UTC(), LocalDate: days(e.LocalDate),
				DerivedAgeBand: d.AgeBand, DerivedUnder13: d.Under13, DerivedUnder18: d.Under18, DerivedLate: d.Late,
				DerivedSessionSeconds: d.SessionSeconds, DerivedGradeLevel: d.GradeLevel, DerivedAcademicSessionID: d.AcademicSessionID,
				Sealed: e.Sealed, Learning: learning(e.Payloads()), Position: position(r),
			}
			return row, e.TenantID, e.OccurredAt, nil
		},
		Undecodable: func(r *kgo.Record, err error) EnrichedRow { return EnrichedRow{Position: undecodable(r, err)} },
	}
}

func envelope(id, tenant, source, typ string, occurred, received time.Time, version int, school, class, session *string) Envelope {
	return Envelope{EventID: id, TenantID: tenant, SourceID: source, Type: typ, OccurredAt: occurred.UTC(), ReceivedAt: received.UTC(),
		SchemaVersion: int32(version), SchoolID: school, ClassID: class, SessionID: session}
}

func position(r *kgo.Record) Position {
	return Position{Record: r.Value, KafkaKey: string(r.Key), KafkaPartition: r.Partition, KafkaOffset: r.Offset}
}

func undecodable(r *kgo.Record, err error) Position {
	p := position(r)
	msg := err.Error()
	p.DecodeError = &msg
	return p
}

func learning(p records.Payloads) Learning {
	var l Learning
	if a := p.Attendance; a != nil {
		l.AttendanceStatus, l.AttendanceDate, l.AttendanceReason = &a.Status, Days(a.Date), a.Reason
		l.AttendanceMinutesPresent = int32p(a.MinutesPresent)
	}
	if a := p.AssessmentResult; a != nil {
		l.AssessmentID, l.AssessmentScore, l.AssessmentMaxScore = &a.AssessmentID, &a.Score, &a.MaxScore
		l.AssessmentAttempt, l.AssessmentCompletedAt = int32p(&a.Attempt), utc(a.CompletedAt)
	}
	if s := p.AssignmentSubmission; s != nil {
		l.AssignmentID, l.SubmissionDueAt, l.SubmissionSubmittedAt = &s.AssignmentID, utc(s.DueAt), utc(&s.SubmittedAt)
		l.SubmissionStatus, l.SubmissionScore, l.SubmissionMaxScore = &s.Status, s.Score, s.MaxScore
	}
	if s := p.Session; s != nil {
		l.SessionAction, l.SessionDevice, l.SessionApp, l.SessionDurationSeconds = &s.Action, s.Device, s.App, s.DurationSeconds
	}
	if c := p.ContentView; c != nil {
		l.ContentID, l.ContentType, l.ContentDurationSeconds, l.ContentPercentComplete = &c.ContentID, &c.ContentType, &c.DurationSeconds, c.PercentComplete
	}
	return l
}

// Days is the DATE value of t's UTC day: days since 1970-01-01. (parquet-go writes a time.Time tagged
// date as nanoseconds cut to 32 bits, so the column is written as the days themselves.)
func Days(t time.Time) *int32 {
	d := int32(t.UTC().Truncate(24*time.Hour).Unix() / 86400)
	return &d
}

// days is Days of t, or nil.
func days(t *time.Time) *int32 {
	if t == nil {
		return nil
	}
	return Days(*t)
}

func utc(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

func int32p(v *int) *int32 {
	if v == nil {
		return nil
	}
	n := int32(*v)
	return &n
}
