package chstore_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edtech-analytics/platform/libs/kafkatest"
	"github.com/edtech-analytics/platform/libs/kafkax"
	"github.com/edtech-analytics/platform/libs/records"
	"github.com/edtech-analytics/platform/services/aggregator/internal/chstore"
	"github.com/edtech-analytics/platform/services/aggregator/internal/synth"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// pipeline is a Kafka cluster whose enriched topic holds synthetic events, ready to consume.
type pipeline struct {
	kcfg   kafkax.Config
	topic  string
	deps   kafkax.Deps
	facts  []records.EnrichedEvent
	ends   map[int32]int64          // offset after the last record, per partition
	traces map[string]trace.TraceID // tenant -> trace of the producer span its events were sent under
	parts  []int32
	batch  int // MaxPollRecords of the consumers
}

// newPipeline produces n events of five tenants (each tenant's under one producer span), a roster record
// per tenant and one undecodable record into a 4-partition topic, keyed by tenant.
func newPipeline(t *testing.T, codec *records.Codec, seed uint64, n int) *pipeline {
	t.Helper()
	_, kcfg := kafkatest.New(t)
	tp := sdktrace.NewTracerProvider()
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	p := &pipeline{
		kcfg: kcfg, topic: kcfg.Topics().Enriched, ends: map[int32]int64{}, traces: map[string]trace.TraceID{},
		deps:  kafkax.Deps{Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Tracer: tp, Propagator: propagation.TraceContext{}},
		parts: []int32{0, 1, 2, 3}, batch: 500,
	}
	p.facts, _ = synth.Events(seed, 5, n)

	cl, err := kafkax.NewClient(kcfg, p.deps, "", kafkax.ProducerOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := kafkax.EnsureTopics(t.Context(), cl.Client, len(p.parts), 1, []kafkax.TopicSpec{{Name: p.topic}}); err != nil {
		t.Fatal(err)
	}
	spans := map[string]context.Context{}
	var recs []*kgo.Record
	add := func(ev *records.EnrichedEvent) {
		ctx, ok := spans[ev.TenantID]
		if !ok {
			var span trace.Span
			ctx, span = tp.Tracer("test").Start(context.Background(), "produce "+ev.TenantID)
			span.End()
			spans[ev.TenantID], p.traces[ev.TenantID] = ctx, span.SpanContext().TraceID()
		}
		b, err := codec.Encode(ev)
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, &kgo.Record{Topic: p.topic, Key: []byte(ev.TenantID), Value: b, Context: ctx})
	}
	for i := range p.facts {
		add(&p.facts[i])
		if i%(n/5) == 0 {
			roster := synth.Roster(p.facts[i].TenantID, i)
			add(&roster)
		}
	}
	recs = append(recs, &kgo.Record{Topic: p.topic, Key: []byte("district-1"), Value: []byte("garbage")})
	results := cl.ProduceSync(t.Context(), recs...)
	if err := results.FirstErr(); err != nil {
		t.Fatal(err)
	}
	for _, r := range results {
		p.ends[r.Record.Partition] = max(p.ends[r.Record.Partition], r.Record.Offset+1)
	}
	return p
}

// start runs a store consumer in the group until the returned stop is called.
func (p *pipeline) start(t *testing.T, store kafkax.Store) (stop func()) {
	t.Helper()
	c, err := kafkax.NewStoreConsumer(p.kcfg, p.deps, kafkax.ConsumerConfig{
		Group: "aggregator", Topic: p.topic, MaxPollRecords: p.batch,
		RetryMin: 10 * time.Millisecond, RetryMax: 100 * time.Millisecond, Extra: kafkatest.GroupOpts(),
	}, store, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
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
	if diff := synth.Diff(synth.Want(p.facts), got(t, conn)); len(diff) > 0 {
		t.Fatalf("rollups differ from the input (%d keys):\n%s", len(diff), strings.Join(diff, "\n"))
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

// crashingStore stores a batch and then, every nth successful write, reports failure as if the process
// died between the ClickHouse insert and anything after it (marking, committing, the next poll).
type crashingStore struct {
	*chstore.Store
	mu          sync.Mutex
	every       int // 0: never
	writes      int
	crashes     int
	interrupted int // writes cut short by the consumer stopping
}

func (c *crashingStore) Write(ctx context.Context, topic string, partition int32, recs []*kgo.Record) error {
	err := c.Store.Write(ctx, topic, partition, recs)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		if ctx.Err() != nil {
			c.interrupted++
		}
		return err
	}
	if c.writes++; c.every > 0 && c.writes%c.every == 0 {
		c.crashes++
		return errCrash
	}
	return nil
}

func (c *crashingStore) stopCrashing() { c.mu.Lock(); c.every = 0; c.mu.Unlock() }

// TestConsumeCrashesNeitherLoseNorDoubleCount stops the consumer at random points (mid-batch, mid-insert)
// and fails writes after their insert succeeded, restarting it until it catches up, in several trials;
// the rollups must still equal the input exactly and every event must be stored once.
func TestConsumeCrashesNeitherLoseNorDoubleCount(t *testing.T) {
	for trial := range 3 {
		t.Run(fmt.Sprintf("trial-%d", trial), func(t *testing.T) {
			seed := uint64(100 + trial)
			store, conn, codec := newStore(t)
			p := newPipeline(t, codec, seed, 1200)
			p.batch = 60 // many small batches: more points to crash at
			rng := rand.New(rand.NewPCG(seed, 7))
			crashy := &crashingStore{Store: store, every: 2}

			restarts := 0
			for ; restarts < 5 && !p.caughtUp(t, store); restarts++ {
				stop := p.start(t, crashy)
				time.Sleep(time.Duration(200+rng.IntN(300)) * time.Millisecond)
				stop() // cancels whatever write is in flight
			}
			crashy.stopCrashing()
			stop := p.start(t, crashy)
			p.waitCaughtUp(t, store)
			stop()
			t.Logf("%d restarts, %d writes failed after their insert, %d interrupted", restarts, crashy.crashes, crashy.interrupted)
			if crashy.crashes == 0 || restarts < 2 {
				t.Fatalf("the trial crashed %d times over %d restarts: it proves nothing", crashy.crashes, restarts)
			}

			if n := count(t, conn, "SELECT count() FROM events"); n != uint64(len(p.facts)) {
				t.Fatalf("stored %d events, want %d", n, len(p.facts))
			}
			if n := count(t, conn, "SELECT uniqExact(event_id) FROM events"); n != uint64(len(p.facts)) {
				t.Fatalf("stored %d distinct events, want %d", n, len(p.facts))
			}
			if diff := synth.Diff(synth.Want(p.facts), got(t, conn)); len(diff) > 0 {
				t.Fatalf("rollups differ from the input (%d keys):\n%s", len(diff), strings.Join(diff, "\n"))
			}
		})
	}
}
