package rebuild_test

import (
	"errors"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/edtech-analytics/platform/libs/archive"
	"github.com/edtech-analytics/platform/libs/archive/archivetest"
	"github.com/edtech-analytics/platform/services/sink/internal/sinktest"
	"github.com/edtech-analytics/platform/services/sink/rebuild"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// archiveTopic archives topicRecs, the enriched topic's records by partition, below upTo[p] (all of a
// partition absent from upTo), in batches as the archiver writes them, and returns the bucket.
func (w *world) archiveTopic(t *testing.T, topicRecs map[int32][]*kgo.Record, upTo map[int32]int64) archive.Bucket {
	t.Helper()
	bucket := archivetest.OpenDir(t, t.TempDir())
	st := archive.New(bucket, w.codec, archive.EnrichedLayer(), nil)
	topic := w.kcfg.Topics().Enriched
	for p, recs := range topicRecs {
		if end, ok := upTo[p]; ok {
			var below []*kgo.Record
			for _, r := range recs {
				if r.Offset < end {
					below = append(below, r)
				}
			}
			recs = below
		}
		for batch := range slices.Chunk(recs, 700) {
			if err := st.Write(t.Context(), topic, p, batch); err != nil {
				t.Fatal(err)
			}
		}
	}
	return bucket
}

// readTopic reads every record of topic below ends, by partition.
func readTopic(t *testing.T, brokers []string, topic string, ends map[int32]int64) map[int32][]*kgo.Record {
	t.Helper()
	from := map[int32]kgo.Offset{}
	for p := range ends {
		from[p] = kgo.NewOffset().AtStart()
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: from}))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	out := map[int32][]*kgo.Record{}
	read := func() bool {
		for p, end := range ends {
			if n := len(out[p]); end > 0 && (n == 0 || out[p][n-1].Offset < end-1) {
				return false
			}
		}
		return true
	}
	for !read() {
		fetches := cl.PollFetches(t.Context())
		if err := fetches.Err(); err != nil {
			t.Fatal(err)
		}
		fetches.EachRecord(func(r *kgo.Record) { out[r.Partition] = append(out[r.Partition], r) })
	}
	return out
}

// TestRebuildFromTheArchiveNeedsNeitherRetentionNorOtherDistricts: retention removed the first records of
// north's partition, which the archive holds; the archive holds the partition up to a point, the topic the
// rest. The rebuild reads north's own archived records and then the topic's tail from the archive's
// index: the damaged tables come back exactly as the records say, the verification holds, and of the
// partition's other districts' records only the tail's were scanned.
func TestRebuildFromTheArchiveNeedsNeitherRetentionNorOtherDistricts(t *testing.T) {
	w := newWorld(t)
	evs := sinktest.GenEvents(rand.New(rand.NewPCG(11, 11)), tenants, 4000)
	ends := w.produce(t, evs, nil)
	w.sink(t)
	w.caughtUp(t, ends)
	p := rebuild.KeyPartition("north", 4)
	archivedTo := ends[p] - 200 // the archive lags the topic by 200 records
	topicRecs := readTopic(t, w.kcfg.Brokers, w.kcfg.Topics().Enriched, ends)
	bucket := w.archiveTopic(t, topicRecs, map[int32]int64{p: archivedTo})
	cl, err := kgo.NewClient(kgo.SeedBrokers(w.kcfg.Brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	offsets := kadm.Offsets{}
	offsets.Add(kadm.Offset{Topic: w.kcfg.Topics().Enriched, Partition: p, At: archivedTo - 300}) // retention
	if _, err := kadm.NewClient(cl).DeleteRecords(t.Context(), offsets); err != nil {
		t.Fatal(err)
	}
	w.damage(t)

	cfg := rebuild.Config{TenantID: "north", Group: group, Kafka: w.kcfg, AcceptDiff: true, Archive: bucket, BatchRecords: 250, Log: discard()}
	report, err := rebuild.Run(t.Context(), w.fleet, w.codec, w.reader(t), cfg)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	sinktest.AssertState(t, func(string) *pgxpool.Pool { return w.pool }, tenants, sinktest.Expected(evs))
	assertVerified(t, report, evs, "north")
	var north, archivedNorth int64
	for _, r := range topicRecs[p] {
		if string(r.Key) == "north" && r.Offset >= archivedTo {
			north++
		}
	}
	tail := ends[p] - archivedTo
	for _, ev := range evs {
		if ev.TenantID == "north" {
			archivedNorth++
		}
	}
	archivedNorth -= north
	if !report.Swapped || report.Equal || report.FromArchive != archivedNorth || report.Scanned != archivedNorth+tail {
		t.Errorf("report: swapped %v, equal %v, %d from the archive (want %d), %d scanned (want %d: north's archived records and the topic's tail)",
			report.Swapped, report.Equal, report.FromArchive, archivedNorth, report.Scanned, archivedNorth+tail)
	}
	if len(report.Truncated) != 0 {
		t.Errorf("truncated history reported: %+v", report.Truncated)
	}

	// An archive that ends before the topic starts leaves records nowhere: refused.
	short := w.archiveTopic(t, topicRecs, map[int32]int64{p: archivedTo - 400})
	cfg.Archive, cfg.AcceptDiff, cfg.DryRun = short, false, true
	if _, err := rebuild.Run(t.Context(), w.fleet, w.codec, w.reader(t), cfg); !errors.Is(err, rebuild.ErrArchiveGap) {
		t.Fatalf("Run with an archive short of the topic's start = %v, want ErrArchiveGap", err)
	}
}
