package archive_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"math/rand/v2"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edtech-analytics/platform/libs/archive"
	"github.com/edtech-analytics/platform/libs/archive/archivetest"
	"github.com/edtech-analytics/platform/libs/records"
	"github.com/parquet-go/parquet-go"
	"github.com/twmb/franz-go/pkg/kgo"
	"gocloud.dev/blob"
	"gocloud.dev/blob/fileblob"
)

// openDir opens a file bucket on a new temporary directory.
func openDir(t *testing.T) (string, *blob.Bucket) {
	t.Helper()
	dir := t.TempDir()
	b, err := fileblob.OpenBucket(dir, archive.FileOptions())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Error(err)
		}
	})
	return dir, b
}

// writeBatches archives recs (of one partition) in batches of 1 to maxBatch records, so that each
// tenant and day gets many small files.
func writeBatches[T any](t *testing.T, st *archive.Store[T], layer string, recs []*kgo.Record, rng *rand.Rand, maxBatch int) {
	t.Helper()
	for off := 0; off < len(recs); {
		end := min(off+1+rng.IntN(maxBatch), len(recs))
		if err := st.Write(t.Context(), layer, recs[0].Partition, recs[off:end]); err != nil {
			t.Fatal(err)
		}
		off = end
	}
}

// readVisible reads the files archive.Files lists, as a reader of the archive would, and returns the
// positions of their rows by key.
func readVisible(t *testing.T, b archive.Bucket, layer string) map[string][]archive.Position {
	t.Helper()
	files, err := archive.Files(t.Context(), b, layer+"/")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]archive.Position{}
	for _, f := range files {
		data, err := b.ReadAll(t.Context(), f.Key)
		if err != nil {
			t.Fatal(err)
		}
		rows, err := parquet.Read[archive.RawRow](bytes.NewReader(data), int64(len(data)))
		if err != nil {
			t.Fatalf("reading %s: %v", f.Key, err)
		}
		for _, r := range rows {
			out[f.Key] = append(out[f.Key], r.Position)
		}
	}
	return out
}

// checkVisibleOnce checks that the files readers see hold each of recs exactly once.
func checkVisibleOnce(t *testing.T, b archive.Bucket, recs []*kgo.Record) {
	t.Helper()
	seen := map[int64]int{}
	for key, ps := range readVisible(t, b, "raw") {
		for _, p := range ps {
			seen[p.KafkaOffset]++
			if string(p.Record) != string(recs[p.KafkaOffset].Value) {
				t.Errorf("%s: offset %d holds other bytes", key, p.KafkaOffset)
			}
		}
	}
	for _, r := range recs {
		if seen[r.Offset] != 1 {
			t.Errorf("offset %d seen %d times", r.Offset, seen[r.Offset])
		}
	}
}

// dataKeys lists the data files under dir, covered ones too.
func dataKeys(t *testing.T, b archive.Bucket, layer string) []string {
	t.Helper()
	keys, err := b.List(t.Context(), layer+"/")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, k := range keys {
		if _, ok := archive.ParseKey(k); ok {
			out = append(out, k)
		}
	}
	return out
}

// closedAt is an instant at which the first two days of archivetest's events are closed (with no grace)
// and the third is not.
var closedAt = archivetest.Day.Add(3*24*time.Hour - time.Hour)

// TestCompactMergesClosedDays archives two partitions in small batches, compacts, and checks that the
// directories of closed days now hold one file per partition (a few with a small target), named by
// their offsets, rows in offset order, each record exactly once; that open days are untouched; and that
// a second run finds nothing to do.
func TestCompactMergesClosedDays(t *testing.T) {
	codec, err := records.NewCodec(t.Context(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name   string
		target int64
	}{{"one file a partition", 0}, {"small target", 40 << 10}} {
		t.Run(tt.name, func(t *testing.T) {
			ctx := t.Context()
			dir, bb := openDir(t)
			b := archive.Blob{B: bb}
			rng := rand.New(rand.NewPCG(1, 2))
			st := archive.New(b, codec, archive.RawLayer(), nil)
			all := map[int32][]*kgo.Record{}
			for _, p := range []int32{0, 3} {
				all[p] = rawRecords(t, codec, p, 600)
				writeBatches(t, st, "raw", all[p], rng, 30)
			}
			before := dataKeys(t, b, "raw")
			c := archive.NewCompactor(b, archive.RawLayer(), archive.CompactOptions{TargetBytes: tt.target}, nil)
			stats, err := c.Run(ctx, closedAt)
			if err != nil {
				t.Fatal(err)
			}
			if stats.FilesWritten == 0 || stats.FilesMerged <= stats.FilesWritten || stats.BytesWritten == 0 || stats.Skipped != 0 {
				t.Fatalf("stats = %+v", stats)
			}
			// A merged file is smaller than its inputs (one footer, one compression): with a target
			// of a few small files, merged files are merged again until two add up to more than it.
			for run := 0; tt.target > 0; run++ {
				again, err := c.Run(ctx, closedAt)
				if err != nil {
					t.Fatal(err)
				}
				if again.FilesWritten == 0 {
					break
				}
				if run == 5 {
					t.Fatal("compaction does not settle")
				}
			}
			after := dataKeys(t, b, "raw")
			perDir := map[string]int{}
			for _, k := range after {
				f, _ := archive.ParseKey(k)
				perDir[fmt.Sprintf("%s/%d", path.Dir(k), f.Partition)]++
			}
			for d, n := range perDir {
				open := strings.Contains(d, "date=2026-03-04")
				switch {
				case open:
				case tt.target == 0 && n != 1:
					t.Errorf("%s: %d files after compaction, want 1", d, n)
				case n > 4:
					t.Errorf("%s: %d files after compaction", d, n)
				}
			}
			for _, k := range before {
				if strings.Contains(k, "date=2026-03-04") && !slices.Contains(after, k) {
					t.Errorf("%s, of an open day, was compacted", k)
				}
			}
			// Each file named by its rows, rows in offset order; every record once.
			files := archivetest.ReadLayer(t, dir, "raw", archivetest.Raw)
			if len(files) != len(after) {
				t.Fatalf("%d files left that another covers", len(after)-len(files))
			}
			seen := map[[2]int64]int{}
			for _, f := range files {
				if !slices.IsSortedFunc(f.Positions, func(a, b archive.Position) int { return int(a.KafkaOffset - b.KafkaOffset) }) {
					t.Errorf("%s: rows not in offset order", f.Key)
				}
				for _, p := range f.Positions {
					seen[[2]int64{int64(p.KafkaPartition), p.KafkaOffset}]++
				}
			}
			for p, recs := range all {
				for _, r := range recs {
					if n := seen[[2]int64{int64(p), r.Offset}]; n != 1 {
						t.Errorf("partition %d offset %d archived %d times", p, r.Offset, n)
					}
				}
			}
			again, err := c.Run(ctx, closedAt)
			if err != nil || again.FilesWritten != 0 || again.FilesRemoved != 0 {
				t.Fatalf("second run: %+v, %v", again, err)
			}
			if got := dataKeys(t, b, "raw"); !slices.Equal(got, after) {
				t.Fatal("a second run changed the files")
			}
		})
	}
}

// TestCompactCrashAnywhere compacts an archive of many small files with a bucket that dies at a random
// operation, over and over until a run completes. After every crash the files readers see hold each
// record exactly once; in the end the compacted directories hold no covered file and _tmp/ is empty.
func TestCompactCrashAnywhere(t *testing.T) {
	codec, err := records.NewCodec(t.Context(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	const p, n, trials = 1, 300, 16
	recs := rawRecords(t, codec, p, n)
	for trial := range trials {
		t.Run(fmt.Sprint(trial), func(t *testing.T) {
			ctx := t.Context()
			rng := rand.New(rand.NewPCG(uint64(trial), 11))
			dir, bb := openDir(t)
			b := archive.Blob{B: bb}
			writeBatches(t, archive.New(b, codec, archive.RawLayer(), nil), "raw", recs, rng, 25)
			opts := archive.CompactOptions{TargetBytes: 30 << 10}
			crashes := 0
			for restart := 0; ; restart++ {
				if restart > 100 {
					t.Fatal("no progress after 100 restarts")
				}
				cb := &crashing{Bucket: b, left: -1, indexLeft: -1, after: rng.IntN(2) == 0}
				if restart < 5 {
					cb.left = rng.IntN(120)
				}
				_, err := archive.NewCompactor(cb, archive.RawLayer(), opts, nil).Run(ctx, closedAt)
				if errors.Is(err, errCrash) {
					crashes++
					checkVisibleOnce(t, b, recs)
					continue
				}
				if err != nil {
					t.Fatal(err)
				}
				break
			}
			if crashes == 0 {
				t.Fatal("no crash: the trial tested nothing")
			}
			// One more run deletes what the last crash left covered, then nothing is covered.
			if _, err := archive.NewCompactor(b, archive.RawLayer(), opts, nil).Run(ctx, closedAt); err != nil {
				t.Fatal(err)
			}
			if files, keys := archivetest.ReadLayer(t, dir, "raw", archivetest.Raw), dataKeys(t, b, "raw"); len(files) != len(keys) {
				t.Errorf("%d files left that another covers", len(keys)-len(files))
			}
			checkVisibleOnce(t, b, recs)
			_ = filepath.WalkDir(filepath.Join(dir, "_tmp"), func(path string, d fs.DirEntry, err error) error {
				if err == nil && !d.IsDir() && !strings.HasSuffix(path, ".attrs") {
					t.Errorf("left under _tmp/: %s", path)
				}
				return nil
			})
		})
	}
}

// TestWriterAfterCompaction archives, compacts, puts the small files back as a crash before their
// deletion would leave them, and rewinds the index as a crash before its write would: the writer then
// archives the batches again into compacted directories and writes nothing twice.
func TestWriterAfterCompaction(t *testing.T) {
	codec, err := records.NewCodec(t.Context(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	const p = 0
	recs := rawRecords(t, codec, p, 900)
	dir, bb := openDir(t)
	b := archive.Blob{B: bb}
	rng := rand.New(rand.NewPCG(5, 5))
	writeBatches(t, archive.New(b, codec, archive.RawLayer(), nil), "raw", recs, rng, 30)
	small := map[string][]byte{}
	for _, k := range dataKeys(t, b, "raw") {
		if small[k], err = b.ReadAll(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	// Every day closed: all of it is compacted.
	if _, err := archive.NewCompactor(b, archive.RawLayer(), archive.CompactOptions{}, nil).Run(ctx, closedAt.Add(48*time.Hour)); err != nil {
		t.Fatal(err)
	}
	i := 0
	for _, k := range slices.Sorted(maps.Keys(small)) {
		if i++; i%3 == 0 { // some of them back, as a crash in the middle of the deletions leaves them
			if err := b.WriteAll(ctx, k, small[k]); err != nil {
				t.Fatal(err)
			}
		}
	}
	before := dataKeys(t, b, "raw")
	if err := b.WriteAll(ctx, archive.IndexKey("raw", p), []byte(strconv.Itoa(100))); err != nil {
		t.Fatal(err)
	}
	st := archive.New(b, codec, archive.RawLayer(), nil)
	next, err := st.NextOffsets(ctx, "raw", []int32{p})
	if err != nil || next[p] != 101 {
		t.Fatalf("NextOffsets = %v, %v", next, err)
	}
	writeBatches(t, st, "raw", recs[101:], rng, 50)
	if got := dataKeys(t, b, "raw"); !slices.Equal(got, before) {
		t.Fatalf("the replay wrote files:\n%v\nwant\n%v", got, before)
	}
	checkExactlyOnce(t, archivetest.ReadLayer(t, dir, "raw", archivetest.Raw), recs)
	checkVisibleOnce(t, b, recs)
}

// hooked is a bucket that runs hook once, just before the first operation that match accepts.
type hooked struct {
	archive.Bucket
	match func(op, key string) bool
	hook  func()
	done  bool
}

func (h *hooked) at(op, key string) {
	if !h.done && h.match(op, key) {
		h.done = true
		h.hook()
	}
}

func (h *hooked) WriteAll(ctx context.Context, key string, p []byte) error {
	h.at("write", key)
	return h.Bucket.WriteAll(ctx, key, p)
}

func (h *hooked) Copy(ctx context.Context, dst, src string) error {
	h.at("copy", dst)
	return h.Bucket.Copy(ctx, dst, src)
}

func (h *hooked) Delete(ctx context.Context, key string) error {
	h.at("delete", key)
	return h.Bucket.Delete(ctx, key)
}

// TestCompactionsAtOnce runs a second compaction of the same archive in the middle of a first, at each
// kind of step of the first (its first temporary written, its first publication, its first deletion of
// a merged file): both end without error, and the archive holds each record once, with no file left
// that another covers after one more run.
func TestCompactionsAtOnce(t *testing.T) {
	codec, err := records.NewCodec(t.Context(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	recs := rawRecords(t, codec, 0, 300)
	opts := archive.CompactOptions{TargetBytes: 30 << 10}
	for _, at := range []struct {
		name string
		op   string
		pre  string
	}{{"temporary written", "write", "_tmp/compact/"}, {"published", "copy", "raw/"}, {"merged file deleted", "delete", "raw/"}} {
		t.Run(at.name, func(t *testing.T) {
			ctx := t.Context()
			dir, bb := openDir(t)
			b := archive.Blob{B: bb}
			writeBatches(t, archive.New(b, codec, archive.RawLayer(), nil), "raw", recs, rand.New(rand.NewPCG(8, 8)), 20)
			var second archive.CompactStats
			var secondErr error
			h := &hooked{Bucket: b, match: func(op, key string) bool { return op == at.op && strings.HasPrefix(key, at.pre) },
				hook: func() {
					second, secondErr = archive.NewCompactor(b, archive.RawLayer(), opts, nil).Run(ctx, closedAt)
				}}
			first, err := archive.NewCompactor(h, archive.RawLayer(), opts, nil).Run(ctx, closedAt)
			if !h.done {
				t.Fatal("the second compaction did not run")
			}
			// The second may delete the first's temporary (both clear _tmp/compact/ when they start):
			// the first then fails to publish that run, and tries again at its next run.
			if err != nil && !strings.Contains(err.Error(), "publishing") {
				t.Fatalf("first compaction: %v", err)
			}
			if secondErr != nil {
				t.Fatalf("second compaction: %v", secondErr)
			}
			t.Logf("first %+v, second %+v", first, second)
			checkVisibleOnce(t, b, recs)
			if _, err := archive.NewCompactor(b, archive.RawLayer(), opts, nil).Run(ctx, closedAt); err != nil {
				t.Fatal(err)
			}
			if files, keys := archivetest.ReadLayer(t, dir, "raw", archivetest.Raw), dataKeys(t, b, "raw"); len(files) != len(keys) {
				t.Errorf("%d files left that another covers", len(keys)-len(files))
			}
			checkVisibleOnce(t, b, recs)
		})
	}
}
