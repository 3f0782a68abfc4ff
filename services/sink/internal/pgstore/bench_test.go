package pgstore_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/edtech-analytics/platform/libs/pgutil/pgtest"
	"github.com/edtech-analytics/platform/libs/records"
	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/edtech-analytics/platform/services/sink/internal/pgstore"
	"github.com/edtech-analytics/platform/services/sink/internal/sinktest"
	"github.com/edtech-analytics/platform/services/sink/rebuild"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Benchmark shape: the enriched topic's partitions, the records the consumer hands over per partition
// per poll (10,000 per poll across 12 partitions), and the students of all districts together.
const (
	benchPartitions = 12
	benchBatch      = 833
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
	store := tenancy.NewStore(pool)
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
			if _, err := store.CreateTenant(b.Context(), ids[i], ids[i]); err != nil && !errors.Is(err, tenancy.ErrTenantExists) {
				b.Error(err)
			}
		})
	}
	wg.Wait()
	return pool, ids
}

// BenchmarkWrite measures the sink's store writing learning events spread evenly over 10 and over
// BENCH_DISTRICTS (1,500) districts with 450,000 students in all, in the batches the consumer hands it:
// 12 partitions, BENCH_BATCH (833) records per partition per poll, partitions written concurrently as
// the consumer does. Each iteration writes BENCH_EVENTS (120,000) events; the 1,500 districts are
// created once (minutes) and the 10 are the first of them. Reports events/s and µs/event (wall time
// over the whole run).
func BenchmarkWrite(b *testing.B) {
	big, events, batch := benchInt("BENCH_DISTRICTS", 1500), benchInt("BENCH_EVENTS", 120_000), benchInt("BENCH_BATCH", benchBatch)
	writers := benchInt("BENCH_WRITERS", benchPartitions) // partitions written at once
	pool, ids := benchDistricts(b, big)
	codec, err := records.NewCodec(b.Context(), nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	for _, n := range []int{10, big} {
		b.Run(fmt.Sprintf("districts=%d", n), func(b *testing.B) {
			store, err := pgstore.New(fmt.Sprintf("bench-%d", n), pgstore.Deps{Fleet: tenancy.NewFleet(pool, noEnv), Codec: codec, Log: discard()})
			if err != nil {
				b.Fatal(err)
			}
			rng := rand.New(rand.NewPCG(2, uint64(n)))
			// The same students in all, spread over the districts: the data is as big either way, and
			// only how many schemas it lives in differs.
			students := sinktest.Students(rng, ids[:n], benchStudents/n)
			base := map[int32]int64{}
			var total time.Duration
			var written int
			for range b.N {
				b.StopTimer()
				parts := benchRecords(b, codec, sinktest.LearningEvents(rng, ids[:n], students, events), base)
				b.StartTimer()
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
							if err := store.Write(b.Context(), "enriched", p, part); err != nil {
								b.Error(err)
								return
							}
						}
					})
				}
				wg.Wait()
				total += time.Since(start)
				written += events
			}
			b.ReportMetric(float64(written)/total.Seconds(), "events/s")
			b.ReportMetric(float64(total.Microseconds())/float64(written), "µs/event")
		})
	}
}
