// Package roster keeps the roster context the enricher joins to events — students' birth dates, grades,
// consent and schools, classes' schools and grade levels, courses, academic sessions and line items'
// due dates — in tables of each district's schema (enricher_*, apart from the roster_* state the sink
// keeps from enriched), fed by the roster records on raw, and answers lookups from a bounded cache.
//
// Writes are replay-safe: a record is applied only if its date_last_modified is not older than the
// stored row's, and status tobedeleted is stored as a tombstone that joins ignore, so replaying the raw
// log, or receiving a bulk export after a delta, never moves the context backwards.
package roster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/edtech-analytics/platform/libs/records"
	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Student is what the roster says about a person. The zero value means nothing is known.
type Student struct {
	Rostered  bool // an active roster.user record exists
	IsStudent bool // one of its roles is student
	BirthDate *time.Time
	Grades    []string
	Consent   string   // the value the SIS recorded under the policy's consent key when the user was written
	Schools   []string // schools of the active enrollments, sorted
}

// Class is a class's context; School is empty when the class is unknown.
type Class struct {
	School, Course string
	Grades         []string  // the class's, else its course's
	Terms          []string  // the class's academic sessions, by sourced id
	Sessions       []Session // those of Terms the roster has sent (and not deleted)
}

// Session is an academic session's span, both dates inclusive.
type Session struct {
	ID         string
	Start, End time.Time
}

// SessionAt returns the class's academic session that holds day (a UTC date): the shortest of those
// that do (a grading period rather than its semester, a semester rather than its school year); "" when
// none does.
func (c Class) SessionAt(day time.Time) string {
	day = time.Date(day.Year(), day.Month(), day.Day(), 0, 0, 0, 0, time.UTC)
	var best *Session
	for i := range c.Sessions {
		s := &c.Sessions[i]
		if day.Before(s.Start) || day.After(s.End) {
			continue
		}
		if best == nil || s.End.Sub(s.Start) < best.End.Sub(best.Start) {
			best = s
		}
	}
	if best == nil {
		return ""
	}
	return best.ID
}

// LineItem is a gradebook line item's due time; zero when unknown.
type LineItem struct {
	DueAt time.Time
	Class string
}

// Store reads and writes the context. It is safe for concurrent use.
type Store struct {
	pools Pools
	max   int

	mu        sync.RWMutex
	students  map[key]Student
	classes   map[key]Class
	lineItems map[key]LineItem
}

type key struct{ tenant, id string }

// Pools finds the pool of the instance a district's schema lives on (fleet.DistrictPools).
type Pools interface {
	Pool(ctx context.Context, tenantID string) (*pgxpool.Pool, error)
}

// New returns a store caching up to maxCached entries of each kind, over the districts' schemas wherever
// pools places them.
func New(pools Pools, maxCached int) *Store {
	return &Store{pools: pools, max: maxCached, students: map[key]Student{}, classes: map[key]Class{}, lineItems: map[key]LineItem{}}
}

// Student returns the context of a person by internal id.
func (s *Store) Student(ctx context.Context, tenant, internalID string) (Student, error) {
	return load(ctx, s, s.students, key{tenant, internalID}, func(t tables) (Student, error) {
		got, err := s.readStudents(ctx, t, []string{internalID})
		return got[internalID], err
	})
}

// PrefetchStudents loads the context of the given people that is not cached yet in one query, so that
// the Student calls that follow hit the cache.
func (s *Store) PrefetchStudents(ctx context.Context, tenant string, internalIDs []string) error {
	var missing []string
	s.mu.RLock()
	for _, id := range internalIDs {
		if _, ok := s.students[key{tenant, id}]; !ok {
			missing = append(missing, id)
		}
	}
	s.mu.RUnlock()
	if len(missing) == 0 {
		return nil
	}
	t, err := s.district(ctx, tenant)
	if err != nil {
		return err
	}
	got, err := s.readStudents(ctx, t, missing)
	if err != nil {
		return fmt.Errorf("reading roster context of tenant %s: %w", tenant, err)
	}
	s.mu.Lock()
	if len(s.students)+len(got) > s.max {
		clear(s.students)
	}
	for _, id := range missing {
		s.students[key{tenant, id}] = got[id] // the zero Student when nothing is known
	}
	s.mu.Unlock()
	return nil
}

// readStudents reads the context of people by internal id; people the roster does not know are absent.
func (s *Store) readStudents(ctx context.Context, t tables, ids []string) (map[string]Student, error) {
	rows, err := t.pool.Query(ctx, `SELECT i.id::text, u.is_student IS NOT NULL, coalesce(u.is_student, false),
			coalesce(u.birth_date, d.birth_date), coalesce(u.grades, '{}'), u.consent, coalesce(e.schools, '{}')
		FROM unnest($1::uuid[]) AS i(id)
		LEFT JOIN LATERAL (SELECT is_student, birth_date, grades, consent FROM `+t.users+`
			WHERE internal_id = i.id AND status <> 'tobedeleted' ORDER BY date_last_modified DESC LIMIT 1) u ON true
		LEFT JOIN LATERAL (SELECT birth_date FROM `+t.demographics+`
			WHERE internal_id = i.id AND status <> 'tobedeleted' AND birth_date IS NOT NULL
			ORDER BY date_last_modified DESC LIMIT 1) d ON true
		LEFT JOIN LATERAL (SELECT array_agg(DISTINCT school_sourced_id ORDER BY school_sourced_id) AS schools
			FROM `+t.enrollments+` WHERE internal_id = i.id AND status <> 'tobedeleted') e ON true`, ids)
	if err != nil {
		return nil, err
	}
	out := make(map[string]Student, len(ids))
	var (
		id      string
		st      Student
		birth   *time.Time
		consent *string
	)
	_, err = pgx.ForEachRow(rows, []any{&id, &st.Rostered, &st.IsStudent, &birth, &st.Grades, &consent, &st.Schools}, func() error {
		got := st
		got.Grades, got.Schools = slices.Clone(st.Grades), slices.Clone(st.Schools)
		if birth != nil {
			b := birth.UTC()
			got.BirthDate = &b
		}
		if consent != nil {
			got.Consent = *consent
		}
		out[id] = got
		return nil
	})
	return out, err
}

// Class returns a class's context by sourced id.
func (s *Store) Class(ctx context.Context, tenant, classID string) (Class, error) {
	return load(ctx, s, s.classes, key{tenant, classID}, func(t tables) (Class, error) {
		var c Class
		err := t.pool.QueryRow(ctx, `SELECT c.school_sourced_id, c.course_sourced_id,
				CASE WHEN cardinality(c.grades) > 0 THEN c.grades ELSE coalesce(co.grades, '{}') END, c.term_sourced_ids
			FROM `+t.classes+` c LEFT JOIN `+t.courses+` co ON co.sourced_id = c.course_sourced_id AND co.status <> 'tobedeleted'
			WHERE c.sourced_id = $1 AND c.status <> 'tobedeleted'`, classID).Scan(&c.School, &c.Course, &c.Grades, &c.Terms)
		if errors.Is(err, pgx.ErrNoRows) {
			return Class{}, nil
		}
		if err != nil || len(c.Terms) == 0 {
			return c, err
		}
		rows, err := t.pool.Query(ctx, `SELECT sourced_id, start_date, end_date FROM `+t.sessions+`
			WHERE sourced_id = ANY($1) AND status <> 'tobedeleted' ORDER BY sourced_id`, c.Terms)
		if err != nil {
			return c, err
		}
		c.Sessions, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Session, error) {
			var s Session
			err := r.Scan(&s.ID, &s.Start, &s.End)
			s.Start, s.End = s.Start.UTC(), s.End.UTC()
			return s, err
		})
		return c, err
	})
}

// LineItem returns a line item's due time by sourced id.
func (s *Store) LineItem(ctx context.Context, tenant, id string) (LineItem, error) {
	return load(ctx, s, s.lineItems, key{tenant, id}, func(t tables) (LineItem, error) {
		var li LineItem
		err := t.pool.QueryRow(ctx, `SELECT due_at, class_sourced_id FROM `+t.lineItems+`
			WHERE sourced_id = $1 AND status <> 'tobedeleted'`, id).Scan(&li.DueAt, &li.Class)
		if errors.Is(err, pgx.ErrNoRows) {
			return LineItem{}, nil
		}
		li.DueAt = li.DueAt.UTC()
		return li, err
	})
}

// load answers from the cache, or reads with fetch and caches the answer (also a negative one).
func load[V any](ctx context.Context, s *Store, cache map[key]V, k key, fetch func(tables) (V, error)) (V, error) {
	s.mu.RLock()
	v, ok := cache[k]
	s.mu.RUnlock()
	if ok {
		return v, nil
	}
	t, err := s.district(ctx, k.tenant)
	if err != nil {
		return v, err
	}
	if v, err = fetch(t); err != nil {
		return v, fmt.Errorf("reading roster context of tenant %s: %w", k.tenant, err)
	}
	s.mu.Lock()
	if len(cache) >= s.max {
		clear(cache)
	}
	cache[k] = v
	s.mu.Unlock()
	return v, nil
}

// Apply stores the context a roster record carries. person is the internal id the enricher resolved
// for the record's user (users, demographics, enrollments); consentKey is the metadata entry the
// district's policy reads consent from ("" for none). Records without context (orgs, results) are a
// no-op.
func (s *Store) Apply(ctx context.Context, ev *records.RawEvent, person, consentKey string) error {
	t, err := s.district(ctx, ev.TenantID)
	if err != nil {
		return err
	}
	var (
		query string
		args  []any
		drop  func()
	)
	switch {
	case ev.RosterUser != nil:
		u := ev.RosterUser
		isStudent := false
		for _, r := range u.Roles {
			isStudent = isStudent || r.Role == "student"
		}
		var consent *string
		if v, ok := u.Metadata[consentKey]; ok && consentKey != "" {
			consent = &v
		}
		query = upsert(t.users, "source_id, sourced_id", "internal_id, status, date_last_modified, is_student, birth_date, grades, consent")
		args = []any{ev.SourceID, u.SourcedID, person, u.Status, u.DateLastModified, isStudent, date(u.BirthDate), nonNil(u.Grades), consent}
		drop = func() { delete(s.students, key{ev.TenantID, person}) }
	case ev.RosterDemographics != nil:
		d := ev.RosterDemographics
		query = upsert(t.demographics, "source_id, sourced_id", "internal_id, status, date_last_modified, birth_date")
		args = []any{ev.SourceID, d.SourcedID, person, d.Status, d.DateLastModified, date(d.BirthDate)}
		drop = func() { delete(s.students, key{ev.TenantID, person}) }
	case ev.RosterEnrollment != nil:
		e := ev.RosterEnrollment
		query = upsert(t.enrollments, "sourced_id", "status, date_last_modified, class_sourced_id, school_sourced_id, internal_id, role, is_primary, begin_date, end_date")
		args = []any{e.SourcedID, e.Status, e.DateLastModified, e.ClassSourcedID, e.SchoolSourcedID, person, e.Role, e.Primary, date(e.BeginDate), date(e.EndDate)}
		drop = func() { delete(s.students, key{ev.TenantID, person}) }
	case ev.RosterClass != nil:
		c := ev.RosterClass
		query = upsert(t.classes, "sourced_id", "status, date_last_modified, school_sourced_id, course_sourced_id, grades, term_sourced_ids")
		args = []any{c.SourcedID, c.Status, c.DateLastModified, c.SchoolSourcedID, c.CourseSourcedID, nonNil(c.Grades), nonNil(c.TermSourcedIds)}
		drop = func() { delete(s.classes, key{ev.TenantID, c.SourcedID}) }
	case ev.RosterCourse != nil:
		c := ev.RosterCourse
		query = upsert(t.courses, "sourced_id", "status, date_last_modified, org_sourced_id, grades")
		args = []any{c.SourcedID, c.Status, c.DateLastModified, c.OrgSourcedID, nonNil(c.Grades)}
		drop = func() { dropTenant(s.classes, ev.TenantID) } // classes take their grades from courses
	case ev.RosterAcademicSession != nil:
		a := ev.RosterAcademicSession
		query = upsert(t.sessions, "sourced_id", "status, date_last_modified, type, start_date, end_date, school_year, parent_sourced_id")
		args = []any{a.SourcedID, a.Status, a.DateLastModified, a.Type, date(&a.StartDate), date(&a.EndDate), a.SchoolYear, a.ParentSourcedID}
		drop = func() { dropTenant(s.classes, ev.TenantID) } // classes carry their sessions' spans
	case ev.RosterLineItem != nil:
		li := ev.RosterLineItem
		query = upsert(t.lineItems, "sourced_id", "status, date_last_modified, class_sourced_id, due_at")
		args = []any{li.SourcedID, li.Status, li.DateLastModified, li.ClassSourcedID, li.DueDate}
		drop = func() { delete(s.lineItems, key{ev.TenantID, li.SourcedID}) }
	default:
		return nil
	}
	if _, err := t.pool.Exec(ctx, query, args...); err != nil {
		return fmt.Errorf("storing %s context of tenant %s: %w", ev.Type, ev.TenantID, err)
	}
	s.mu.Lock()
	drop() // every record kind above feeds a cache, so each sets drop
	s.mu.Unlock()
	return nil
}

// Erase deletes a person's roster context inside tx.
func (s *Store) Erase(ctx context.Context, tx pgx.Tx, tenant, internalID string) error {
	t, err := tablesOf(tenant)
	if err != nil {
		return err
	}
	for _, table := range []string{t.users, t.demographics, t.enrollments} {
		if _, err := tx.Exec(ctx, "DELETE FROM "+table+" WHERE internal_id = $1", internalID); err != nil {
			return fmt.Errorf("erasing roster context: %w", err)
		}
	}
	s.mu.Lock()
	delete(s.students, key{tenant, internalID})
	s.mu.Unlock()
	return nil
}

// Reset empties the cache; call when partitions move, since another instance may have written since.
func (s *Store) Reset() {
	s.mu.Lock()
	clear(s.students)
	clear(s.classes)
	clear(s.lineItems)
	s.mu.Unlock()
}

func dropTenant[V any](cache map[key]V, tenant string) {
	for k := range cache {
		if k.tenant == tenant {
			delete(cache, k)
		}
	}
}

// upsert builds an insert that updates the row only when the record is not older than it.
func upsert(table, keyCols, cols string) string {
	all := keyCols + ", " + cols
	n := strings.Count(all, ",") + 1
	params := make([]string, n)
	for i := range params {
		params[i] = fmt.Sprintf("$%d", i+1)
	}
	var set []string
	for c := range strings.SplitSeq(cols, ",") {
		c = strings.TrimSpace(c)
		set = append(set, c+" = EXCLUDED."+c)
	}
	return "INSERT INTO " + table + " AS t (" + all + ") VALUES (" + strings.Join(params, ", ") + ")" +
		" ON CONFLICT (" + keyCols + ") DO UPDATE SET " + strings.Join(set, ", ") +
		" WHERE t.date_last_modified <= EXCLUDED.date_last_modified"
}

// tables are the quoted names of one district's roster tables.
type tables struct {
	users, demographics, enrollments, classes, courses, sessions, lineItems string
	pool                                                                    *pgxpool.Pool // the district's instance (district); nil from tablesOf
}

// district returns the district's tables with the pool of the instance that holds them.
func (s *Store) district(ctx context.Context, tenant string) (tables, error) {
	t, err := tablesOf(tenant)
	if err != nil {
		return t, err
	}
	t.pool, err = s.pools.Pool(ctx, tenant)
	return t, err
}

func tablesOf(tenant string) (tables, error) {
	schema, err := tenancy.SchemaName(tenant)
	if err != nil {
		return tables{}, err
	}
	q := func(name string) string { return pgx.Identifier{schema, name}.Sanitize() }
	return tables{users: q("enricher_users"), demographics: q("enricher_demographics"), enrollments: q("enricher_enrollments"),
		classes: q("enricher_classes"), courses: q("enricher_courses"), sessions: q("enricher_sessions"),
		lineItems: q("enricher_line_items")}, nil
}

// date turns an Avro date into a value for a PostgreSQL date column.
func date(t *time.Time) any {
	if t == nil {
		return nil
	}
	return t.UTC().Format(time.DateOnly)
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
