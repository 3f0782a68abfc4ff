package stream

import (
	"context"
	"time"

	"github.com/edtech-analytics/platform/libs/kafkax"
	"github.com/edtech-analytics/platform/libs/obs"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// ReportStalls makes a store consumer's stalled partitions visible: /readyz answers "degraded" naming
// each, since when, how many failures and the last error, and the gauge
// consumer_partition_stalled_seconds{topic,partition} says how long each has waited (alert on it). stop
// ends the reports, for a consumer that stops while the process goes on (the demo restarts services).
func ReportStalls(mp metric.MeterProvider, health *obs.Health, topic string, c *kafkax.StoreConsumer) (stop func(), err error) {
	health.SetDegraded("stalled_partitions", func() any {
		if s := c.Stalls(); len(s) > 0 {
			return s
		}
		return nil
	})
	g, err := mp.Meter("kafkax").Float64ObservableGauge("consumer_partition_stalled_seconds",
		metric.WithDescription("how long a partition's records have waited on a failing store write (absent: none)"),
		metric.WithUnit("s"))
	if err != nil {
		return nil, err
	}
	reg, err := mp.Meter("kafkax").RegisterCallback(func(_ context.Context, o metric.Observer) error {
		for _, s := range c.Stalls() {
			o.ObserveFloat64(g, time.Since(s.Since).Seconds(),
				metric.WithAttributes(attribute.String("topic", topic), attribute.Int("partition", int(s.Partition))))
		}
		return nil
	}, g)
	if err != nil {
		return nil, err
	}
	return func() {
		health.SetDegraded("stalled_partitions", func() any { return nil })
		_ = reg.Unregister() // only fails for a registration the provider no longer knows
	}, nil
}
