package app_test

import (
	"context"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edtech-analytics/platform/libs/archive"
	"github.com/edtech-analytics/platform/libs/archive/archivetest"
	"github.com/edtech-analytics/platform/libs/kafkax"
	"github.com/edtech-analytics/platform/libs/svc"
	"github.com/edtech-analytics/platform/libs/svc/stream"
	"github.com/edtech-analytics/platform/libs/testenv/kafkatest"
	"github.com/edtech-analytics/platform/services/archiver/app"
	"github.com/twmb/franz-go/pkg/kgo"
)

// childEnv makes this test binary run as the archiver (see TestMain).
const childEnv = "ARCHIVER_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		var cfg app.Config
		svc.Main("archiver", &cfg, func(ctx context.Context, rt svc.Runtime) error {
			return app.Run(ctx, cfg, rt, kgo.SessionTimeout(800*time.Millisecond), kgo.HeartbeatInterval(100*time.Millisecond),
				kgo.RebalanceTimeout(time.Second), kgo.FetchMaxWait(100*time.Millisecond))
		})
	}
	os.Exit(m.Run())
}

// TestEachRecordArchivedOnceUnderSIGKILL runs the archiver as a real process against the in-test kfake
// broker, and SIGKILLs it 22 times at random points of its work (each time after it published a random
// number of files, 1 to 4, since it started) while both topics fill; a last process finishes. Every
// record of raw and enriched is then in exactly one published file, nothing is left under _tmp/ that a
// reader would take, and no two files of a partition overlap.
func TestEachRecordArchivedOnceUnderSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("kills a subprocess 22 times")
	}
	_, kcfg := kafkatest.New(t)
	codec, err := stream.NewCodec(t.Context(), kcfg)
	if err != nil {
		t.Fatal(err)
	}
	producer, err := kafkax.NewClient(kcfg, kafkax.Deps{}, "", append(kafkax.ProducerOptions(), kgo.RecordPartitioner(kgo.ManualPartitioner()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	scfg := kcfg.ForService("archiver")
	topics := scfg.Topics()
	if err := kafkax.EnsureTopics(t.Context(), producer.Client, 4, 1, []kafkax.TopicSpec{{Name: topics.Raw}, {Name: topics.Enriched}}); err != nil {
		t.Fatal(err)
	}
	produced := map[string]map[int32][]*kgo.Record{topics.Raw: {}, topics.Enriched: {}}
	seq := 0
	stage := func(n int) {
		raws, enricheds := archivetest.RawEvents(seq + n)[seq:], archivetest.EnrichedEvents(seq + n)[seq:]
		var batch []*kgo.Record
		for i := range n {
			for topic, e := range map[string]any{topics.Raw: raws[i], topics.Enriched: enricheds[i]} {
				b, err := codec.Encode(e)
				if err != nil {
					t.Fatal(err)
				}
				batch = append(batch, &kgo.Record{Topic: topic, Partition: int32((seq + i) % 4), Key: []byte(raws[i].TenantID), Value: b})
			}
		}
		seq += n
		for _, r := range producer.ProduceSync(t.Context(), batch...) {
			if r.Err != nil {
				t.Fatal(r.Err)
			}
			produced[r.Record.Topic][r.Record.Partition] = append(produced[r.Record.Topic][r.Record.Partition], r.Record)
		}
	}
	dir := t.TempDir()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	start := func() *exec.Cmd {
		cmd := exec.CommandContext(t.Context(), exe)
		cmd.Env = append(os.Environ(), childEnv+"=1", "ARCHIVE_URL=file://"+dir, "KAFKA_BROKERS="+kcfg.Brokers[0],
			"KAFKA_TOPIC_PREFIX="+kcfg.TopicPrefix, "ADMIN_ADDR=127.0.0.1:0", "ARCHIVER_MAX_POLL_RECORDS="+strconv.Itoa(40+rand.IntN(200)),
			"ARCHIVER_COMPACT_INTERVAL=0", "LOG_LEVEL=warn")
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	const kills = 22
	for range kills {
		stage(150)
		before := published(t, dir)
		child := start()
		want := before + 1 + rand.IntN(4)
		waitFor(t, fmt.Sprintf("the archiver to publish %d files", want-before), func() bool { return published(t, dir) >= want })
		if err := child.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = child.Wait() // "signal: killed"
	}
	last := start()
	defer func() {
		_ = last.Process.Signal(syscall.SIGKILL)
		_ = last.Wait()
	}()
	b := archivetest.OpenDir(t, dir)
	waitFor(t, "the index at the end of every partition", func() bool {
		for topic, layer := range map[string]string{topics.Raw: "raw", topics.Enriched: "enriched"} {
			for p, recs := range produced[topic] {
				v, err := b.ReadAll(t.Context(), archive.IndexKey(layer, p))
				if err != nil {
					return false
				}
				if idx, err := strconv.ParseInt(string(v), 10, 64); err != nil || idx < recs[len(recs)-1].Offset {
					return false
				}
			}
		}
		return true
	})
	for topic, layer := range map[string]string{topics.Raw: "raw", topics.Enriched: "enriched"} {
		seen := map[[2]int64]int{}
		var positions []archive.Position
		if layer == "raw" {
			for _, f := range archivetest.ReadBucket(t, b, layer, archivetest.Raw) {
				positions = append(positions, f.Positions...)
			}
		} else {
			for _, f := range archivetest.ReadBucket(t, b, layer, archivetest.Enriched) {
				positions = append(positions, f.Positions...)
			}
		}
		for _, pos := range positions {
			seen[[2]int64{int64(pos.KafkaPartition), pos.KafkaOffset}]++
		}
		n := 0
		for p, recs := range produced[topic] {
			for _, r := range recs {
				n++
				if c := seen[[2]int64{int64(p), r.Offset}]; c != 1 {
					t.Errorf("%s partition %d offset %d archived %d times", layer, p, r.Offset, c)
				}
			}
		}
		if len(positions) != n {
			t.Errorf("%s: %d rows archived for %d records", layer, len(positions), n)
		}
	}
}

// published counts the data files published in the archive at dir.
func published(t *testing.T, dir string) int {
	t.Helper()
	n := 0
	for _, layer := range []string{"raw", "enriched"} {
		err := filepath.WalkDir(filepath.Join(dir, layer), func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return nil //nolint:nilerr // a directory not there yet, or a file renamed away while walking
			}
			if !d.IsDir() && strings.HasSuffix(path, ".parquet") {
				n++
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return n
}
