package dedup

import (
	"context"
	"encoding/binary"
	"fmt"
	"strings"
	"time"

	"github.com/edtech-analytics/platform/libs/kafkax"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Restore rebuilds the state of the changelog partitions parts from their committed entries, from their
// start to their end when the call starts, each into a new Partition of s (started at now). The
// partitions are read side by side, at most workers at once. reader is a kafkax.NewReader client that
// nothing else reads with meanwhile.
func Restore(ctx context.Context, reader *kgo.Client, topic string, parts []int32, s *Set, now time.Time, workers int) (map[int32]*Partition, error) {
	states := make(map[int32]*Partition, len(parts))
	from := make(map[int32]int64, len(parts))
	for _, p := range parts {
		states[p], from[p] = s.NewPartition(now), 0
	}
	if len(parts) == 0 {
		return states, nil
	}
	err := kafkax.ReadPartitionsToEnd(ctx, reader, topic, from, workers, func(p int32, recs []*kgo.Record) error {
		dst := states[p] // one call per partition at a time: dst is this call's alone
		for _, r := range recs {
			if expires, ok := entry(r); ok {
				dst.Add(r.Key, expires)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return states, nil
}

// TenantEntries returns the live committed entries of one district (event id -> expiry) in the changelog
// partition its plain key (the tenant id) maps to: where the district keeps its ids while it is not hot.
// The end is the partition's high watermark when the call starts, read with read_committed
// (kafkax.ReadToEnd), so every transaction open then is waited for: whatever a transaction that started
// before the call commits is seen. reader is a kafkax.NewReader client that nothing else reads with
// meanwhile.
func TenantEntries(ctx context.Context, reader *kgo.Client, topic, tenant string, now time.Time) (map[string]time.Time, error) {
	ends, err := kafkax.EndOffsets(ctx, reader, topic)
	if err != nil {
		return nil, fmt.Errorf("reading the dedup entries of %s: %w", tenant, err)
	}
	prefix := tenant + "/"
	out := map[string]time.Time{}
	from := map[int32]int64{kafkax.KeyPartition([]byte(tenant), len(ends)): 0}
	err = kafkax.ReadToEnd(ctx, reader, topic, from, func(r *kgo.Record) error {
		expires, ok := entry(r)
		if k := string(r.Key); ok && strings.HasPrefix(k, prefix) && expires.After(now) {
			out[k[len(prefix):]] = expires // a later entry of a key replaces an earlier one
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading the dedup entries of %s: %w", tenant, err)
	}
	return out, nil
}

// entry decodes a changelog record's expiry.
func entry(r *kgo.Record) (time.Time, bool) {
	if len(r.Value) != 8 {
		return time.Time{}, false
	}
	return time.UnixMilli(int64(binary.BigEndian.Uint64(r.Value))), true
}
