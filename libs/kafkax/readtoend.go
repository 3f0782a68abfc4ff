package kafkax

import (
	"context"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"
)

// EndOffsets is where each partition of topic ends now: its high watermark, the offset after the last
// record written, committed or not. A read_committed reader that reads up to it sees every transaction
// that was committed by then, and waits for those still open (at most the transaction timeout) to end.
// The last stable offset would not wait, but would miss a transaction that is committing.
func EndOffsets(ctx context.Context, cl *kgo.Client, topic string) (map[int32]int64, error) {
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("listing end offsets of %s: %w", topic, err)
	}
	out := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) { out[o.Partition] = o.Offset })
	return out, nil
}

// ReadToEnd reads the partitions of topic named in from (nil: every partition, from its start), each from
// its offset in from, up to the end it has when ReadToEnd is called (EndOffsets), as a read_committed
// reader: records of aborted transactions never reach fn, and records of transactions still open are
// waited for. fn gets the data records of each partition in offset order (partitions in turn or
// interleaved), never a transaction marker. reader is a client built by NewReader; ReadToEnd adds the
// partitions it reads and removes them when it returns, so one reader serves one read at a time. An error
// of fn ends the read with that error.
func ReadToEnd(ctx context.Context, reader *kgo.Client, topic string, from map[int32]int64, fn func(*kgo.Record) error) error {
	return ReadPartitionsToEnd(ctx, reader, topic, from, 1, func(_ int32, recs []*kgo.Record) error {
		for _, r := range recs {
			if err := fn(r); err != nil {
				return err
			}
		}
		return nil
	})
}

// ReadPartitionsToEnd is ReadToEnd handing fn the records of one partition at a time: calls for different
// partitions run side by side, at most workers at once; calls for one partition never overlap and come in
// offset order.
func ReadPartitionsToEnd(ctx context.Context, reader *kgo.Client, topic string, from map[int32]int64, workers int,
	fn func(partition int32, recs []*kgo.Record) error) error {
	ends, err := EndOffsets(ctx, reader, topic)
	if err != nil {
		return err
	}
	if from == nil {
		from = make(map[int32]int64, len(ends))
		for p := range ends {
			from[p] = 0
		}
	}
	start := map[int32]kgo.Offset{}
	remaining := map[int32]int64{}
	for p, off := range from {
		if end := ends[p]; off < end {
			start[p], remaining[p] = kgo.NewOffset().At(off), end
		}
	}
	if len(remaining) == 0 {
		return nil
	}
	parts := make([]int32, 0, len(start))
	for p := range start {
		parts = append(parts, p)
	}
	reader.AddConsumePartitions(map[string]map[int32]kgo.Offset{topic: start})
	defer reader.RemoveConsumePartitions(map[string][]int32{topic: parts})
	for len(remaining) > 0 {
		fetches := reader.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("reading %s to its end: %w", topic, err)
		}
		var ferr error
		fetches.EachError(func(t string, p int32, err error) { ferr = errors.Join(ferr, fmt.Errorf("%s/%d: %w", t, p, err)) })
		if ferr != nil {
			return fmt.Errorf("reading %s to its end: %w", topic, ferr)
		}
		batches := map[int32][]*kgo.Record{}
		fetches.EachPartition(func(ft kgo.FetchTopicPartition) {
			if ft.Topic != topic {
				return
			}
			for _, r := range ft.Records {
				end, ok := remaining[r.Partition]
				// A client that consumed the partition before may still deliver what it had fetched from
				// an earlier position: only the asked range counts.
				if !ok || r.Offset >= end || r.Offset < from[r.Partition] {
					continue
				}
				if r.Offset+1 >= end {
					delete(remaining, r.Partition)
				}
				if !r.Attrs.IsControl() {
					batches[r.Partition] = append(batches[r.Partition], r)
				}
			}
		})
		var g errgroup.Group
		g.SetLimit(max(1, workers))
		for p, recs := range batches {
			g.Go(func() error { return fn(p, recs) })
		}
		if err := g.Wait(); err != nil {
			return err
		}
	}
	return nil
}

// ReadRange reads the data records of one partition with offsets from through through, both included, as a
// read_committed reader (NewReader): records of aborted transactions and transaction markers are left
// out, so fewer records than offsets may come back. It stops at the partition's end if that comes first.
// Like ReadToEnd, it adds the partition to reader and removes it when it returns.
func ReadRange(ctx context.Context, reader *kgo.Client, topic string, partition int32, from, through int64) ([]*kgo.Record, error) {
	if through < from {
		return nil, nil
	}
	var out []*kgo.Record
	err := ReadPartitionsToEnd(ctx, reader, topic, map[int32]int64{partition: from}, 1, func(_ int32, recs []*kgo.Record) error {
		for _, r := range recs {
			if r.Offset > through {
				return errRangeRead
			}
			out = append(out, r)
			if r.Offset == through {
				return errRangeRead
			}
		}
		return nil
	})
	if err != nil && !errors.Is(err, errRangeRead) {
		return nil, fmt.Errorf("reading offsets %d-%d of %s/%d: %w", from, through, topic, partition, err)
	}
	return out, nil
}

// errRangeRead ends ReadRange's read once it has its last record.
var errRangeRead = errors.New("range read")
