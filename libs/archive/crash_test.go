package archive_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"github.com/edtech-analytics/platform/libs/archive"
	"github.com/edtech-analytics/platform/libs/archive/archivetest"
	"github.com/edtech-analytics/platform/libs/records"
	"github.com/edtech-analytics/platform/libs/testenv/s3test"
	"github.com/twmb/franz-go/pkg/kgo"
)

var errCrash = errors.New("crashed")

// crashing is a bucket whose process dies at a chosen operation: that operation fails (sometimes after
// taking effect, as a timeout after the server acted would) and so does every later one.
type crashing struct {
	archive.Bucket
	mu        sync.Mutex
	left      int  // operations before the crash; -1: never by count
	indexLeft int  // index writes before the crash; -1: never by index
	after     bool // the crashing operation takes effect before it fails
	dead      bool
	ops       []string
}

func (c *crashing) do(op, key string, fn func() error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dead {
		return errCrash
	}
	c.ops = append(c.ops, op+" "+key)
	crash := c.left == 0
	if c.left > 0 {
		c.left--
	}
	if op == "write" && strings.HasPrefix(key, "_offsets/") {
		if c.indexLeft == 0 {
			crash = true
		}
		if c.indexLeft > 0 {
			c.indexLeft--
		}
	}
	if !crash {
		return fn()
	}
	c.dead = true
	if c.after {
		_ = fn()
	}
	return errCrash
}

func (c *crashing) WriteAll(ctx context.Context, key string, p []byte) error {
	return c.do("write", key, func() error { return c.Bucket.WriteAll(ctx, key, p) })
}

func (c *crashing) Copy(ctx context.Context, dst, src string) error {
	return c.do("copy", dst, func() error { return c.Bucket.Copy(ctx, dst, src) })
}

func (c *crashing) Delete(ctx context.Context, key string) error {
	return c.do("delete", key, func() error { return c.Bucket.Delete(ctx, key) })
}

func (c *crashing) List(ctx context.Context, prefix string) (keys []string, err error) {
	err = c.do("list", prefix, func() error {
		keys, err = c.Bucket.List(ctx, prefix)
		return err
	})
	return keys, err
}

func (c *crashing) ListObjects(ctx context.Context, prefix string) (objs []archive.Object, err error) {
	err = c.do("list", prefix, func() error {
		objs, err = c.Bucket.ListObjects(ctx, prefix)
		return err
	})
	return objs, err
}

func (c *crashing) ReadAll(ctx context.Context, key string) (p []byte, err error) {
	err = c.do("read", key, func() error {
		p, err = c.Bucket.ReadAll(ctx, key)
		return err
	})
	return p, err
}

// rawRecords encodes n raw events as the records of partition p, every 97th one not Avro at all.
func rawRecords(t *testing.T, codec *records.Codec, p int32, n int) []*kgo.Record {
	t.Helper()
	var out []*kgo.Record
	for i, e := range archivetest.RawEvents(n) {
		v, err := codec.Encode(e)
		if err != nil {
			t.Fatal(err)
		}
		if i%97 == 50 {
			v = []byte(fmt.Sprintf("not avro %d", i))
		}
		out = append(out, &kgo.Record{Partition: p, Offset: int64(i), Value: v, Key: []byte(e.TenantID), Timestamp: e.ReceivedAt})
	}
	return out
}

// TestCrashAnywhereArchivesEachRecordOnce stops the store at a random operation of its write path (after
// a random number of bucket operations, or at the index write that follows published files), then
// resumes with a new store where its NextOffsets says, as the consumer does after a restart, until all
// records are archived. In the end each record is in exactly one published file, no two files of the
// partition overlap, and what a crash left under _tmp/ is gone once the partition is assigned again.
//
// The trials run over a file:// bucket and over s3:// (s3test's server on loopback).
func TestCrashAnywhereArchivesEachRecordOnce(t *testing.T) {
	codec, err := records.NewCodec(t.Context(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	const p, n, trials = 2, 700, 24
	recs := rawRecords(t, codec, p, n)
	for _, store := range []struct {
		name string
		url  func(t *testing.T) string
	}{
		{"file", func(t *testing.T) string { return "file://" + t.TempDir() }},
		{"s3", func(t *testing.T) string { return s3test.New(t) }},
	} {
		t.Run(store.name, func(t *testing.T) {
			for trial := range trials {
				t.Run(fmt.Sprint(trial), func(t *testing.T) { crashTrial(t, codec, recs, store.url(t), trial) })
			}
		})
	}
}

// crashTrial archives recs into the empty archive at url through stores that crash, then checks it.
func crashTrial(t *testing.T, codec *records.Codec, recs []*kgo.Record, url string, trial int) {
	ctx := t.Context()
	p, n := recs[0].Partition, int64(len(recs))
	rng := rand.New(rand.NewPCG(uint64(trial), 7))
	b, err := archive.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Error(err)
		}
	})
	crashes, indexCrashes := 0, 0
	for restart := 0; ; restart++ {
		if restart > 200 {
			t.Fatal("no progress after 200 restarts")
		}
		cb := &crashing{Bucket: archive.Blob{B: b}, left: -1, indexLeft: -1, after: rng.IntN(2) == 0}
		if trial%2 == 1 && restart < 6 {
			cb.indexLeft = rng.IntN(3) // crash at an index write: its batch's files are published
		} else if restart < 6 {
			cb.left = rng.IntN(60)
		}
		st := archive.New(cb, codec, archive.RawLayer(), nil)
		done, err := resume(ctx, st, recs, rng)
		if errors.Is(err, errCrash) {
			crashes++
			if cb.indexLeft == 0 {
				indexCrashes++
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if done {
			break
		}
	}
	if crashes == 0 || (trial%2 == 1 && indexCrashes == 0) {
		t.Fatalf("%d crashes, %d at an index write: the trial tested nothing", crashes, indexCrashes)
	}

	// A last assignment: resumes at the end and clears what crashes left under _tmp/.
	bucket := archive.Blob{B: b}
	st := archive.New(bucket, codec, archive.RawLayer(), nil)
	next, err := st.NextOffsets(ctx, "raw", []int32{p})
	if err != nil {
		t.Fatal(err)
	}
	if next[p] != n {
		t.Fatalf("NextOffsets = %v, want %d", next, n)
	}
	left, err := bucket.List(ctx, archive.TmpPrefix)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range left {
		t.Errorf("left under _tmp/: %s", k)
	}
	checkExactlyOnce(t, archivetest.ReadBucket(t, bucket, "raw", archivetest.Raw), recs)
}

// resume writes recs from the store's next offset in batches of random size, as a consumer would.
func resume(ctx context.Context, st *archive.Store[archive.RawRow], recs []*kgo.Record, rng *rand.Rand) (bool, error) {
	p := recs[0].Partition
	next, err := st.NextOffsets(ctx, "raw", []int32{p})
	if err != nil {
		return false, err
	}
	off := next[p]
	for int(off) < len(recs) {
		batch := recs[off:min(int(off)+1+rng.IntN(120), len(recs))]
		if err := st.Write(ctx, "raw", p, batch); err != nil {
			return false, err
		}
		off = batch[len(batch)-1].Offset + 1
	}
	return true, nil
}

// checkExactlyOnce checks that the files hold each of recs exactly once, with its original bytes.
func checkExactlyOnce(t *testing.T, files []archivetest.File[archive.RawRow], recs []*kgo.Record) {
	t.Helper()
	seen := map[int64]int{}
	for _, f := range files {
		for _, pos := range f.Positions {
			seen[pos.KafkaOffset]++
			if r := recs[pos.KafkaOffset]; string(pos.Record) != string(r.Value) {
				t.Errorf("%s: offset %d holds other bytes", f.Key, pos.KafkaOffset)
			}
		}
	}
	for _, r := range recs {
		if seen[r.Offset] != 1 {
			t.Errorf("offset %d archived %d times", r.Offset, seen[r.Offset])
		}
	}
}
