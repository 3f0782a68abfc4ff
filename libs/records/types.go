package records

import "time"

// Timestamps are time.Time and travel as Avro timestamp-millis (dates as Avro date); decoded values are
// UTC. Optional fields are pointers (nil is Avro null); arrays and maps decode as empty, never nil.

// RawEvent is the record on the raw topic: an event or roster record as the gateway accepted it.
// Exactly one payload field, the one Type names, is set (see CheckPayload).
type RawEvent struct {
	EventID       string    `avro:"event_id"`
	TenantID      string    `avro:"tenant_id"`
	SourceID      string    `avro:"source_id"`
	Type          string    `avro:"type"`
	OccurredAt    time.Time `avro:"occurred_at"`
	ReceivedAt    time.Time `avro:"received_at"`
	SchemaVersion int       `avro:"schema_version"`
	Actor         Actor     `avro:"actor"`
	SchoolID      *string   `avro:"school_id"`
	ClassID       *string   `avro:"class_id"`
	SessionID     *string   `avro:"session_id"`

	// Payloads: exactly one is set, the one Type names.
	Attendance           *Attendance           `avro:"attendance"`
	AssessmentResult     *AssessmentResult     `avro:"assessment_result"`
	AssignmentSubmission *AssignmentSubmission `avro:"assignment_submission"`
	Session              *SessionEvent         `avro:"session"`
	ContentView          *ContentView          `avro:"content_view"`
	Org                  *Org                  `avro:"roster_org"`
	AcademicSession      *AcademicSession      `avro:"roster_academic_session"`
	Course               *Course               `avro:"roster_course"`
	Class                *Class                `avro:"roster_class"`
	User                 *User                 `avro:"roster_user"`
	Enrollment           *Enrollment           `avro:"roster_enrollment"`
	Demographics         *Demographics         `avro:"roster_demographics"`
	LineItem             *LineItem             `avro:"roster_line_item"`
	Result               *Result               `avro:"roster_result"`
}

// Actor is who a raw event is about, as the source knows them.
type Actor struct {
	SISID string `avro:"sis_id"`
	Role  string `avro:"role"`
}

// EnrichedEvent is the record on the enriched topic: a RawEvent after identity resolution, derivation
// and the district's policy overlay.
type EnrichedEvent struct {
	EventID       string        `avro:"event_id"`
	TenantID      string        `avro:"tenant_id"`
	SourceID      string        `avro:"source_id"`
	Type          string        `avro:"type"`
	OccurredAt    time.Time     `avro:"occurred_at"`
	ReceivedAt    time.Time     `avro:"received_at"`
	SchemaVersion int           `avro:"schema_version"`
	Actor         EnrichedActor `avro:"actor"`
	SchoolID      *string       `avro:"school_id"`
	ClassID       *string       `avro:"class_id"`
	SessionID     *string       `avro:"session_id"`
	PolicyVersion int           `avro:"policy_version"`
	EnrichedAt    time.Time     `avro:"enriched_at"`
	Derived       Derived       `avro:"derived"`

	// Payloads: exactly one is set, the one Type names.
	Attendance           *Attendance           `avro:"attendance"`
	AssessmentResult     *AssessmentResult     `avro:"assessment_result"`
	AssignmentSubmission *AssignmentSubmission `avro:"assignment_submission"`
	Session              *SessionEvent         `avro:"session"`
	ContentView          *ContentView          `avro:"content_view"`
	Org                  *Org                  `avro:"roster_org"`
	AcademicSession      *AcademicSession      `avro:"roster_academic_session"`
	Course               *Course               `avro:"roster_course"`
	Class                *Class                `avro:"roster_class"`
	User                 *User                 `avro:"roster_user"`
	Enrollment           *Enrollment           `avro:"roster_enrollment"`
	Demographics         *Demographics         `avro:"roster_demographics"`
	LineItem             *LineItem             `avro:"roster_line_item"`
	Result               *Result               `avro:"roster_result"`
}

// EnrichedActor is who an enriched event is about. SISID is set only when the policy keeps it.
type EnrichedActor struct {
	InternalID string  `avro:"internal_id"`
	Pseudonym  string  `avro:"pseudonym"`
	Role       string  `avro:"role"`
	SISID      *string `avro:"sis_id"`
}

// Derived holds the fields the enricher computes; nil when they do not apply or policy withholds them.
type Derived struct {
	AgeBand        *string `avro:"age_band"`
	Under13        *bool   `avro:"under_13"`
	Under18        *bool   `avro:"under_18"`
	Late           *bool   `avro:"late"`
	SessionSeconds *int64  `avro:"session_seconds"`
	GradeLevel     *string `avro:"grade_level"`
	// AcademicSessionID is the class's academic session holding the event's UTC date.
	AcademicSessionID *string `avro:"academic_session_id"`
}

// Attendance is a student's attendance mark for a day or period (TypeAttendance).
type Attendance struct {
	Status         string    `avro:"status"`
	Date           time.Time `avro:"date"`
	MinutesPresent *int      `avro:"minutes_present"`
	Reason         *string   `avro:"reason"`
}

// AssessmentResult is a scored attempt at an assessment (TypeAssessmentResult).
type AssessmentResult struct {
	AssessmentID string     `avro:"assessment_id"`
	Score        float64    `avro:"score"`
	MaxScore     float64    `avro:"max_score"`
	Scale        *string    `avro:"scale"`
	Grade        *string    `avro:"grade"`
	Attempt      int        `avro:"attempt"`
	CompletedAt  *time.Time `avro:"completed_at"`
}

// AssignmentSubmission is a student's submission of an assignment (TypeAssignmentSubmission).
type AssignmentSubmission struct {
	AssignmentID string     `avro:"assignment_id"`
	DueAt        *time.Time `avro:"due_at"`
	SubmittedAt  time.Time  `avro:"submitted_at"`
	Status       string     `avro:"status"`
	Score        *float64   `avro:"score"`
	MaxScore     *float64   `avro:"max_score"`
}

// SessionEvent is a login or logout (TypeSession).
type SessionEvent struct {
	Action          string  `avro:"action"`
	SessionID       *string `avro:"session_id"`
	Device          *string `avro:"device"`
	App             *string `avro:"app"`
	DurationSeconds *int64  `avro:"duration_seconds"`
}

// ContentView is time spent on a piece of content (TypeContentView).
type ContentView struct {
	ContentID       string   `avro:"content_id"`
	ContentType     string   `avro:"content_type"`
	DurationSeconds int64    `avro:"duration_seconds"`
	PercentComplete *float64 `avro:"percent_complete"`
}

// Org is a OneRoster org (TypeRosterOrg).
type Org struct {
	SourcedID          string            `avro:"sourced_id"`
	Status             string            `avro:"status"`
	DateLastModified   time.Time         `avro:"date_last_modified"`
	Metadata           map[string]string `avro:"metadata"`
	Name               string            `avro:"name"`
	Type               string            `avro:"type"`
	Identifier         *string           `avro:"identifier"`
	ParentSourcedID    *string           `avro:"parent_sourced_id"`
	ChildrenSourcedIDs []string          `avro:"children_sourced_ids"`
}

// AcademicSession is a OneRoster academicSession (TypeRosterAcademicSession).
type AcademicSession struct {
	SourcedID          string            `avro:"sourced_id"`
	Status             string            `avro:"status"`
	DateLastModified   time.Time         `avro:"date_last_modified"`
	Metadata           map[string]string `avro:"metadata"`
	Title              string            `avro:"title"`
	Type               string            `avro:"type"`
	StartDate          time.Time         `avro:"start_date"`
	EndDate            time.Time         `avro:"end_date"`
	SchoolYear         string            `avro:"school_year"`
	ParentSourcedID    *string           `avro:"parent_sourced_id"`
	ChildrenSourcedIDs []string          `avro:"children_sourced_ids"`
}

// Course is a OneRoster course (TypeRosterCourse).
type Course struct {
	SourcedID           string            `avro:"sourced_id"`
	Status              string            `avro:"status"`
	DateLastModified    time.Time         `avro:"date_last_modified"`
	Metadata            map[string]string `avro:"metadata"`
	Title               string            `avro:"title"`
	SchoolYearSourcedID *string           `avro:"school_year_sourced_id"`
	CourseCode          *string           `avro:"course_code"`
	Grades              []string          `avro:"grades"`
	Subjects            []string          `avro:"subjects"`
	SubjectCodes        []string          `avro:"subject_codes"`
	OrgSourcedID        string            `avro:"org_sourced_id"`
}

// Class is a OneRoster class (TypeRosterClass).
type Class struct {
	SourcedID        string            `avro:"sourced_id"`
	Status           string            `avro:"status"`
	DateLastModified time.Time         `avro:"date_last_modified"`
	Metadata         map[string]string `avro:"metadata"`
	Title            string            `avro:"title"`
	ClassCode        *string           `avro:"class_code"`
	ClassType        string            `avro:"class_type"`
	Location         *string           `avro:"location"`
	Grades           []string          `avro:"grades"`
	Subjects         []string          `avro:"subjects"`
	SubjectCodes     []string          `avro:"subject_codes"`
	Periods          []string          `avro:"periods"`
	CourseSourcedID  string            `avro:"course_sourced_id"`
	SchoolSourcedID  string            `avro:"school_sourced_id"`
	TermSourcedIDs   []string          `avro:"term_sourced_ids"`
}

// User is a OneRoster user (TypeRosterUser). Passwords are never carried.
type User struct {
	SourcedID            string            `avro:"sourced_id"`
	Status               string            `avro:"status"`
	DateLastModified     time.Time         `avro:"date_last_modified"`
	Metadata             map[string]string `avro:"metadata"`
	EnabledUser          bool              `avro:"enabled_user"`
	Username             *string           `avro:"username"`
	UserIDs              []UserID          `avro:"user_ids"`
	GivenName            string            `avro:"given_name"`
	FamilyName           string            `avro:"family_name"`
	MiddleName           *string           `avro:"middle_name"`
	PreferredFirstName   *string           `avro:"preferred_first_name"`
	PreferredLastName    *string           `avro:"preferred_last_name"`
	Pronouns             *string           `avro:"pronouns"`
	Roles                []Role            `avro:"roles"`
	Identifier           *string           `avro:"identifier"`
	UserMasterIdentifier *string           `avro:"user_master_identifier"`
	Email                *string           `avro:"email"`
	SMS                  *string           `avro:"sms"`
	Phone                *string           `avro:"phone"`
	AgentSourcedIDs      []string          `avro:"agent_sourced_ids"`
	Grades               []string          `avro:"grades"`
	OrgSourcedIDs        []string          `avro:"org_sourced_ids"`
	BirthDate            *time.Time        `avro:"birth_date"`
}

// UserID is an identifier of a user in another system (OneRoster userIds).
type UserID struct {
	Type       string `avro:"type"`
	Identifier string `avro:"identifier"`
}

// Role is one of a user's roles in an org (OneRoster 1.2 roles).
type Role struct {
	RoleType     string     `avro:"role_type"`
	Role         string     `avro:"role"`
	OrgSourcedID string     `avro:"org_sourced_id"`
	BeginDate    *time.Time `avro:"begin_date"`
	EndDate      *time.Time `avro:"end_date"`
}

// Enrollment is a OneRoster enrollment of a user in a class (TypeRosterEnrollment).
type Enrollment struct {
	SourcedID        string            `avro:"sourced_id"`
	Status           string            `avro:"status"`
	DateLastModified time.Time         `avro:"date_last_modified"`
	Metadata         map[string]string `avro:"metadata"`
	ClassSourcedID   string            `avro:"class_sourced_id"`
	SchoolSourcedID  string            `avro:"school_sourced_id"`
	UserSourcedID    string            `avro:"user_sourced_id"`
	Role             string            `avro:"role"`
	Primary          *bool             `avro:"primary"`
	BeginDate        *time.Time        `avro:"begin_date"`
	EndDate          *time.Time        `avro:"end_date"`
}

// Demographics is the OneRoster demographics of one user; SourcedID is the user's (TypeRosterDemographics).
type Demographics struct {
	SourcedID                            string            `avro:"sourced_id"`
	Status                               string            `avro:"status"`
	DateLastModified                     time.Time         `avro:"date_last_modified"`
	Metadata                             map[string]string `avro:"metadata"`
	BirthDate                            *time.Time        `avro:"birth_date"`
	Sex                                  *string           `avro:"sex"`
	AmericanIndianOrAlaskaNative         *bool             `avro:"american_indian_or_alaska_native"`
	Asian                                *bool             `avro:"asian"`
	BlackOrAfricanAmerican               *bool             `avro:"black_or_african_american"`
	NativeHawaiianOrOtherPacificIslander *bool             `avro:"native_hawaiian_or_other_pacific_islander"`
	White                                *bool             `avro:"white"`
	TwoOrMoreRaces                       *bool             `avro:"demographic_race_two_or_more_races"`
	HispanicOrLatinoEthnicity            *bool             `avro:"hispanic_or_latino_ethnicity"`
	CountryOfBirthCode                   *string           `avro:"country_of_birth_code"`
	StateOfBirthAbbreviation             *string           `avro:"state_of_birth_abbreviation"`
	CityOfBirth                          *string           `avro:"city_of_birth"`
	PublicSchoolResidenceStatus          *string           `avro:"public_school_residence_status"`
}

// LineItem is a OneRoster gradebook lineItem (TypeRosterLineItem).
type LineItem struct {
	SourcedID                string            `avro:"sourced_id"`
	Status                   string            `avro:"status"`
	DateLastModified         time.Time         `avro:"date_last_modified"`
	Metadata                 map[string]string `avro:"metadata"`
	Title                    string            `avro:"title"`
	Description              *string           `avro:"description"`
	AssignDate               time.Time         `avro:"assign_date"`
	DueDate                  time.Time         `avro:"due_date"`
	ClassSourcedID           string            `avro:"class_sourced_id"`
	SchoolSourcedID          *string           `avro:"school_sourced_id"`
	CategorySourcedID        *string           `avro:"category_sourced_id"`
	GradingPeriodSourcedID   *string           `avro:"grading_period_sourced_id"`
	AcademicSessionSourcedID *string           `avro:"academic_session_sourced_id"`
	ScoreScaleSourcedID      *string           `avro:"score_scale_sourced_id"`
	ResultValueMin           *float64          `avro:"result_value_min"`
	ResultValueMax           *float64          `avro:"result_value_max"`
}

// Result is a OneRoster gradebook result (TypeRosterResult).
type Result struct {
	SourcedID           string            `avro:"sourced_id"`
	Status              string            `avro:"status"`
	DateLastModified    time.Time         `avro:"date_last_modified"`
	Metadata            map[string]string `avro:"metadata"`
	LineItemSourcedID   string            `avro:"line_item_sourced_id"`
	StudentSourcedID    string            `avro:"student_sourced_id"`
	ClassSourcedID      *string           `avro:"class_sourced_id"`
	ScoreScaleSourcedID *string           `avro:"score_scale_sourced_id"`
	ScoreStatus         string            `avro:"score_status"`
	Score               *float64          `avro:"score"`
	TextScore           *string           `avro:"text_score"`
	ScoreDate           time.Time         `avro:"score_date"`
	Comment             *string           `avro:"comment"`
	InProgress          *bool             `avro:"in_progress"`
	Incomplete          *bool             `avro:"incomplete"`
	Late                *bool             `avro:"late"`
	Missing             *bool             `avro:"missing"`
}

// DLQRecord is the record on the dlq topic: something a stage could not process, with the original
// bytes and headers for replay.
type DLQRecord struct {
	Reason          string       `avro:"reason"`
	Detail          string       `avro:"detail"`
	Errors          []FieldError `avro:"errors"`
	Stage           string       `avro:"stage"`
	TenantID        *string      `avro:"tenant_id"`
	EventID         *string      `avro:"event_id"`
	SourceTopic     *string      `avro:"source_topic"`
	SourcePartition *int32       `avro:"source_partition"`
	SourceOffset    *int64       `avro:"source_offset"`
	Original        []byte       `avro:"original"`
	Headers         []Header     `avro:"headers"`
	FailedAt        time.Time    `avro:"failed_at"`
}

// FieldError is one field-level validation error.
type FieldError struct {
	Field   string `avro:"field" json:"field"`
	Message string `avro:"message" json:"message"`
}

// Header is one Kafka record header.
type Header struct {
	Key   string `avro:"key"`
	Value []byte `avro:"value"`
}

// ControlCommand is the record on the control topic: an operator command every consumer acts on.
type ControlCommand struct {
	CommandID         string    `avro:"command_id"`
	Type              string    `avro:"type"`
	TenantID          string    `avro:"tenant_id"`
	IssuedAt          time.Time `avro:"issued_at"`
	IssuedBy          string    `avro:"issued_by"`
	StudentInternalID *string   `avro:"student_internal_id"`
	SourceID          *string   `avro:"source_id"`
	SISID             *string   `avro:"sis_id"`
	Reason            *string   `avro:"reason"`
}
