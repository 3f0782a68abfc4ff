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
}

// positionRow is the part of either layer's rows a Reader reads: the Parquet reader skips the other
// columns.
type positionRow struct {
	Record         []byte `parquet:"record"`
	KafkaPartition int32  `parquet:"kafka_partition"`
	KafkaOffset    int64  `parquet:"kafka_offset"`
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
	buf    []positionRow
}

// NewReader reads files from b. Files not of a data key or holding nothing up to limit are skipped when
// reached. limit, if not nil, is the last offset to read of each partition: a partition absent from it
// is not read (files past the archive's index may hold records the index does not cover yet).
func NewReader(b Bucket, files []File, limit map[int32]int64) *Reader {
	r := &Reader{bucket: b, files: map[int32][]File{}, limit: limit, buf: make([]positionRow, 1024)}
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
	var arena []byte
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
		row := c.rows[c.i]
		if last, ok := r.limit[p]; ok && row.KafkaOffset > last {
			heap.Pop(&r.open).(*cursor).close()
			continue
		}
		if row.KafkaPartition != p {
			return nil, fmt.Errorf("%s: a row of partition %d", c.key, row.KafkaPartition)
		}
		if len(out) > 0 && row.KafkaOffset <= out[len(out)-1].Offset {
			return nil, fmt.Errorf("%s: offset %d again or out of order", c.key, row.KafkaOffset)
		}
		start := len(arena)
		arena = append(arena, row.Record...)
		out = append(out, Record{Partition: p, Offset: row.KafkaOffset, Value: arena[start:len(arena):len(arena)]})
		if err := c.advance(); err != nil {
			return nil, err
		}
		if c.done {
			heap.Pop(&r.open).(*cursor).close()
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
	c := &cursor{key: f.Key, pr: parquet.NewGenericReader[positionRow](bytes.NewReader(b)), buf: r.buf}
	r.buf = nil // each cursor reads into a buffer of its own; the first takes the reader's
	if err := c.advance(); err != nil {
		c.close()
		return nil, err
	}
	if c.done {
		c.close()
		return nil, nil
	}
	return c, nil
}

// cursor is an open file at its next row.
type cursor struct {
	key  string
	pr   *parquet.GenericReader[positionRow]
	buf  []positionRow
	rows []positionRow
	i    int
	done bool
}

func (c *cursor) offset() int64 { return c.rows[c.i].KafkaOffset }

// advance moves to the next row, reading the next rows of the file when the buffer is used up.
func (c *cursor) advance() error {
	if c.rows != nil && c.i+1 < len(c.rows) {
		c.i++
		return nil
	}
	if c.buf == nil {
		c.buf = make([]positionRow, 1024)
	}
	n, err := c.pr.Read(c.buf)
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("reading %s: %w", c.key, err)
	}
	if n == 0 {
		c.done = true
		return nil
	}
	c.rows, c.i = c.buf[:n], 0
	return nil
}

func (c *cursor) close() { _ = c.pr.Close() } // reads from memory: nothing to fail

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
