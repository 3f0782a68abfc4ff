package archive

import (
	"bytes"
	"cmp"
	"container/heap"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/parquet-go/parquet-go"
)

// Record is one archived record: where it was in Kafka and its value as the topic held it (the Avro
// record, schema-id framed).
type Record struct {
	Partition int32
	Offset    int64
	Value     []byte
	Key       []byte // as the topic held it; nil in files written before the column was
	EventID   string
}

// Reader reads the records of a set of files (from Files), one partition after another, each
// partition's records in offset order across the files that hold them (files of different days of one
// partition interleave in offsets). It holds the files of a partition open only while its records are
// between their first and last offsets.
type Reader struct {
	bucket Bucket
	parts  []int32
	files  map[int32][]File // by partition, by first offset; those not yet opened
	limit  map[int32]int64  // the last offset read of a partition, if limited
	open   cursors
}

// NewReader reads files from b. Files not of a data key or holding nothing up to limit are skipped when
// reached. limit, if not nil, is the last offset to read of each partition: a partition absent from it
// is not read (files past the archive's index may hold records the index does not cover yet).
func NewReader(b Bucket, files []File, limit map[int32]int64) *Reader {
	r := &Reader{bucket: b, files: map[int32][]File{}, limit: limit}
	for _, f := range files {
		if limit != nil {
			last, ok := limit[f.Partition]
			if !ok || f.First > last {
				continue
			}
		}
		if _, ok := r.files[f.Partition]; !ok {
			r.parts = append(r.parts, f.Partition)
		}
		r.files[f.Partition] = append(r.files[f.Partition], f)
	}
	slices.Sort(r.parts)
	for _, fs := range r.files {
		slices.SortFunc(fs, func(a, b File) int { return cmp.Compare(a.First, b.First) })
	}
	return r
}

// Next returns up to n records of one partition, in offset order, continuing where the last call
// stopped; io.EOF when every partition has been read. A partition's records all come before the next
// partition's.
func (r *Reader) Next(ctx context.Context, n int) (int32, []Record, error) {
	for len(r.parts) > 0 {
		p := r.parts[0]
		recs, err := r.next(ctx, p, n)
		if err != nil {
			return p, nil, err
		}
		if len(recs) > 0 {
			return p, recs, nil
		}
		r.parts = r.parts[1:]
	}
	return 0, nil, io.EOF
}

// next merges the partition's files: before taking the lowest offset among the open files, it opens
// every file that starts at or below it.
func (r *Reader) next(ctx context.Context, p int32, n int) ([]Record, error) {
	var out []Record
	for len(out) < n {
		pending := r.files[p]
		for len(pending) > 0 && (r.open.Len() == 0 || pending[0].First <= r.open[0].offset()) {
			c, err := r.openFile(ctx, pending[0])
			pending = pending[1:]
			r.files[p] = pending
			if err != nil {
				return nil, err
			}
			if c != nil {
				heap.Push(&r.open, c)
			}
		}
		if r.open.Len() == 0 {
			return out, nil
		}
		c := r.open[0]
		off, value := c.offset(), c.values[c.i]
		if last, ok := r.limit[p]; ok && off > last {
			heap.Pop(&r.open)
			continue
		}
		if len(out) > 0 && off <= out[len(out)-1].Offset {
			return nil, fmt.Errorf("%s: offset %d again or out of order", c.key, off)
		}
		out = append(out, Record{Partition: p, Offset: off, Value: value, Key: c.keys[c.i], EventID: c.ids[c.i]})
		if err := c.advance(); err != nil {
			return nil, err
		}
		if c.done {
			heap.Pop(&r.open)
		} else {
			heap.Fix(&r.open, 0)
		}
	}
	return out, nil
}

// openFile reads f and returns a cursor on its first row; nil if it holds none.
func (r *Reader) openFile(ctx context.Context, f File) (*cursor, error) {
	b, err := r.bucket.ReadAll(ctx, f.Key)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", f.Key, err)
	}
	pf, err := parquet.OpenFile(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", f.Key, err)
	}
	c := &cursor{key: f.Key, partition: f.Partition, groups: pf.RowGroups()}
	for i, name := range []string{"record", "kafka_offset", "kafka_partition", "kafka_key", "event_id"} {
		leaf, ok := pf.Schema().Lookup(name)
		switch {
		case ok:
			c.columns[i] = leaf.ColumnIndex
		case i >= 3: // optional
			c.columns[i] = -1
		default:
			return nil, fmt.Errorf("%s: no column %s", f.Key, name)
		}
	}
	if err := c.advance(); err != nil {
		return nil, err
	}
	if c.done {
		return nil, nil
	}
	return c, nil
}

// cursor is an open file at its next row. It reads only the columns it needs, a row group at a time.
type cursor struct {
	key       string
	partition int32
	groups    []parquet.RowGroup
	// columns are the indexes of the record, kafka_offset, kafka_partition, kafka_key and event_id
	// columns; -1 for an optional one the file does not have.
	columns [5]int
	values  [][]byte
	offsets []int64
	keys    [][]byte
	ids     []string
	i       int
	done    bool
}

func (c *cursor) offset() int64 { return c.offsets[c.i] }

// advance moves to the next row, reading the next row group when this one is used up.
func (c *cursor) advance() error {
	if c.offsets != nil && c.i+1 < len(c.offsets) {
		c.i++
		return nil
	}
	for len(c.groups) > 0 {
		rg := c.groups[0]
		c.groups = c.groups[1:]
		chunks := rg.ColumnChunks()
		var cols [5][]parquet.Value
		for i, col := range c.columns {
			if col < 0 {
				continue
			}
			var err error
			if cols[i], err = readColumn(chunks[col], rg.NumRows()); err != nil {
				return fmt.Errorf("reading %s: %w", c.key, err)
			}
			if len(cols[i]) != len(cols[0]) {
				return fmt.Errorf("%s: a column of %d values beside one of %d", c.key, len(cols[i]), len(cols[0]))
			}
		}
		values, offsets, partitions, keys, ids := cols[0], cols[1], cols[2], cols[3], cols[4]
		if len(values) == 0 {
			continue
		}
		c.values, c.offsets, c.i = make([][]byte, len(values)), make([]int64, len(values)), 0
		c.keys, c.ids = make([][]byte, len(values)), make([]string, len(values))
		var size int
		for i, v := range values {
			size += len(v.ByteArray())
			if keys != nil {
				size += len(keys[i].ByteArray())
			}
		}
		arena := make([]byte, 0, size) // the values outlive the pages they were read from
		take := func(v parquet.Value) []byte {
			start := len(arena)
			arena = append(arena, v.ByteArray()...)
			return arena[start:len(arena):len(arena)]
		}
		for i, v := range values {
			if p := partitions[i].Int32(); p != c.partition {
				return fmt.Errorf("%s: a row of partition %d", c.key, p)
			}
			c.values[i], c.offsets[i] = take(v), offsets[i].Int64()
			if keys != nil {
				c.keys[i] = take(keys[i])
			}
			if ids != nil {
				c.ids[i] = ids[i].String()
			}
		}
		return nil
	}
	c.done, c.values, c.offsets = true, nil, nil
	return nil
}

// readColumn reads every value of a column chunk of n rows.
func readColumn(chunk parquet.ColumnChunk, n int64) (out []parquet.Value, err error) {
	pages := chunk.Pages()
	defer func() { err = errors.Join(err, pages.Close()) }()
	out = make([]parquet.Value, 0, n)
	for {
		page, err := pages.ReadPage()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		vals := page.Values()
		buf := make([]parquet.Value, page.NumValues())
		k, err := vals.ReadValues(buf)
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, err
		}
		for _, v := range buf[:k] {
			out = append(out, v.Clone())
		}
		parquet.Release(page)
	}
}

// cursors is a heap of open files by their next offset.
type cursors []*cursor

func (h cursors) Len() int           { return len(h) }
func (h cursors) Less(i, j int) bool { return h[i].offset() < h[j].offset() }
func (h cursors) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *cursors) Push(x any)        { *h = append(*h, x.(*cursor)) }
func (h *cursors) Pop() any {
	old := *h
	c := old[len(old)-1]
	*h = old[:len(old)-1]
	return c
}
