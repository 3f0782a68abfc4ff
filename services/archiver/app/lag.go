package app

import (
	"context"
	"sync"
	"time"

	"github.com/edtech-analytics/platform/libs/archive"
	"github.com/twmb/franz-go/pkg/kadm"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// lagSource is one archived topic and where its store stands, per partition it holds.
type lagSource struct {
	layer, topic string
	published    func() map[int32]archive.Mark
}

// reportLag registers, for each partition this instance holds and has read the index of:
//
//   - archiver_lag_records: the records of the topic after the last one published (end offset minus the
//     next offset to archive);
//   - archiver_lag_seconds: 0 when no record is pending; otherwise now minus the later of the Kafka
//     timestamp of the last record published (or, before this instance has published any of the
//     partition, the time it took the partition) and the last collection that found the partition
//     caught up. No pending record is older than that, so it bounds the age of the oldest record not
//     yet archived from above, to within one collection interval.
//
// It asks Kafka for the end offsets at each collection; when Kafka does not answer, nothing is
// observed. stop unregisters it.
func reportLag(mp metric.MeterProvider, adm *kadm.Client, sources []lagSource) (stop func(), err error) {
	meter := mp.Meter("archiver")
	records, err := meter.Int64ObservableGauge("archiver_lag_records",
		metric.WithDescription("records of a partition not yet archived: its end offset minus the next offset to publish"))
	if err != nil {
		return nil, err
	}
	seconds, err := meter.Float64ObservableGauge("archiver_lag_seconds",
		metric.WithDescription("0 when a partition is archived to its end; otherwise seconds since the later of the Kafka "+
			"timestamp of its last archived record and the last collection that found it caught up: an upper bound "+
			"on the age of its oldest record not yet archived"),
		metric.WithUnit("s"))
	if err != nil {
		return nil, err
	}
	topics := make([]string, 0, len(sources))
	for _, s := range sources {
		topics = append(topics, s.topic)
	}
	type key struct {
		layer string
		p     int32
	}
	var mu sync.Mutex
	caughtUp := map[key]time.Time{} // when a collection last found the partition at its end
	reg, err := meter.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		ends, err := adm.ListEndOffsets(ctx, topics...)
		if err != nil {
			return nil //nolint:nilerr // no observation while Kafka does not answer; the consumer logs its own errors
		}
		now := time.Now()
		mu.Lock()
		defer mu.Unlock()
		next := map[key]time.Time{} // only the partitions held now
		for _, s := range sources {
			for p, mark := range s.published() {
				end, ok := ends.Lookup(s.topic, p)
				if !ok || end.Err != nil {
					continue
				}
				k := key{s.layer, p}
				pending := max(end.Offset-(mark.Offset+1), 0)
				since := mark.At
				if c, ok := caughtUp[k]; ok && c.After(since) {
					since = c
				}
				if pending == 0 {
					since = now
				}
				next[k] = since
				attrs := metric.WithAttributes(attribute.String("layer", s.layer), attribute.Int("partition", int(p)))
				o.ObserveInt64(records, pending, attrs)
				o.ObserveFloat64(seconds, max(now.Sub(since).Seconds(), 0), attrs)
			}
		}
		caughtUp = next
		return nil
	}, records, seconds)
	if err != nil {
		return nil, err
	}
	return func() { _ = reg.Unregister() }, nil // fails only for a registration the provider no longer knows
}
