package chstore_test

import (
	"flag"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"testing"

	"github.com/edtech-analytics/platform/libs/records"
	"github.com/edtech-analytics/platform/services/aggregator/internal/chstore"
	"github.com/edtech-analytics/platform/services/aggregator/internal/synth"
)

var benchWriteBatch = flag.Int("write.batch", 5000, "events per Store.Write in BenchmarkWriteLayouts")

// BenchmarkWriteLayouts writes batches of -write.batch events of five districts into one partition
// through Store.Write, as the consumer does, in each layout: one server (one private ClickHouse), and the
// replicated cluster (two shards of two replicas and ZooKeeper, all on this machine). Each iteration is one
// batch; its events are encoded untimed. The cluster's figure includes its two Keeper writes and an
// insert that waits for every shard, and its servers share the machine's cores: it prices the layout's
// exactly-once machinery, not what a cluster of separate machines would ingest.
func BenchmarkWriteLayouts(b *testing.B) {
	for _, layout := range []string{"single", "cluster"} {
		b.Run(layout, func(b *testing.B) {
			var store *chstore.Store
			if layout == "single" {
				store, _, _ = newStore(b)
			} else {
				e := newClusterEnv(b, fmt.Sprintf("agg_cluster_bench_%d", rand.Uint32()))
				store = e.store(b, slog.New(slog.DiscardHandler))
			}
			codec, err := records.NewCodec(b.Context(), nil, nil)
			if err != nil {
				b.Fatal(err)
			}
			n := *benchWriteBatch
			b.ResetTimer()
			for i := range b.N {
				b.StopTimer()
				evs, _ := synth.Events(uint64(i)+1, 5, n)
				recs := facts(b, codec, 0, int64(i*n), evs)
				b.StartTimer()
				if err := store.Write(b.Context(), topic, 0, recs); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "events/s")
		})
	}
}
