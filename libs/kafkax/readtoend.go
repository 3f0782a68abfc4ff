package kafkax

import (
	"context"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
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
// its offset in from, up to the end it has
// when ReadToEnd is called (EndOffsets), as a read_committed reader: records of aborted transactions never
// reach fn, and records of transactions still open are waited for. fn gets the data records of each
// partition in offset order (partitions in turn or interleaved), never a transaction marker. newClient
// builds a client with the caller's options plus the ones given; it is called twice. An error of fn ends
// the read with that error.
func ReadToEnd(ctx context.Context, newClient func(opts ...kgo.Opt) (*kgo.Client, error), topic string,
	from map[int32]int64, fn func(*kgo.Record) error) error {
	admin, err := newClient()
	if err != nil {
		return err
	}
	ends, err := EndOffsets(ctx, admin, topic)
	admin.Close()
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
	cl, err := newClient(
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: start}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(), // a transaction marker may be a partition's last offset: seeing it says the end is reached
	)
	if err != nil {
		return err
	}
	defer cl.Close()
	for len(remaining) > 0 {
		fetches := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("reading %s to its end: %w", topic, err)
		}
		var ferr error
		fetches.EachError(func(t string, p int32, err error) { ferr = errors.Join(ferr, fmt.Errorf("%s/%d: %w", t, p, err)) })
		if ferr != nil {
			return fmt.Errorf("reading %s to its end: %w", topic, ferr)
		}
		var fnErr error
		fetches.EachRecord(func(r *kgo.Record) {
			end, ok := remaining[r.Partition]
			if !ok || r.Offset >= end || fnErr != nil {
				return
			}
			if r.Offset+1 >= end {
				delete(remaining, r.Partition)
			}
			if !r.Attrs.IsControl() {
				fnErr = fn(r)
			}
		})
		if fnErr != nil {
			return fnErr
		}
	}
	return nil
}
