// Command benchload fills a ClickHouse database for the dashboard benchmarks, and measures the
// aggregator's throughput from Kafka into ClickHouse.
//
//	go run ./services/aggregator/cmd/benchload -events 50000000 -districts 1500   # load the events table
//	go run ./services/aggregator/cmd/benchload -kafka 200000                        # aggregator rows/s
//
// The load writes synthetic events straight into the events table with INSERT ... SELECT from
// numbers(), in chunks; the materialized views fill every rollup as they would from the aggregator.
// Each district (bench_<n>) has 5 schools, 20 classes and 100 students, active over 60 days from
// 2025-09-01; events are spread evenly over the five types. ClickHouse comes from CLICKHOUSE_ADDR or the
// repository's private server (libs/testenv/devenv).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/edtech-analytics/platform/libs/chutil"
	"github.com/edtech-analytics/platform/libs/testenv/devenv"
	"github.com/edtech-analytics/platform/libs/testenv/loadgen"
	"github.com/edtech-analytics/platform/services/aggregator/internal/chstore"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchload:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) (err error) {
	fs := flag.NewFlagSet("benchload", flag.ContinueOnError)
	events := fs.Int64("events", 50_000_000, "events to load")
	districts := fs.Int64("districts", 1500, "districts to spread them over")
	database := fs.String("database", "bench", "ClickHouse database (dropped and recreated unless -append)")
	chunk := fs.Int64("chunk", 2_000_000, "events per INSERT (keep one INSERT well under the driver's 5-minute read timeout)")
	appendRows := fs.Bool("append", false, "add to the database instead of recreating it")
	kafka := fs.Int("kafka", 0, "instead of loading: produce this many events into an in-process Kafka and time the aggregator")
	if err := fs.Parse(args); err != nil {
		return err
	}
	addr, err := devenv.ClickHouse(ctx)
	if err != nil {
		return err
	}
	if *kafka > 0 {
		return kafkaThroughput(ctx, addr, *kafka)
	}
	if *events <= 0 || *districts <= 0 || *chunk <= 0 {
		return fmt.Errorf("-events, -districts and -chunk must be positive")
	}
	conn, err := prepare(ctx, addr, *database, !*appendRows)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, conn.Close()) }()
	perDistrict := (*events + *districts - 1) / *districts
	lctx := clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{
		"max_block_size": 1 << 20, "min_insert_block_size_rows": 1 << 20, "max_execution_time": 0,
	}))
	start := time.Now()
	for from := int64(0); from < *events; from += *chunk {
		n := min(*chunk, *events-from)
		t := time.Now()
		if err := conn.Exec(lctx, fmt.Sprintf(loadSQL, from, perDistrict, n, loadgen.StudentIDSQL("d * 100 + stu"))); err != nil {
			return fmt.Errorf("loading events %d-%d: %w", from, from+n, err)
		}
		done := from + n
		fmt.Printf("%11d events  %6.1f s  chunk %7.0f rows/s  overall %7.0f rows/s\n", done, time.Since(start).Seconds(),
			float64(n)/time.Since(t).Seconds(), float64(done)/time.Since(start).Seconds())
	}
	// As the aggregator's compaction does within its interval (-compact.interval): the generated months are
	// closed, so each month of each rollup is merged into one part.
	merged, err := chstore.Compact(ctx, conn, *database, 0)
	for _, m := range merged {
		fmt.Printf("merged %s partition %s (%d parts) in %.1f s\n", m.Table, m.Partition, m.Parts, m.Took.Seconds())
	}
	if err != nil {
		return err
	}
	var rollups []struct {
		Table string `ch:"table"`
		Rows  uint64 `ch:"rows"`
		Bytes uint64 `ch:"bytes"`
	}
	if err := conn.Select(ctx, &rollups, `SELECT table, sum(rows) AS rows, sum(bytes_on_disk) AS bytes FROM system.parts
		WHERE database = currentDatabase() AND active GROUP BY table ORDER BY table`); err != nil {
		return err
	}
	for _, r := range rollups {
		fmt.Printf("%-22s %12d rows %10.1f MiB\n", r.Table, r.Rows, float64(r.Bytes)/(1<<20))
	}
	return nil
}

// prepare connects to database, recreating and migrating it when fresh is set.
func prepare(ctx context.Context, addr, database string, fresh bool) (driver.Conn, error) {
	admin, err := chutil.Open(ctx, chutil.Options{Addr: addr})
	if err != nil {
		return nil, err
	}
	if fresh {
		err = chutil.DropDatabase(ctx, admin, database)
	}
	if err == nil {
		err = chutil.CreateDatabase(ctx, admin, database)
	}
	if cerr := admin.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	conn, err := chutil.Open(ctx, chutil.Options{Addr: addr, Database: database})
	if err != nil {
		return nil, err
	}
	if err := chstore.Migrate(ctx, conn, database); err != nil {
		return nil, err
	}
	return conn, nil
}

// loadSQL generates events %[1]d.. (%[3]d of them), %[2]d per district, in district order so that an
// insert block covers few districts (as a consumer's batches of one partition do).
// Student stu of district d has the internal id loadgen.StudentID(d*100+stu) (%[4]s), which the rosters of
// the dashboard benchmark (services/query/cmd/dashbench) give it too.
const loadSQL = `INSERT INTO events (tenant_id, event_id, source_id, type, occurred_at, received_at, enriched_at, school_id, class_id,
    student_id, pseudonym, role, attendance_status, attendance_date, score, max_score, late, session_action,
    session_seconds, duration_seconds, kafka_topic, kafka_partition, kafka_offset)
SELECT
    concat('bench_', toString(d)) AS tenant_id,
    generateUUIDv4() AS event_id,
    'bench' AS source_id,
    ['attendance', 'assessment_result', 'assignment_submission', 'session', 'content_view'][t + 1] AS type,
    toDateTime(toDate('2025-09-01') + dd, 'UTC') + 28800 + (h %% 28800) AS occurred_at,
    occurred_at AS received_at,
    occurred_at AS enriched_at,
    concat('s', toString(cls %% 5)) AS school_id,
    concat('c', toString(cls)) AS class_id,
    %[4]s AS student_id,
    concat('ps-', toString(d), '-', toString(stu)) AS pseudonym,
    'student' AS role,
    if(t = 0, ['present', 'present', 'present', 'present', 'present', 'present', 'present', 'tardy', 'absent', 'excused'][bitShiftRight(h, 40) %% 10 + 1], '') AS attendance_status,
    if(t = 0, toDate('2025-09-01') + dd, toDate('1970-01-01')) AS attendance_date,
    if(t = 1, toFloat64(bitShiftRight(h, 44) %% 101), NULL) AS score,
    if(t = 1, 100., NULL) AS max_score,
    if(t = 2, toUInt8(bitShiftRight(h, 50) %% 4 = 0), NULL) AS late,
    if(t = 3, 'login', '') AS session_action,
    toUInt32(0) AS session_seconds,
    if(t = 4, toUInt32(bitShiftRight(h, 24) %% 900), toUInt32(0)) AS duration_seconds,
    'bench' AS kafka_topic,
    toUInt32(0) AS kafka_partition,
    n AS kafka_offset
FROM
(
    SELECT number + %[1]d AS n, intHash64(n) AS h, intDiv(n, %[2]d) AS d, bitShiftRight(h, 8) %% 100 AS stu, stu %% 20 AS cls,
        bitShiftRight(h, 16) %% 60 AS dd, bitShiftRight(h, 32) %% 5 AS t
    FROM numbers(%[3]d)
)`
