package rebuild_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"

	"github.com/edtech-analytics/platform/libs/pgutil/pgtest"
	"github.com/edtech-analytics/platform/libs/records"
	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/edtech-analytics/platform/libs/tenancy/fleet"
	tenantstore "github.com/edtech-analytics/platform/libs/tenancy/tenants"
	"github.com/edtech-analytics/platform/libs/testenv/kafkatest"
	"github.com/edtech-analytics/platform/services/sink/internal/sinktest"
	"github.com/edtech-analytics/platform/services/sink/rebuild"
)

// BenchmarkRebuild measures a rebuild of one district from BENCH_REBUILD_EVENTS (300,000) learning
// events in its partition: alone there (own=100%), and sharing it with other districts that hold 90%
// of the records (own=10%, the rest skipped by key without decoding). The live sink's offsets are set
// at the end of the topic, so the rebuild replays everything and swaps (the first run's shadow differs
// from the empty live tables: accepted, and the kept tables dropped outside the timing). Reports records
// scanned and the district's records applied per second.
func BenchmarkRebuild(b *testing.B) {
	n := 300_000
	if v, err := strconv.Atoi(os.Getenv("BENCH_REBUILD_EVENTS")); err == nil && v > 0 {
		n = v
	}
	for _, own := range []int{100, 10} {
		b.Run(fmt.Sprintf("own=%d%%", own), func(b *testing.B) {
			pool, _ := pgtest.New(b)
			if err := tenancy.Migrate(b.Context(), pool); err != nil {
				b.Fatal(err)
			}
			instances := fleet.New(pool, func(string) string { return "" })
			districts := []string{"north"}
			// Neighbours share north's partition (4 partitions): found by the same hash Kafka uses.
			for i := 0; len(districts) < 10; i++ {
				if id := fmt.Sprintf("n%d", i); rebuild.KeyPartition(id, 4) == rebuild.KeyPartition("north", 4) {
					districts = append(districts, id)
				}
			}
			for _, id := range districts {
				if _, err := tenantstore.New(instances).Create(b.Context(), id, id); err != nil {
					b.Fatal(err)
				}
			}
			codec, err := records.NewCodec(b.Context(), nil, nil)
			if err != nil {
				b.Fatal(err)
			}
			_, kcfg := kafkatest.New(b)
			rng := rand.New(rand.NewPCG(5, 5))
			mix := districts[:1]
			if own < 100 {
				mix = districts // north is one in ten
			}
			evs := sinktest.LearningEvents(rng, mix, sinktest.Students(rng, mix, 3000), n)
			ends := sinktest.Produce(b, kcfg, sinktest.Encode(b, codec, kcfg.Topics().Enriched, evs))
			for p, end := range ends {
				if _, err := pool.Exec(b.Context(), `INSERT INTO control.consumer_offsets (consumer, topic, partition, next_offset)
					VALUES ('sink', $1, $2, $3)`, kcfg.Topics().Enriched, p, end); err != nil {
					b.Fatal(err)
				}
			}
			var scanned, applied int64
			var secs float64
			b.ResetTimer()
			for range b.N {
				reader, err := newReader(kcfg)
				if err != nil {
					b.Fatal(err)
				}
				report, err := rebuild.Run(b.Context(), instances, codec, reader, rebuild.Config{TenantID: "north", Group: "sink", Kafka: kcfg,
					AcceptDiff: true, Log: discard()})
				if err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				reader.Close()
				if _, err := rebuild.DropOld(b.Context(), instances, "north"); err != nil && !errors.Is(err, rebuild.ErrNothingKept) {
					b.Fatal(err)
				}
				b.StartTimer()
				scanned, applied, secs = scanned+report.Scanned, applied+report.Applied, secs+report.Elapsed.Seconds()
			}
			b.ReportMetric(float64(scanned)/secs, "scanned/s")
			b.ReportMetric(float64(applied)/secs, "applied/s")
		})
	}
}
