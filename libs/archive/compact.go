package archive

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/parquet-go/parquet-go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
)

// Compaction merges the small files of a closed day into few large ones.
//
// A merged file is named by the first offset of the first file it merged and the last offset of the last,
// so it covers them: Files leaves covered files out and the writer's overlap dropping treats their
// offsets as published. Only a contiguous run of the files readers see (in offset order, one partition
// of one directory) is merged, and before the merged file is published the directory is listed again:
// if any file of the partition other than the run's lies inside the run's range, or one of the run's
// files is gone, or an erasure of the tenant began, the run is left for the next time. Publishing is
// the writer's: a temporary under _tmp/compact/, a copy to the final key, then the merged files are
// deleted. A crash leaves the small files, or the merged file and some of the small ones, which readers
// leave out and the next run deletes.
//
// Runs are chosen deterministically from the listing and the merged bytes are a function of the
// inputs, so two compactions of the same directory at once publish identical files under the same key;
// one that finds an input already deleted by the other gives up the run. No lease is taken.

// DefaultCompactTarget is the default size a compacted file's inputs add up to at most.
const DefaultCompactTarget = 128 << 20

const (
	// rowGroupRows bounds the rows of a compacted file's row groups.
	rowGroupRows = 100_000
	// readRows is how many rows are read at a time from a file being merged or rewritten.
	readRows = 1024
)

// CompactOptions says what compaction merges.
type CompactOptions struct {
	// TargetBytes bounds the bytes of the files merged into one (the merged file is about as big); a
	// file this big or bigger is left as it is.
	TargetBytes int64
	// Grace is how long after its end a day is still written to (late events) and not compacted.
	Grace time.Duration
}

// Closed reports whether day (a UTC date) ended longer than the grace period before now.
func (o CompactOptions) Closed(day, now time.Time) bool {
	return !day.Add(24*time.Hour + o.Grace).After(now)
}

// CompactStats says what a compaction did.
type CompactStats struct {
	Dirs         int   // directories of closed days looked at
	FilesMerged  int   // small files merged (and deleted)
	BytesMerged  int64 // their bytes
	FilesWritten int   // compacted files published
	BytesWritten int64 // their bytes
	FilesRemoved int   // files deleted because another file covers them (left by an earlier run)
	Skipped      int   // runs left for the next time: the directory changed while they were merged
}

// Compactor compacts the closed days of one layer.
type Compactor[T any] struct {
	bucket Bucket
	layer  Layer[T]
	opts   CompactOptions
	m      *Metrics
}

// NewCompactor returns the compactor of layer in bucket. m may be nil (no metrics).
func NewCompactor[T any](bucket Bucket, layer Layer[T], opts CompactOptions, m *Metrics) *Compactor[T] {
	if m == nil {
		m, _ = NewMetrics(metricnoop.NewMeterProvider())
	}
	if opts.TargetBytes <= 0 {
		opts.TargetBytes = DefaultCompactTarget
	}
	return &Compactor[T]{bucket: bucket, layer: layer, opts: opts, m: m}
}

// sized is a data file and its size.
type sized struct {
	File
	Size int64
}

func (c *Compactor[T]) tmpDir() string { return TmpPrefix + "compact/" + c.layer.Name + "/" }

// Run compacts every directory of a day closed at now, one after the other. It first removes what an
// earlier run left under its _tmp/ directory. An error in one directory does not stop the others.
func (c *Compactor[T]) Run(ctx context.Context, now time.Time) (CompactStats, error) {
	var st CompactStats
	if err := deleteAll(ctx, c.bucket, c.tmpDir()); err != nil {
		return st, err
	}
	objs, err := c.bucket.ListObjects(ctx, c.layer.Name+"/")
	if err != nil {
		return st, err
	}
	dirs := map[string][]sized{}
	for _, o := range objs {
		f, ok := ParseKey(o.Key)
		if !ok || f.Layer != c.layer.Name || !c.opts.Closed(f.Day, now) {
			continue
		}
		d := path.Dir(f.Key)
		dirs[d] = append(dirs[d], sized{f, o.Size})
	}
	var errs []error
	for _, d := range slices.Sorted(maps.Keys(dirs)) {
		if err := ctx.Err(); err != nil {
			return st, err
		}
		st.Dirs++
		if err := c.compactDir(ctx, d, dirs[d], &st); err != nil {
			errs = append(errs, fmt.Errorf("compacting %s: %w", d, err))
		}
	}
	return st, errors.Join(errs...)
}

// compactDir removes the files of dir another file covers and merges runs of the others.
func (c *Compactor[T]) compactDir(ctx context.Context, dir string, files []sized, st *CompactStats) error {
	slices.SortFunc(files, func(a, b sized) int {
		return cmp.Or(cmp.Compare(a.Partition, b.Partition), cmp.Compare(a.First, b.First), cmp.Compare(b.Last, a.Last))
	})
	var visible []sized
	for _, f := range files {
		if coveredByOther(f.File, files) {
			if err := c.bucket.Delete(ctx, f.Key); err != nil {
				return fmt.Errorf("removing %s, which a compacted file covers: %w", f.Key, err)
			}
			st.FilesRemoved++
			continue
		}
		visible = append(visible, f)
	}
	for i := 1; i < len(visible); i++ {
		if a, b := visible[i-1], visible[i]; a.Partition == b.Partition && b.First <= a.Last {
			return fmt.Errorf("%s and %s overlap: left as they are", a.Key, b.Key)
		}
	}
	for _, run := range c.runs(visible) {
		if err := c.merge(ctx, dir, run, st); err != nil {
			return err
		}
	}
	return nil
}

// coveredByOther reports whether another file of files covers f.
func coveredByOther(f File, files []sized) bool {
	for _, o := range files {
		if o.Key != f.Key && Covers(o.File, f) {
			return true
		}
	}
	return false
}

// runs groups files (sorted by partition and offset, none covering another) into runs of consecutive
// files of a partition whose sizes add up to at most the target; only runs of two files or more are
// returned. A file as big as the target is in no run.
func (c *Compactor[T]) runs(files []sized) [][]sized {
	var out [][]sized
	var cur []sized
	var size int64
	flush := func() {
		if len(cur) > 1 {
			out = append(out, cur)
		}
		cur, size = nil, 0
	}
	for _, f := range files {
		if len(cur) > 0 && (cur[0].Partition != f.Partition || size+f.Size > c.opts.TargetBytes) {
			flush()
		}
		if f.Size >= c.opts.TargetBytes {
			continue
		}
		cur, size = append(cur, f), size+f.Size
	}
	flush()
	return out
}

// merge writes the rows of run, in offset order, into one file named by the run's range, publishes it
// if the directory did not change meanwhile, and deletes the run's files.
func (c *Compactor[T]) merge(ctx context.Context, dir string, run []sized, st *CompactStats) error {
	first, last := run[0], run[len(run)-1]
	erased, err := erasedStudents(ctx, c.bucket, c.layer.Name, first.Tenant)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	w := parquet.NewGenericWriter[T](&buf, parquet.Compression(&parquet.Zstd), parquet.MaxRowsPerRowGroup(rowGroupRows))
	var in int64
	rewritten := false
	for _, f := range run {
		data, err := c.bucket.ReadAll(ctx, f.Key)
		if errors.Is(err, ErrNotFound) {
			st.Skipped++ // merged by another compaction, or erased, since the listing
			return nil
		}
		if err != nil {
			return err
		}
		in += int64(len(data))
		res, err := copyRows(w, f.File, data, func(row *T) bool { return !erased[actorOf(row)] })
		if err != nil {
			return fmt.Errorf("merging %s: %w", f.Key, err)
		}
		rewritten = rewritten || res.rewritten || res.dropped > 0
	}
	if rewritten {
		w.SetKeyValueMetadata(RewrittenKey, "true")
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("encoding parquet: %w", err)
	}
	final := dir + "/" + FileName(first.Partition, first.First, last.Last)
	tmp := c.tmpDir() + uuid.NewString()
	if err := c.bucket.WriteAll(ctx, tmp, buf.Bytes()); err != nil {
		return fmt.Errorf("writing %s: %w", tmp, err)
	}
	same, err := c.unchanged(ctx, dir, run, final, erased)
	if err != nil || !same {
		if derr := c.bucket.Delete(ctx, tmp); derr != nil {
			return errors.Join(err, fmt.Errorf("removing %s: %w", tmp, derr))
		}
		if err == nil {
			st.Skipped++
		}
		return err
	}
	if err := c.bucket.Copy(ctx, final, tmp); err != nil {
		return fmt.Errorf("publishing %s: %w", final, err)
	}
	if err := c.bucket.Delete(ctx, tmp); err != nil {
		return fmt.Errorf("removing %s: %w", tmp, err)
	}
	layer := metric.WithAttributes(attribute.String("layer", c.layer.Name))
	c.m.compacted.Add(ctx, 1, layer)
	c.m.compactedBytes.Add(ctx, int64(buf.Len()), layer)
	st.FilesWritten++
	st.BytesWritten += int64(buf.Len())
	for _, f := range run {
		if f.Key == final {
			continue
		}
		if err := c.bucket.Delete(ctx, f.Key); err != nil {
			return fmt.Errorf("removing %s, merged into %s: %w", f.Key, final, err)
		}
		st.FilesMerged++
		c.m.merged.Add(ctx, 1, layer)
	}
	st.BytesMerged += in
	c.m.mergedBytes.Add(ctx, in, layer)
	return nil
}

// unchanged lists dir again and reports whether the merged file may be published: every file of the
// run is still there, no other file of the partition lies in the run's range (the file final itself
// aside, published by a concurrent compaction of the same run) and no erasure of the tenant began.
func (c *Compactor[T]) unchanged(ctx context.Context, dir string, run []sized, final string, erased map[string]bool) (bool, error) {
	keys, err := c.bucket.List(ctx, dir+"/")
	if err != nil {
		return false, err
	}
	inRun := map[string]bool{}
	for _, f := range run {
		inRun[f.Key] = true
	}
	lo, hi, p := run[0].First, run[len(run)-1].Last, run[0].Partition
	seen := 0
	for _, k := range keys {
		f, ok := ParseKey(k)
		switch {
		case !ok || f.Partition != p || f.Last < lo || f.First > hi || k == final:
		case inRun[k]:
			seen++
		default:
			return false, nil
		}
	}
	if seen != len(run) {
		return false, nil
	}
	now, err := erasedStudents(ctx, c.bucket, c.layer.Name, run[0].Tenant)
	if err != nil {
		return false, err
	}
	return maps.Equal(now, erased), nil
}

// RewrittenKey is the key of a Parquet metadata entry set on a file whose rows are fewer than its name's
// range held when archived: an erasure removed rows from it, or from a file merged into it. Its first
// and last rows need not be at the ends of the range; it may hold no rows at all.
const RewrittenKey = "edtech.archive.rewritten"

// copied is what copyRows did.
type copied struct {
	rows, dropped int64
	rewritten     bool // the file was marked as rewritten
}

// copyRows streams the rows of data, the file f, to w, keeping those keep accepts. It checks that each
// row is of f's partition and in f's range.
func copyRows[T any](w *parquet.GenericWriter[T], f File, data []byte, keep func(*T) bool) (copied, error) {
	r := parquet.NewGenericReader[T](bytes.NewReader(data))
	var res copied
	if v, ok := r.File().Lookup(RewrittenKey); ok && v == "true" {
		res.rewritten = true
	}
	rows := make([]T, readRows)
	for {
		n, err := r.Read(rows)
		kept := rows[:0]
		for i := range rows[:n] {
			if pos, ok := positionOf(&rows[i]); ok && (pos.KafkaPartition != f.Partition || pos.KafkaOffset < f.First || pos.KafkaOffset > f.Last) {
				return res, fmt.Errorf("holds offset %d of partition %d, outside its name", pos.KafkaOffset, pos.KafkaPartition)
			}
			if keep(&rows[i]) {
				kept = append(kept, rows[i])
				res.rows++
			} else {
				res.dropped++
			}
		}
		if len(kept) > 0 {
			if _, werr := w.Write(kept); werr != nil {
				return res, fmt.Errorf("encoding parquet: %w", werr)
			}
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return res, fmt.Errorf("reading parquet: %w", err)
		}
	}
	return res, r.Close()
}

// positionOf returns the Kafka position of a row of either layer.
func positionOf(row any) (Position, bool) {
	switch r := row.(type) {
	case *RawRow:
		return r.Position, true
	case *EnrichedRow:
		return r.Position, true
	}
	return Position{}, false
}

// actorOf returns the internal id of an enriched row's actor, "" for any other row.
func actorOf(row any) string {
	if r, ok := row.(*EnrichedRow); ok {
		return r.ActorInternalID
	}
	return ""
}

// deleteAll deletes every key under prefix.
func deleteAll(ctx context.Context, b Bucket, prefix string) error {
	keys, err := b.List(ctx, prefix)
	if err != nil {
		return err
	}
	for _, k := range keys {
		if err := b.Delete(ctx, k); err != nil {
			return fmt.Errorf("removing %s: %w", k, err)
		}
	}
	return nil
}

// erasuresPrefix holds an empty object per student erased from a tenant's files of a layer, named by the
// student's internal id (see EraseStudent).
func erasuresPrefix(layer, tenant string) string { return "_erasures/" + TenantPrefix(layer, tenant) }

// erasedStudents returns the internal ids of the students erased from a tenant's files of a layer.
func erasedStudents(ctx context.Context, b Bucket, layer, tenant string) (map[string]bool, error) {
	prefix := erasuresPrefix(layer, tenant)
	keys, err := b.List(ctx, prefix)
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for _, k := range keys {
		if id := strings.TrimPrefix(k, prefix); id != "" && !strings.Contains(id, "/") {
			out[id] = true
		}
	}
	return out, nil
}
