package pipeline

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edtech-analytics/platform/libs/kafkax"
	"github.com/edtech-analytics/platform/libs/pgutil/pgtest"
	"github.com/edtech-analytics/platform/libs/records"
	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/edtech-analytics/platform/libs/tenancy/fleet"
	"github.com/edtech-analytics/platform/libs/tenancy/ingest"
	"github.com/edtech-analytics/platform/libs/tenancy/tenants"
	"github.com/edtech-analytics/platform/services/enricher/internal/claims"
	"github.com/edtech-analytics/platform/services/enricher/internal/dedup"
	"github.com/twmb/franz-go/pkg/kgo"
)

// BenchmarkDedupBatch measures the dedup path of one poll of 5,000 enriched records over 4 partitions, as
// batch runs it, against the real PostgreSQL:
//
//   - cool: 50 cool districts. Each iteration judges one fresh poll the way the previous release did (the
//     per-partition set alone, one id at a time) and another the way this one does (the shared districts,
//     from a cache after the first poll; the per-partition set, the whole poll under one lock; one read of
//     the dedup epoch before commit), alternately, and reports both rates and their ratio.
//   - hot: one hot district (switched longer ago than the window): every id is also claimed in the shared
//     store, in one statement per poll. It also reports the CPU spent per id by this process and by the
//     PostgreSQL server (all its processes, from /proc: other users of the server are counted too), and
//     the claims' size on disk (table and indexes).
//
// Rates are ids per second of the path alone, on one goroutine (the batch's dedup runs on one).
func BenchmarkDedupBatch(b *testing.B) {
	ctx := context.Background()
	pool, _ := pgtest.New(b)
	if err := tenancy.Migrate(ctx, pool); err != nil {
		b.Fatal(err)
	}
	store := tenants.New(fleet.New(pool, os.Getenv))
	var cool []string
	for i := range 50 {
		id := fmt.Sprintf("cool%02d", i)
		cool = append(cool, id)
		if _, err := store.Create(ctx, id, id); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := store.Create(ctx, "hot", "hot"); err != nil {
		b.Fatal(err)
	}
	if _, err := ingest.New(pool).SetHotShards(ctx, "hot", 8); err != nil {
		b.Fatal(err)
	}
	if _, err := pool.Exec(ctx, "UPDATE control.tenants SET hot_changed_at = now() - interval '72 hours' WHERE id = 'hot'"); err != nil {
		b.Fatal(err)
	}
	newPipeline := func() *Pipeline {
		p := New(Config{Group: "bench"}, kafkax.Topics{}, slog.New(slog.NewTextHandler(io.Discard, nil)),
			nil, nil, dedup.New(48*time.Hour), claims.New(pool, 48*time.Hour), nil, Changelog{}, nil)
		for part := range int32(4) {
			p.dedup.Own(part, p.dedup.NewPartition(time.Now()))
		}
		return p
	}
	const size = 5000
	seq := 0
	// poll builds a poll of fresh ids; tenant and key give each record's district and key.
	poll := func(tenant func(i int) string, key func(i int) string) [][]passed {
		keptPer := make([][]passed, 4)
		for i := range size {
			seq++
			part := int32(i % 4)
			rec := &kgo.Record{Key: []byte(key(i)), Partition: part, Offset: int64(seq)}
			ev := &records.EnrichedEvent{TenantID: tenant(i), EventID: fmt.Sprintf("00000000-0000-4000-8000-%012d", seq)}
			keptPer[part] = append(keptPer[part], passed{rec: rec, ev: ev, ctx: ctx})
		}
		return keptPer
	}
	// previous is the previous release's dedup of a poll: the per-partition set alone.
	previous := func(p *Pipeline, keptPer [][]passed) {
		now := time.Now()
		for _, kept := range keptPer {
			for _, k := range kept {
				p.dedup.SeenOrAdd(k.rec.Partition, k.ev.TenantID, k.ev.EventID, now)
			}
		}
		p.dedup.Commit(now)
	}
	// current is this release's: what batch does around enrichment, without Kafka.
	current := func(p *Pipeline, keptPer [][]passed) {
		now := time.Now()
		modes, epoch, err := p.sharedModes(ctx)
		if err != nil {
			b.Fatal(err)
		}
		var st Stats
		if err := p.decide(ctx, modes, keptPer, now, &st); err != nil || st.Duplicates != 0 {
			b.Fatalf("decide: %+v, %v", st, err)
		}
		if err := p.postCheck(ctx, modes, epoch); err != nil {
			b.Fatal(err)
		}
		p.dedup.Commit(now)
	}

	b.Run("cool", func(b *testing.B) {
		before, after := newPipeline(), newPipeline()
		var tBefore, tAfter time.Duration
		tenant := func(i int) string { return cool[i%len(cool)] }
		for i := 0; b.Loop(); i++ {
			k1, k2 := poll(tenant, tenant), poll(tenant, tenant)
			run := []func(){
				func() { s := time.Now(); previous(before, k1); tBefore += time.Since(s) },
				func() { s := time.Now(); current(after, k2); tAfter += time.Since(s) },
			}
			if i%2 == 1 { // alternate which goes first
				run[0], run[1] = run[1], run[0]
			}
			run[0]()
			run[1]()
		}
		n := float64(b.N * size)
		b.ReportMetric(n/tBefore.Seconds(), "before-ids/s")
		b.ReportMetric(n/tAfter.Seconds(), "after-ids/s")
		b.ReportMetric(tAfter.Seconds()/tBefore.Seconds(), "after/before")
	})
	b.Run("hot", func(b *testing.B) {
		p := newPipeline()
		var took, pgCPU, selfCPU time.Duration
		tenant := func(int) string { return "hot" }
		key := func(i int) string { return fmt.Sprintf("hot/%d", i%8) }
		for b.Loop() {
			k := poll(tenant, key)
			pg0, self0 := postgresCPU(), processCPU()
			s := time.Now()
			current(p, k)
			took += time.Since(s)
			pgCPU += postgresCPU() - pg0
			selfCPU += processCPU() - self0
		}
		ids := float64(b.N * size)
		b.ReportMetric(ids/took.Seconds(), "ids/s")
		b.ReportMetric(float64(pgCPU.Microseconds())/ids, "pg-cpu-µs/id")
		b.ReportMetric(float64(selfCPU.Microseconds())/ids, "enricher-cpu-µs/id")
		var bytes, rows float64
		if err := pool.QueryRow(ctx, `SELECT pg_total_relation_size('control.dedup_claims')::float8,
			(SELECT count(*) FROM control.dedup_claims)::float8`).Scan(&bytes, &rows); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(bytes/rows, "disk-bytes/claim")
	})
}

// processCPU is the CPU time this process has used (user and system).
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// postgresCPU is the CPU time all postgres processes of the machine have used (user and system, from
// /proc; zero where there is no /proc): the claims' cost on the server's side.
func postgresCPU() time.Duration {
	dirs, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	var ticks int64
	for _, d := range dirs {
		if d.Name()[0] < '0' || d.Name()[0] > '9' {
			continue
		}
		b, err := os.ReadFile("/proc/" + d.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ... utime stime: fields 14 and 15, counted after the closing parenthesis.
		st := string(b)
		open, end := strings.IndexByte(st, '('), strings.LastIndexByte(st, ')')
		if open < 0 || end < 0 || st[open+1:end] != "postgres" {
			continue
		}
		f := strings.Fields(st[end+1:])
		if len(f) < 13 {
			continue
		}
		u, _ := strconv.ParseInt(f[11], 10, 64)
		s, _ := strconv.ParseInt(f[12], 10, 64)
		ticks += u + s
	}
	return time.Duration(ticks) * 10 * time.Millisecond // USER_HZ is 100 on Linux
}
