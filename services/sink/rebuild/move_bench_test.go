package rebuild_test

import (
	"context"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/edtech-analytics/platform/libs/kafkax"
	"github.com/edtech-analytics/platform/libs/tenancy/fleet"
	"github.com/edtech-analytics/platform/libs/testenv/kafkatest"
	"github.com/edtech-analytics/platform/services/sink/internal/sinktest"
	"github.com/edtech-analytics/platform/services/sink/rebuild"
)

// BenchmarkMove measures moving north, a district of BENCH_MOVE_EVENTS (1,000,000) learning events over
// BENCH_MOVE_STUDENTS (20,000) students, between main and pg2 (back and forth, the old copy dropped
// outside the timing) while the live sink goes on writing about 5,000 events a second of north and a
// district of pg2 in north's partition. Reports the time of a move (ns/op) and how long north's writes
// were paused (paused_ms, the longest over the moves), and checks afterwards that north's
// student_activity counts exactly the events sent.
func BenchmarkMove(b *testing.B) {
	n, students := 1_000_000, 20_000
	if v, err := strconv.Atoi(os.Getenv("BENCH_MOVE_EVENTS")); err == nil && v > 0 {
		n = v
	}
	if v, err := strconv.Atoi(os.Getenv("BENCH_MOVE_STUDENTS")); err == nil && v > 0 {
		students = v
	}
	w := newFleetWorld(b)
	w.addTarget(b)
	neighbour := w.neighbour(b)
	rng := rand.New(rand.NewPCG(8, 8))
	who := sinktest.Students(rng, []string{"north", neighbour}, students)
	evs := sinktest.LearningEvents(rng, []string{"north"}, who, n)
	ends := map[int32]int64{}
	for chunk := range slices.Chunk(evs, 100_000) {
		for p, end := range sinktest.Produce(b, w.kcfg, sinktest.Encode(b, w.codec, w.kcfg.Topics().Enriched, chunk)) {
			ends[p] = max(ends[p], end)
		}
	}
	w.benchSink(b)
	p := rebuild.KeyPartition("north", 4)
	sinktest.WaitFor(b, "the sink to apply north's events", func() bool { return w.storedOffset(b, w.pool, p) >= ends[p] })
	sent := int64(n)

	var (
		mu   sync.Mutex
		stop = make(chan struct{})
		wg   sync.WaitGroup
	)
	live := rand.New(rand.NewPCG(9, 9))
	wg.Go(func() {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			batch := sinktest.LearningEvents(live, []string{"north", neighbour}, who, 500)
			for p, end := range sinktest.Produce(b, w.kcfg, sinktest.Encode(b, w.codec, w.kcfg.Topics().Enriched, batch)) {
				mu.Lock()
				ends[p] = max(ends[p], end)
				mu.Unlock()
			}
			mu.Lock()
			sent += 250
			mu.Unlock()
		}
	})
	var paused time.Duration
	to := target
	b.ResetTimer()
	for range b.N {
		reader, err := newReader(w.kcfg)
		if err != nil {
			b.Fatal(err)
		}
		report, err := rebuild.Move(b.Context(), w.fleet, w.codec, reader, rebuild.MoveConfig{TenantID: "north", To: to, Group: group,
			Kafka: w.kcfg, Log: discard()})
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		reader.Close()
		paused = max(paused, report.Paused)
		var rows int64
		for _, c := range report.Copied {
			rows += c
		}
		b.Logf("moved to %s in %s, writes paused %s, %d rows copied, %d records applied after the copy",
			to, report.Elapsed.Round(time.Millisecond), report.Paused.Round(time.Millisecond), rows, report.Applied)
		if _, err := rebuild.DropMoved(b.Context(), w.fleet, "north"); err != nil {
			b.Fatal(err)
		}
		if to == target {
			to = fleet.MainInstance
		} else {
			to = target
		}
		b.StartTimer()
	}
	b.StopTimer()
	b.ReportMetric(float64(paused.Milliseconds()), "paused_ms")
	close(stop)
	wg.Wait()
	sinktest.WaitFor(b, "the sink to apply the events", func() bool {
		return w.storedOffset(b, w.poolOf(b)("north"), p) >= ends[p] && w.storedOffset(b, w.pg2, p) >= ends[p]
	})
	var counted int64
	if err := w.poolOf(b)("north").QueryRow(context.Background(), "SELECT sum(event_count) FROM district_north.student_activity").Scan(&counted); err != nil {
		b.Fatal(err)
	}
	if counted != sent {
		b.Fatalf("north counts %d events, %d were sent", counted, sent)
	}
}

// benchSink runs the live sink with the production poll size until the benchmark ends.
func (w *fleetWorld) benchSink(b testing.TB) {
	c, err := kafkax.NewStoreConsumer(discard(), kafkax.ConsumerConfig{
		Group: group, Topic: w.kcfg.Topics().Enriched, MaxPollRecords: 30_000,
		RetryMin: 10 * time.Millisecond, RetryMax: 100 * time.Millisecond,
	}, w.store, nil)
	if err != nil {
		b.Fatal(err)
	}
	cl, err := kafkax.NewGroupConsumer(w.kcfg, kafkax.Deps{Log: discard()}, group, w.kcfg.Topics().Enriched, kafkax.Batching{}, c.Rebalance(), kafkatest.GroupOpts()...)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(ctx, cl) }()
	b.Cleanup(func() { cancel(); <-done })
}
