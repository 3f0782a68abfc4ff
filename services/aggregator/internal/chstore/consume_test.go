package chstore_test

import (
	"context"
	"errors"
	"fmt"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edtech-analytics/platform/libs/kafkax"
	"github.com/edtech-analytics/platform/libs/records"
	"github.com/edtech-analytics/platform/libs/testenv/kafkatest"
	"github.com/edtech-analytics/platform/services/aggregator/internal/chstore"
	"github.com/edtech-analytics/platform/services/aggregator/internal/synth"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// pipeline is a Kafka cluster whose enriched topic holds synthetic events, ready to consume.
type pipeline struct {
	kcfg     kafkax.Config
	topic    string
	deps     kafkax.Deps
	tp       *sdktrace.TracerProvider
	producer *kafkax.Client
	parts    []int32
	batch    int // MaxPollRecords of the consumers

	mu     sync.Mutex
	facts  []records.EnrichedEvent
	ends   map[int32]int64            // offset after the last record, per partition
	traces map[string]trace.TraceID   // tenant -> trace of the producer span its events were sent under
	spans  map[string]context.Context // tenant -> context of that span
	dead   deadLetters
}

// deadLetters counts the records the consumers dead-lettered, by value.
type deadLetters struct {
	mu sync.Mutex
	n  map[string]int
}

func (d *deadLetters) letter(_ context.Context, r *kgo.Record, _ string, _ error) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.n == nil {
		d.n = map[string]int{}
	}
	d.n[string(r.Value)]++
	return nil
}

func (d *deadLetters) count(value string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.n[value]
}

// newPipeline produces n events of five tenants (each tenant's under one producer span), a roster record
// per tenant and one undecodable record into a 4-partition topic, keyed by tenant.
func newPipeline(t *testing.T, codec *records.Codec, seed uint64, n int) *pipeline {
	t.Helper()
	p := emptyPipeline(t)
	facts, _ := synth.Events(seed, 5, n)
	var extra []*kgo.Record
	for i := range facts {
		if i%(n/5) == 0 {
			roster := synth.Roster(facts[i].TenantID, i)
			extra = append(extra, p.record(t, codec, &roster))
		}
	}
	extra = append(extra, &kgo.Record{Topic: p.topic, Key: []byte("district_1"), Value: []byte("garbage")})
	p.send(t, codec, facts, extra...)
	return p
}

// emptyPipeline creates the 4-partition topic and a producer for it.
func emptyPipeline(t testing.TB) *pipeline {
	t.Helper()
	_, kcfg := kafkatest.New(t)
	tp := sdktrace.NewTracerProvider()
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	p := &pipeline{
		kcfg: kcfg, topic: kcfg.Topics().Enriched, ends: map[int32]int64{}, traces: map[string]trace.TraceID{},
		spans: map[string]context.Context{}, tp: tp,
		deps:  kafkax.Deps{Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Tracer: tp, Propagator: propagation.TraceContext{}},
		parts: []int32{0, 1, 2, 3}, batch: 500,
	}
	cl, err := kafkax.NewClient(kcfg, p.deps, "", kafkax.ProducerOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	p.producer = cl
	if err := kafkax.EnsureTopics(t.Context(), cl.Client, len(p.parts), 1, []kafkax.TopicSpec{{Name: p.topic}}); err != nil {
		t.Fatal(err)
	}
	return p
}

// record encodes ev as a record keyed by its tenant, under the tenant's producer span.
func (p *pipeline) record(t *testing.T, codec *records.Codec, ev *records.EnrichedEvent) *kgo.Record {
	t.Helper()
	p.mu.Lock()
	ctx, ok := p.spans[ev.TenantID]
	if !ok {
		var span trace.Span
		ctx, span = p.tp.Tracer("test").Start(context.Background(), "produce "+ev.TenantID)
		span.End()
		p.spans[ev.TenantID], p.traces[ev.TenantID] = ctx, span.SpanContext().TraceID()
	}
	p.mu.Unlock()
	b, err := codec.Encode(ev)
	if err != nil {
		t.Fatal(err)
	}
	return &kgo.Record{Topic: p.topic, Key: []byte(ev.TenantID), Value: b, Context: ctx}
}

// send produces facts (and extra records after them), and counts them in the pipeline.
func (p *pipeline) send(t *testing.T, codec *records.Codec, facts []records.EnrichedEvent, extra ...*kgo.Record) {
	t.Helper()
	recs := make([]*kgo.Record, 0, len(facts)+len(extra))
	for i := range facts {
		recs = append(recs, p.record(t, codec, &facts[i]))
	}
	results := p.producer.ProduceSync(context.Background(), append(recs, extra...)...)
	if err := results.FirstErr(); err != nil {
		t.Error(err)
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.facts = append(p.facts, facts...)
	for _, r := range results {
		p.ends[r.Record.Partition] = max(p.ends[r.Record.Partition], r.Record.Offset+1)
	}
}

// start runs a store consumer in the group until the returned stop is called.
func (p *pipeline) start(t *testing.T, store kafkax.Store) (stop func()) {
	t.Helper()
	c, err := kafkax.NewStoreConsumer(p.deps.Log, kafkax.ConsumerConfig{
		Group: "aggregator", Topic: p.topic, MaxPollRecords: p.batch,
		RetryMin: 10 * time.Millisecond, RetryMax: 100 * time.Millisecond,
		DeadLetter: p.dead.letter,
	}, store, nil)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kafkax.NewGroupConsumer(p.kcfg, p.deps, "aggregator", p.topic, kafkax.Batching{}, c.Rebalance(), kafkatest.GroupOpts()...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx, cl) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("consumer: %v", err)
		}
	}
}

// caughtUp reports whether the store holds every partition up to its end.
func (p *pipeline) caughtUp(t *testing.T, store *chstore.Store) bool {
	t.Helper()
	next, err := store.NextOffsets(t.Context(), p.topic, p.parts)
	if err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return maps.Equal(next, p.ends)
}

func (p *pipeline) waitCaughtUp(t *testing.T, store *chstore.Store) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !p.caughtUp(t, store) {
		if time.Now().After(deadline) {
			next, _ := store.NextOffsets(t.Context(), p.topic, p.parts)
			t.Fatalf("store at %v, want %v", next, p.ends)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestConsumeKeepsRollupsExact runs the consumer over a few thousand events of five tenants and proves
// the rollups equal what the input says, that a student active on several days counts once per day and
// once over the span, and that every row carries its producer's trace id.
func TestConsumeKeepsRollupsExact(t *testing.T) {
	store, conn, codec := newStore(t)
	p := newPipeline(t, codec, 11, 3000)
	stop := p.start(t, store)
	p.waitCaughtUp(t, store)
	stop()

	if n := count(t, conn, "SELECT count() FROM events"); n != uint64(len(p.facts)) {
		t.Fatalf("stored %d events, want %d", n, len(p.facts))
	}
	if n := p.dead.count("garbage"); n != 1 {
		t.Fatalf("the undecodable record was dead-lettered %d times, want once", n)
	}
	want := synth.Want(p.facts)
	if diff := synth.Diff(want, got(t, conn)); len(diff) > 0 {
		t.Fatalf("rollups differ from the input (%d keys):\n%s", len(diff), strings.Join(diff, "\n"))
	}
	levels := map[string]int{}
	scored := 0
	for k, m := range want.Metrics {
		levels[k.Level]++
		if m.Assessments > 1 && m.Quantiles[0] < m.Quantiles[4] {
			scored++
		}
	}
	if len(levels) != 4 || scored == 0 {
		t.Fatalf("the input covers metrics levels %v and %d keys with a score spread: it proves little", levels, scored)
	}

	// The regular student is active on every day; over the whole span the states merge to distinct
	// students, not the sum of the daily counts.
	_, regular := synth.Events(11, 5, 6)
	if n := count(t, conn, "SELECT uniqExact(toDate(occurred_at)) FROM events WHERE toString(student_id) = ?", regular.Student); n != 6 {
		t.Fatalf("the regular student is active on %d days, want 6", n)
	}
	students := map[string]bool{}
	for _, ev := range p.facts {
		if ev.TenantID == regular.Tenant && ev.SchoolID != nil && *ev.SchoolID == regular.School && ev.Actor.Role == "student" {
			students[ev.Actor.InternalID] = true
		}
	}
	var daily uint64
	for k, v := range synth.Want(p.facts).SchoolDaily {
		if k.Tenant == regular.Tenant && k.School == regular.School {
			daily += v.ActiveStudents
		}
	}
	span := count(t, conn, "SELECT uniqExactMerge(active_students) FROM school_daily WHERE tenant_id = ? AND school_id = ?", regular.Tenant, regular.School)
	if span != uint64(len(students)) || span >= daily {
		t.Fatalf("students active over the span = %d, want %d (the daily counts sum to %d)", span, len(students), daily)
	}

	for tenant, want := range p.traces {
		if n := count(t, conn, "SELECT countIf(trace_id != ?) FROM events WHERE tenant_id = ?", want.String(), tenant); n != 0 {
			t.Errorf("%d events of %s do not carry the producer's trace %s", n, tenant, want)
		}
	}
}

var errCrash = errors.New("simulated crash after the insert")

// crashingStore kills the consumer at a chosen write: either right after its ClickHouse insert succeeded,
// before anything else happens (marking, the Kafka commit, the next poll), or in the middle of the write
// after a random delay, which cuts the insert short wherever it is.
type crashingStore struct {
	*chstore.Store
	mu      sync.Mutex
	rng     *rand.Rand
	die     func() // cancels the running consumer; nil when disarmed
	at      int    // the write (counted from 1 since armed) that dies
	mid     bool   // die in the middle of that write instead of after it
	writes  int
	armed   int // consumers armed so far
	crashes int // writes that died after their insert
	cuts    int // writes cut short in the middle
}

func (c *crashingStore) Write(ctx context.Context, topic string, partition int32, recs []*kgo.Record) error {
	c.mu.Lock()
	c.writes++
	die, mid := c.die, c.mid
	if c.writes < c.at {
		die = nil
	} else {
		c.die = nil // once per consumer: a designated write that failed passes the duty on
	}
	if die != nil && mid {
		c.cuts++
		time.AfterFunc(time.Duration(c.rng.IntN(150))*time.Millisecond, die)
	}
	c.mu.Unlock()

	err := c.Store.Write(ctx, topic, partition, recs)
	if die == nil || mid {
		return err
	}
	if err != nil { // the designated write failed on its own (e.g. fenced under load): the next write dies instead
		c.mu.Lock()
		if c.die == nil {
			c.die = die
		}
		c.mu.Unlock()
		return err
	}
	c.mu.Lock()
	c.crashes++
	c.mu.Unlock()
	die()
	return errCrash
}

// arm makes a random one of the next four writes kill the consumer through die: the first consumer
// always after an insert, later ones in the middle of the write one time in three.
func (c *crashingStore) arm(die func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.mid = c.armed > 0 && c.rng.IntN(3) == 0
	c.die, c.writes, c.at = die, 0, 1+c.rng.IntN(4)
	c.armed++
}

// run runs one consumer until ctx ends and returns once it has stopped.
func (p *pipeline) run(t *testing.T, ctx context.Context, store kafkax.Store) {
	t.Helper()
	c, err := kafkax.NewStoreConsumer(p.deps.Log, kafkax.ConsumerConfig{
		Group: "aggregator", Topic: p.topic, MaxPollRecords: p.batch,
		RetryMin: 10 * time.Millisecond, RetryMax: 100 * time.Millisecond,
		DeadLetter: p.dead.letter,
	}, store, nil)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kafkax.NewGroupConsumer(p.kcfg, p.deps, "aggregator", p.topic, kafkax.Batching{}, c.Rebalance(), kafkatest.GroupOpts()...)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Run(ctx, cl); err != nil {
		t.Errorf("consumer: %v", err)
	}
}

// TestConsumeCrashesNeitherLoseNorDoubleCount runs 20 trials, each with its own seed, database and Kafka
// cluster. In each, consumer after consumer is killed at a random one of its first writes: right after
// the ClickHouse insert succeeded and before anything else (marking, the Kafka commit, the next poll), or
// in the middle of the write at a random moment. A fresh consumer takes over after every kill until the
// store has caught up. Every rollup must then equal what the input says, and every event be stored once.
func TestConsumeCrashesNeitherLoseNorDoubleCount(t *testing.T) {
	const trials = 20
	for trial := range trials {
		t.Run(fmt.Sprintf("trial-%02d", trial), func(t *testing.T) {
			t.Parallel()
			seed := uint64(100 + trial)
			store, conn, codec := newStore(t)
			p := newPipeline(t, codec, seed, 80)
			p.batch = 8 // a few small batches per partition: more points to crash at
			crashy := &crashingStore{Store: store, rng: rand.New(rand.NewPCG(seed, 8))}

			runs := 0
			for ; !p.caughtUp(t, store); runs++ {
				if runs == 40 {
					t.Fatalf("not caught up after %d consumers", runs)
				}
				ctx, cancel := context.WithCancel(context.Background())
				crashy.arm(cancel)
				caughtUp := make(chan struct{})
				go func() { // a consumer that caught up before its crash stops too
					defer close(caughtUp)
					for ctx.Err() == nil && !p.caughtUp(t, store) {
						time.Sleep(50 * time.Millisecond)
					}
					cancel()
				}()
				p.run(t, ctx, crashy)
				cancel()
				<-caughtUp
			}
			t.Logf("%d consumers: %d died after an insert, %d in the middle of a write", runs, crashy.crashes, crashy.cuts)
			if crashy.crashes == 0 {
				t.Fatalf("no consumer died after its insert: the trial proves nothing")
			}

			assertStoredOnce(t, conn, p.facts)
		})
	}
}

// assertStoredOnce fails unless events holds every one of facts once and every rollup equals what facts say.
func assertStoredOnce(t *testing.T, conn driver.Conn, facts []records.EnrichedEvent) {
	t.Helper()
	if n := count(t, conn, "SELECT count() FROM events"); n != uint64(len(facts)) {
		t.Fatalf("stored %d events, want %d", n, len(facts))
	}
	if n := count(t, conn, "SELECT uniqExact(event_id) FROM events"); n != uint64(len(facts)) {
		t.Fatalf("stored %d distinct events, want %d", n, len(facts))
	}
	if diff := synth.Diff(synth.Want(facts), got(t, conn)); len(diff) > 0 {
		t.Fatalf("rollups differ from the input (%d keys):\n%s", len(diff), strings.Join(diff, "\n"))
	}
}
