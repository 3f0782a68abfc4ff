package app

import (
	"context"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// lagSource is one archived topic and what its store has published, per partition it holds.
type lagSource struct {
	layer, topic string
	published    func() map[int32]int64
}

// reportLag registers archiver_lag_records: for each partition this instance holds and has published
// to, the records of the topic after the last one published (end offset minus the next offset to
// archive). It asks Kafka for the end offsets at each collection; when Kafka does not answer, nothing
// is observed. stop unregisters it.
func reportLag(mp metric.MeterProvider, adm *kadm.Client, sources []lagSource) (stop func(), err error) {
	meter := mp.Meter("archiver")
	g, err := meter.Int64ObservableGauge("archiver_lag_records",
		metric.WithDescription("records of a partition not yet archived: its end offset minus the next offset to publish"))
	if err != nil {
		return nil, err
	}
	topics := make([]string, 0, len(sources))
	for _, s := range sources {
		topics = append(topics, s.topic)
	}
	reg, err := meter.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		ends, err := adm.ListEndOffsets(ctx, topics...)
		if err != nil {
			return nil //nolint:nilerr // no observation while Kafka does not answer; the consumer logs its own errors
		}
		for _, s := range sources {
			for p, last := range s.published() {
				end, ok := ends.Lookup(s.topic, p)
				if !ok || end.Err != nil {
					continue
				}
				o.ObserveInt64(g, max(end.Offset-(last+1), 0),
					metric.WithAttributes(attribute.String("layer", s.layer), attribute.Int("partition", int(p))))
			}
		}
		return nil
	}, g)
	if err != nil {
		return nil, err
	}
	return func() { _ = reg.Unregister() }, nil // fails only for a registration the provider no longer knows
}
