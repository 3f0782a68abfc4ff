package pgstore

import (
	"bytes"
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/edtech-analytics/platform/libs/records"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// The upserts take one row per key, already reduced from the batch in offset order, as parallel arrays.
// Among rows of one key the later one wins on equal times, within a batch and across batches (>=), so
// the result does not depend on how records were split into batches. Attendance keeps the mark with the
// latest occurred_at, results the latest attempt, submissions the latest submission.
const (
	upsertActivity = `INSERT INTO %s AS t (internal_id, event_count, last_event_at, last_event_type)
		SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::timestamptz[], $4::text[])
		ON CONFLICT (internal_id) DO UPDATE SET
			event_count = t.event_count + EXCLUDED.event_count,
			last_event_at = greatest(t.last_event_at, EXCLUDED.last_event_at),
			last_event_type = CASE WHEN EXCLUDED.last_event_at >= t.last_event_at
				THEN EXCLUDED.last_event_type ELSE t.last_event_type END`
	upsertAttendance = `INSERT INTO %s AS t (internal_id, day, status, school_id, class_id, event_id, occurred_at)
		SELECT * FROM unnest($1::uuid[], $2::date[], $3::text[], $4::text[], $5::text[], $6::uuid[], $7::timestamptz[])
		ON CONFLICT (internal_id, day) DO UPDATE SET status = EXCLUDED.status, school_id = EXCLUDED.school_id,
			class_id = EXCLUDED.class_id, event_id = EXCLUDED.event_id, occurred_at = EXCLUDED.occurred_at
		WHERE t.occurred_at IS NULL OR EXCLUDED.occurred_at >= t.occurred_at`
	upsertResult = `INSERT INTO %s AS t (internal_id, assessment_id, score, max_score, occurred_at, event_id)
		SELECT * FROM unnest($1::uuid[], $2::text[], $3::float8[], $4::float8[], $5::timestamptz[], $6::uuid[])
		ON CONFLICT (internal_id, assessment_id) DO UPDATE SET score = EXCLUDED.score,
			max_score = EXCLUDED.max_score, occurred_at = EXCLUDED.occurred_at, event_id = EXCLUDED.event_id
		WHERE t.occurred_at IS NULL OR EXCLUDED.occurred_at >= t.occurred_at`
	upsertSubmission = `INSERT INTO %s AS t (internal_id, assignment_id, submitted_at, late, score, event_id)
		SELECT * FROM unnest($1::uuid[], $2::text[], $3::timestamptz[], $4::bool[], $5::float8[], $6::uuid[])
		ON CONFLICT (internal_id, assignment_id) DO UPDATE SET submitted_at = EXCLUDED.submitted_at,
			late = EXCLUDED.late, score = EXCLUDED.score, event_id = EXCLUDED.event_id
		WHERE t.submitted_at IS NULL OR EXCLUDED.submitted_at >= t.submitted_at`
)

type activity struct {
	count  int64
	lastAt time.Time
	last   string
}

type dayKey struct {
	student pgtype.UUID
	day     time.Time
}

type attendance struct {
	status        string
	school, class *string
	eventID       pgtype.UUID
	at            time.Time
}

type itemKey struct {
	student pgtype.UUID
	item    string
}

type result struct {
	score, max float64
	at         time.Time
	eventID    pgtype.UUID
}

type submission struct {
	at      time.Time
	late    *bool
	score   *float64
	eventID pgtype.UUID
}

// district is one district's share of a batch, reduced to one row per key.
type district struct {
	activity    map[pgtype.UUID]*activity
	attendance  map[dayKey]attendance
	results     map[itemKey]result
	submissions map[itemKey]submission
	roster      map[rosterKey]rosterOp
	tables      map[string]*rosterTable // the roster tables by event type
}

func newDistrict(tables map[string]*rosterTable) *district {
	return &district{activity: map[pgtype.UUID]*activity{}, attendance: map[dayKey]attendance{},
		results: map[itemKey]result{}, submissions: map[itemKey]submission{}, roster: map[rosterKey]rosterOp{},
		tables: tables}
}

func (dist *district) add(d *Record) {
	ev := d.Event
	if records.IsRosterType(ev.Type) {
		var internalID *string
		if d.student.Valid {
			id := ev.Actor.InternalID
			internalID = &id
		}
		dist.addRoster(dist.tables[ev.Type], ev, internalID)
		return
	}
	a := dist.activity[d.student]
	if a == nil {
		a = &activity{lastAt: ev.OccurredAt, last: ev.Type}
		dist.activity[d.student] = a
	}
	a.count++
	if !ev.OccurredAt.Before(a.lastAt) {
		a.lastAt, a.last = ev.OccurredAt, ev.Type
	}
	switch ev.Type {
	case records.TypeAttendance:
		p := ev.Attendance
		k := dayKey{d.student, p.Date.UTC()}
		if cur, ok := dist.attendance[k]; !ok || !ev.OccurredAt.Before(cur.at) {
			dist.attendance[k] = attendance{status: p.Status, school: ev.SchoolID, class: ev.ClassID, eventID: d.eventID, at: ev.OccurredAt}
		}
	case records.TypeAssessmentResult:
		p := ev.AssessmentResult
		k := itemKey{d.student, p.AssessmentID}
		if cur, ok := dist.results[k]; !ok || !ev.OccurredAt.Before(cur.at) {
			dist.results[k] = result{score: p.Score, max: p.MaxScore, at: ev.OccurredAt, eventID: d.eventID}
		}
	case records.TypeAssignmentSubmission:
		p := ev.AssignmentSubmission
		k := itemKey{d.student, p.AssignmentID}
		if cur, ok := dist.submissions[k]; !ok || !p.SubmittedAt.Before(cur.at) {
			dist.submissions[k] = submission{at: p.SubmittedAt, late: late(ev), score: p.Score, eventID: d.eventID}
		}
	}
}

// late is the enricher's lateness, or when it withheld it, whether the due time passed before submission
// (nil without a due time).
func late(ev *records.EnrichedEvent) *bool {
	if ev.Derived.Late != nil {
		return ev.Derived.Late
	}
	p := ev.AssignmentSubmission
	if p.DueAt == nil {
		return nil
	}
	l := p.DueAt.Before(p.SubmittedAt)
	return &l
}

// queue adds the district's upserts to b. Rows are sorted by key so that concurrent writers lock rows in
// the same order.
func (dist *district) queue(b *pgx.Batch, c *combined, schema string) error {
	table := func(name string) string { return pgx.Identifier{schema, name}.Sanitize() }

	if ids := sortedKeys(dist.activity, cmpUUID); len(ids) > 0 {
		counts, ats, types := make([]int64, len(ids)), make([]time.Time, len(ids)), make([]string, len(ids))
		for i, id := range ids {
			a := dist.activity[id]
			counts[i], ats[i], types[i] = a.count, a.lastAt, a.last
		}
		c.add(b, fmt.Sprintf(upsertActivity, table("student_activity")), ids, counts, ats, types)
	}

	if days := sortedKeys(dist.attendance, cmpDay); len(days) > 0 {
		students, dates, statuses := make([]pgtype.UUID, len(days)), make([]time.Time, len(days)), make([]string, len(days))
		schools, classes, events := make([]*string, len(days)), make([]*string, len(days)), make([]pgtype.UUID, len(days))
		ats := make([]time.Time, len(days))
		for i, k := range days {
			a := dist.attendance[k]
			students[i], dates[i], statuses[i], schools[i], classes[i], events[i], ats[i] =
				k.student, k.day, a.status, a.school, a.class, a.eventID, a.at
		}
		c.add(b, fmt.Sprintf(upsertAttendance, table("attendance_daily")), students, dates, statuses, schools, classes, events, ats)
	}

	if keys := sortedKeys(dist.results, cmpItem); len(keys) > 0 {
		students, items, scores, maxes := make([]pgtype.UUID, len(keys)), make([]string, len(keys)), make([]float64, len(keys)), make([]float64, len(keys))
		ats, events := make([]time.Time, len(keys)), make([]pgtype.UUID, len(keys))
		for i, k := range keys {
			r := dist.results[k]
			students[i], items[i], scores[i], maxes[i], ats[i], events[i] = k.student, k.item, r.score, r.max, r.at, r.eventID
		}
		c.add(b, fmt.Sprintf(upsertResult, table("assessment_results_latest")), students, items, scores, maxes, ats, events)
	}

	if keys := sortedKeys(dist.submissions, cmpItem); len(keys) > 0 {
		students, items, ats := make([]pgtype.UUID, len(keys)), make([]string, len(keys)), make([]time.Time, len(keys))
		lates, scores, events := make([]*bool, len(keys)), make([]*float64, len(keys)), make([]pgtype.UUID, len(keys))
		for i, k := range keys {
			s := dist.submissions[k]
			students[i], items[i], ats[i], lates[i], scores[i], events[i] = k.student, k.item, s.at, s.late, s.score, s.eventID
		}
		c.add(b, fmt.Sprintf(upsertSubmission, table("submissions")), students, items, ats, lates, scores, events)
	}
	return dist.queueRoster(b, schema)
}

func sortedKeys[K comparable, V any](m map[K]V, cmp func(a, b K) int) []K {
	return slices.SortedFunc(maps.Keys(m), cmp)
}

func cmpUUID(a, b pgtype.UUID) int { return bytes.Compare(a.Bytes[:], b.Bytes[:]) }

func cmpDay(a, b dayKey) int {
	return cmp.Or(cmpUUID(a.student, b.student), a.day.Compare(b.day))
}

func cmpItem(a, b itemKey) int {
	return cmp.Or(cmpUUID(a.student, b.student), cmp.Compare(a.item, b.item))
}

// combined gathers data-modifying statements into one WITH statement, so that a transaction over many
// districts parses and plans one statement for their learning-event tables, not one per table and
// district: with hundreds of districts in a batch, per-statement costs would otherwise dominate.
// Parameters are renumbered; one statement holds at most maxParams of them.
type combined struct {
	parts []string
	args  []any
}

// maxParams stays below PostgreSQL's limit of 65,535 parameters per statement.
const maxParams = 65_000

func (c *combined) add(b *pgx.Batch, sql string, args ...any) {
	if len(c.args)+len(args) > maxParams {
		c.flush(b)
	}
	c.parts = append(c.parts, shiftParams(sql, len(c.args)))
	c.args = append(c.args, args...)
}

// flush queues what was gathered as one statement.
func (c *combined) flush(b *pgx.Batch) {
	switch len(c.parts) {
	case 0:
		return
	case 1:
		b.Queue(c.parts[0], c.args...)
	default:
		var sb strings.Builder
		sb.WriteString("WITH ")
		for i, p := range c.parts {
			if i > 0 {
				sb.WriteString(",\n")
			}
			fmt.Fprintf(&sb, "w%d AS (%s)", i, p)
		}
		sb.WriteString("\nSELECT 1")
		b.Queue(sb.String(), c.args...)
	}
	c.parts, c.args = nil, nil
}

// shiftParams adds by to the number of every $n parameter in sql.
func shiftParams(sql string, by int) string {
	if by == 0 {
		return sql
	}
	var sb strings.Builder
	for i := 0; i < len(sql); i++ {
		j := i + 1
		for sql[i] == '$' && j < len(sql) && sql[j] >= '0' && sql[j] <= '9' {
			j++
		}
		if j == i+1 {
			sb.WriteByte(sql[i])
			continue
		}
		n, _ := strconv.Atoi(sql[i+1 : j]) // digits only
		sb.WriteString("$" + strconv.Itoa(n+by))
		i = j - 1
	}
	return sb.String()
}
