package rebuild_test

import (
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edtech-analytics/platform/libs/archive"
	"github.com/edtech-analytics/platform/libs/archive/archivetest"
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

// BenchmarkRebuildFromArchive measures a rebuild of one district from the archive, the district holding
// 100%, 10% or 1% of its partition: BENCH_REBUILD_EVENTS (300,000) learning events of the district in
// enriched files, their offsets 1, 10 or 100 apart as if the other districts' records were between them
// (those are in other districts' directories, which the rebuild never lists), archived as the archiver
// writes them: a file per day and batch of BENCH_ARCHIVE_BATCH (1,000) of the district's records. The
// live sink's offsets stand where the archive ends, so the whole history comes from the files. Reports
// the district's records applied per second and the rate at which the partition's history is covered
// (offsets/s).
func BenchmarkRebuildFromArchive(b *testing.B) {
	for _, share := range []int{100, 10, 1} {
		b.Run(fmt.Sprintf("own=%d%%", share), func(b *testing.B) { benchRebuildFromArchive(b, 100/share) })
	}
}

func benchRebuildFromArchive(b *testing.B, spacing int) {
	n, batch := 300_000, 1_000
	if v, err := strconv.Atoi(os.Getenv("BENCH_REBUILD_EVENTS")); err == nil && v > 0 {
		n = v
	}
	if v, err := strconv.Atoi(os.Getenv("BENCH_ARCHIVE_BATCH")); err == nil && v > 0 {
		batch = v
	}
	pool, _ := pgtest.New(b)
	if err := tenancy.Migrate(b.Context(), pool); err != nil {
		b.Fatal(err)
	}
	instances := fleet.New(pool, func(string) string { return "" })
	if _, err := tenantstore.New(instances).Create(b.Context(), "north", "north"); err != nil {
		b.Fatal(err)
	}
	codec, err := records.NewCodec(b.Context(), nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	_, kcfg := kafkatest.New(b)
	topic := kcfg.Topics().Enriched
	rng := rand.New(rand.NewPCG(6, 6))
	// The topic exists and holds another district's record; north's history is only in the archive.
	sinktest.Produce(b, kcfg, sinktest.Encode(b, codec, topic, sinktest.LearningEvents(rng, []string{"south"}, sinktest.Students(rng, []string{"south"}, 10), 1)))
	p := rebuild.KeyPartition("north", 4)
	recs := sinktest.Encode(b, codec, topic, sinktest.LearningEvents(rng, []string{"north"}, sinktest.Students(rng, []string{"north"}, 3000), n))
	for i, r := range recs {
		r.Partition, r.Offset = p, int64(i*spacing)
	}
	dir := b.TempDir()
	arch := archivetest.OpenDir(b, dir)
	st := archive.New(arch, codec, archive.EnrichedLayer(), nil)
	for chunk := range slices.Chunk(recs, batch) {
		if err := st.Write(b.Context(), topic, p, chunk); err != nil {
			b.Fatal(err)
		}
	}
	end := recs[len(recs)-1].Offset + 1
	if _, err := pool.Exec(b.Context(), `INSERT INTO control.consumer_offsets (consumer, topic, partition, next_offset)
		VALUES ('sink', $1, $2, $3)`, topic, p, end); err != nil {
		b.Fatal(err)
	}
	files, size := archiveSize(b, dir)
	var avro int
	for _, r := range recs {
		avro += len(r.Value)
	}
	b.Logf("archive: %d files, %.1f MiB for %d records (%.0f bytes a record; %.0f bytes of Avro a record)", files, float64(size)/(1<<20), n,
		float64(size)/float64(n), float64(avro)/float64(n))
	var applied int64
	var secs float64
	b.ResetTimer()
	for range b.N {
		reader, err := newReader(kcfg)
		if err != nil {
			b.Fatal(err)
		}
		var phases []string
		report, err := rebuild.Run(b.Context(), instances, codec, reader, rebuild.Config{TenantID: "north", Group: "sink", Kafka: kcfg,
			AcceptDiff: true, Archive: arch, BatchRecords: benchBatch(), Log: discard(), Progress: func(p rebuild.Progress) {
				if len(phases) == 0 || !strings.HasPrefix(phases[len(phases)-1], p.Phase+" ") {
					phases = append(phases, fmt.Sprintf("%s %s", p.Phase, p.Elapsed.Round(time.Millisecond)))
				}
			}})
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		b.Logf("phases began at: %s", strings.Join(phases, ", "))
		reader.Close()
		if report.FromArchive != int64(n) || report.Applied != int64(n) {
			b.Fatalf("%d records from the archive and %d applied, want %d", report.FromArchive, report.Applied, n)
		}
		if _, err := rebuild.DropOld(b.Context(), instances, "north"); err != nil && !errors.Is(err, rebuild.ErrNothingKept) {
			b.Fatal(err)
		}
		b.StartTimer()
		applied, secs = applied+report.Applied, secs+report.Elapsed.Seconds()
	}
	b.ReportMetric(float64(applied)/secs, "applied/s")
	b.ReportMetric(float64(applied)*float64(spacing)/secs, "offsets/s")
}

// archiveSize counts the Parquet files under dir and their bytes.
func archiveSize(b *testing.B, dir string) (files int, size int64) {
	b.Helper()
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".parquet") {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		files, size = files+1, size+info.Size()
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return files, size
}

// benchBatch is BENCH_REBUILD_BATCH, the records of a shadow transaction (0: the default).
func benchBatch() int {
	n, _ := strconv.Atoi(os.Getenv("BENCH_REBUILD_BATCH"))
	return n
}
