package app

import (
	"context"
	"fmt"
	"github.com/edtech-analytics/platform/libs/keyring/keyringtest"
	"io"
	"log/slog"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/edtech-analytics/platform/libs/kafkax"
	"github.com/edtech-analytics/platform/libs/obs"
	"github.com/edtech-analytics/platform/libs/pgutil/pgtest"
	"github.com/edtech-analytics/platform/libs/records"
	"github.com/edtech-analytics/platform/libs/svc/stream"
	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/edtech-analytics/platform/libs/tenancy/fleet"
	"github.com/edtech-analytics/platform/libs/tenancy/privacy"
	"github.com/edtech-analytics/platform/libs/tenancy/tenants"
	"github.com/edtech-analytics/platform/libs/tenancy/timezones"
	"github.com/edtech-analytics/platform/libs/testenv/kafkatest"
	"github.com/edtech-analytics/platform/services/enricher/internal/claims"
	"github.com/edtech-analytics/platform/services/enricher/internal/control"
	"github.com/edtech-analytics/platform/services/enricher/internal/dedup"
	"github.com/edtech-analytics/platform/services/enricher/internal/enrich"
	"github.com/edtech-analytics/platform/services/enricher/internal/identity"
	"github.com/edtech-analytics/platform/services/enricher/internal/pipeline"
	"github.com/edtech-analytics/platform/services/enricher/internal/roster"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Benchmark shape: 1,500 districts (a third on COPPA, a fifth on DPDP), 40 students each, half of them
// rostered with a birth date; two classes per district; events of every learning type.
const (
	benchStudents = 40
	benchPoll     = 1000
)

// benchDistricts is 1,500, or ENRICHER_BENCH_DISTRICTS (for quicker profiling runs).
var benchDistricts = func() int {
	if n, err := strconv.Atoi(os.Getenv("ENRICHER_BENCH_DISTRICTS")); err == nil && n > 0 {
		return n
	}
	return 1500
}()

// BenchmarkEnrichWarm measures what the enricher does per record once its caches are warm — decode the
// raw record, resolve the student, join the roster context, apply the district's policy, derive fields,
// check and record the dedup entry, encode the enriched record — over 1,500 districts, with one and two
// goroutines (the pipeline processes partitions in parallel). It reports records/s and the heap the
// warm caches of 1,500 districts hold. Kafka is not involved: see BENCHMARKS.md for the end-to-end run.
func BenchmarkEnrichWarm(b *testing.B) {
	f := newBenchFixture(b)
	for _, workers := range []int{1, 2} {
		b.Run(fmt.Sprintf("goroutines=%d", workers), func(b *testing.B) {
			var next sync.Mutex
			i := 0
			take := func() []*kgo.Record {
				next.Lock()
				defer next.Unlock()
				poll := f.polls[i%len(f.polls)]
				i++
				return poll
			}
			set := dedup.New(48 * time.Hour)
			for p := range int32(workers) {
				set.Own(p, set.NewPartition(time.Now()))
			}
			b.ResetTimer()
			start, cpu := time.Now(), cpuTime()
			var wg sync.WaitGroup
			per := b.N / workers
			for w := range workers {
				wg.Go(func() {
					for done := 0; done < per; {
						poll := take()
						done += len(poll)
						if err := f.process(int32(w), poll, set); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.ReportMetric(float64(per*workers)/time.Since(start).Seconds(), "records/s")
			b.ReportMetric(float64((cpuTime()-cpu).Microseconds())/float64(per*workers), "cpu-µs/record")
			b.ReportMetric(f.heapMiB, "MiB-heap-warm-1500-districts")
		})
	}
}

type benchFixture struct {
	enr     *enrich.Enricher
	codec   *records.Codec
	polls   [][]*kgo.Record
	heapMiB float64
	seq     int64
	seqMu   sync.Mutex
}

// process runs one poll as the pipeline does, without Kafka: enrich, dedup, encode.
func (f *benchFixture) process(partition int32, poll []*kgo.Record, set *dedup.Set) error {
	f.seqMu.Lock()
	f.seq++
	round := strconv.FormatInt(f.seq, 10)
	f.seqMu.Unlock()
	now := time.Now()
	buf := make([]byte, 0, 1024)
	err := f.enr.Batch(context.Background(), poll, func(_ *kgo.Record, out enrich.Outcome) error {
		if out.Enriched == nil {
			return nil
		}
		// Every round counts as new events, so each record is checked, added and encoded.
		if dup, _ := set.SeenOrAdd(partition, out.Enriched.TenantID, out.Enriched.EventID+round, now); dup {
			return nil
		}
		var err error
		buf, err = f.codec.AppendEncode(buf[:0], out.Enriched)
		return err
	})
	set.Commit(now)
	return err
}

func newBenchFixture(b *testing.B) *benchFixture {
	b.Helper()
	ctx := context.Background()
	pool, _ := pgtest.New(b)
	if err := tenancy.Migrate(ctx, pool); err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	tenants := benchTenants(b, pool, benchDistricts)
	b.Logf("%d districts set up in %v", benchDistricts, time.Since(start).Round(time.Second))

	registry, err := control.Load(ctx, pool)
	if err != nil {
		b.Fatal(err)
	}
	codec, err := records.NewCodec(ctx, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	f := &benchFixture{codec: codec}
	rosterRecs, eventRecs := benchRecords(b, codec, benchDistricts, 0)
	for i := 0; i < len(rosterRecs); i += benchPoll {
		f.polls = append(f.polls, rosterRecs[i:min(i+benchPoll, len(rosterRecs))])
	}
	for i := 0; i < len(eventRecs); i += benchPoll {
		f.polls = append(f.polls, eventRecs[i:min(i+benchPoll, len(eventRecs))])
	}
	runtime.GC()
	before := heapInUse()
	f.enr = enrich.New(codec, enrich.Deps{Tenants: tenants, Policies: newPolicyCache(privacy.New(pool), time.Hour), Zones: timezones.New(pool),
		Identities: identity.New(fleet.NewDistrictPools(fleet.New(pool, os.Getenv)), 2_000_000), Context: roster.New(fleet.NewDistrictPools(fleet.New(pool, os.Getenv)), 1_000_000), Erased: registry, Keys: keyringtest.Over(b, pool)})
	start = time.Now()
	warm := dedup.New(48 * time.Hour)
	warm.Own(0, warm.NewPartition(time.Now()))
	for _, poll := range f.polls { // the warm-up writes identities and roster context to PostgreSQL
		if err := f.process(0, poll, warm); err != nil {
			b.Fatal(err)
		}
	}
	warm = nil
	f.polls = f.polls[(len(rosterRecs)+benchPoll-1)/benchPoll:] // measure the learning events
	f.heapMiB = float64(heapInUse()-before) / (1 << 20)
	b.Logf("caches warmed in %v: %.1f MiB of heap for %d districts, %d students", time.Since(start).Round(time.Millisecond),
		f.heapMiB, benchDistricts, benchDistricts*benchStudents)
	return f
}

// benchTenants creates n districts b0000, b0001, ... (a third on COPPA, a fifth on DPDP) and returns a
// tenant cache that knows their schemas are in place. The districts get the enricher's tables cloned
// from a migrated one: applying the whole template 1,500 times takes far longer than the benchmark.
func benchTenants(b *testing.B, pool *pgxpool.Pool, n int) *tenantCache {
	b.Helper()
	ctx := context.Background()
	store := tenants.New(fleet.New(pool, os.Getenv))
	if _, err := store.Create(ctx, "tpl", "template"); err != nil {
		b.Fatal(err)
	}
	cache := newTenantCache(store, keyringtest.Over(b, pool), time.Hour)
	b.Cleanup(func() { // before pgtest drops the database, which would time out on so many tables
		for d := range n {
			if _, err := pool.Exec(context.Background(), fmt.Sprintf("DROP SCHEMA IF EXISTS district_b%04d CASCADE", d)); err != nil {
				b.Error(err)
				return
			}
		}
	})
	for d := range n {
		id := fmt.Sprintf("b%04d", d)
		sql := "CREATE SCHEMA district_" + id + ";"
		for _, table := range []string{"students", "student_identities", "enricher_users", "enricher_demographics",
			"enricher_enrollments", "enricher_classes", "enricher_courses", "enricher_sessions", "enricher_line_items"} {
			sql += fmt.Sprintf("CREATE TABLE district_%s.%s (LIKE district_tpl.%s INCLUDING ALL);", id, table, table)
		}
		sql += "INSERT INTO control.tenants (id, name, pseudonym_key) VALUES ('" + id +
			"', 'Bench', decode(md5(random()::text) || md5(random()::text), 'hex'))"
		if _, err := pool.Exec(ctx, sql); err != nil {
			b.Fatal(err)
		}
		cache.ensured[id] = true
		template := ""
		switch {
		case d%5 == 0:
			template = privacy.TemplateDPDP
		case d%3 == 0:
			template = privacy.TemplateCOPPA
		}
		if template != "" {
			p, _ := privacy.Template(template)
			if _, err := privacy.New(pool).SetPolicy(ctx, id, p, "bench"); err != nil {
				b.Fatal(err)
			}
		}
	}
	return cache
}

// cpuTime is the CPU time (user and system) the process has used: the machine may be shared, so CPU per
// record is the steadier figure.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// benchRecords builds the roster (classes and users) and the learning events of every district.
func benchRecords(b *testing.B, codec *records.Codec, districts, firstID int) (rosterRecs, eventRecs []*kgo.Record) {
	day := time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC)
	n := firstID
	rec := func(tenant, sis, class string, payload any) *kgo.Record {
		n++
		ev := &records.RawEvent{EventID: fmt.Sprintf("00000000-0000-4000-8000-%012d", n), TenantID: tenant, SourceID: "sis",
			OccurredAt: day, ReceivedAt: day, SchemaVersion: 1, Actor: records.Actor{SISID: sis, Role: "student"}}
		if class != "" {
			ev.ClassID = &class
		}
		if err := ev.SetPayload(payload); err != nil {
			b.Fatal(err)
		}
		v, err := codec.Encode(ev)
		if err != nil {
			b.Fatal(err)
		}
		// As from the gateway: trace context in the headers, 1% of the traces sampled.
		flags := "00"
		if n%100 == 0 {
			flags = "01"
		}
		tp := fmt.Sprintf("00-%032x-%016x-%s", n+1, n+1, flags)
		return &kgo.Record{Topic: "raw", Key: []byte(tenant), Value: v, Headers: []kgo.RecordHeader{{Key: "traceparent", Value: []byte(tp)}}}
	}
	device, due, secs, pct := "chromebook", day.Add(-time.Hour), int64(1200), 75.0
	for d := range districts {
		tenant := fmt.Sprintf("b%04d", d)
		for c := range 2 {
			rosterRecs = append(rosterRecs, rec(tenant, "system", "", &records.RosterClass{SourcedID: fmt.Sprintf("c%d", c),
				Status: records.RosterActive, DateLastModified: day, SchoolSourcedID: "sch1", CourseSourcedID: "math",
				Grades: []string{"07"}}))
		}
		for s := range benchStudents {
			sis := fmt.Sprintf("S%03d", s)
			if s%2 == 0 {
				birth := day.AddDate(-8-s%10, 0, 0)
				rosterRecs = append(rosterRecs, rec(tenant, sis, "", &records.RosterUser{SourcedID: sis, Status: records.RosterActive,
					DateLastModified: day, EnabledUser: true, GivenName: "Given", FamilyName: "Family", BirthDate: &birth,
					Roles: []records.RosterRole{{RoleType: "primary", Role: "student", OrgSourcedID: "sch1"}}, Grades: []string{"07"},
					Metadata: map[string]string{privacy.DefaultConsentKey: "granted"}}))
			}
			class := fmt.Sprintf("c%d", s%2)
			eventRecs = append(eventRecs,
				rec(tenant, sis, class, &records.Attendance{Status: records.AttendancePresent, Date: day}),
				rec(tenant, sis, class, &records.AssignmentSubmission{AssignmentID: "hw1", DueAt: &due, SubmittedAt: day, Status: "submitted"}),
				rec(tenant, sis, "", &records.SessionEvent{Action: records.SessionLogout, Device: &device, DurationSeconds: &secs}),
				rec(tenant, sis, class, &records.ContentView{ContentID: "video-1", ContentType: "video", DurationSeconds: 300, PercentComplete: &pct}),
			)
		}
	}
	// Interleave districts the way partitions do: consecutive records belong to different districts.
	perDistrict := 4 * benchStudents
	mixed := make([]*kgo.Record, 0, len(eventRecs))
	for i := range perDistrict {
		for d := range districts {
			mixed = append(mixed, eventRecs[d*perDistrict+i])
		}
	}
	return rosterRecs, mixed
}

// benchTxnTimeout is the transaction timeout, 10s (the pipeline's default) unless the environment says.
func benchTxnTimeout() time.Duration {
	d, _ := time.ParseDuration(os.Getenv("ENRICHER_BENCH_TXN_TIMEOUT"))
	if d <= 0 {
		d = 10 * time.Second
	}
	return d
}

// BenchmarkPipelineEndToEnd runs the transactional pipeline against an in-process kfake broker (which
// shares the two cores) over 1,500 districts. The roster and a first round of events (first sightings,
// which warm the caches) go through a first pipeline; two more rounds of as many events with new ids are
// then in raw before a second pipeline on the same warm caches starts; the window runs from the moment 5%
// of them has committed to enriched until all have, and the rate is the records committed
// inside it. Run it with -benchtime=1x: the workload is fixed.
// ENRICHER_BENCH_TXN_TIMEOUT sets the transaction timeout (default 10s).
func BenchmarkPipelineEndToEnd(b *testing.B) {
	ctx := context.Background()
	pool, _ := pgtest.New(b)
	if err := tenancy.Migrate(ctx, pool); err != nil {
		b.Fatal(err)
	}
	tenants := benchTenants(b, pool, benchDistricts)
	registry, err := control.Load(ctx, pool)
	if err != nil {
		b.Fatal(err)
	}
	_, kcfg := kafkatest.New(b)
	kcfg.Partitions = 12
	cl, err := kafkax.NewClient(kcfg, kafkax.Deps{}, "", kafkax.ProducerOptions()...)
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	if err := kafkax.EnsureTopics(ctx, cl.Client, kcfg.Partitions, 1, kafkax.PlatformTopics(kcfg)); err != nil {
		b.Fatal(err)
	}
	codec, err := stream.NewCodec(ctx, kcfg)
	if err != nil {
		b.Fatal(err)
	}
	tel, err := obs.Init(ctx, "enricher") // as in Run: an SDK tracer provider, parent-based sampling
	if err != nil {
		b.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if os.Getenv("ENRICHER_BENCH_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	enr := enrich.New(codec, enrich.Deps{Tenants: tenants, Policies: newPolicyCache(privacy.New(pool), time.Hour), Zones: timezones.New(pool),
		Identities: identity.New(fleet.NewDistrictPools(fleet.New(pool, os.Getenv)), 2_000_000), Context: roster.New(fleet.NewDistrictPools(fleet.New(pool, os.Getenv)), 1_000_000), Erased: registry, Keys: keyringtest.Over(b, pool)})
	var mu sync.Mutex
	committed := 0
	// newPipeline is the service's pipeline on the shared, warm enricher: a restarted one restores its
	// dedup state from the changelog as a new owner of the partitions does.
	deps := kafkax.Deps{Log: log, Tracer: obs.SampledChildrenOnly(tel.Tracer), Propagator: tel.Propagator}
	newReader := func() *kgo.Client {
		r, err := kafkax.NewReader(kcfg, deps)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(r.Close)
		return r.Client
	}
	newPipeline := func() (*pipeline.Pipeline, pipeline.NewSession) {
		pipe := pipeline.New(pipeline.Config{Group: "bench", TransactionTimeout: benchTxnTimeout(),
			OnCommit: func(s pipeline.Stats) {
				mu.Lock()
				committed += s.Enriched + s.Duplicates + s.Dead + s.Erased + s.NoConsent
				mu.Unlock()
			}}, kcfg.Topics(), log, codec, enr, dedup.New(48*time.Hour), claims.New(pool, 48*time.Hour), nil,
			pipeline.Changelog{Restore: newReader(), Backfill: newReader()}, nil)
		txn := kafkax.TransactConfig{Group: "bench", Topic: kcfg.Topics().Raw, TransactionalID: "bench-" + randomSuffix(), Timeout: benchTxnTimeout()}
		return pipe, func() (*kgo.GroupTransactSession, error) {
			return kafkax.NewTransactionalSession(kcfg, deps, txn, pipe.Rebalance(),
				append([]kgo.Opt{kgo.RecordPartitioner(kafkax.NewPartitioner(kcfg.Topics().Dedup))}, kafkatest.GroupOpts()...)...)
		}
	}
	run := func() (stop func()) {
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		pipe, sessions := newPipeline()
		go func() { done <- pipe.Run(rctx, sessions) }()
		return func() {
			cancel()
			if err := <-done; err != nil {
				b.Error(err)
			}
		}
	}
	produce := func(recs []*kgo.Record) {
		for _, r := range recs {
			r.Topic = kcfg.Topics().Raw
		}
		for i := 0; i < len(recs); i += 10_000 {
			if err := cl.ProduceSync(ctx, recs[i:min(i+10_000, len(recs))]...).FirstErr(); err != nil {
				b.Fatal(err)
			}
		}
	}
	// waitFor waits until n records have committed and returns how many had then.
	waitFor := func(n int) int {
		start := time.Now()
		for {
			mu.Lock()
			c := committed
			mu.Unlock()
			if c >= n {
				return c
			}
			if time.Since(start) > 15*time.Minute {
				b.Fatalf("%d of %d records committed", c, n)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	// Warm-up: the roster and a first round of events (first sightings) through one pipeline, which then
	// stops. The timed round is then put in raw whole, and a second pipeline (the same warm caches, its
	// dedup state restored from the changelog) drains it: the window measures the enricher draining a
	// backlog, not the test's producer, and starts once 5% of the round has committed (the restore and
	// the group join are behind it).
	rosterRecs, warmRecs := benchRecords(b, codec, benchDistricts, 0)
	_, timed := benchRecords(b, codec, benchDistricts, 10_000_000)
	_, more := benchRecords(b, codec, benchDistricts, 20_000_000)
	timed = append(timed, more...) // two rounds: a window of seconds, not one
	warmStart := time.Now()
	stop := run()
	produce(append(rosterRecs, warmRecs...))
	base := waitFor(len(rosterRecs) + len(warmRecs))
	warmUp := time.Since(warmStart)
	stop()
	produce(timed)
	total := base + len(timed)
	stop = run()
	defer stop()
	first := waitFor(base + len(timed)/20)
	b.ResetTimer()
	if path := os.Getenv("ENRICHER_BENCH_CPUPROFILE"); path != "" { // the timed part only
		f, err := os.Create(path)
		if err != nil {
			b.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			b.Fatal(err)
		}
		defer pprof.StopCPUProfile()
	}
	start, cpu := time.Now(), cpuTime()
	waitFor(total)
	took := time.Since(start)
	n := total - first // the records committed inside the window
	b.ReportMetric(float64(n)/took.Seconds(), "records/s")
	b.ReportMetric(float64((cpuTime()-cpu).Microseconds())/float64(n), "cpu-µs/record")
	b.ReportMetric(float64(heapInUse())/(1<<20), "MiB-heap-in-use")
	b.Logf("warm-up (roster and %d events, first sightings) took %v; the last %d events took %v", len(warmRecs), warmUp.Round(time.Millisecond),
		n, took.Round(time.Millisecond))
}
