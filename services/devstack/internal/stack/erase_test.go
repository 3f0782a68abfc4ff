package stack_test

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/edtech-analytics/platform/libs/chutil/chtest"
	"github.com/edtech-analytics/platform/libs/keyring"
	"github.com/edtech-analytics/platform/libs/obs"
	"github.com/edtech-analytics/platform/libs/svc"
	"github.com/edtech-analytics/platform/libs/tenancy/jobs"
	"github.com/edtech-analytics/platform/libs/testenv/kafkatest"
	"github.com/edtech-analytics/platform/libs/testenv/sampledata"
	aggregator "github.com/edtech-analytics/platform/services/aggregator/app"
	"github.com/edtech-analytics/platform/services/ctl/ctltest"
)

// TestEraseStudentEverywhere ingests a district of two students through the gateway, erases one with
// `ctl erase student`, and proves from outside: the job's log found the student in every store and left
// nothing, the student is in no table of either store, the other student's events and rollups are exact,
// erasing again is harmless, an unknown student makes no job, and a rebuild of the district from the
// enriched topic (which still holds the student's records before the erasure marker) does not bring the
// student back.
func TestEraseStudentEverywhere(t *testing.T) {
	tel := &obs.Telemetry{Tracer: tracenoop.NewTracerProvider(), Meter: noop.NewMeterProvider(), Propagator: propagation.TraceContext{}}
	st, pgURL, chAddr, chDB := testStack(t, tel, slog.New(slog.NewTextHandler(io.Discard, nil)))
	admin := openPG(t, pgURL)
	spec := sampledata.Spec{TenantID: "d1", Schools: 1, ClassesPerSchool: 1, StudentsPerClass: 2, Days: 3, EventsPerStudent: 8,
		Start: time.Date(2026, 11, 16, 0, 0, 0, 0, time.UTC), Seed: 3}
	keys, all, bodies, _ := seedDistricts(t, admin, []string{"d1"}, 20, func(int, string) sampledata.Spec { return spec })
	for _, b := range bodies {
		post(t, st.GatewayURL, keys["d1"], b)
	}
	perStudent := map[string]int{}
	for _, ev := range all["d1"] {
		perStudent[ev.Actor.SISID]++
	}
	students := spec.Students()
	erased, kept := students[0].SISID, students[1].SISID
	total := len(all["d1"])
	ch := openCH(t, chAddr, chDB)
	waitUntil(t, "stores to hold every event", func() bool {
		return countCH(t, ch, "SELECT count() FROM events") == uint64(total) && sumPG(t, admin, "d1") == int64(total)
	})
	var internal string
	if err := admin.QueryRow(t.Context(), "SELECT internal_id::text FROM district_d1.student_identities WHERE sis_id = $1", erased).Scan(&internal); err != nil {
		t.Fatal(err)
	}

	ctl := func(args ...string) (string, error) {
		return ctltest.RunErr(context.Background(), append(args, "--database-url", pgURL, "--master-keys", stackKeys,
			"--kafka.brokers", strings.Join(st.Kafka.Brokers, ","), "--kafka.topic-prefix", st.Kafka.TopicPrefix,
			"--clickhouse.addr", chAddr, "--clickhouse.database", chDB, "--wait", "90s")...)
	}
	out, err := ctl("erase", "student", "--tenant", "d1", "--student", erased, "--reason", "parent request", "--output", "json")
	if err != nil {
		t.Fatalf("erase student: %v\n%s", err, out)
	}
	var job jobs.Job
	if err := json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &job); err != nil {
		t.Fatalf("job: %v\n%s", err, out)
	}
	if job.Status != jobs.StatusDone || job.Subject != internal || len(job.Steps) != 4 {
		t.Fatalf("job = %+v", job)
	}
	for _, s := range job.Steps {
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
