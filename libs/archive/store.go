// Package archive writes the records of a Kafka topic to object storage as Parquet files, one layer per
// topic, laid out Hive style by tenant and day, with the consumed offsets kept in the archive itself
// (kafkax.Store).
//
// A file's name is its partition and the first and last offsets it holds. It is written under _tmp/ and
// published by a copy to its final key; readers ignore _tmp/. After all files of a batch are published,
// the partition's index (_offsets/<layer>/<partition>) records the batch's last offset; NextOffsets reads
// it. A crash between publishing and the index makes the batch be read again; before publishing, the
// records that a published file of the same partition, tenant and day already covers are dropped, so no
// record is archived twice and no two files of a partition in one directory overlap, unless one is a
// compacted file that covers the other (compact.go).
package archive

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/edtech-analytics/platform/libs/kafkax"
	"github.com/edtech-analytics/platform/libs/records"
	"github.com/google/uuid"
	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/compress/zstd"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
)

// UndecodableTenant is the tenant directory of the records that did not decode.
const UndecodableTenant = "_undecodable"

// TmpPrefix starts the keys of files not yet published; readers ignore it.
const TmpPrefix = "_tmp/"

// Store archives one topic into one layer. It implements kafkax.Store.
type Store[T any] struct {
	bucket Bucket
	codec  *records.Codec
	layer  Layer[T]
	m      *Metrics

	mu        sync.Mutex
	published map[int32]Mark // per partition, as the index says
}

// Mark is where a partition's archive stands: the last offset published, and the Kafka timestamp of
// that record, or, until this store has published some of the partition, the time it read the
// partition's index.
type Mark struct {
	Offset int64
	At     time.Time
}

var (
	_ kafkax.Store    = (*Store[RawRow])(nil)
	_ kafkax.Releaser = (*Store[RawRow])(nil)
)

// New returns the store of layer in bucket. m may be nil (no metrics).
func New[T any](bucket Bucket, codec *records.Codec, layer Layer[T], m *Metrics) *Store[T] {
	if m == nil {
		m, _ = NewMetrics(metricnoop.NewMeterProvider())
	}
	return &Store[T]{bucket: bucket, codec: codec, layer: layer, m: m, published: map[int32]Mark{}}
}

// Metrics are the archive's instruments.
type Metrics struct {
	files, bytes, records metric.Int64Counter
	// compaction
	merged, mergedBytes, compacted, compactedBytes metric.Int64Counter
}

// NewMetrics creates the instruments on mp.
func NewMetrics(mp metric.MeterProvider) (*Metrics, error) {
	meter := mp.Meter("archiver/archive")
	files, err := meter.Int64Counter("archiver_files_written", metric.WithDescription("parquet files published, by layer"))
	if err != nil {
		return nil, err
	}
	size, err := meter.Int64Counter("archiver_bytes_written", metric.WithDescription("bytes of parquet files published, by layer"), metric.WithUnit("By"))
	if err != nil {
		return nil, err
	}
	recs, err := meter.Int64Counter("archiver_records_archived", metric.WithDescription("records published in parquet files, by layer"))
	if err != nil {
		return nil, err
	}
	m := &Metrics{files: files, bytes: size, records: recs}
	for _, c := range []struct {
		p                *metric.Int64Counter
		name, desc, unit string
	}{
		{&m.merged, "archiver_compaction_files_merged", "small parquet files merged into a compacted file, by layer", ""},
		{&m.mergedBytes, "archiver_compaction_bytes_merged", "bytes of the small parquet files merged, by layer", "By"},
		{&m.compacted, "archiver_compaction_files_written", "compacted parquet files published, by layer", ""},
		{&m.compactedBytes, "archiver_compaction_bytes_written", "bytes of compacted parquet files published, by layer", "By"},
	} {
		opts := []metric.Int64CounterOption{metric.WithDescription(c.desc)}
		if c.unit != "" {
			opts = append(opts, metric.WithUnit(c.unit))
		}
		if *c.p, err = meter.Int64Counter(c.name, opts...); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// IndexKey is the key of a partition's index: the last offset published.
func IndexKey(layer string, p int32) string { return fmt.Sprintf("_offsets/%s/%d", layer, p) }

func tmpDir(layer string, p int32) string { return fmt.Sprintf("%s%s/%d/", TmpPrefix, layer, p) }

// Dir is the directory of a layer's files of a tenant and day.
func Dir(layer, tenant string, day time.Time) string {
	return fmt.Sprintf("%s/tenant_id=%s/date=%s/", layer, url.PathEscape(tenant), day.UTC().Format(time.DateOnly))
}

// FileName names the file of partition p holding offsets first to last.
func FileName(p int32, first, last int64) string {
	return fmt.Sprintf("%d-%020d-%020d.parquet", p, first, last)
}

// ParseFileName reads a file name back; ok is false for a name FileName did not make.
func ParseFileName(name string) (p int32, first, last int64, ok bool) {
	base, found := strings.CutSuffix(path.Base(name), ".parquet")
	parts := strings.Split(base, "-")
	if !found || len(parts) != 3 {
		return 0, 0, 0, false
	}
	pp, err1 := strconv.ParseInt(parts[0], 10, 32)
	f, err2 := strconv.ParseInt(parts[1], 10, 64)
	l, err3 := strconv.ParseInt(parts[2], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil || f > l {
		return 0, 0, 0, false
	}
	return int32(pp), f, l, true
}

// NextOffsets returns the offset after the last published one of each partition with an index. It first
// removes the partition's unpublished leftovers under _tmp/: it is called when the partition is assigned,
// before anything of it is written.
func (s *Store[T]) NextOffsets(ctx context.Context, _ string, partitions []int32) (map[int32]int64, error) {
	out := map[int32]int64{}
	for _, p := range partitions {
		tmp, err := s.bucket.List(ctx, tmpDir(s.layer.Name, p))
		if err != nil {
			return nil, err
		}
		for _, k := range tmp {
			if err := s.bucket.Delete(ctx, k); err != nil {
				return nil, fmt.Errorf("removing unpublished %s: %w", k, err)
			}
		}
		b, err := s.bucket.ReadAll(ctx, IndexKey(s.layer.Name, p))
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading the index of partition %d: %w", p, err)
		}
		last, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("index of partition %d: %w", p, err)
		}
		out[p] = last + 1
		s.mu.Lock()
		s.published[p] = Mark{Offset: last, At: time.Now()}
		s.mu.Unlock()
	}
	return out, nil
}

// group is the rows of one tenant and day in a batch, in offset order.
type group[T any] struct {
	dir     string
	rows    []T
	offsets []int64
}

// Write archives recs, records of partition p in offset order: one file per tenant and day (split where a
// published file already covers part of the range), each published before the partition's index moves
// past the batch.
func (s *Store[T]) Write(ctx context.Context, _ string, p int32, recs []*kgo.Record) error {
	if len(recs) == 0 {
		return nil
	}
	groups := map[string]*group[T]{}
	var order []string
	for _, r := range recs {
		row, tenant, at, err := s.layer.Row(s.codec, r)
		if err != nil {
			row, tenant, at = s.layer.Undecodable(r, err), UndecodableTenant, r.Timestamp
		}
		dir := Dir(s.layer.Name, tenant, at)
		g, ok := groups[dir]
		if !ok {
			g = &group[T]{dir: dir}
			groups[dir] = g
			order = append(order, dir)
		}
		g.rows = append(g.rows, row)
		g.offsets = append(g.offsets, r.Offset)
	}
	for _, dir := range order {
		if err := s.writeGroup(ctx, p, groups[dir]); err != nil {
			return err
		}
	}
	last := recs[len(recs)-1]
	if err := s.bucket.WriteAll(ctx, IndexKey(s.layer.Name, p), []byte(strconv.FormatInt(last.Offset, 10))); err != nil {
		return fmt.Errorf("writing the index of partition %d: %w", p, err)
	}
	s.mu.Lock()
	s.published[p] = Mark{Offset: last.Offset, At: last.Timestamp}
	s.mu.Unlock()
	return nil
}

type span struct{ first, last int64 }

// writeGroup publishes g's rows that no published file of partition p in g's directory covers, one file per
// run of rows between such files.
func (s *Store[T]) writeGroup(ctx context.Context, p int32, g *group[T]) error {
	keys, err := s.bucket.List(ctx, fmt.Sprintf("%s%d-", g.dir, p))
	if err != nil {
		return err
	}
	var have []span
	for _, k := range keys {
		if kp, f, l, ok := ParseFileName(k); ok && kp == p && path.Dir(k)+"/" == g.dir {
			have = append(have, span{f, l})
		}
	}
	slices.SortFunc(have, func(a, b span) int { return cmp.Compare(a.first, b.first) })
	// run numbers the gaps between published files: rows in one gap may share a file.
	run := func(off int64) (int, bool) {
		i := 0
		for ; i < len(have) && have[i].last < off; i++ {
		}
		return i, i < len(have) && have[i].first <= off
	}
	start, cur := -1, -1
	flush := func(end int) error {
		if start < 0 {
			return nil
		}
		return s.publish(ctx, p, g.dir, g.rows[start:end], g.offsets[start], g.offsets[end-1])
	}
	for i, off := range g.offsets {
		r, covered := run(off)
		if covered || r != cur {
			if err := flush(i); err != nil {
				return err
			}
			start, cur = -1, r
		}
		if !covered && start < 0 {
			start = i
		}
	}
	return flush(len(g.offsets))
}

// fastZstd compresses a batch's files at zstd's fastest level: they are written on the ingestion path, and
// compaction rewrites a closed day's files at the default level (parquet.Zstd) for the long term.
var fastZstd = zstd.Codec{Level: zstd.SpeedFastest}

// publish writes rows to a temporary key, copies it to its final key and removes the temporary.
func (s *Store[T]) publish(ctx context.Context, p int32, dir string, rows []T, first, last int64) error {
	var buf bytes.Buffer
	if err := parquet.Write(&buf, rows, parquet.Compression(&fastZstd)); err != nil {
		return fmt.Errorf("encoding parquet: %w", err)
	}
	tmp := tmpDir(s.layer.Name, p) + uuid.NewString()
	final := dir + FileName(p, first, last)
	if err := s.bucket.WriteAll(ctx, tmp, buf.Bytes()); err != nil {
		return fmt.Errorf("writing %s: %w", tmp, err)
	}
	if err := s.bucket.Copy(ctx, final, tmp); err != nil {
		return fmt.Errorf("publishing %s: %w", final, err)
	}
	if err := s.bucket.Delete(ctx, tmp); err != nil {
		return fmt.Errorf("removing %s: %w", tmp, err)
	}
	layer := metric.WithAttributes(attribute.String("layer", s.layer.Name))
	s.m.files.Add(ctx, 1, layer)
	s.m.bytes.Add(ctx, int64(buf.Len()), layer)
	s.m.records.Add(ctx, int64(len(rows)), layer)
	return nil
}

// Release forgets what the store knew of partitions the consumer gave up: their lag is the new owner's.
func (s *Store[T]) Release(_ context.Context, _ string, partitions []int32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range partitions {
		delete(s.published, p)
	}
}

// Published returns the mark of each partition this store has read or written the index of.
func (s *Store[T]) Published() map[int32]Mark {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[int32]Mark, len(s.published))
	for p, o := range s.published {
		out[p] = o
	}
	return out
}
