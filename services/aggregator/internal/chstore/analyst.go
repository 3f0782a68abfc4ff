package chstore

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/edtech-analytics/platform/libs/chutil"
)

// Analyst views: one database per district, <prefix><tenant_id>, whose views show that district's rows
// only, with pseudonyms and never internal ids, names or SIS ids (the fact table holds no names or SIS
// ids to begin with). Granting an analyst SELECT on that database alone is what docs/analysts.md sets
// up on a modern ClickHouse. The views are created the first time a district's events are written, and
// again (IF NOT EXISTS) after every start of the aggregator.

// analystViewNames are the views of every analyst database, in creation order.
var analystViewNames = []string{"events", "district_daily", "school_daily", "class_daily", "student_daily",
	"student_weekly_activity", "student_first_activity"}

// AnalystViewNames lists the views of an analyst database.
func AnalystViewNames() []string { return append([]string(nil), analystViewNames...) }

// tenantPattern is tenancy's tenant id rule: a slug that is safe as a literal and in a database name.
var tenantPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_]{0,47}$`)

// AnalystDatabase is the name of a district's analyst database, or false when the tenant id is not a
// valid slug (no views are made for it).
func AnalystDatabase(prefix, tenantID string) (string, bool) {
	if prefix == "" || !tenantPattern.MatchString(tenantID) {
		return "", false
	}
	return prefix + tenantID, true
}

// analystEventColumns are the columns of events an analyst sees: no tenant (the database says it),
// student_id (the internal id links to the roster), trace id or Kafka coordinates.
const analystEventColumns = `event_id, source_id, type, occurred_at, occurred_ms, local_day, received_at, school_id, class_id,
	pseudonym, role, age_band, grade_level, academic_session_id, attendance_status, attendance_date, minutes_present, assessment_id,
	score, max_score, assignment_id, submission_status, late, session_action, session_seconds, content_id,
	content_type, duration_seconds, percent_complete, custom_name, generic_standard, generic_type, generic_action,
	generic_object_id, generic_object_type, generic_statement_id, prop_keys, prop_values`

// mergedMeasures finalizes the measures of the metrics rollups (18.16 cannot reuse an alias that shadows
// a column in another expression, so the derived rates are computed one level up, see finalized).
const mergedMeasures = `toUInt64(sumMerge(events)) AS events,
	toUInt64(sumMerge(present)) AS present, toUInt64(sumMerge(tardy)) AS tardy, toUInt64(sumMerge(absent)) AS absent,
	toUInt64(sumMerge(excused)) AS excused, toUInt64(sumMerge(other_marks)) AS other_marks,
	toUInt64(sumMerge(assessments)) AS assessments, sumMerge(score_pct_sum) AS score_pct_sum,
	quantilesMerge(0.1, 0.25, 0.5, 0.75, 0.9)(score_quantiles) AS score_quantiles,
	toUInt64(sumMerge(submissions)) AS submissions, toUInt64(sumMerge(late_submissions)) AS late_submissions,
	toUInt64(sumMerge(content_seconds)) AS content_seconds, toUInt64(sumMerge(logins)) AS logins,
	toUInt64(sumMerge(session_seconds)) AS session_seconds`

// finalized selects keys, then every measure and the derived rates, from an inner query of mergedMeasures.
func finalized(keys, inner string) string {
	return `SELECT ` + keys + `events, present, tardy, absent, excused, other_marks,
	(present + tardy) / nullIf(present + tardy + absent + excused + other_marks, 0) AS attendance_rate,
	assessments, score_pct_sum / nullIf(assessments, 0) AS mean_score_pct, score_quantiles,
	submissions, late_submissions, content_seconds, logins, session_seconds
FROM (` + inner + `)`
}

// analystViews returns the statements that create a district's analyst database and views over the
// tables of source. (In the cluster layout they run on every node and read the Distributed tables, so any
// node answers for the whole district.)
func analystViews(source, database, tenantID string) []string {
	db, src := chutil.QuoteIdent(database), chutil.QuoteIdent(source)
	where := "tenant_id = '" + tenantID + "'" // a validated slug: no quoting needed
	view := func(name, query string) string {
		return "CREATE VIEW IF NOT EXISTS " + db + "." + name + " AS " + query
	}
	return []string{
		"CREATE DATABASE IF NOT EXISTS " + db,
		view("events", "SELECT "+analystEventColumns+" FROM "+src+".events WHERE "+where),
		view("district_daily", finalized("day, active_students, ",
			`SELECT day, toUInt64(uniqExactMerge(active_students)) AS active_students, `+mergedMeasures+`
			FROM `+src+`.metrics_daily WHERE `+where+` AND level = 'district' GROUP BY day`)),
		view("school_daily", finalized("school_id, day, active_students, ",
			`SELECT entity_id AS school_id, day, toUInt64(uniqExactMerge(active_students)) AS active_students, `+mergedMeasures+`
			FROM `+src+`.metrics_daily WHERE `+where+` AND level = 'school' GROUP BY entity_id, day`)),
		view("class_daily", finalized("class_id, school_id, day, active_students, ",
			`SELECT entity_id AS class_id, parent_id AS school_id, day, toUInt64(uniqExactMerge(active_students)) AS active_students, `+mergedMeasures+`
			FROM `+src+`.metrics_daily WHERE `+where+` AND level = 'class' GROUP BY entity_id, parent_id, day`)),
		view("student_daily", finalized("pseudonym, day, ",
			`SELECT pseudonym, day, `+mergedMeasures+`
			FROM `+src+`.metrics_student_daily WHERE `+where+` GROUP BY pseudonym, day`)),
		// For retention and activation as the query service defines them (services/query README): a student
		// is active on a day with any event but an attendance mark, and a first meaningful event is one
		// that is neither an attendance mark nor a login or logout. Days are the district's (local_day).
		view("student_weekly_activity", `SELECT pseudonym, toMonday(local_day) AS week, uniqExact(local_day) AS active_days,
			count() AS events FROM `+src+`.events WHERE `+where+` AND role = 'student' AND type != 'attendance'
			GROUP BY pseudonym, week`),
		view("student_first_activity", `SELECT pseudonym, min(occurred_at) AS first_event_at, min(local_day) AS first_day
			FROM `+src+`.events WHERE `+where+` AND role = 'student' AND type != 'attendance'
			AND NOT (type = 'session' AND session_action IN ('login', 'logout')) GROUP BY pseudonym`),
	}
}

// EnsureAnalystViews creates the district's analyst database and views if they are missing. It does
// nothing when analyst views are off (no prefix) or the tenant id is not a slug, and remembers the
// districts it has seen, so only the first write of a district in a process pays for it.
func (s *Store) EnsureAnalystViews(ctx context.Context, tenantID string) error {
	database, ok := AnalystDatabase(s.cfg.AnalystPrefix, tenantID)
	if !ok {
		return nil
	}
	s.mu.Lock()
	done, retry := s.analysts[tenantID], s.analystRetry[tenantID]
	s.mu.Unlock()
	if done || time.Now().Before(retry) {
		return nil
	}
	if err := s.ensureAnalystViews(ctx, tenantID, database); err != nil {
		// Not before analystRetryAfter: a node that does not answer would cost every write its timeout.
		s.mu.Lock()
		s.analystRetry[tenantID] = time.Now().Add(analystRetryAfter)
		s.mu.Unlock()
		return err
	}
	s.mu.Lock()
	s.analysts[tenantID] = true
	delete(s.analystRetry, tenantID)
	s.mu.Unlock()
	s.log.Info("analyst views ready", "tenant_id", tenantID, "database", database)
	return nil
}

// analystRetryAfter is how long a district whose analyst views could not be made waits before a write
// tries again.
const analystRetryAfter = time.Minute

// ensureAnalystViews creates the district's analyst database and views where they are missing.
func (s *Store) ensureAnalystViews(ctx context.Context, tenantID, database string) error {
	stmts := analystViews(s.cfg.Database, database, tenantID)
	if s.cluster != nil {
		// On each node that lacks some of them, through its own connection, not ON CLUSTER: a distributed
		// DDL waits up to distributed_ddl_task_timeout for a node that is down, and this runs before a
		// write. A node that does not answer fails it; a write of the district tries again later. (The
		// cluster layout has no views of an older release to replace.)
		return s.cluster.EachNode(ctx, func(ctx context.Context, _ chutil.Node, conn driver.Conn) error {
			var n uint64
			if err := conn.QueryRow(ctx, "SELECT count() FROM system.tables WHERE database = ?", database).Scan(&n); err != nil {
				return fmt.Errorf("reading the analyst views of %s: %w", tenantID, err)
			}
			if n == uint64(len(stmts)-1) {
				return nil
			}
			return execViews(ctx, conn, tenantID, stmts)
		})
	}
	if err := s.dropStaleEventsView(ctx, database); err != nil {
		return err
	}
	return execViews(ctx, s.conn, tenantID, stmts)
}

// execViews runs the statements of a district's analyst views.
func execViews(ctx context.Context, conn driver.Conn, tenantID string, stmts []string) error {
	for _, stmt := range stmts {
		if err := conn.Exec(ctx, stmt); err != nil {
			return fmt.Errorf("creating analyst views of %s (%s): %w", tenantID, strings.SplitN(stmt, " AS ", 2)[0], err)
		}
	}
	return nil
}

// dropStaleEventsView drops the district's analyst events view when it lacks a column analysts now see
// (it was created by an older release), so that EnsureAnalystViews creates it anew. The rollup views
// read finalized measures whose set has not changed.
func (s *Store) dropStaleEventsView(ctx context.Context, database string) error {
	var have []struct {
		Name string `ch:"name"`
	}
	if err := s.conn.Select(ctx, &have, "SELECT name FROM system.columns WHERE database = ? AND table = 'events'", database); err != nil {
		return fmt.Errorf("reading the analyst events view of %s: %w", database, err)
	}
	if len(have) == 0 {
		return nil // no view yet
	}
	present := map[string]bool{}
	for _, c := range have {
		present[c.Name] = true
	}
	for _, c := range strings.Split(analystEventColumns, ",") {
		if !present[strings.TrimSpace(c)] {
			s.log.Info("recreating an analyst events view from an older release", "database", database, "missing", strings.TrimSpace(c))
			if err := s.conn.Exec(ctx, "DROP TABLE IF EXISTS "+chutil.QuoteIdent(database)+".events"); err != nil {
				return fmt.Errorf("dropping the stale analyst events view of %s: %w", database, err)
			}
			return nil
		}
	}
	return nil
}
