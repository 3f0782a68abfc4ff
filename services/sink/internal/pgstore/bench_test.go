package pgstore_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/edtech-analytics/platform/libs/pgutil/pgtest"
	"github.com/edtech-analytics/platform/libs/records"
	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/edtech-analytics/platform/libs/tenancy/fleet"
	"github.com/edtech-analytics/platform/libs/tenancy/tenants"
	"github.com/edtech-analytics/platform/services/sink/internal/pgstore"
	"github.com/edtech-analytics/platform/services/sink/internal/sinktest"
	"github.com/edtech-analytics/platform/services/sink/rebuild"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Benchmark shape: the enriched topic's partitions, the records the consumer hands over per partition
// per poll (the sink's default 30,000 per poll across 12 partitions), and the students of all districts together.
const (
	benchPartitions = 12
	benchBatch      = 2_500 // the sink's default poll (30,000 records) over 12 partitions
	benchStudents   = 450_000
)

func benchInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

// benchRecords encodes events as records of the partitions their districts hash to (as Kafka's
// partitioner puts them), with offsets from base.
func benchRecords(b *testing.B, codec *records.Codec, evs []*records.EnrichedEvent, base map[int32]int64) map[int32][]*kgo.Record {
	b.Helper()
	out := map[int32][]*kgo.Record{}
	for _, ev := range evs {
		v, err := codec.Encode(ev)
		if err != nil {
			b.Fatal(err)
		}
		p := rebuild.KeyPartition(ev.TenantID, benchPartitions)
		out[p] = append(out[p], &kgo.Record{Key: []byte(ev.TenantID), Value: v, Partition: p, Offset: base[p]})
		base[p]++
	}
	return out
}

// benchDistricts makes a database with n districts (created 8 at a time) and returns a pool and their
// ids, with a pool opened as the sink opens its own. With BENCH_DATABASE_URL set, that database is used and kept, and only the districts
// it lacks are created, so that repeated runs skip the minutes of provisioning.
func benchDistricts(b *testing.B, n int) (*pgxpool.Pool, []string) {
	b.Helper()
	url := os.Getenv("BENCH_DATABASE_URL")
	if url == "" {
		_, url = pgtest.New(b)
	}
	pool, err := pgstore.Connect(b.Context(), url) // as the sink connects
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(pool.Close)
	if err := tenancy.Migrate(b.Context(), pool); err != nil {
		b.Fatal(err)
	}
	store := tenants.New(fleet.New(pool, os.Getenv))
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("d%04d", i)
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i := range ids {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if _, err := store.Create(b.Context(), ids[i], ids[i]); err != nil && !errors.Is(err, tenants.ErrExists) {
				b.Error(err)
			}
		})
	}
	wg.Wait()
	return pool, ids
}

// BenchmarkWrite measures the sink's store writing learning events spread evenly over 10 and over
// BENCH_DISTRICTS (1,500) districts with 450,000 students in all, in the batches the consumer hands it:
// 12 partitions, BENCH_BATCH (2,500) records per partition per poll, partitions written concurrently as
// the consumer does. A pass writes BENCH_EVENTS (120,000) events; the 1,500 districts are created once
// (minutes) and the 10 are the first of them. Each case first gets BENCH_WARMUP (2) untimed passes (a
// long-running sink's connections have the districts' relations in their caches, and the rows exist);
// then each iteration times one pass of each case, in alternating order, so both see the same
// background work of the server. Reports each case's median µs/event and events/s, the ratio of the
// medians (1,500 over 10), and the warm-up passes' µs/event.
func BenchmarkWrite(b *testing.B) {
	big, events, batch := benchInt("BENCH_DISTRICTS", 1500), benchInt("BENCH_EVENTS", 120_000), benchInt("BENCH_BATCH", benchBatch)
	writers := benchInt("BENCH_WRITERS", benchPartitions) // partitions written at once
	warmups := benchInt("BENCH_WARMUP", 2)                // untimed passes first
	pool, ids := benchDistricts(b, big)
	codec, err := records.NewCodec(b.Context(), nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	type workload struct {
		n        int
		store    *pgstore.Store
		rng      *rand.Rand
		students map[string][]string
		base     map[int32]int64
		times    []float64 // µs/event of each timed pass
	}
	// pass writes one pass's events as the consumer would and returns its µs/event; generating and
	// encoding the records is not timed.
	pass := func(w *workload) float64 {
		parts := benchRecords(b, codec, sinktest.LearningEvents(w.rng, ids[:w.n], w.students, events), w.base)
		start := time.Now()
		var wg sync.WaitGroup
		sem := make(chan struct{}, writers)
		for p, recs := range parts {
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				for len(recs) > 0 {
					part := recs[:min(batch, len(recs))]
					recs = recs[len(part):]
					if err := w.store.Write(b.Context(), "enriched", p, part); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		return float64(time.Since(start).Microseconds()) / float64(events)
	}
	b.StopTimer()
	var cases []*workload
	for _, n := range []int{10, big} {
		store, err := pgstore.New(fmt.Sprintf("bench-%d", n), pgstore.Deps{Fleet: fleet.New(pool, noEnv), Codec: codec, Log: discard()})
		if err != nil {
			b.Fatal(err)
		}
		rng := rand.New(rand.NewPCG(2, uint64(n)))
		// The same students in all, spread over the districts: the data is as big either way, and only
		// how many schemas it lives in differs.
		w := &workload{n: n, store: store, rng: rng, students: sinktest.Students(rng, ids[:n], benchStudents/n), base: map[int32]int64{}}
		var warm float64
		for range warmups {
			warm += pass(w)
		}
		b.ReportMetric(warm/float64(warmups), fmt.Sprintf("warmup-µs/event-%d", n))
		cases = append(cases, w)
	}
	for i := range b.N {
		for j := range cases {
			w := cases[(i+j)%len(cases)]
			b.StartTimer()
			w.times = append(w.times, pass(w))
			b.StopTimer()
		}
	}
	median := func(v []float64) float64 {
		v = slices.Sorted(slices.Values(v))
		return (v[(len(v)-1)/2] + v[len(v)/2]) / 2
	}
	for _, w := range cases {
		m := median(w.times)
		b.ReportMetric(m, fmt.Sprintf("µs/event-%d", w.n))
		b.ReportMetric(1e6/m, fmt.Sprintf("events/s-%d", w.n))
	}
	b.ReportMetric(median(cases[1].times)/median(cases[0].times), "ratio")
}
