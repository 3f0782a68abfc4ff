package stack_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/edtech-analytics/platform/libs/chutil/chtest"
	"github.com/edtech-analytics/platform/libs/kafkax"
	"github.com/edtech-analytics/platform/libs/keyring"
	"github.com/edtech-analytics/platform/libs/obs"
	"github.com/edtech-analytics/platform/libs/records"
	"github.com/edtech-analytics/platform/libs/svc"
	"github.com/edtech-analytics/platform/libs/svc/stream"
	"github.com/edtech-analytics/platform/libs/tenancy/credentials"
	"github.com/edtech-analytics/platform/libs/tenancy/fleet"
	"github.com/edtech-analytics/platform/libs/tenancy/jobs"
	"github.com/edtech-analytics/platform/libs/tenancy/tenants"
	"github.com/edtech-analytics/platform/libs/testenv/kafkatest"
	"github.com/edtech-analytics/platform/libs/testenv/sampledata"
	aggregator "github.com/edtech-analytics/platform/services/aggregator/app"
	"github.com/edtech-analytics/platform/services/ctl/ctltest"
	"github.com/edtech-analytics/platform/services/devstack/internal/stack"
)

// twoStudents is a running platform holding a district (d1) of two students, sent through the gateway.
type twoStudents struct {
	st                  *stack.Stack
	pgURL, chAddr, chDB string
	admin               *pgxpool.Pool
	ch                  driver.Conn
	tel                 *obs.Telemetry
	erased, kept        string // SIS ids
	internal            string // the erased student's internal id
	perStudent          map[string]int
}

func startTwoStudents(t *testing.T) *twoStudents {
	t.Helper()
	f := &twoStudents{tel: &obs.Telemetry{Tracer: tracenoop.NewTracerProvider(), Meter: noop.NewMeterProvider(), Propagator: propagation.TraceContext{}}}
	f.st, f.pgURL, f.chAddr, f.chDB = testStack(t, f.tel, slog.New(slog.NewTextHandler(io.Discard, nil)))
	f.admin = openPG(t, f.pgURL)
	spec := sampledata.Spec{TenantID: "d1", Schools: 1, ClassesPerSchool: 1, StudentsPerClass: 2, Days: 3, EventsPerStudent: 8,
		Start: time.Date(2026, 11, 16, 0, 0, 0, 0, time.UTC), Seed: 3}
	keys, all, bodies, _ := seedDistricts(t, f.admin, []string{"d1"}, 20, func(int, string) sampledata.Spec { return spec })
	for _, b := range bodies {
		post(t, f.st.GatewayURL, keys["d1"], b)
	}
	f.perStudent = map[string]int{}
	for _, ev := range all["d1"] {
		f.perStudent[ev.Actor.SISID]++
	}
	students := spec.Students()
	f.erased, f.kept = students[0].SISID, students[1].SISID
	total := len(all["d1"])
	f.ch = openCH(t, f.chAddr, f.chDB)
	waitUntil(t, "stores to hold every event", func() bool {
		return countCH(t, f.ch, "SELECT count() FROM events") == uint64(total) && sumPG(t, f.admin, "d1") == int64(total)
	})
	if err := f.admin.QueryRow(t.Context(), "SELECT internal_id::text FROM district_d1.student_identities WHERE sis_id = $1", f.erased).Scan(&f.internal); err != nil {
		t.Fatal(err)
	}
	return f
}

// ctl runs a ctl command against the platform's stores and Kafka.
func (f *twoStudents) ctl(args ...string) (string, error) {
	return ctltest.RunErr(context.Background(), append(args, "--database-url", f.pgURL, "--master-keys", stackKeys,
		"--kafka.brokers", strings.Join(f.st.Kafka.Brokers, ","), "--kafka.topic-prefix", f.st.Kafka.TopicPrefix,
		"--clickhouse.addr", f.chAddr, "--clickhouse.database", f.chDB, "--wait", "90s")...)
}

// TestEraseStudentEverywhere ingests a district of two students through the gateway, erases one with
// `ctl erase student`, and proves from outside: the job's log found the student in every store and left
// nothing, the student is in no table of either store, the other student's events and rollups are exact,
// erasing again is harmless, an unknown student makes no job, and a rebuild of the district from the
// enriched topic (which still holds the student's records before the erasure marker) does not bring the
// student back, into the live stores or into a fresh ClickHouse database; nor does replaying raw from its
// start, where the student's records can no longer be opened.
func TestEraseStudentEverywhere(t *testing.T) {
	f := startTwoStudents(t)
	st, pgURL, chAddr, admin, ch, tel := f.st, f.pgURL, f.chAddr, f.admin, f.ch, f.tel
	erased, kept, internal, perStudent, ctl := f.erased, f.kept, f.internal, f.perStudent, f.ctl
	out, err := ctl("erase", "student", "--tenant", "d1", "--student", erased, "--reason", "parent request", "--output", "json")
	if err != nil {
		t.Fatalf("erase student: %v\n%s", err, out)
	}
	var job jobs.Job
	if err := json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &job); err != nil {
		t.Fatalf("job: %v\n%s", err, out)
	}
	if job.Status != jobs.StatusDone || job.Subject != internal || len(job.Steps) != 5 {
		t.Fatalf("job = %+v", job)
	}
	t.Logf("job %s took %s", job.ID, job.FinishedAt.Sub(job.CreatedAt))
	for _, s := range job.Steps {
		t.Logf("  %-10s %s", s.Name, s.FinishedAt.Sub(s.StartedAt))
		if s.Name == "archive" { // the stack runs no archiver
			if !strings.HasPrefix(s.Detail, "no archive configured") || deref(s.FoundBefore) != 0 || deref(s.FoundAfter) != 0 {
				t.Errorf("step archive: %+v, want it skipped", s)
			}
			continue
		}
		if s.FoundBefore == nil || *s.FoundBefore == 0 || s.FoundAfter == nil || *s.FoundAfter != 0 {
			t.Errorf("step %s: found before %v, after %v; want some, then none", s.Name, deref(s.FoundBefore), deref(s.FoundAfter))
		}
	}
	assertErased(t, admin, ch, internal, erased)
	assertKept(t, admin, ch, kept, perStudent[kept])

	// Again: a job that finds nothing, and an unknown student: an error and no job.
	if out, err := ctl("erase", "student", "--tenant", "d1", "--student", erased); err != nil {
		t.Fatalf("erasing again: %v\n%s", err, out)
	}
	var jobsBefore int
	if err := admin.QueryRow(t.Context(), "SELECT count(*) FROM control.privacy_jobs").Scan(&jobsBefore); err != nil {
		t.Fatal(err)
	}
	if out, err := ctl("erase", "student", "--tenant", "d1", "--student", "nobody"); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("unknown student: err = %v\n%s", err, out)
	}
	var jobsAfter int
	if err := admin.QueryRow(t.Context(), "SELECT count(*) FROM control.privacy_jobs").Scan(&jobsAfter); err != nil {
		t.Fatal(err)
	}
	if jobsAfter != jobsBefore {
		t.Fatalf("an unknown student made a job")
	}

	// A rebuild replays enriched from its start, where the student's records come before the marker:
	// the district schema rebuilt by ctl, and a fresh ClickHouse database by a second aggregator.
	t.Setenv(keyring.EnvMasterKeys, stackKeys) // the rebuild's audit entry is signed with them
	if out, err := ctltest.RunErr(context.Background(), "rebuild", "--tenant", "d1", "--accept-diff", "--database-url", pgURL,
		"--kafka.brokers", strings.Join(st.Kafka.Brokers, ","), "--kafka.topic-prefix", st.Kafka.TopicPrefix); err != nil {
		t.Fatalf("rebuild: %v\n%s", err, out)
	}
	fresh, freshDB, _ := chtest.New(t)
	var cfg aggregator.Config
	fs := flag.NewFlagSet("aggregator", flag.ContinueOnError)
	cfg.RegisterFlags(fs)
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	cfg.Kafka, cfg.ClickHouseAddr, cfg.ClickHouseDatabase, cfg.Group, cfg.AdminAddr, cfg.AnalystPrefix = st.Kafka, chAddr, freshDB, "replay", "127.0.0.1:0", ""
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- aggregator.Run(ctx, cfg, svc.Runtime{Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Tel: tel}, kafkatest.GroupOpts()...)
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("replaying aggregator: %v", err)
		}
	}()
	offsets := "SELECT toString(groupArray((kafka_partition, m))) FROM (SELECT kafka_partition, max(max_offset) AS m FROM kafka_offsets GROUP BY kafka_partition ORDER BY kafka_partition)"
	waitUntil(t, "the replay to reach the live aggregator's offsets", func() bool {
		var live, replayed string
		_ = ch.QueryRow(t.Context(), offsets).Scan(&live)
		_ = fresh.QueryRow(t.Context(), offsets).Scan(&replayed)
		return live != "" && live == replayed
	})
	assertErased(t, admin, fresh, internal, erased)
	assertKept(t, admin, fresh, kept, perStudent[kept])
	assertErased(t, admin, ch, internal, erased)
	assertKept(t, admin, ch, kept, perStudent[kept])

	replayRaw(t, f)
	assertErased(t, admin, ch, internal, erased)
	assertKept(t, admin, ch, kept, perStudent[kept])
}

// replayRaw checks raw after the erasure: the erased student's records there cannot be opened (their
// identifying fields were sealed under its shredded key) while the other's can, and when raw is
// replayed from its start (every record produced again), the enricher passes nothing of the erased
// student into enriched and the stores take nothing twice.
func replayRaw(t *testing.T, f *twoStudents) {
	t.Helper()
	ctx := t.Context()
	codec, err := stream.NewCodec(ctx, f.st.Kafka)
	if err != nil {
		t.Fatal(err)
	}
	master, err := keyring.ParseLocalKeys(stackKeys)
	if err != nil {
		t.Fatal(err)
	}
	kr := keyring.New(f.admin, master, keyring.Options{})
	raw := readTopic(t, f.st.Kafka, f.st.Kafka.Topics().Raw)
	shredded := 0
	for _, r := range raw {
		var ev records.RawEvent
		if err := codec.Decode(r.Value, &ev); err != nil {
			t.Fatal(err)
		}
		sis, err := kr.Open(ctx, ev.TenantID, ev.Actor.SISID)
		switch {
		case errors.Is(err, keyring.ErrShredded):
			shredded++
		case err != nil:
			t.Fatal(err)
		case sis == f.erased:
			t.Errorf("a raw record of the erased student opens")
		}
	}
	if shredded != f.perStudent[f.erased] {
		t.Errorf("%d raw records cannot be opened, want the erased student's %d", shredded, f.perStudent[f.erased])
	}

	seen := map[int32]int64{} // per partition of enriched, the offset after the last record before the replay
	for _, r := range readTopic(t, f.st.Kafka, f.st.Kafka.Topics().Enriched) {
		seen[r.Partition] = max(seen[r.Partition], r.Offset+1)
	}
	cl, err := kafkax.NewClient(f.st.Kafka, kafkax.Deps{}, "", kafkax.ProducerOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	again := make([]*kgo.Record, len(raw))
	for i, r := range raw {
		again[i] = &kgo.Record{Topic: r.Topic, Key: r.Key, Value: r.Value}
	}
	if err := cl.ProduceSync(ctx, again...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	waitEnricherCommitted(t, f.st.Kafka)
	for _, r := range readTopic(t, f.st.Kafka, f.st.Kafka.Topics().Enriched) {
		if r.Offset < seen[r.Partition] {
			continue
		}
		var ev records.EnrichedEvent
		if err := codec.Decode(r.Value, &ev); err != nil {
			t.Fatal(err)
		}
		if ev.Type != records.TypeStudentErased {
			t.Errorf("the replay of raw enriched a record again: %s of %s", ev.Type, ev.Actor.InternalID)
		}
	}
}

// assertErased checks that no table of the district schema holds the student (the enricher's erased
// identity keeps only a keyed hash of the SIS id, to suppress its records), and no ClickHouse table a
// row of it.
func assertErased(t *testing.T, pg *pgxpool.Pool, ch driver.Conn, internal, sis string) {
	t.Helper()
	rows, err := pg.Query(t.Context(), "SELECT table_name FROM information_schema.tables WHERE table_schema = 'district_d1'")
	if err != nil {
		t.Fatal(err)
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	for _, table := range tables {
		var n int
		q := fmt.Sprintf("SELECT count(*) FROM district_d1.%s r WHERE strpos(row_to_json(r)::text, $1) > 0", pgx.Identifier{table}.Sanitize())
		if err := pg.QueryRow(t.Context(), q, sis).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			t.Errorf("postgres: %s holds the SIS id in %d rows", table, n)
		}
		if table == "students" || table == "student_identities" {
			continue // the erased student's tombstone: an internal id and keyed hashes
		}
		if err := pg.QueryRow(t.Context(), q, internal).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			t.Errorf("postgres: %s holds the student in %d rows", table, n)
		}
	}
	var cols []struct {
		Table string `ch:"table"`
	}
	if err := ch.Select(t.Context(), &cols, "SELECT table FROM system.columns WHERE database = currentDatabase() AND name = 'student_id' AND table NOT LIKE '%_mv'"); err != nil {
		t.Fatal(err)
	}
	if len(cols) < 2 {
		t.Fatalf("clickhouse: %d tables with a student_id", len(cols))
	}
	for _, c := range cols {
		if n := countCH(t, ch, fmt.Sprintf("SELECT count() FROM %s WHERE student_id = toUUID('%s')", c.Table, internal)); n > 0 {
			t.Errorf("clickhouse: %s holds %d rows of the student", c.Table, n)
		}
	}
}

// assertKept checks the other student's events in both stores, and that the rollups count one active
// student a day and its events, exactly.
func assertKept(t *testing.T, pg *pgxpool.Pool, ch driver.Conn, sis string, events int) {
	t.Helper()
	var internal string
	var pgEvents int
	if err := pg.QueryRow(t.Context(), `SELECT i.internal_id::text, a.event_count FROM district_d1.student_identities i
		JOIN district_d1.student_activity a USING (internal_id) WHERE i.sis_id = $1`, sis).Scan(&internal, &pgEvents); err != nil {
		t.Fatal(err)
	}
	if pgEvents != events {
		t.Errorf("postgres: the other student has %d events, want %d", pgEvents, events)
	}
	if n := countCH(t, ch, fmt.Sprintf("SELECT count() FROM events WHERE student_id = toUUID('%s')", internal)); n != uint64(events) {
		t.Errorf("clickhouse: the other student has %d events, want %d", n, events)
	}
	if n := countCH(t, ch, "SELECT count() FROM events"); n != uint64(events) {
		t.Errorf("clickhouse: events holds %d rows, want the other student's %d", n, events)
	}
	var days []struct {
		Active uint64 `ch:"active"`
		Events uint64 `ch:"events"`
	}
	if err := ch.Select(t.Context(), &days, `SELECT toUInt64(uniqExactMerge(active_students)) AS active, toUInt64(countMerge(events)) AS events
		FROM school_daily GROUP BY tenant_id, school_id, day`); err != nil {
		t.Fatal(err)
	}
	var sum uint64
	for _, d := range days {
		if d.Active != 1 {
			t.Errorf("school_daily counts %d active students on a day, want 1", d.Active)
		}
		sum += d.Events
	}
	if sum != uint64(events) {
		t.Errorf("school_daily counts %d events, want %d", sum, events)
	}
}

// adminRequest sends one request to the admin API and decodes its answer into v (nil: none).
func call(t *testing.T, method, url, key, body string, v any) int {
	t.Helper()
	status, b := fetch(t, method, url, key, body)
	if v != nil && status < 300 {
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatalf("%s %s: %v\n%s", method, url, err, b)
		}
	}
	return status
}

// fetch sends one request with a bearer key ("": none) and returns the status and body.
func fetch(t *testing.T, method, url, key, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

// TestAdminAPIQueuesAnErasureAWorkerRuns asks for an erasure through the admin API with a key holding
// admin:write, and proves: keys without the verb, without a key and for an unknown student are refused
// (the last naming the field) and make no job; the job is queued, asking again returns it; `ctl jobs work`
// runs it to done; the job URL shows its log to the district's key only; and the student is gone. Then a
// district export asked for through the API and written by the worker holds the other student's events
// exactly and nothing of the erased one.
func TestAdminAPIQueuesAnErasureAWorkerRuns(t *testing.T) {
	exports := t.TempDir()
	t.Setenv("EXPORT_DIR", exports) // the query service serves the exports the worker writes there
	f := startTwoStudents(t)
	creds := credentials.New(f.admin)
	adminKey, _, err := creds.CreateAPIKey(t.Context(), "d1", "sis", []string{credentials.VerbAdminWrite})
	if err != nil {
		t.Fatal(err)
	}
	readKey, _, err := creds.CreateAPIKey(t.Context(), "d1", "sis", []string{credentials.VerbDashboardsRead})
	if err != nil {
		t.Fatal(err)
	}
	url := f.st.QueryURL + "/v1/admin/erasures"
	body := fmt.Sprintf(`{"student": %q, "reason": "parent request"}`, f.erased)
	for name, c := range map[string]struct {
		key, body string
		want      int
	}{
		"no key":          {"", body, http.StatusUnauthorized},
		"dashboards key":  {readKey, body, http.StatusForbidden},
		"unknown student": {adminKey, `{"student": "nobody"}`, http.StatusNotFound},
		"unknown field":   {adminKey, `{"sis": "x"}`, http.StatusBadRequest},
	} {
		if got := call(t, http.MethodPost, url, c.key, c.body, nil); got != c.want {
			t.Errorf("%s: status %d, want %d", name, got, c.want)
		}
	}
	var n int
	if err := f.admin.QueryRow(t.Context(), "SELECT count(*) FROM control.privacy_jobs").Scan(&n); err != nil || n != 0 {
		t.Fatalf("refused requests made %d jobs (%v)", n, err)
	}

	var queued, again struct {
		Job       jobs.Job `json:"job"`
		StatusURL string   `json:"status_url"`
	}
	if got := call(t, http.MethodPost, url, adminKey, body, &queued); got != http.StatusAccepted || queued.Job.Status != jobs.StatusQueued {
		t.Fatalf("erasure request: status %d, job %+v", got, queued.Job)
	}
	if got := call(t, http.MethodPost, url, adminKey, body, &again); got != http.StatusOK || again.Job.ID != queued.Job.ID {
		t.Fatalf("repeated request: status %d, job %s, want 200 and job %s", got, again.Job.ID, queued.Job.ID)
	}

	if out, err := f.ctl("jobs", "work", "--once"); err != nil {
		t.Fatalf("jobs work: %v\n%s", err, out)
	}
	var done struct {
		Job jobs.Job `json:"job"`
	}
	if got := call(t, http.MethodGet, f.st.QueryURL+queued.StatusURL, adminKey, "", &done); got != http.StatusOK {
		t.Fatalf("job status: %d", got)
	}
	if done.Job.Status != jobs.StatusDone || len(done.Job.Steps) != 5 || done.Job.Subject != f.internal {
		t.Fatalf("job after the worker: %+v", done.Job)
	}
	var params string
	if err := f.admin.QueryRow(t.Context(), "SELECT params::text FROM control.privacy_jobs WHERE id = $1", queued.Job.ID).Scan(&params); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(params, f.erased) {
		t.Errorf("the finished job keeps the SIS id: %s", params)
	}
	assertErased(t, f.admin, f.ch, f.internal, f.erased)
	assertKept(t, f.admin, f.ch, f.kept, f.perStudent[f.kept])

	// Another district's key does not see the job.
	if _, err := tenants.New(fleet.New(f.admin, func(string) string { return "" })).Create(t.Context(), "d2", "District d2"); err != nil {
		t.Fatal(err)
	}
	otherKey, _, err := creds.CreateAPIKey(t.Context(), "d2", "sis", []string{credentials.VerbAdminWrite})
	if err != nil {
		t.Fatal(err)
	}
	if got := call(t, http.MethodGet, f.st.QueryURL+queued.StatusURL, otherKey, "", nil); got != http.StatusNotFound {
		t.Errorf("another district's key read the job: status %d", got)
	}

	// A district export, after the erasure.
	var export struct {
		Job       jobs.Job `json:"job"`
		StatusURL string   `json:"status_url"`
		Files     []string `json:"files"`
	}
	if got := call(t, http.MethodPost, f.st.QueryURL+"/v1/admin/exports", adminKey, `{"format": "xml"}`, nil); got != http.StatusBadRequest {
		t.Errorf("export in an unknown format: status %d", got)
	}
	if got := call(t, http.MethodPost, f.st.QueryURL+"/v1/admin/exports", adminKey, `{"format": "ndjson"}`, &export); got != http.StatusAccepted {
		t.Fatalf("export request: status %d", got)
	}
	if out, err := f.ctl("jobs", "work", "--once", "--export.dir", exports); err != nil {
		t.Fatalf("jobs work: %v\n%s", err, out)
	}
	if got := call(t, http.MethodGet, f.st.QueryURL+export.StatusURL, adminKey, "", &export); got != http.StatusOK ||
		export.Job.Status != jobs.StatusDone || !slices.Contains(export.Files, "manifest.json") || !slices.Contains(export.Files, "events.ndjson.gz") {
		t.Fatalf("export job: status %d, %+v, files %v", got, export.Job, export.Files)
	}
	for _, bad := range []string{"..%2F..%2Fetc%2Fpasswd", ".hidden", "nothing.gz"} {
		if got := call(t, http.MethodGet, f.st.QueryURL+export.StatusURL+"/files/"+bad, adminKey, "", nil); got != http.StatusNotFound {
			t.Errorf("file %q: status %d, want 404", bad, got)
		}
	}
	if got := call(t, http.MethodGet, f.st.QueryURL+export.StatusURL+"/files/events.ndjson.gz", otherKey, "", nil); got != http.StatusNotFound {
		t.Errorf("another district's key downloaded the export: status %d", got)
	}
	lines := download(t, f.st.QueryURL+export.StatusURL+"/files/events.ndjson.gz", adminKey)
	if len(lines) != f.perStudent[f.kept] {
		t.Errorf("the export holds %d events, want the other student's %d", len(lines), f.perStudent[f.kept])
	}
	for _, name := range export.Files {
		if name == "manifest.json" {
			continue
		}
		for _, line := range download(t, f.st.QueryURL+export.StatusURL+"/files/"+name, adminKey) {
			if strings.Contains(line, f.internal) || strings.Contains(line, f.erased) {
				t.Errorf("%s holds the erased student: %s", name, line)
			}
		}
	}
}

// download fetches a gzip file of an export and returns its lines.
func download(t *testing.T, url, key string) []string {
	t.Helper()
	status, body := fetch(t, http.MethodGet, url, key, "")
	if status != http.StatusOK {
		t.Fatalf("GET %s: %d", url, status)
	}
	zr, err := gzip.NewReader(bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return strings.FieldsFunc(string(b), func(r rune) bool { return r == '\n' })
}
