package dedup

import (
	"context"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Restore reads the committed entries of one changelog partition, from its start to its current end,
// keeping those not yet expired. newClient builds a plain (non-group) client with the shared options.
func Restore(ctx context.Context, newClient func(opts ...kgo.Opt) (*kgo.Client, error), topic string, partition int32, now time.Time) (map[string]time.Time, error) {
	adm, err := newClient()
	if err != nil {
		return nil, err
	}
	defer adm.Close()
	ends, err := kadm.NewClient(adm).ListEndOffsets(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("listing end offsets of %s: %w", topic, err)
	}
	end, ok := ends.Lookup(topic, partition)
	if !ok || end.Err != nil {
		return nil, fmt.Errorf("end offset of %s/%d: %v", topic, partition, end.Err)
	}
	out := map[string]time.Time{}
	if end.Offset == 0 {
		return out, nil
	}
	cl, err := newClient(
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {partition: kgo.NewOffset().AtStart()}}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(), // transaction markers occupy the last offsets; seeing them tells we reached the end
	)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	for {
		fetches := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("restoring dedup state of partition %d: %w", partition, err)
		}
		var ferr error
		fetches.EachError(func(_ string, _ int32, err error) { ferr = err })
		if ferr != nil {
			return nil, fmt.Errorf("reading %s/%d: %w", topic, partition, ferr)
		}
		done := false
		fetches.EachRecord(func(r *kgo.Record) {
			if !r.Attrs.IsControl() && len(r.Value) == 8 {
				exp := time.UnixMilli(int64(binary.BigEndian.Uint64(r.Value)))
				if exp.After(now) {
					out[string(r.Key)] = exp
				} else {
					delete(out, string(r.Key))
				}
			}
			if r.Offset+1 >= end.Offset {
				done = true
			}
		})
		if done {
			return out, nil
		}
	}
}
