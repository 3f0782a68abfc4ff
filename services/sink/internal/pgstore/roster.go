package pgstore

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/edtech-analytics/platform/libs/records"
	"github.com/jackc/pgx/v5"
)

// Roster state: one row per OneRoster entity, keyed by sourced_id. A record applies only when its
// date_last_modified is not older than what the district holds for that entity, the row or the
// deletion remembered in roster_deletions, so replays and late deltas never move state backwards; on
// equal times the later record wins, within a batch and across batches alike. status tobedeleted deletes
// the row and remembers the deletion.
//
// Rows go to PostgreSQL as one JSON array per table and batch, read with jsonb_populate_recordset into
// the table's own row type: the JSON keys are the column names (the json tags below).

// rosterEntity describes one roster table.
type rosterEntity struct {
	typ    string // records.TypeRoster*
	table  string
	update string // "(col, ...) = ROW(EXCLUDED.col, ...)" for every column but the key
}

// rosterEntities returns the roster tables by event type, with their update lists derived from the row
// types' json tags.
func rosterEntities() map[string]*rosterEntity {
	out := map[string]*rosterEntity{}
	for typ, def := range map[string]struct {
		table string
		row   any
	}{
		records.TypeRosterOrg:             {"roster_orgs", orgRow{}},
		records.TypeRosterAcademicSession: {"roster_academic_sessions", academicSessionRow{}},
		records.TypeRosterCourse:          {"roster_courses", courseRow{}},
		records.TypeRosterClass:           {"roster_classes", classRow{}},
		records.TypeRosterUser:            {"roster_users", userRow{}},
		records.TypeRosterEnrollment:      {"roster_enrollments", enrollmentRow{}},
		records.TypeRosterDemographics:    {"roster_demographics", demographicsRow{}},
		records.TypeRosterLineItem:        {"roster_line_items", lineItemRow{}},
		records.TypeRosterResult:          {"roster_results", resultRow{}},
	} {
		var cols, vals []string
		for _, col := range jsonColumns(reflect.TypeOf(def.row)) {
			if col == "sourced_id" {
				continue
			}
			cols = append(cols, col)
			if col == "internal_id" { // a record that does not know it keeps the one already known
				vals = append(vals, "coalesce(EXCLUDED.internal_id, t.internal_id)")
			} else {
				vals = append(vals, "EXCLUDED."+col)
			}
		}
		out[typ] = &rosterEntity{typ: typ, table: def.table,
			update: "(" + strings.Join(cols, ", ") + ") = ROW(" + strings.Join(vals, ", ") + ")"}
	}
	return out
}

// jsonColumns lists the json names of a struct's fields, embedded structs flattened.
func jsonColumns(t reflect.Type) []string {
	var out []string
	for f := range t.Fields() {
		if f.Anonymous {
			out = append(out, jsonColumns(f.Type)...)
			continue
		}
		out = append(out, strings.Split(f.Tag.Get("json"), ",")[0])
	}
	return out
}

const (
	// upsertRoster: %[1]s the table, %[2]s roster_deletions, %[3]s the update list; $1 the rows as a JSON
	// array, $2 the entity type.
	upsertRoster = `WITH src AS (SELECT * FROM jsonb_populate_recordset(NULL::%[1]s, $1::jsonb)),
		ok AS (SELECT src.* FROM src WHERE NOT EXISTS (SELECT 1 FROM %[2]s d
			WHERE d.entity = $2 AND d.sourced_id = src.sourced_id AND d.date_last_modified > src.date_last_modified)),
		undeleted AS (DELETE FROM %[2]s d USING ok WHERE d.entity = $2 AND d.sourced_id = ok.sourced_id)
		INSERT INTO %[1]s AS t SELECT * FROM ok ORDER BY sourced_id
		ON CONFLICT (sourced_id) DO UPDATE SET %[3]s WHERE EXCLUDED.date_last_modified >= t.date_last_modified`
	// deleteRoster: %[1]s the table, %[2]s roster_deletions; $1 the entity type, $2 sourced ids, $3 their
	// date_last_modified.
	deleteRoster = `WITH src AS (SELECT * FROM unnest($2::text[], $3::timestamptz[]) AS s(sourced_id, date_last_modified)),
		ok AS (SELECT src.* FROM src
			WHERE NOT EXISTS (SELECT 1 FROM %[1]s t WHERE t.sourced_id = src.sourced_id AND t.date_last_modified > src.date_last_modified)
			AND NOT EXISTS (SELECT 1 FROM %[2]s d WHERE d.entity = $1 AND d.sourced_id = src.sourced_id AND d.date_last_modified > src.date_last_modified)),
		gone AS (DELETE FROM %[1]s t USING ok WHERE t.sourced_id = ok.sourced_id)
		INSERT INTO %[2]s AS d (entity, sourced_id, date_last_modified) SELECT $1, sourced_id, date_last_modified FROM ok ORDER BY sourced_id
		ON CONFLICT (entity, sourced_id) DO UPDATE SET date_last_modified = EXCLUDED.date_last_modified`
)

// rosterKey names one entity of a district.
type rosterKey struct{ typ, sourcedID string }

// rosterOp is the winning record of an entity in a batch: a row to upsert, or a delete. An upsert that
// won over a delete in the same batch keeps that delete's time in deletedAt: the delete is applied
// first. A user upsert that does not know the internal id keeps in prior the user rows of the batch
// that did, since the last delete, in order: they are applied before it, each only if it is not older
// than the row it meets, exactly as if the batch's records had been applied one by one.
type rosterOp struct {
	dlm       time.Time
	delete    bool
	row       any      // *xxxRow, for upserts
	user      *userRow // row again when it is a user
	deletedAt *time.Time
	prior     []*userRow
}

// addRoster reduces one roster record into the batch's ops: it wins over the entity's op so far unless
// older. Wins form a chain of non-decreasing times, so against any stored row the ops of the chain that
// apply are a suffix of it, and only the deletes and the user rows that carry an internal id can
// change what the final op leaves.
func (dist *district) addRoster(ev *records.EnrichedEvent, internalID *string) {
	k, op := rosterOpOf(ev, internalID)
	cur, ok := dist.roster[k]
	if ok && op.dlm.Before(cur.dlm) {
		return
	}
	if ok && !op.delete {
		switch {
		case cur.delete:
			op.deletedAt = &cur.dlm
		default:
			op.deletedAt = cur.deletedAt
			if op.user != nil && op.user.InternalID == nil {
				op.prior = cur.prior
				if cur.user.InternalID != nil {
					op.prior = append(slices.Clip(op.prior), cur.user)
				}
			}
		}
	}
	dist.roster[k] = op
}

// queueRoster adds the district's roster upserts and deletes to b, one of each per table at most, in a
// fixed table order with keys sorted so that concurrent writers lock rows in the same order.
func (dist *district) queueRoster(b *pgx.Batch, schema string, entities map[string]*rosterEntity) error {
	if len(dist.roster) == 0 {
		return nil
	}
	deletions := pgx.Identifier{schema, "roster_deletions"}.Sanitize()
	keys := sortedKeys(dist.roster, func(a, b rosterKey) int {
		if c := strings.Compare(a.typ, b.typ); c != 0 {
			return c
		}
		return strings.Compare(a.sourcedID, b.sourcedID)
	})
	for chunk := range chunkBy(keys, func(k rosterKey) string { return k.typ }) {
		e := entities[chunk[0].typ]
		table := pgx.Identifier{schema, e.table}.Sanitize()
		var (
			rounds  [][]any // rounds[i] holds the i-th prior row of keys that have one; the last round the ops
			finals  []any
			delIDs  []string
			delDLMs []time.Time
		)
		for _, k := range chunk {
			op := dist.roster[k]
			switch {
			case op.delete:
				delIDs, delDLMs = append(delIDs, k.sourcedID), append(delDLMs, op.dlm)
				continue
			case op.deletedAt != nil:
				delIDs, delDLMs = append(delIDs, k.sourcedID), append(delDLMs, *op.deletedAt)
			}
			for i, u := range op.prior {
				if i == len(rounds) {
					rounds = append(rounds, nil)
				}
				rounds[i] = append(rounds[i], u)
			}
			finals = append(finals, op.row)
		}
		if len(delIDs) > 0 { // before the upserts: a delete that an upsert of this batch follows comes first
			b.Queue(fmt.Sprintf(deleteRoster, table, deletions), e.typ, delIDs, delDLMs)
		}
		for _, rows := range append(rounds, finals) {
			if len(rows) == 0 {
				continue
			}
			doc, err := json.Marshal(rows)
			if err != nil {
				return fmt.Errorf("encoding %s rows: %w", e.table, err)
			}
			b.Queue(fmt.Sprintf(upsertRoster, table, deletions, e.update), string(doc), e.typ)
		}
	}
	return nil
}

// chunkBy yields runs of consecutive elements with the same group.
func chunkBy[T any](s []T, group func(T) string) func(yield func([]T) bool) {
	return func(yield func([]T) bool) {
		for start := 0; start < len(s); {
			end := start + 1
			for end < len(s) && group(s[end]) == group(s[start]) {
				end++
			}
			if !yield(s[start:end]) {
				return
			}
			start = end
		}
	}
}

// rosterCheck reports whether a roster record, its payload checked, has a sourced id and a known status.
func rosterCheck(ev *records.EnrichedEvent) bool {
	var id, status string
	switch p := ev.Payloads(); ev.Type {
	case records.TypeRosterOrg:
		id, status = p.RosterOrg.SourcedID, p.RosterOrg.Status
	case records.TypeRosterAcademicSession:
		id, status = p.RosterAcademicSession.SourcedID, p.RosterAcademicSession.Status
	case records.TypeRosterCourse:
		id, status = p.RosterCourse.SourcedID, p.RosterCourse.Status
	case records.TypeRosterClass:
		id, status = p.RosterClass.SourcedID, p.RosterClass.Status
	case records.TypeRosterUser:
		id, status = p.RosterUser.SourcedID, p.RosterUser.Status
	case records.TypeRosterEnrollment:
		id, status = p.RosterEnrollment.SourcedID, p.RosterEnrollment.Status
	case records.TypeRosterDemographics:
		id, status = p.RosterDemographics.SourcedID, p.RosterDemographics.Status
	case records.TypeRosterLineItem:
		id, status = p.RosterLineItem.SourcedID, p.RosterLineItem.Status
	case records.TypeRosterResult:
		id, status = p.RosterResult.SourcedID, p.RosterResult.Status
	default:
		return false
	}
	return id != "" && (status == records.RosterActive || status == records.RosterToBeDeleted)
}

// base holds the columns every roster table starts with.
type base struct {
	SourcedID        string            `json:"sourced_id"`
	Status           string            `json:"status"`
	DateLastModified time.Time         `json:"date_last_modified"`
	Metadata         map[string]string `json:"metadata"`
}

func newBase(id, status string, dlm time.Time, md map[string]string) base {
	if md == nil {
		md = map[string]string{}
	}
	return base{SourcedID: id, Status: status, DateLastModified: dlm, Metadata: md}
}

// day is a date column.
type day time.Time

func (d day) MarshalJSON() ([]byte, error) {
	return []byte(`"` + time.Time(d).Format(time.DateOnly) + `"`), nil
}

func optDay(t *time.Time) *day {
	if t == nil {
		return nil
	}
	d := day(*t)
	return &d
}

// list keeps text[] columns NOT NULL: a missing array is empty.
func list(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

type orgRow struct {
	base
	Name            string  `json:"name"`
	Type            string  `json:"type"`
	Identifier      *string `json:"identifier"`
	ParentSourcedID *string `json:"parent_sourced_id"`
}

type academicSessionRow struct {
	base
	Title           string  `json:"title"`
	Type            string  `json:"type"`
	StartDate       day     `json:"start_date"`
	EndDate         day     `json:"end_date"`
	SchoolYear      string  `json:"school_year"`
	ParentSourcedID *string `json:"parent_sourced_id"`
}

type courseRow struct {
	base
	Title               string   `json:"title"`
	SchoolYearSourcedID *string  `json:"school_year_sourced_id"`
	CourseCode          *string  `json:"course_code"`
	Grades              []string `json:"grades"`
	Subjects            []string `json:"subjects"`
	OrgSourcedID        string   `json:"org_sourced_id"`
}

type classRow struct {
	base
	Title           string   `json:"title"`
	ClassCode       *string  `json:"class_code"`
	ClassType       string   `json:"class_type"`
	Location        *string  `json:"location"`
	Grades          []string `json:"grades"`
	Subjects        []string `json:"subjects"`
	Periods         []string `json:"periods"`
	CourseSourcedID string   `json:"course_sourced_id"`
	SchoolSourcedID string   `json:"school_sourced_id"`
	TermSourcedIDs  []string `json:"term_sourced_ids"`
}

type roleJSON struct {
	RoleType     string `json:"role_type"`
	Role         string `json:"role"`
	OrgSourcedID string `json:"org_sourced_id"`
	BeginDate    *day   `json:"begin_date"`
	EndDate      *day   `json:"end_date"`
}

type userRow struct {
	base
	InternalID           *string    `json:"internal_id"`
	Enabled              bool       `json:"enabled"`
	Username             *string    `json:"username"`
	GivenName            string     `json:"given_name"`
	FamilyName           string     `json:"family_name"`
	MiddleName           *string    `json:"middle_name"`
	PreferredFirstName   *string    `json:"preferred_first_name"`
	PreferredLastName    *string    `json:"preferred_last_name"`
	Pronouns             *string    `json:"pronouns"`
	Roles                []roleJSON `json:"roles"`
	Identifier           *string    `json:"identifier"`
	UserMasterIdentifier *string    `json:"user_master_identifier"`
	Email                *string    `json:"email"`
	Grades               []string   `json:"grades"`
	OrgSourcedIDs        []string   `json:"org_sourced_ids"`
	AgentSourcedIDs      []string   `json:"agent_sourced_ids"`
	BirthDate            *day       `json:"birth_date"`
}

type enrollmentRow struct {
	base
	ClassSourcedID  string `json:"class_sourced_id"`
	SchoolSourcedID string `json:"school_sourced_id"`
	UserSourcedID   string `json:"user_sourced_id"`
	Role            string `json:"role"`
	IsPrimary       *bool  `json:"is_primary"`
	BeginDate       *day   `json:"begin_date"`
	EndDate         *day   `json:"end_date"`
}

type demographicsRow struct {
	base
	BirthDate                            *day    `json:"birth_date"`
	Sex                                  *string `json:"sex"`
	AmericanIndianOrAlaskaNative         *bool   `json:"american_indian_or_alaska_native"`
	Asian                                *bool   `json:"asian"`
	BlackOrAfricanAmerican               *bool   `json:"black_or_african_american"`
	NativeHawaiianOrOtherPacificIslander *bool   `json:"native_hawaiian_or_other_pacific_islander"`
	White                                *bool   `json:"white"`
	TwoOrMoreRaces                       *bool   `json:"two_or_more_races"`
	HispanicOrLatinoEthnicity            *bool   `json:"hispanic_or_latino_ethnicity"`
	CountryOfBirthCode                   *string `json:"country_of_birth_code"`
	StateOfBirthAbbreviation             *string `json:"state_of_birth_abbreviation"`
	CityOfBirth                          *string `json:"city_of_birth"`
	PublicSchoolResidenceStatus          *string `json:"public_school_residence_status"`
}

type lineItemRow struct {
	base
	Title                    string    `json:"title"`
	Description              *string   `json:"description"`
	AssignDate               time.Time `json:"assign_date"`
	DueDate                  time.Time `json:"due_date"`
	ClassSourcedID           string    `json:"class_sourced_id"`
	SchoolSourcedID          *string   `json:"school_sourced_id"`
	CategorySourcedID        *string   `json:"category_sourced_id"`
	GradingPeriodSourcedID   *string   `json:"grading_period_sourced_id"`
	AcademicSessionSourcedID *string   `json:"academic_session_sourced_id"`
	ScoreScaleSourcedID      *string   `json:"score_scale_sourced_id"`
	ResultValueMin           *float64  `json:"result_value_min"`
	ResultValueMax           *float64  `json:"result_value_max"`
}

type resultRow struct {
	base
	LineItemSourcedID   string   `json:"line_item_sourced_id"`
	StudentSourcedID    string   `json:"student_sourced_id"`
	ClassSourcedID      *string  `json:"class_sourced_id"`
	ScoreScaleSourcedID *string  `json:"score_scale_sourced_id"`
	ScoreStatus         string   `json:"score_status"`
	Score               *float64 `json:"score"`
	TextScore           *string  `json:"text_score"`
	ScoreDate           day      `json:"score_date"`
	Comment             *string  `json:"comment"`
	InProgress          *bool    `json:"in_progress"`
	Incomplete          *bool    `json:"incomplete"`
	Late                *bool    `json:"late"`
	Missing             *bool    `json:"missing"`
}

// rosterOpOf turns a checked roster record into its entity key and op. internalID is the actor's
// internal id when it is a UUID (for users only).
func rosterOpOf(ev *records.EnrichedEvent, internalID *string) (rosterKey, rosterOp) {
	var (
		b   base
		row any
		op  rosterOp
	)
	switch ev.Type {
	case records.TypeRosterOrg:
		p := ev.RosterOrg
		b = newBase(p.SourcedID, p.Status, p.DateLastModified, p.Metadata)
		row = &orgRow{base: b, Name: p.Name, Type: p.Type, Identifier: p.Identifier, ParentSourcedID: p.ParentSourcedID}
	case records.TypeRosterAcademicSession:
		p := ev.RosterAcademicSession
		b = newBase(p.SourcedID, p.Status, p.DateLastModified, p.Metadata)
		row = &academicSessionRow{base: b, Title: p.Title, Type: p.Type, StartDate: day(p.StartDate), EndDate: day(p.EndDate),
			SchoolYear: p.SchoolYear, ParentSourcedID: p.ParentSourcedID}
	case records.TypeRosterCourse:
		p := ev.RosterCourse
		b = newBase(p.SourcedID, p.Status, p.DateLastModified, p.Metadata)
		row = &courseRow{base: b, Title: p.Title, SchoolYearSourcedID: p.SchoolYearSourcedID, CourseCode: p.CourseCode,
			Grades: list(p.Grades), Subjects: list(p.Subjects), OrgSourcedID: p.OrgSourcedID}
	case records.TypeRosterClass:
		p := ev.RosterClass
		b = newBase(p.SourcedID, p.Status, p.DateLastModified, p.Metadata)
		row = &classRow{base: b, Title: p.Title, ClassCode: p.ClassCode, ClassType: p.ClassType, Location: p.Location,
			Grades: list(p.Grades), Subjects: list(p.Subjects), Periods: list(p.Periods), CourseSourcedID: p.CourseSourcedID,
			SchoolSourcedID: p.SchoolSourcedID, TermSourcedIDs: list(p.TermSourcedIds)}
	case records.TypeRosterUser:
		p := ev.RosterUser
		b = newBase(p.SourcedID, p.Status, p.DateLastModified, p.Metadata)
		roles := make([]roleJSON, len(p.Roles))
		for i, r := range p.Roles {
			roles[i] = roleJSON{RoleType: r.RoleType, Role: r.Role, OrgSourcedID: r.OrgSourcedID,
				BeginDate: optDay(r.BeginDate), EndDate: optDay(r.EndDate)}
		}
		u := &userRow{base: b, InternalID: internalID, Enabled: p.EnabledUser, Username: p.Username,
			GivenName: p.GivenName, FamilyName: p.FamilyName, MiddleName: p.MiddleName,
			PreferredFirstName: p.PreferredFirstName, PreferredLastName: p.PreferredLastName, Pronouns: p.Pronouns,
			Roles: roles, Identifier: p.Identifier, UserMasterIdentifier: p.UserMasterIdentifier, Email: p.Email,
			Grades: list(p.Grades), OrgSourcedIDs: list(p.OrgSourcedIds), AgentSourcedIDs: list(p.AgentSourcedIds),
			BirthDate: optDay(p.BirthDate)}
		row, op.user = u, u
	case records.TypeRosterEnrollment:
		p := ev.RosterEnrollment
		b = newBase(p.SourcedID, p.Status, p.DateLastModified, p.Metadata)
		row = &enrollmentRow{base: b, ClassSourcedID: p.ClassSourcedID, SchoolSourcedID: p.SchoolSourcedID,
			UserSourcedID: p.UserSourcedID, Role: p.Role, IsPrimary: p.Primary, BeginDate: optDay(p.BeginDate),
			EndDate: optDay(p.EndDate)}
	case records.TypeRosterDemographics:
		p := ev.RosterDemographics
		b = newBase(p.SourcedID, p.Status, p.DateLastModified, p.Metadata)
		row = &demographicsRow{base: b, BirthDate: optDay(p.BirthDate), Sex: p.Sex,
			AmericanIndianOrAlaskaNative: p.AmericanIndianOrAlaskaNative, Asian: p.Asian,
			BlackOrAfricanAmerican: p.BlackOrAfricanAmerican, NativeHawaiianOrOtherPacificIslander: p.NativeHawaiianOrOtherPacificIslander,
			White: p.White, TwoOrMoreRaces: p.DemographicRaceTwoOrMoreRaces, HispanicOrLatinoEthnicity: p.HispanicOrLatinoEthnicity,
			CountryOfBirthCode: p.CountryOfBirthCode, StateOfBirthAbbreviation: p.StateOfBirthAbbreviation,
			CityOfBirth: p.CityOfBirth, PublicSchoolResidenceStatus: p.PublicSchoolResidenceStatus}
	case records.TypeRosterLineItem:
		p := ev.RosterLineItem
		b = newBase(p.SourcedID, p.Status, p.DateLastModified, p.Metadata)
		row = &lineItemRow{base: b, Title: p.Title, Description: p.Description, AssignDate: p.AssignDate, DueDate: p.DueDate,
			ClassSourcedID: p.ClassSourcedID, SchoolSourcedID: p.SchoolSourcedID, CategorySourcedID: p.CategorySourcedID,
			GradingPeriodSourcedID: p.GradingPeriodSourcedID, AcademicSessionSourcedID: p.AcademicSessionSourcedID,
			ScoreScaleSourcedID: p.ScoreScaleSourcedID, ResultValueMin: p.ResultValueMin, ResultValueMax: p.ResultValueMax}
	case records.TypeRosterResult:
		p := ev.RosterResult
		b = newBase(p.SourcedID, p.Status, p.DateLastModified, p.Metadata)
		row = &resultRow{base: b, LineItemSourcedID: p.LineItemSourcedID, StudentSourcedID: p.StudentSourcedID,
			ClassSourcedID: p.ClassSourcedID, ScoreScaleSourcedID: p.ScoreScaleSourcedID, ScoreStatus: p.ScoreStatus,
			Score: p.Score, TextScore: p.TextScore, ScoreDate: day(p.ScoreDate), Comment: p.Comment,
			InProgress: p.InProgress, Incomplete: p.Incomplete, Late: p.Late, Missing: p.Missing}
	}
	op.dlm = b.DateLastModified
	if b.Status == records.RosterToBeDeleted {
		op.delete, op.row, op.user = true, nil, nil
	} else {
		op.row = row
	}
	return rosterKey{typ: ev.Type, sourcedID: b.SourcedID}, op
}
