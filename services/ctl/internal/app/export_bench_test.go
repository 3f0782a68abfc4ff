package app

import (
	"flag"
	"fmt"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"
)

var exportEvents = flag.Int("export.events", 1_000_000, "events of the district BenchmarkExportTenant exports")

// BenchmarkExportTenant measures ctl export tenant of a district with -export.events events (1,000,000)
// in ClickHouse, 100 students, on the test servers: events/s and the peak Go heap while the export runs
// (HeapAlloc sampled every 10 ms). The student sub-benchmark exports one of the students (1% of the
// district's events), as ctl export student. Run with -benchtime=1x:
//
//	go test ./internal/app/ -run '^$' -bench BenchmarkExportTenant -benchtime 1x
//
// The events are generated in the server by INSERT ... SELECT FROM numbers(N). Only the export's tables
// are kept fed (events and kafka_offsets): the rollups' views would make the load an order of magnitude
// slower and the district export does not read them.
func BenchmarkExportTenant(b *testing.B) {
	n := *exportEvents
	pool, url := migratedDB(b)
	conn, database, addr := aggregatorCH(b)
	ctx := b.Context()
	mustCtl(b, url, "tenant", "create", "--id", "bench", "--name", "Bench")
	rows, err := conn.Query(ctx, `SELECT name FROM system.tables WHERE database = currentDatabase()
		AND engine = 'MaterializedView' AND name != 'kafka_offsets_mv'`)
	if err != nil {
		b.Fatal(err)
	}
	var views []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			b.Fatal(err)
		}
		views = append(views, v)
	}
	for _, v := range views {
		if err := conn.Exec(ctx, "DROP TABLE "+v); err != nil {
			b.Fatal(err)
		}
	}
	start := time.Now()
	if err := conn.Exec(ctx, fmt.Sprintf(benchEventsSQL, enrichedTopic, n)); err != nil {
		b.Fatal(err)
	}
	b.Logf("loaded %d events in %s", n, time.Since(start).Round(time.Millisecond))
	if _, err := pool.Exec(ctx, `SET search_path = district_bench;
		INSERT INTO students (internal_id) SELECT ('00000000-0000-4000-8000-' || lpad(s::text, 12, '0'))::uuid FROM generate_series(0, 99) s;
		INSERT INTO student_identities (source_id, sis_id, internal_id) SELECT 'sis', 'S-' || s, ('00000000-0000-4000-8000-' || lpad(s::text, 12, '0'))::uuid FROM generate_series(0, 99) s;
		INSERT INTO roster_users (sourced_id, status, date_last_modified, internal_id, enabled, given_name, family_name)
			SELECT 'u-' || s, 'active', now(), ('00000000-0000-4000-8000-' || lpad(s::text, 12, '0'))::uuid, true, 'Given ' || s, 'Family' FROM generate_series(0, 99) s;
		INSERT INTO control.consumer_offsets (consumer, topic, partition, next_offset) SELECT 'edtech-sink', 'edtech.enriched', p, 250000 FROM generate_series(0, 3) p;
		RESET search_path`); err != nil {
		b.Fatal(err)
	}
	chFlags := []string{"--clickhouse.addr", addr, "--clickhouse.database", database}

	for _, format := range []string{"ndjson", "csv"} {
		b.Run(format, func(b *testing.B) {
			var peak, written uint64
			for i := range b.N {
				out := filepath.Join(b.TempDir(), fmt.Sprint(i))
				peak = max(peak, peakHeap(b, func() {
					mustCtl(b, url, append([]string{"export", "tenant", "--tenant", "bench", "--format", format, "--out", out}, chFlags...)...)
				}))
				m := readManifest(b, out)
				if events := m.Files[len(m.Files)-1]; events.Rows != int64(n) {
					b.Fatalf("exported %d events, want %d", events.Rows, n)
				}
				for _, f := range m.Files {
					written += uint64(f.Bytes)
				}
			}
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
			b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
			b.ReportMetric(float64(written)/float64(b.N)/(1<<20), "MiB-written")
		})
	}
	b.Run("student", func(b *testing.B) {
		var peak uint64
		for i := range b.N {
			out := filepath.Join(b.TempDir(), fmt.Sprintf("%d.zip", i))
			peak = max(peak, peakHeap(b, func() {
				mustCtl(b, url, append([]string{"export", "student", "--tenant", "bench", "--student", "S-7", "--out", out}, chFlags...)...)
			}))
		}
		b.ReportMetric(float64(n/100)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
		b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
	})
}

// peakHeap runs fn and returns the largest Go heap (HeapAlloc) seen while it ran, sampled every 10 ms.
func peakHeap(b *testing.B, fn func()) uint64 {
	b.Helper()
	runtime.GC()
	var (
		peak uint64
		mu   sync.Mutex
		wg   sync.WaitGroup
	)
	sample := func() {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		mu.Lock()
		peak = max(peak, ms.HeapAlloc)
		mu.Unlock()
	}
	done := make(chan struct{})
	wg.Go(func() {
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				sample()
			}
		}
	})
	fn()
	close(done)
	wg.Wait()
	sample()
	return peak
}

// benchEventsSQL generates %[2]d events of district bench in the server: 100 students, the five event
// types, 60 days from 2025-09-01, spread over 4 partitions of topic %[1]s.
const benchEventsSQL = `INSERT INTO events (tenant_id, event_id, source_id, type, occurred_at, received_at, enriched_at, school_id,
    class_id, student_id, pseudonym, role, attendance_status, attendance_date, score, max_score, late, session_action,
    duration_seconds, kafka_topic, kafka_partition, kafka_offset)
SELECT
    'bench' AS tenant_id,
    generateUUIDv4() AS event_id,
    'lms' AS source_id,
    ['attendance', 'assessment_result', 'assignment_submission', 'session', 'content_view'][t + 1] AS type,
    toDateTime(toDate('2025-09-01') + dd, 'UTC') + 28800 + (h %% 28800) AS occurred_at,
    occurred_at AS received_at,
    occurred_at AS enriched_at,
    concat('school-', toString(stu %% 5)) AS school_id,
    concat('class-', toString(stu %% 20)) AS class_id,
    toUUID(concat('00000000-0000-4000-8000-', substring(concat('000000000000', toString(stu)), length(toString(stu)) + 1, 12))) AS student_id,
    concat('ps-', toString(stu)) AS pseudonym,
    'student' AS role,
    if(t = 0, ['present', 'tardy', 'absent', 'excused'][bitShiftRight(h, 40) %% 4 + 1], '') AS attendance_status,
    if(t = 0, toDate('2025-09-01') + dd, toDate('1970-01-01')) AS attendance_date,
    if(t = 1, toFloat64(bitShiftRight(h, 44) %% 101), NULL) AS score,
    if(t = 1, 100., NULL) AS max_score,
    if(t = 2, toUInt8(bitShiftRight(h, 50) %% 4 = 0), NULL) AS late,
    if(t = 3, 'login', '') AS session_action,
    if(t = 4, toUInt32(bitShiftRight(h, 24) %% 900), toUInt32(0)) AS duration_seconds,
    '%[1]s' AS kafka_topic,
    toUInt32(n %% 4) AS kafka_partition,
    intDiv(n, 4) AS kafka_offset
FROM
(
    SELECT number AS n, intHash64(n) AS h, n %% 100 AS stu, bitShiftRight(h, 16) %% 60 AS dd, bitShiftRight(h, 32) %% 5 AS t
    FROM numbers(%[2]d)
)`
