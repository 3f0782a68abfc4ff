package dedup

import (
	"context"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Restore reads the committed entries of one changelog partition, from its start to its current end, into
// dst. newClient builds a plain (non-group) client with the shared options.
func Restore(ctx context.Context, newClient func(opts ...kgo.Opt) (*kgo.Client, error), topic string, partition int32, dst *Partition) error {
	adm, err := newClient()
	if err != nil {
		return err
	}
	defer adm.Close()
	ends, err := kadm.NewClient(adm).ListEndOffsets(ctx, topic)
	if err != nil {
		return fmt.Errorf("listing end offsets of %s: %w", topic, err)
	}
	end, ok := ends.Lookup(topic, partition)
	if !ok || end.Err != nil {
		return fmt.Errorf("end offset of %s/%d: %v", topic, partition, end.Err)
	}
	if end.Offset == 0 {
		return nil
	}
	cl, err := newClient(
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {partition: kgo.NewOffset().AtStart()}}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(), // transaction markers occupy the last offsets; seeing them tells we reached the end
	)
	if err != nil {
		return err
	}
	defer cl.Close()
	for {
		fetches := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("restoring dedup state of partition %d: %w", partition, err)
		}
		var ferr error
		fetches.EachError(func(_ string, _ int32, err error) { ferr = err })
		if ferr != nil {
			return fmt.Errorf("reading %s/%d: %w", topic, partition, ferr)
		}
		done := false
		fetches.EachRecord(func(r *kgo.Record) {
			if !r.Attrs.IsControl() && len(r.Value) == 8 {
				dst.Add(r.Key, time.UnixMilli(int64(binary.BigEndian.Uint64(r.Value))))
			}
			if r.Offset+1 >= end.Offset {
				done = true
			}
		})
		if done {
			return nil
		}
	}
}
