package rosters

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Severities of a finding.
const (
	SeverityInfo    = "info"
	SeverityWarning = "warning"
	SeverityError   = "error"
)

// Checks of the quality report.
const (
	CheckHeldUpload   = "held_upload"   // an upload waits for approval
	CheckRejected     = "rejected_rows" // an upload's file rejected more rows than the bound
	CheckStored       = "stored"        // the sink holds another number of records than the ledger
	CheckReferences   = "references"    // records wait for entities, or expired waiting
	CheckOrphans      = "orphans"       // stored enrollments whose user or class is not stored
	CheckFreshness    = "freshness"     // a source sent nothing for longer than expected
	CheckExportValues = "empty_values"  // mapped exports with values a rule reads left empty
	CheckSchemaDrift  = "schema_drift"  // a mapped export's columns changed since the upload before
	// CheckPII (pii.go): personal data found in free-text fields.
)

// Finding is one result of the quality report.
type Finding struct {
	Check     string  `json:"check"`
	Severity  string  `json:"severity"`
	Source    string  `json:"source,omitempty"`
	Entity    string  `json:"entity,omitempty"`
	Subject   string  `json:"subject,omitempty"` // an upload, a file
	Value     float64 `json:"value"`
	Threshold float64 `json:"threshold,omitempty"`
	Message   string  `json:"message"`
}

// Report is a district's roster data quality.
type Report struct {
	TenantID string    `json:"tenant_id"`
	At       time.Time `json:"at"`
	Since    time.Time `json:"since"`
	Findings []Finding `json:"findings"`
	// Uploads counts the uploads since, by status; Rows their rows received, accepted, rejected, held.
	Uploads map[string]int `json:"uploads"`
	Rows    map[string]int `json:"rows"`
	// Days are the same counts per day (UTC) the uploads were received, oldest first.
	Days []Day `json:"days"`
}

// Day is a day's roster uploads and their rows.
type Day struct {
	Day      string `json:"day"` // YYYY-MM-DD
	Uploads  int    `json:"uploads"`
	Received int    `json:"received"`
	Accepted int    `json:"accepted"`
	Rejected int    `json:"rejected"`
	Held     int    `json:"held"`
	Findings int    `json:"findings"`
}

// RejectedBound is the share of a file's rows that may be rejected before it is a finding (0.5%).
const RejectedBound = 0.005

// sinkTables are the sink's tables of each entity (the district's current roster).
var sinkTables = map[string]string{Orgs: "roster_orgs", AcademicSessions: "roster_academic_sessions", Courses: "roster_courses",
	Classes: "roster_classes", Users: "roster_users", Enrollments: "roster_enrollments", Demographics: "roster_demographics",
	LineItems: "roster_line_items", Results: "roster_results"}

// Quality reports the district's roster data quality: held uploads, files that rejected over 0.5% of
// their rows since since, entities of which the sink holds another number than the ledger's active
// records (over 0.5% apart), records waiting for entities or expired waiting, stored enrollments of
// users or classes not stored, sources silent for longer than expected, and mapped exports' empty values.
func (s *Store) Quality(ctx context.Context, tenantID string, since time.Time) (*Report, error) {
	tx, schema, err := s.begin(ctx, tenantID)
	if err != nil {
		return nil, err
	}
	defer func() { _ = tx.Rollback(ctx) }()
	t := func(name string) string { return pgx.Identifier{schema, name}.Sanitize() }
	rep := &Report{TenantID: tenantID, At: s.now(), Since: since, Findings: []Finding{}, Uploads: map[string]int{}, Rows: map[string]int{},
		Days: []Day{}}
	add := func(f Finding) { rep.Findings = append(rep.Findings, f) }

	rows, err := tx.Query(ctx, `SELECT u.id::text, u.source_id, u.status, coalesce(u.reason, ''), to_char(u.received_at AT TIME ZONE 'UTC', 'YYYY-MM-DD'),
		f.file, f.entity, f.received, f.accepted, f.rejected, f.held, f.findings, jsonb_array_length(u.findings)
		FROM `+t("import_uploads")+` u JOIN `+t("import_upload_files")+` f ON f.upload_id = u.id
		WHERE u.received_at >= $1 OR u.status = 'held' ORDER BY u.received_at, f.file`, since)
	if err != nil {
		return nil, fmt.Errorf("reading uploads: %w", err)
	}
	seen := map[string]bool{}
	days := map[string]*Day{}
	for rows.Next() {
		var id, source, status, reason, day, file, entity string
		var received, accepted, rejected, held, fileFindings, findings int
		if err := rows.Scan(&id, &source, &status, &reason, &day, &file, &entity, &received, &accepted, &rejected, &held, &fileFindings, &findings); err != nil {
			rows.Close()
			return nil, err
		}
		d := days[day]
		if d == nil {
			d = &Day{Day: day}
			days[day] = d
			rep.Days = append(rep.Days, Day{Day: day})
		}
		d.Received += received
		d.Accepted += accepted
		d.Rejected += rejected
		d.Held += held
		d.Findings += fileFindings
		if !seen[id] {
			seen[id] = true
			d.Uploads++
			rep.Uploads[status]++
			if status == StatusHeld {
				add(Finding{Check: CheckHeldUpload, Severity: SeverityError, Source: source, Subject: id, Value: 1,
					Message: "upload " + id + " is held: " + reason + " ('ctl roster approve|reject " + id + "')"})
			}
			if findings > 0 {
				add(Finding{Check: CheckExportValues, Severity: SeverityInfo, Source: source, Subject: id, Value: float64(findings),
					Message: fmt.Sprintf("upload %s: %d findings of its mapping (values a rule reads left empty, ...)", id, findings)})
			}
		}
		rep.Rows["received"] += received
		rep.Rows["accepted"] += accepted
		rep.Rows["rejected"] += rejected
		rep.Rows["held"] += held
		if received > 0 && float64(rejected) > RejectedBound*float64(received) {
			add(Finding{Check: CheckRejected, Severity: SeverityWarning, Source: source, Entity: entity, Subject: id + " " + file,
				Value: float64(rejected) / float64(received), Threshold: RejectedBound,
				Message: fmt.Sprintf("%s of upload %s: %d of %d rows rejected (%.2f%%, over %.1f%%); they are in the dead-letter topic",
					file, id, rejected, received, 100*float64(rejected)/float64(received), 100*RejectedBound)})
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for i := range rep.Days {
		rep.Days[i] = *days[rep.Days[i].Day]
	}
	slices.SortFunc(rep.Days, func(a, b Day) int { return strings.Compare(a.Day, b.Day) })

	// Stored against sent: the ledger's active records (of every source) and the sink's rows.
	for _, entity := range deleteOrder {
		var active, stored int
		if err := tx.QueryRow(ctx, `SELECT (SELECT count(DISTINCT sourced_id) FROM `+t("import_ledger")+` WHERE entity = $1 AND active),
			(SELECT count(*) FROM `+t(sinkTables[entity])+`)`, entity).Scan(&active, &stored); err != nil {
			return nil, fmt.Errorf("counting %s: %w", entity, err)
		}
		if diff := abs(active - stored); active+stored > 0 && float64(diff) > RejectedBound*float64(max(active, stored)) {
			add(Finding{Check: CheckStored, Severity: SeverityWarning, Entity: entity, Value: float64(diff) / float64(max(active, stored)), Threshold: RejectedBound,
				Message: fmt.Sprintf("%s: %d active sent, %d stored (records on their way through Kafka count too; a lasting gap is a lost or refused record)",
					entity, active, stored)})
		}
	}

	drift, err := schemaDrift(ctx, tx, t, since)
	if err != nil {
		return nil, err
	}
	rep.Findings = append(rep.Findings, drift...)

	var open, expired int
	if err := tx.QueryRow(ctx, `SELECT count(*) FILTER (WHERE status = 'open' AND expires_at >= now()),
		count(*) FILTER (WHERE status = 'expired' OR status = 'open' AND expires_at < now()) FROM `+t("import_held_refs")).Scan(&open, &expired); err != nil {
		return nil, err
	}
	if open > 0 {
		add(Finding{Check: CheckReferences, Severity: SeverityWarning, Value: float64(open),
			Message: fmt.Sprintf("%d records wait for an entity they reference ('ctl roster held')", open)})
	}
	if expired > 0 {
		add(Finding{Check: CheckReferences, Severity: SeverityError, Value: float64(expired),
			Message: fmt.Sprintf("%d records expired waiting for an entity they reference; never applied ('ctl roster held')", expired)})
	}
	var orphans int
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM `+t("roster_enrollments")+` e
		WHERE NOT EXISTS (SELECT 1 FROM `+t("roster_users")+` u WHERE u.sourced_id = e.user_sourced_id AND u.enabled)
		   OR NOT EXISTS (SELECT 1 FROM `+t("roster_classes")+` c WHERE c.sourced_id = e.class_sourced_id)`).Scan(&orphans); err != nil {
		return nil, err
	}
	if orphans > 0 {
		add(Finding{Check: CheckOrphans, Severity: SeverityWarning, Entity: Enrollments, Value: float64(orphans),
			Message: fmt.Sprintf("%d stored enrollments have no active user or no class", orphans)})
	}

	srcs, err := tx.Query(ctx, `SELECT s.source_id, s.expected_every, (SELECT max(received_at) FROM `+t("import_uploads")+` u
		WHERE u.source_id = s.source_id AND u.status IN ('applied', 'approved')) FROM `+t("import_sources")+` s WHERE s.expected_every IS NOT NULL ORDER BY 1`)
	if err != nil {
		return nil, err
	}
	defer srcs.Close()
	for srcs.Next() {
		var source string
		var every time.Duration
		var last *time.Time
		if err := srcs.Scan(&source, &every, &last); err != nil {
			return nil, err
		}
		if last == nil || rep.At.Sub(*last) > every {
			age := "never"
			if last != nil {
				age = rep.At.Sub(*last).Round(time.Minute).String() + " ago"
			}
			add(Finding{Check: CheckFreshness, Severity: SeverityWarning, Source: source, Value: rep.At.Sub(ptrOr(last)).Seconds(), Threshold: every.Seconds(),
				Message: fmt.Sprintf("source %s last sent a roster %s; expected every %s", source, age, every)})
		}
	}
	if err := srcs.Err(); err != nil {
		return nil, err
	}
	srcs.Close()
	pii, err := piiFindings(ctx, tx, schema, since)
	if err != nil {
		return nil, err
	}
	rep.Findings = append(rep.Findings, pii...)
	return rep, nil
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}

func ptrOr(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return *t
}

// ExpectEvery sets how often a source is expected to send a roster (0: no expectation).
func (s *Store) ExpectEvery(ctx context.Context, tenantID, sourceID string, every time.Duration) error {
	tx, schema, err := s.begin(ctx, tenantID)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(ctx) }()
	var v *time.Duration
	if every > 0 {
		v = &every
	}
	if _, err := tx.Exec(ctx, `INSERT INTO `+pgx.Identifier{schema, "import_sources"}.Sanitize()+` (source_id, expected_every) VALUES ($1, $2)
		ON CONFLICT (source_id) DO UPDATE SET expected_every = $2`, sourceID, v); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// schemaDrift compares the header of each mapped CSV export's latest file, when received since, with the
// file of the export before it: columns added or gone (a rule reading a gone column maps nothing; an
// added one may hold what a rule should read).
func schemaDrift(ctx context.Context, tx pgx.Tx, t func(string) string, since time.Time) ([]Finding, error) {
	rows, err := tx.Query(ctx, `SELECT source_id, export, entity, id, file, columns, received_at >= $1 FROM (
			SELECT u.source_id, f.export, f.entity, u.id::text AS id, f.file, f.columns, u.received_at,
				row_number() OVER (PARTITION BY u.source_id, f.export ORDER BY u.received_at DESC, u.id) AS n
			FROM `+t("import_uploads")+` u JOIN `+t("import_upload_files")+` f ON f.upload_id = u.id
			WHERE f.columns IS NOT NULL AND f.export IS NOT NULL) x
		WHERE n <= 2 ORDER BY source_id, export, n`, since)
	if err != nil {
		return nil, fmt.Errorf("reading exports' columns: %w", err)
	}
	type file struct {
		source, export, entity, upload, name string
		columns                              []string
		recent                               bool
	}
	var files []file
	for rows.Next() {
		var f file
		if err := rows.Scan(&f.source, &f.export, &f.entity, &f.upload, &f.name, &f.columns, &f.recent); err != nil {
			rows.Close()
			return nil, err
		}
		files = append(files, f)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	var out []Finding
	for i := 0; i+1 < len(files); i++ {
		last, before := files[i], files[i+1]
		if last.source != before.source || last.export != before.export || !last.recent {
			continue
		}
		i++
		added, gone := columnsDiff(before.columns, last.columns)
		if len(added)+len(gone) == 0 {
			continue
		}
		var what []string
		if len(added) > 0 {
			what = append(what, "added "+strings.Join(added, ", "))
		}
		if len(gone) > 0 {
			what = append(what, "gone "+strings.Join(gone, ", "))
		}
		out = append(out, Finding{Check: CheckSchemaDrift, Severity: SeverityWarning, Source: last.source, Entity: last.entity,
			Subject: last.upload + " " + last.name, Value: float64(len(added) + len(gone)),
			Message: fmt.Sprintf("export %s of source %s: %s of upload %s has columns %s since %s (a rule reading a gone column maps nothing; "+
				"'ctl mapping preview' shows the effect)", last.export, last.source, last.name, last.upload, strings.Join(what, "; "), before.name)})
	}
	return out, nil
}

// columnsDiff returns the columns of now that before lacks and those of before that now lacks, in their
// files' order (names compared as the mapping rules compare them: trimmed, any case).
func columnsDiff(before, now []string) (added, gone []string) {
	norm := func(s string) string { return strings.ToLower(strings.TrimSpace(s)) }
	has := func(cols []string, c string) bool {
		return slices.ContainsFunc(cols, func(x string) bool { return norm(x) == norm(c) })
	}
	for _, c := range now {
		if !has(before, c) {
			added = append(added, c)
		}
	}
	for _, c := range before {
		if !has(now, c) {
			gone = append(gone, c)
		}
	}
	return added, gone
}
