package pgstore_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edtech-analytics/platform/libs/kafkax"
	"github.com/edtech-analytics/platform/libs/records"
	"github.com/edtech-analytics/platform/libs/tenancy/fleet"
	"github.com/edtech-analytics/platform/libs/tenancy/tenants"
	"github.com/edtech-analytics/platform/libs/testenv/kafkatest"
	"github.com/edtech-analytics/platform/services/sink/internal/pgstore"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

func TestConsumeAppliesExactState(t *testing.T) {
	pool, codec := setup(t)
	_, kcfg := kafkatest.New(t)
	topic := kcfg.Topics().Enriched
	rng := rand.New(rand.NewPCG(1, 2))
	evs := genEvents(rng, testTenants, 3000)
	// A district nobody registered shares the partitions; its records must not hold the others up.
	ghosts := genEvents(rng, []string{"ghost"}, 50)
	recs := encode(t, codec, topic, slices.Concat(evs[:1500], ghosts, evs[1500:]))
	ends := produce(t, kcfg, recs)

	store := newStore(t, pool, codec)
	stop := startConsumer(t, t.Context(), kcfg, store, 150)
	waitFor(t, "the sink to reach the end of every partition", func() bool { return caughtUp(t, store, topic, ends) })
	stop()

	want := expected(evs)
	var late, onTime, activity int
	for k, v := range want {
		switch {
		case strings.HasPrefix(k, "submission/") && strings.Contains(v, "|true|"):
			late++
		case strings.HasPrefix(k, "submission/") && strings.Contains(v, "|false|"):
			onTime++
		case strings.HasPrefix(k, "activity/"):
			activity++
		}
	}
	if late == 0 || onTime == 0 || activity != 36 {
		t.Fatalf("generator: %d late, %d on-time submissions, %d students; want some of each and 36 students", late, onTime, activity)
	}
	assertState(t, one(pool), want)
	var ghostSchema bool
	if err := pool.QueryRow(t.Context(), "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'district_ghost')").Scan(&ghostSchema); err != nil {
		t.Fatal(err)
	}
	if ghostSchema {
		t.Error("a schema was created for an unknown tenant")
	}
}

// position is the sum of the store's offsets over the test topic's 4 partitions.
func position(t *testing.T, store kafkax.Store, topic string) int64 {
	t.Helper()
	got, err := store.NextOffsets(t.Context(), topic, []int32{0, 1, 2, 3})
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, v := range got {
		n += v
	}
	return n
}

// faults counts the failures a crashingStore injected.
type faults struct{ cut, failedAfterCommit, crashedAfterCommit atomic.Int64 }

// crashingStore is the real store with failures injected: now and then a write is cut off at a random
// point (its context ends, mid-transaction or not), or it reports a failure after the commit succeeded
// (as if the process died between the PostgreSQL commit and the Kafka commit), possibly killing its
// consumer too.
type crashingStore struct {
	*pgstore.Store
	faults *faults
	mu     sync.Mutex
	rng    *rand.Rand
	crash  func() // stops the running consumer
}

func (s *crashingStore) Write(ctx context.Context, topic string, p int32, recs []*kgo.Record) error {
	s.mu.Lock()
	n, cut := s.rng.IntN(20), time.Duration(s.rng.IntN(4000))*time.Microsecond
	s.mu.Unlock()
	if n >= 16 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cut)
		defer cancel()
	}
	if err := s.Store.Write(ctx, topic, p, recs); err != nil {
		if n >= 16 {
			s.faults.cut.Add(1)
		}
		return err
	}
	switch n {
	case 0: // the consumer pauses the partition and re-seeks it to the stored offset
		s.faults.failedAfterCommit.Add(1)
		return errors.New("simulated failure after commit")
	case 1: // the next consumer resumes from the stored offset, ahead of the group's committed one
		s.faults.crashedAfterCommit.Add(1)
		s.mu.Lock()
		s.crash()
		s.mu.Unlock()
		return errors.New("simulated crash after commit")
	}
	return nil
}

func TestCrashesAndRestartsKeepStateExact(t *testing.T) {
	var f faults
	for trial := range 3 {
		// Odd trials place south on a second instance: a write then commits on one instance and may be
		// cut off on the other.
		t.Run(fmt.Sprintf("trial%d", trial), func(t *testing.T) {
			fe := setupFleet(t, trial%2 == 1)
			codec := fe.codec
			_, kcfg := kafkatest.New(t)
			topic := kcfg.Topics().Enriched
			rng := rand.New(rand.NewPCG(uint64(trial), 42))
			evs := genEvents(rng, testTenants, 2500)
			ends := produce(t, kcfg, encode(t, codec, topic, evs))

			store := &crashingStore{Store: fe.store(t, 200), faults: &f, rng: rand.New(rand.NewPCG(uint64(trial), 7))}
			for runs := 1; !caughtUp(t, store, topic, ends); runs++ {
				if runs > 100 {
					t.Fatal("no end after 100 runs")
				}
				ctx, cancel := context.WithCancel(t.Context())
				store.mu.Lock()
				store.crash = cancel
				store.mu.Unlock()
				before := position(t, store, topic)
				stop := startConsumer(t, ctx, kcfg, store, 25)
				// Stop mid-stream a random while after this run made progress (a slow machine must not
				// turn the trial into restarts only), unless a simulated crash comes first.
				for deadline := time.Now().Add(20 * time.Second); position(t, store, topic) == before && ctx.Err() == nil; {
					if time.Now().After(deadline) {
						t.Fatal("a run made no progress in 20s")
					}
					time.Sleep(5 * time.Millisecond)
				}
				select {
				case <-time.After(time.Duration(100+rng.IntN(400)) * time.Millisecond):
				case <-ctx.Done():
				}
				stop()
				cancel()
			}
			assertState(t, fe.poolOf, expected(evs))
		})
	}
	t.Logf("writes cut off %d, failed after commit %d, crashed after commit %d",
		f.cut.Load(), f.failedAfterCommit.Load(), f.crashedAfterCommit.Load())
	if f.cut.Load() == 0 || f.failedAfterCommit.Load() == 0 || f.crashedAfterCommit.Load() == 0 {
		t.Error("the trials did not exercise every kind of failure")
	}
}

func TestConcurrentWritersOfOnePartitionNeverDoubleApply(t *testing.T) {
	pool, codec := setup(t)
	const topic = "enriched"
	rng := rand.New(rand.NewPCG(3, 4))
	evs := genEvents(rng, testTenants, 2000)
	recs := encode(t, codec, topic, evs)
	for i, r := range recs {
		r.Partition, r.Offset = 5, int64(i)
	}
	chunks := func(r *rand.Rand) [][]*kgo.Record {
		var out [][]*kgo.Record
		for i := 0; i < len(recs); {
			n := 1 + r.IntN(250)
			out = append(out, recs[i:min(i+n, len(recs))])
			i += n
		}
		return out
	}
	// Two writers that believe they own the partition split it the same way (they collide on every
	// batch), a third splits it its own way. Each writes the whole partition from offset 0.
	plans := [][][]*kgo.Record{chunks(rand.New(rand.NewPCG(9, 9))), chunks(rand.New(rand.NewPCG(9, 9))), chunks(rand.New(rand.NewPCG(8, 8)))}
	var wg sync.WaitGroup
	errs := make(chan error, len(plans))
	for _, plan := range plans {
		store := newStore(t, pool, codec) // separate stores, as in separate processes
		wg.Go(func() {
			for _, batch := range plan {
				if err := store.Write(t.Context(), topic, 5, batch); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	next, err := newStore(t, pool, codec).NextOffsets(t.Context(), topic, []int32{5, 6})
	if err != nil {
		t.Fatal(err)
	}
	if len(next) != 1 || next[5] != int64(len(recs)) {
		t.Fatalf("stored offsets %v, want only partition 5 at %d", next, len(recs))
	}
	assertState(t, one(pool), expected(evs))
}

// TestWriteSkipsWhatItCannotApplyAndKeepsGoing: records of unknown or deleted districts are skipped;
// undecodable, invalid and unsupported ones are refused and dead-lettered once each, with their reason,
// while the rest of the batch applies and the offset moves past them all.
func TestWriteSkipsWhatItCannotApplyAndKeepsGoing(t *testing.T) {
	pool, codec := setup(t)
	ctx := t.Context()
	if _, err := tenants.New(fleet.New(pool, os.Getenv)).Create(ctx, "gone", "Closed district"); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, "UPDATE control.tenants SET deleted_at = now() WHERE id = 'gone'"); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(5, 6))
	good := genEvents(rng, []string{"north"}, 40)
	bad := map[string][]*records.EnrichedEvent{
		pgstore.SkipUnknownTenant: genEvents(rng, []string{"ghost", "gone"}, 10),
		pgstore.SkipInvalid:       genEvents(rng, []string{"north"}, 3),
		pgstore.SkipUnsupported:   genEvents(rng, []string{"north"}, 2),
	}
	bad[pgstore.SkipInvalid][0].Actor.InternalID = "not-a-uuid"
	bad[pgstore.SkipInvalid][1].TenantID = "North!"
	bad[pgstore.SkipInvalid][2].Type, bad[pgstore.SkipInvalid][2].Attendance = records.TypeAttendance, nil
	for _, ev := range bad[pgstore.SkipUnsupported] {
		ev.Type = "quiz.started" // a type from a newer producer
	}
	var all []*records.EnrichedEvent
	for i, ev := range good { // interleave the bad records between the good ones
		all = append(all, ev)
		for _, evs := range bad {
			if i < len(evs) {
				all = append(all, evs[i])
			}
		}
	}
	recs := encode(t, codec, "enriched", all)
	recs = append(recs, &kgo.Record{Value: []byte("not avro")})
	for i, r := range recs {
		r.Partition, r.Offset = 0, int64(100+i)
	}

	// Each record carries its consume span, as kotel leaves it; the write span links to them.
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1}, SpanID: trace.SpanID{2}, TraceFlags: trace.FlagsSampled})
	recs[0].Context = trace.ContextWithSpanContext(ctx, sc)
	spans := tracetest.NewSpanRecorder()
	reader := sdkmetric.NewManualReader()
	store, err := pgstore.New(group, pgstore.Deps{Fleet: fleet.New(pool, noEnv), Codec: codec, Log: discard(),
		Tracer: sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans)),
		Meter:  sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))})
	if err != nil {
		t.Fatal(err)
	}
	dead := map[string]int{}
	deadLetter := func(_ context.Context, _ *kgo.Record, reason string, _ error) error {
		dead[reason]++
		return nil
	}
	if err := kafkax.WriteDeadLettering(ctx, store, "enriched", 0, recs, deadLetter, nil); err != nil {
		t.Fatalf("Write: %v", err)
	}
	if want := map[string]int{records.ReasonInvalidField: 3, records.ReasonOther: 2, records.ReasonUndecodable: 1}; !maps.Equal(dead, want) {
		t.Errorf("dead-lettered %v, want %v", dead, want)
	}

	next, err := store.NextOffsets(ctx, "enriched", []int32{0})
	if err != nil {
		t.Fatal(err)
	}
	if want := recs[len(recs)-1].Offset + 1; next[0] != want {
		t.Errorf("next offset %d, want %d: skipped records must still be consumed", next[0], want)
	}
	assertState(t, one(pool), expected(good))
	var goneRows int
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM district_gone.student_activity").Scan(&goneRows); err != nil {
		t.Fatal(err)
	}
	if goneRows != 0 {
		t.Errorf("deleted tenant got %d activity rows", goneRows)
	}

	wantSkipped := map[string]int64{pgstore.SkipUnknownTenant: 10, pgstore.SkipDeadLettered: 6}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		t.Fatal(err)
	}
	gotSkipped, applied := map[string]int64{}, int64(0)
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			sum, _ := m.Data.(metricdata.Sum[int64])
			for _, dp := range sum.DataPoints {
				switch m.Name {
				case "sink_records_skipped":
					reason, _ := dp.Attributes.Value(attribute.Key("reason"))
					gotSkipped[reason.AsString()] += dp.Value
				case "sink_records_applied":
					applied += dp.Value
				}
			}
		}
	}
	if !maps.Equal(gotSkipped, wantSkipped) || applied != int64(len(good)) {
		t.Errorf("metrics: skipped %v, applied %d; want %v, %d", gotSkipped, applied, wantSkipped, len(good))
	}

	ended := spans.Ended()
	if len(ended) == 0 || ended[0].Name() != "sink.write" || len(ended[0].Links()) != 1 || ended[0].Links()[0].SpanContext.TraceID() != sc.TraceID() {
		t.Errorf("want the first sink.write span linked to the record's trace, got %d spans", len(ended))
	}

	// Writing the same records again changes nothing: they are below the stored offset.
	if err := store.Write(ctx, "enriched", 0, recs); err != nil {
		t.Fatalf("second Write: %v", err)
	}
	assertState(t, one(pool), expected(good))
}
