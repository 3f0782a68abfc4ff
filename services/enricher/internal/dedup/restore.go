package dedup

import (
	"context"
	"encoding/binary"
	"fmt"
	"strings"
	"time"

	"github.com/edtech-analytics/platform/libs/kafkax"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// NewClient builds a plain (non-group) client with the shared options.
type NewClient func(opts ...kgo.Opt) (*kgo.Client, error)

// Restore reads the committed entries of one changelog partition, from its start to its current end, into
// dst.
func Restore(ctx context.Context, newClient NewClient, topic string, partition int32, dst *Partition) error {
	return readChangelog(ctx, newClient, topic, func(int) int32 { return partition }, func(key []byte, expires time.Time) {
		dst.Add(key, expires)
	})
}

// TenantEntries returns the live committed entries of one district (event id -> expiry) in the changelog
// partition its plain key (the tenant id) maps to: where the district keeps its ids while it is not hot.
// The end is the partition's high watermark when the call starts, read with read_committed, so every
// transaction open then is waited for: whatever a transaction that started before the call commits is
// seen.
func TenantEntries(ctx context.Context, newClient NewClient, topic, tenant string, now time.Time) (map[string]time.Time, error) {
	prefix := tenant + "/"
	out := map[string]time.Time{}
	err := readChangelog(ctx, newClient, topic, func(n int) int32 { return kafkax.KeyPartition([]byte(tenant), n) },
		func(key []byte, expires time.Time) {
			if k := string(key); strings.HasPrefix(k, prefix) && expires.After(now) {
				out[k[len(prefix):]] = expires // a later entry of a key replaces an earlier one
			}
		})
	if err != nil {
		return nil, fmt.Errorf("reading the dedup entries of %s: %w", tenant, err)
	}
	return out, nil
}

// readChangelog reads the committed entries of the partition pick chooses (given the topic's number of
// partitions), from its start to its end when the call starts.
func readChangelog(ctx context.Context, newClient NewClient, topic string, pick func(partitions int) int32, fn func(key []byte, expires time.Time)) error {
	adm, err := newClient()
	if err != nil {
		return err
	}
	defer adm.Close()
	ends, err := kadm.NewClient(adm).ListEndOffsets(ctx, topic) // high watermarks (read_uncommitted)
	if err != nil {
		return fmt.Errorf("listing end offsets of %s: %w", topic, err)
	}
	partition := pick(len(ends[topic]))
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
			return fmt.Errorf("reading %s/%d: %w", topic, partition, err)
		}
		var ferr error
		fetches.EachError(func(_ string, _ int32, err error) { ferr = err })
		if ferr != nil {
			return fmt.Errorf("reading %s/%d: %w", topic, partition, ferr)
		}
		done := false
		fetches.EachRecord(func(r *kgo.Record) {
			if !r.Attrs.IsControl() && len(r.Value) == 8 {
				fn(r.Key, time.UnixMilli(int64(binary.BigEndian.Uint64(r.Value))))
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
