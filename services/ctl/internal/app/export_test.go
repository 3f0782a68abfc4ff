package app

import (
	"archive/zip"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/edtech-analytics/platform/libs/chutil"
	"github.com/edtech-analytics/platform/libs/chutil/chtest"
	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/edtech-analytics/platform/libs/tenancy/jobs"
	"github.com/edtech-analytics/platform/libs/tenancy/webhooks"
)

// aggregatorCH returns a ClickHouse database with the aggregator's schema (events, kafka_offsets, the
// rollups and their views), its name and the server's address.
func aggregatorCH(t testing.TB) (driver.Conn, string, string) {
	t.Helper()
	conn, database, addr := chtest.New(t)
	if err := chutil.Migrate(t.Context(), conn, database, os.DirFS("../../../aggregator/internal/chstore/migrations")); err != nil {
		t.Fatal(err)
	}
	return conn, database, addr
}

// testEvent is a row of the ClickHouse events table, reduced to the columns the tests set.
type testEvent struct {
	tenant, student, pseudonym, typ string
	id                              uuid.UUID
	at                              time.Time
	score                           *float64
	partition                       uint32
	offset                          uint64
}

const enrichedTopic = "edtech.enriched"

// makeEvents returns n events of a student, on partition, from offset first on.
func makeEvents(tenant, student, pseudonym string, n int, partition uint32, first uint64) []testEvent {
	out := make([]testEvent, n)
	for i := range out {
		ev := testEvent{tenant: tenant, student: student, pseudonym: pseudonym, typ: "content_view", id: uuid.New(),
			at: time.Date(2026, 3, 2+i%5, 9, i%60, 0, 0, time.UTC), partition: partition, offset: first + uint64(i)}
		if i%3 == 0 {
			score := float64(i%100) + 0.5
			ev.typ, ev.score = "assessment_result", &score
		}
		out[i] = ev
	}
	return out
}

func insertEvents(t *testing.T, conn driver.Conn, evs []testEvent) {
	t.Helper()
	insertEventsInto(t, t.Context(), conn, "events", evs)
}

// insertEventsInto inserts evs into table, a table like events.
func insertEventsInto(t *testing.T, ctx context.Context, conn driver.Conn, table string, evs []testEvent) {
	t.Helper()
	batch, err := conn.PrepareBatch(ctx, `INSERT INTO `+table+` (tenant_id, event_id, source_id, type, occurred_at, student_id,
		pseudonym, role, school_id, score, max_score, kafka_topic, kafka_partition, kafka_offset)`)
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range evs {
		var max *float64
		if ev.score != nil {
			hundred := 100.0
			max = &hundred
		}
		if err := batch.Append(ev.tenant, ev.id, "lms", ev.typ, ev.at, uuid.MustParse(ev.student), ev.pseudonym, "student",
			"school-1", ev.score, max, enrichedTopic, ev.partition, ev.offset); err != nil {
			t.Fatal(err)
		}
	}
	if err := batch.Send(); err != nil {
		t.Fatal(err)
	}
}

// seedStudent writes a student's rows into every table of the district schema that holds some.
func seedStudent(t *testing.T, pool *pgxpool.Pool, tenant, id, sourcedID, name string, identities map[string]string) {
	t.Helper()
	schema, err := tenancy.SchemaName(tenant)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	stmts := []struct {
		q    string
		args []any
	}{
		{"INSERT INTO students (internal_id, match_key) VALUES ($1, $2)", []any{id, "mk-" + sourcedID}},
		{`INSERT INTO roster_users (sourced_id, status, date_last_modified, internal_id, enabled, given_name, family_name, roles, grades)
			VALUES ($1, 'active', $2, $3, true, $4, 'Tester', '[{"role": "student"}]', '{05}')`, []any{sourcedID, at, id, name}},
		{`INSERT INTO roster_enrollments (sourced_id, status, date_last_modified, class_sourced_id, school_sourced_id, user_sourced_id, role)
			VALUES ($1, 'active', $2, 'class-1', 'school-1', $3, 'student')`, []any{"enr-" + sourcedID, at, sourcedID}},
		{`INSERT INTO roster_demographics (sourced_id, status, date_last_modified, birth_date, sex) VALUES ($1, 'active', $2, '2014-05-01', 'other')`,
			[]any{sourcedID, at}},
		{`INSERT INTO roster_results (sourced_id, status, date_last_modified, line_item_sourced_id, student_sourced_id, score_status, score, score_date, comment)
			VALUES ($1, 'active', $2, 'li-1', $3, 'fully graded', 91.5, '2026-03-02', $4)`, []any{"res-" + sourcedID, at, sourcedID, "well done, " + name}},
		{"INSERT INTO roster_deletions VALUES ('user', $1, $2)", []any{sourcedID, at.Add(-time.Hour)}}, // an earlier delete
		{"INSERT INTO student_activity VALUES ($1, 12, $2, 'content_view')", []any{id, at}},
		{"INSERT INTO attendance_daily (internal_id, day, status, event_id) VALUES ($1, '2026-03-02', 'present', gen_random_uuid())", []any{id}},
		{"INSERT INTO assessment_results_latest VALUES ($1, 'quiz-1', 8, 10, $2, gen_random_uuid())", []any{id, at}},
		{"INSERT INTO submissions VALUES ($1, 'essay-1', $2, false, 7, gen_random_uuid())", []any{id, at}},
		{`INSERT INTO enricher_users (source_id, sourced_id, internal_id, status, date_last_modified, is_student, birth_date)
			VALUES ('sis', $1, $2, 'active', $3, true, '2014-05-01')`, []any{sourcedID, id, at}},
	}
	for source, sis := range identities {
		stmts = append(stmts, struct {
			q    string
			args []any
		}{"INSERT INTO student_identities (source_id, sis_id, internal_id) VALUES ($1, $2, $3)", []any{source, sis, id}})
	}
	err = pgx.BeginFunc(t.Context(), pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(t.Context(), "SET LOCAL search_path = "+pgx.Identifier{schema}.Sanitize()); err != nil {
			return err
		}
		for _, s := range stmts {
			if _, err := tx.Exec(t.Context(), s.q, s.args...); err != nil {
				return fmt.Errorf("%s: %w", s.q, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func setSinkOffsets(t *testing.T, pool *pgxpool.Pool, consumer string, next map[int32]int64) {
	t.Helper()
	for p, o := range next {
		if _, err := pool.Exec(t.Context(), `INSERT INTO control.consumer_offsets (consumer, topic, partition, next_offset)
			VALUES ($1, $2, $3, $4)`, consumer, enrichedTopic, p, o); err != nil {
			t.Fatal(err)
		}
	}
}

// wantCHOffsets is what kafka_offsets holds after evs were stored: one past the highest offset per partition.
func wantCHOffsets(evs []testEvent) []partitionOffset {
	next := map[uint32]uint64{}
	for _, ev := range evs {
		next[ev.partition] = max(next[ev.partition], ev.offset+1)
	}
	out := []partitionOffset{}
	for p, o := range next {
		out = append(out, partitionOffset{Topic: enrichedTopic, Partition: int32(p), NextOffset: int64(o)})
	}
	slices.SortFunc(out, func(a, b partitionOffset) int { return int(a.Partition - b.Partition) })
	return out
}

func countJobs(t *testing.T, pool *pgxpool.Pool, kind string) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(t.Context(), "SELECT count(*) FROM control.privacy_jobs WHERE kind = $1", kind).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func checkJob(t *testing.T, job jobs.Job, kind, subject string) {
	t.Helper()
	if job.Kind != kind || job.Status != jobs.StatusDone || job.Subject != subject || len(job.Steps) != 2 {
		t.Fatalf("job = %+v", job)
	}
	for _, st := range job.Steps {
		if !st.Done() || st.FoundBefore == nil || st.FoundAfter == nil || *st.FoundBefore != *st.FoundAfter || *st.FoundBefore == 0 {
			t.Errorf("step %s: found %s, wrote %s", st.Name, count(st.FoundBefore), count(st.FoundAfter))
		}
	}
}

const (
	ada = "00000000-0000-4000-8000-00000000000a"
	bob = "00000000-0000-4000-8000-00000000000b"
)

// TestExportStudent exports one of two students of a district and checks every file of the zip against
// what the stores hold of that student, the manifest, that the other student is nowhere in it, and that a
// SIS id that names no student, or several, makes no job.
func TestExportStudent(t *testing.T) {
	pool, url := migratedDB(t)
	conn, database, addr := aggregatorCH(t)
	for _, d := range []string{"d1", "d2"} {
		mustCtl(t, url, "tenant", "create", "--id", d, "--name", "District "+d)
	}
	adaName := "Ada \"Countess\" \\ Lovelace\nÉ"
	seedStudent(t, pool, "d1", ada, "user-ada", adaName, map[string]string{"sis": "S-1", "lms": "L-1"})
	seedStudent(t, pool, "d1", bob, "user-bob", "Bobby", map[string]string{"sis": "S-2", "lms": "S-1x"})
	const other = "00000000-0000-4000-8000-0000000000d2" // d2's student with Ada's SIS id
	seedStudent(t, pool, "d2", other, "user-d2", "Otto", map[string]string{"sis": "S-1"})
	setSinkOffsets(t, pool, "edtech-sink", map[int32]int64{0: 7, 1: 9})
	setSinkOffsets(t, pool, "enricher-control", map[int32]int64{0: 3})
	adaEvents := append(makeEvents("d1", ada, "ps-ada", 300, 0, 0), makeEvents("d1", ada, "ps-ada", 200, 1, 0)...)
	all := append(append(append([]testEvent{}, adaEvents...), makeEvents("d1", bob, "ps-bobby", 250, 0, 300)...),
		makeEvents("d2", other, "ps-otto", 50, 2, 0)...)
	insertEvents(t, conn, all)

	hook := newHookReceiver(t, http.StatusOK)
	setWebhook(t, url, "d1", hook.URL)
	out := filepath.Join(t.TempDir(), "ada.zip")
	args := []string{"export", "student", "--tenant", "d1", "--student", "S-1", "--out", out, "--reason", "parent request",
		"--clickhouse.addr", addr, "--clickhouse.database", database}
	var job jobs.Job
	if err := json.Unmarshal([]byte(mustCtl(t, url, append(args, "--output", "json")...)), &job); err != nil {
		t.Fatal(err)
	}
	checkJob(t, job, kindExportStudent, ada)

	files := readZip(t, out)
	var m manifest
	if err := json.Unmarshal(files["manifest.json"], &m); err != nil {
		t.Fatal(err)
	}
	if m.Kind != kindExportStudent || m.Job != job.ID || m.TenantID != "d1" || m.StudentID != ada || m.Pseudonym != "ps-ada" ||
		m.GeneratedAt.IsZero() || m.Consistency == "" {
		t.Errorf("manifest = %+v", m)
	}
	if want := []partitionOffset{{enrichedTopic, 0, 7}, {enrichedTopic, 1, 9}}; !slices.Equal(m.Offsets.Sink, want) {
		t.Errorf("sink offsets %v, want %v", m.Offsets.Sink, want)
	}
	if want := wantCHOffsets(all); !slices.Equal(m.Offsets.ClickHouse, want) {
		t.Errorf("clickhouse offsets %v, want %v", m.Offsets.ClickHouse, want)
	}
	// Every file is listed with its rows and hash, and every row is Ada's.
	wantRows := map[string]int{
		"identity/students.json": 1, "identity/student_identities.json": 2, "roster/roster_users.json": 1,
		"roster/roster_enrollments.json": 1, "roster/roster_demographics.json": 1, "roster/roster_results.json": 1, "roster/roster_deletions.json": 1,
		"roster/enricher_users.json": 1, "roster/enricher_demographics.json": 0, "roster/enricher_enrollments.json": 0,
		"learning/student_activity.json": 1, "learning/attendance_daily.json": 1, "learning/assessment_results_latest.json": 1,
		"learning/submissions.json": 1, "events/events.json": len(adaEvents), "rollups/metrics_student_daily.json": 5,
	}
	rows := map[string][]map[string]any{}
	for _, f := range m.Files {
		sum := sha256.Sum256(files[f.Name])
		if f.SHA256 != hex.EncodeToString(sum[:]) || f.Bytes != int64(len(files[f.Name])) || f.Contains == "" {
			t.Errorf("file %s: listed %+v, holds %d bytes", f.Name, f, len(files[f.Name]))
		}
		if f.Name == "policy.json" {
			continue
		}
		var rs []map[string]any
		if err := json.Unmarshal(files[f.Name], &rs); err != nil {
			t.Fatalf("%s: %v", f.Name, err)
		}
		if int64(len(rs)) != f.Rows || len(rs) != wantRows[f.Name] {
			t.Errorf("%s: %d rows, manifest says %d, want %d", f.Name, len(rs), f.Rows, wantRows[f.Name])
		}
		rows[f.Name] = rs
	}
	if len(m.Files) != len(wantRows)+1 || len(files) != len(m.Files)+1 {
		t.Errorf("the zip holds %d files, the manifest lists %d, want %d", len(files), len(m.Files), len(wantRows)+1)
	}
	for name, rs := range rows {
		for _, r := range rs {
			if id, ok := r["internal_id"]; ok && id != ada {
				t.Errorf("%s holds a row of %v", name, id)
			}
			if id, ok := r["student_id"]; ok && id != ada {
				t.Errorf("%s holds a row of %v", name, id)
			}
		}
	}
	if u := rows["roster/roster_users.json"][0]; u["given_name"] != adaName || u["sourced_id"] != "user-ada" {
		t.Errorf("roster user = %v", u)
	}
	if r := rows["roster/roster_results.json"][0]; r["comment"] != "well done, "+adaName {
		t.Errorf("result = %v", r)
	}
	var sisIDs []string
	for _, r := range rows["identity/student_identities.json"] {
		sisIDs = append(sisIDs, r["source_id"].(string)+":"+r["sis_id"].(string))
	}
	if slices.Sort(sisIDs); !slices.Equal(sisIDs, []string{"lms:L-1", "sis:S-1"}) {
		t.Errorf("identities = %v", sisIDs)
	}
	wantEvents := map[string]testEvent{}
	for _, ev := range adaEvents {
		wantEvents[ev.id.String()] = ev
	}
	for _, r := range rows["events/events.json"] {
		ev, ok := wantEvents[r["event_id"].(string)]
		if !ok || r["tenant_id"] != "d1" || r["pseudonym"] != "ps-ada" || r["type"] != ev.typ || r["occurred_at"] != ev.at.Format(time.RFC3339) ||
			(ev.score == nil) != (r["score"] == nil) || (ev.score != nil && r["score"] != *ev.score) {
			t.Fatalf("event %v, stored %+v", r, ev)
		}
		delete(wantEvents, r["event_id"].(string))
	}
	var rolled float64
	for _, r := range rows["rollups/metrics_student_daily.json"] {
		rolled += r["events"].(float64)
		if q, ok := r["score_quantiles"].([]any); !ok || len(q) != 5 {
			t.Errorf("rollup row %v: score_quantiles not merged", r)
		}
	}
	if rolled != float64(len(adaEvents)) {
		t.Errorf("the rollup counts %v events, want %d", rolled, len(adaEvents))
	}
	var policy struct {
		TenantID string `json:"tenant_id"`
		Template string `json:"template"`
	}
	if err := json.Unmarshal(files["policy.json"], &policy); err != nil || policy.TenantID != "d1" || policy.Template != "ferpa" {
		t.Errorf("policy.json = %s (%v)", files["policy.json"], err)
	}
	for name, b := range files {
		for _, s := range []string{bob, "user-bob", "Bobby", "ps-bobby", "S-2", other, "Otto", "ps-otto"} {
			if bytes.Contains(b, []byte(s)) {
				t.Errorf("%s mentions %q, of another student", name, s)
			}
		}
	}
	if entries, err := os.ReadDir(filepath.Dir(out)); err != nil || len(entries) != 1 {
		t.Errorf("the output directory holds %v (%v), want the zip alone", entries, err)
	}

	// The district's webhook, the job's status, and the audit log.
	var notified webhooks.JobFinished
	if _, body := hook.request(t, 0); json.Unmarshal(body, &notified) != nil || notified.ID != job.ID ||
		notified.Kind != kindExportStudent || notified.Status != jobs.StatusDone {
		t.Errorf("the webhook got %s", body)
	}
	if st := mustCtl(t, url, "export", "status", job.ID); !strings.Contains(st, "export_student of district d1, student "+ada+", done") ||
		!strings.Contains(st, "clickhouse") {
		t.Errorf("export status printed %q", st)
	}
	if !strings.Contains(mustCtl(t, url, "audit", "list", "--tenant", "d1"), "export.student") {
		t.Error("the export is not in the audit log")
	}

	// No student, several students, no district: an error and no job.
	jobsBefore := countJobs(t, pool, kindExportStudent)
	bad := filepath.Join(t.TempDir(), "bad.zip")
	withStudent := func(sis string, extra ...string) []string {
		a := slices.Clone(args)
		a[5], a[7] = sis, bad
		return append(a, extra...)
	}
	if _, _, err := ctl(t, url, withStudent("S-9")...); !errors.Is(err, tenancy.ErrNotFound) || !strings.Contains(err.Error(), "unknown student") {
		t.Errorf("unknown student: %v", err)
	}
	if _, _, err := ctl(t, url, withStudent("S-1", "--source", "lms")...); !errors.Is(err, tenancy.ErrNotFound) {
		t.Errorf("S-1 from lms: %v", err)
	}
	if _, err := pool.Exec(t.Context(), "INSERT INTO district_d1.student_identities VALUES ('lms', 'S-2', $1)", ada); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ctl(t, url, withStudent("S-2")...); err == nil || !strings.Contains(err.Error(), "--source") {
		t.Errorf("a SIS id of two students: %v", err)
	}
	unknownDistrict := withStudent("S-1")
	unknownDistrict[3] = "nowhere"
	if _, _, err := ctl(t, url, unknownDistrict...); !errors.Is(err, tenancy.ErrNotFound) {
		t.Errorf("unknown district: %v", err)
	}
	if n := countJobs(t, pool, kindExportStudent); n != jobsBefore {
		t.Errorf("%d jobs after the refused exports, want %d", n, jobsBefore)
	}
	if _, err := os.Stat(bad); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused export wrote %s: %v", bad, err)
	}
	// With --source the SIS id names one student again.
	mustCtl(t, url, withStudent("S-2", "--source", "sis")...)
	if n := countJobs(t, pool, kindExportStudent); n != jobsBefore+1 {
		t.Errorf("%d jobs, want %d", n, jobsBefore+1)
	}
}

// readZip returns the files of a zip by name.
func readZip(t *testing.T, path string) map[string][]byte {
	t.Helper()
	zr, err := zip.OpenReader(path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = zr.Close() }()
	files := map[string][]byte{}
	for _, f := range zr.File {
		r, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(r)
		if err != nil {
			t.Fatalf("%s: %v", f.Name, err)
		}
		files[f.Name] = b
	}
	return files
}

// TestExportTenant exports a district as ndjson and as csv and checks each file, row for row, against
// its store; the manifest's offsets; that events stored past the aggregator's offsets are left out; and
// that an unknown district makes no job.
func TestExportTenant(t *testing.T) {
	pool, url := migratedDB(t)
	conn, database, addr := aggregatorCH(t)
	for _, d := range []string{"d1", "d2"} {
		mustCtl(t, url, "tenant", "create", "--id", d, "--name", "District "+d)
	}
	seedStudent(t, pool, "d1", ada, "user-ada", "Ada \"Countess\" \\ Lovelace\n,É", map[string]string{"sis": "S-1"})
	seedStudent(t, pool, "d1", bob, "user-bob", "Bob", map[string]string{"sis": "S-2"})
	seedStudent(t, pool, "d2", bob, "user-d2", "Otto", map[string]string{"sis": "S-3"})
	setSinkOffsets(t, pool, "edtech-sink", map[int32]int64{0: 1500, 1: 1500, 2: 10, 3: 1})
	setSinkOffsets(t, pool, "enricher-control", map[int32]int64{0: 3})
	var d1 []testEvent
	for p := range uint32(4) {
		d1 = append(d1, makeEvents("d1", []string{ada, bob}[p%2], "ps", 750, p, 0)...)
	}
	d2 := makeEvents("d2", bob, "ps-d2", 400, 1, 750)
	insertEvents(t, conn, append(append([]testEvent{}, d1...), d2...))

	tables := districtTables(t, pool, "district_d1")
	for _, format := range []string{"ndjson", "csv"} {
		t.Run(format, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "export")
			out, progress, err := ctl(t, url, "export", "tenant", "--tenant", "d1", "--format", format, "--out", dir,
				"--clickhouse.addr", addr, "--clickhouse.database", database, "--output", "json")
			if err != nil {
				t.Fatalf("%v\n%s", err, progress)
			}
			var job jobs.Job
			if err := json.Unmarshal([]byte(out), &job); err != nil {
				t.Fatal(err)
			}
			checkJob(t, job, kindExportTenant, "")
			if !strings.Contains(progress, fmt.Sprintf("events.%s.gz: %d rows", format, len(d1))) {
				t.Errorf("progress = %q", progress)
			}
			m := readManifest(t, dir)
			if m.Job != job.ID || m.TenantID != "d1" || m.Format != format {
				t.Errorf("manifest = %+v", m)
			}
			if want := []partitionOffset{{enrichedTopic, 0, 1500}, {enrichedTopic, 1, 1500}, {enrichedTopic, 2, 10}, {enrichedTopic, 3, 1}}; !slices.Equal(m.Offsets.Sink, want) {
				t.Errorf("sink offsets %v, want %v", m.Offsets.Sink, want)
			}
			if want := wantCHOffsets(append(append([]testEvent{}, d1...), d2...)); !slices.Equal(m.Offsets.ClickHouse, want) {
				t.Errorf("clickhouse offsets %v, want %v", m.Offsets.ClickHouse, want)
			}
			var names []string
			for _, f := range m.Files {
				names = append(names, f.Table)
				content := readGz(t, dir, f)
				if f.Store == "clickhouse" {
					checkEventsFile(t, conn, format, content, d1)
					continue
				}
				header, want := tableRows(t, pool, "district_d1", f.Table, format)
				if int64(len(want)) != f.Rows {
					t.Errorf("%s: manifest says %d rows, the table holds %d", f.Name, f.Rows, len(want))
				}
				var got []string
				if format == "csv" {
					records := csvRecords(t, content)
					if records[0] != header {
						t.Errorf("%s: header %q, want %q", f.Name, records[0], header)
					}
					got = records[1:]
				} else if len(content) > 0 {
					got = strings.Split(strings.TrimSuffix(string(content), "\n"), "\n")
				}
				if slices.Sort(got); !slices.Equal(got, want) {
					t.Errorf("%s holds\n%q\nthe table\n%q", f.Name, got, want)
				}
			}
			if want := append(slices.Clone(tables), "events"); !slices.Equal(names, want) {
				t.Errorf("files of tables %v, want %v", names, want)
			}
		})
	}

	// Events stored after the aggregator's offsets were read are not exported: the view that records the
	// offsets is dropped, so these stay past them.
	if err := conn.Exec(t.Context(), "DROP TABLE kafka_offsets_mv"); err != nil {
		t.Fatal(err)
	}
	insertEvents(t, conn, makeEvents("d1", ada, "ps", 7, 0, 750))
	dir := filepath.Join(t.TempDir(), "later")
	mustCtl(t, url, "export", "tenant", "--tenant", "d1", "--format", "ndjson", "--out", dir, "--clickhouse.addr", addr,
		"--clickhouse.database", database)
	for _, f := range readManifest(t, dir).Files {
		if f.Table == "events" && f.Rows != int64(len(d1)) {
			t.Errorf("%d events exported, want the %d below the stored offsets", f.Rows, len(d1))
		}
	}

	if !strings.Contains(mustCtl(t, url, "audit", "list", "--tenant", "d1"), "export.tenant") {
		t.Error("the export is not in the audit log")
	}
	before := countJobs(t, pool, kindExportTenant)
	if _, _, err := ctl(t, url, "export", "tenant", "--tenant", "d9", "--format", "csv", "--out", filepath.Join(t.TempDir(), "x"),
		"--clickhouse.addr", addr, "--clickhouse.database", database); !errors.Is(err, tenancy.ErrNotFound) {
		t.Errorf("unknown district: %v", err)
	}
	if _, _, err := ctl(t, url, "export", "tenant", "--tenant", "d1", "--format", "csv", "--out", dir); !errors.Is(err, ErrUsage) {
		t.Errorf("an existing --out: %v", err)
	}
	for _, format := range []string{"", "xml"} {
		if _, _, err := ctl(t, url, "export", "tenant", "--tenant", "d1", "--format", format, "--out", dir+"2"); !errors.Is(err, ErrUsage) ||
			!strings.Contains(err.Error(), "--format") {
			t.Errorf("--format %q: %v", format, err)
		}
	}
	if n := countJobs(t, pool, kindExportTenant); n != before {
		t.Errorf("%d jobs after the refused exports, want %d", n, before)
	}
}

func districtTables(t *testing.T, pool *pgxpool.Pool, schema string) []string {
	t.Helper()
	rows, err := pool.Query(t.Context(), `SELECT table_name::text FROM information_schema.tables
		WHERE table_schema = $1 AND table_type = 'BASE TABLE' ORDER BY table_name::text COLLATE "C"`, schema)
	if err != nil {
		t.Fatal(err)
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return tables
}

// tableRows returns a table's rows, sorted, as the export should hold them: ndjson, one JSON object a
// row; csv, each row's values (NULL empty) joined by a unit separator (0x1f), and the header so joined.
func tableRows(t *testing.T, pool *pgxpool.Pool, schema, table, format string) (header string, out []string) {
	t.Helper()
	rows, err := pool.Query(t.Context(), `SELECT column_name::text FROM information_schema.columns
		WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position`, schema, table)
	if err != nil {
		t.Fatal(err)
	}
	cols, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	query := "SELECT row_to_json(t)::text FROM " + pgx.Identifier{schema, table}.Sanitize() + " t"
	if format == "csv" {
		var texts []string
		for _, c := range cols {
			texts = append(texts, "concat("+pgx.Identifier{c}.Sanitize()+")") // the type's output, as COPY writes it; NULL empty
		}
		query = "SELECT concat_ws(E'\\x1f', " + strings.Join(texts, ", ") + ") FROM " + pgx.Identifier{schema, table}.Sanitize()
	}
	err = pgx.BeginFunc(t.Context(), pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(t.Context(), "SET LOCAL TimeZone = 'UTC'"); err != nil {
			return err
		}
		rows, err := tx.Query(t.Context(), query)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return strings.Join(cols, "\x1f"), out
}

func csvRecords(t *testing.T, content []byte) []string {
	t.Helper()
	records, err := csv.NewReader(bytes.NewReader(content)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	out := make([]string, len(records))
	for i, r := range records {
		out[i] = strings.Join(r, "\x1f")
	}
	return out
}

func readManifest(t testing.TB, dir string) manifest {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m manifest
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// readGz checks a file's size and hash against the manifest and returns its uncompressed content.
func readGz(t *testing.T, dir string, f exportFile) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, f.Name))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	if f.SHA256 != hex.EncodeToString(sum[:]) || f.Bytes != int64(len(b)) {
		t.Errorf("%s: manifest says %d bytes, sha256 %s; the file has %d, %x", f.Name, f.Bytes, f.SHA256, len(b), sum)
	}
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	content, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("%s: %v", f.Name, err)
	}
	return content
}

// checkEventsFile checks that an events file holds the events stored, every column of the table, each
// row's values as stored.
func checkEventsFile(t *testing.T, conn driver.Conn, format string, content []byte, stored []testEvent) {
	t.Helper()
	var columns []string
	rows, err := conn.Query(t.Context(), "SELECT name FROM system.columns WHERE database = currentDatabase() AND table = 'events'")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var c string
		if err := rows.Scan(&c); err != nil {
			t.Fatal(err)
		}
		columns = append(columns, c)
	}
	var got []map[string]string
	if format == "csv" {
		records, err := csv.NewReader(bytes.NewReader(content)).ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(records[0], columns) {
			t.Fatalf("header %v, want the columns %v", records[0], columns)
		}
		for _, r := range records[1:] {
			row := map[string]string{}
			for i, c := range columns {
				row[c] = r[i]
			}
			got = append(got, row)
		}
	} else {
		for _, line := range strings.Split(strings.TrimSuffix(string(content), "\n"), "\n") {
			var raw map[string]any
			if err := json.Unmarshal([]byte(line), &raw); err != nil {
				t.Fatalf("%q: %v", line, err)
			}
			if len(raw) != len(columns) {
				t.Fatalf("a row has %d columns, the table %d", len(raw), len(columns))
			}
			row := map[string]string{}
			for k, v := range raw {
				if v != nil {
					row[k] = fmt.Sprint(v)
				}
			}
			got = append(got, row)
		}
	}
	if len(got) != len(stored) {
		t.Fatalf("%d events exported, %d stored", len(got), len(stored))
	}
	want := map[string]testEvent{}
	for _, ev := range stored {
		want[ev.id.String()] = ev
	}
	for _, r := range got {
		ev, ok := want[r["event_id"]]
		score := ""
		if ev.score != nil {
			score = strconv.FormatFloat(*ev.score, 'g', -1, 64)
		}
		if !ok || r["tenant_id"] != ev.tenant || r["student_id"] != ev.student || r["type"] != ev.typ || r["pseudonym"] != ev.pseudonym ||
			r["occurred_at"] != ev.at.Format(time.RFC3339) || r["score"] != score || r["kafka_partition"] != fmt.Sprint(ev.partition) ||
			r["kafka_offset"] != fmt.Sprint(ev.offset) || r["attendance_date"] != "1970-01-01" {
			t.Fatalf("exported %v, stored %+v", r, ev)
		}
		delete(want, r["event_id"])
	}
}
