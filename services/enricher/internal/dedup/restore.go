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

// NewClient builds a plain (non-group) client with the shared options plus opts.
type NewClient func(opts ...kgo.Opt) (*kgo.Client, error)

// Restore reads the committed entries of one changelog partition, from its start to its current end, into
// dst.
func Restore(ctx context.Context, newClient NewClient, topic string, partition int32, dst *Partition) error {
	return readChangelog(ctx, newClient, topic, partition, func(key []byte, expires time.Time) { dst.Add(key, expires) })
}

// TenantEntries returns the live committed entries of one district (event id -> expiry) in the changelog
// partition its plain key (the tenant id) maps to: where the district keeps its ids while it is not hot.
// The end is the partition's high watermark when the call starts, read with read_committed
// (kafkax.ReadToEnd), so every transaction open then is waited for: whatever a transaction that started
// before the call commits is seen.
func TenantEntries(ctx context.Context, newClient NewClient, topic, tenant string, now time.Time) (map[string]time.Time, error) {
	admin, err := newClient()
	if err != nil {
		return nil, err
	}
	ends, err := kafkax.EndOffsets(ctx, admin, topic)
	admin.Close()
	if err != nil {
		return nil, fmt.Errorf("reading the dedup entries of %s: %w", tenant, err)
	}
	prefix := tenant + "/"
	out := map[string]time.Time{}
	err = readChangelog(ctx, newClient, topic, kafkax.KeyPartition([]byte(tenant), len(ends)), func(key []byte, expires time.Time) {
		if k := string(key); strings.HasPrefix(k, prefix) && expires.After(now) {
			out[k[len(prefix):]] = expires // a later entry of a key replaces an earlier one
		}
	})
	if err != nil {
		return nil, fmt.Errorf("reading the dedup entries of %s: %w", tenant, err)
	}
	return out, nil
}

// readChangelog reads the committed entries of one partition, from its start to its end when the call
// starts.
func readChangelog(ctx context.Context, newClient NewClient, topic string, partition int32, fn func(key []byte, expires time.Time)) error {
	return kafkax.ReadToEnd(ctx, newClient, topic, map[int32]int64{partition: 0}, func(r *kgo.Record) error {
		if len(r.Value) == 8 {
			fn(r.Key, time.UnixMilli(int64(binary.BigEndian.Uint64(r.Value))))
		}
		return nil
	})
}
