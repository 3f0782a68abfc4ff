package kafkax_test

import (
	"context"
	"testing"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/edtech-analytics/platform/libs/kafkax"
	"github.com/edtech-analytics/platform/libs/testenv/kafkatest"
)

// TestStoreConsumerReportsLagAndRecordAge proves that a store consumer given a meter reports each
// assigned partition's lag (0 once the store holds everything) and the age of every record it made
// durable: one observation per record, none below zero.
func TestStoreConsumerReportsLagAndRecordAge(t *testing.T) {
	_, cfg := kafkatest.New(t)
	topic := cfg.Topics().Enriched
	createTopic(t, cfg, topic, 3)
	const n = 500
	produce(t, cfg, topic, n)

	reader := sdkmetric.NewManualReader()
	store := newMemStore()
	stop := startConsumer(t, cfg, topic, store, func(c *kafkax.ConsumerConfig) {
		c.Meter = sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	})
	defer stop()
	waitFor(t, "every record", func() bool { return store.total() >= n })

	var lags map[int64]int64
	var ages uint64
	waitFor(t, "every partition's lag at 0", func() bool {
		var rm metricdata.ResourceMetrics
		if err := reader.Collect(context.Background(), &rm); err != nil {
			t.Fatal(err)
		}
		lags, ages = map[int64]int64{}, 0
		for _, sm := range rm.ScopeMetrics {
			for _, m := range sm.Metrics {
				switch d := m.Data.(type) {
				case metricdata.Gauge[int64]:
					if m.Name == "consumer_lag_records" {
						for _, dp := range d.DataPoints {
							p, _ := dp.Attributes.Value("partition")
							lags[p.AsInt64()] = dp.Value
						}
					}
				case metricdata.Histogram[float64]:
					if m.Name == "consumer_record_age_seconds" {
						for _, dp := range d.DataPoints {
							ages += dp.Count
							if min, ok := dp.Min.Value(); !ok || min < 0 {
								t.Fatalf("record age min %v", min)
							}
						}
					}
				}
			}
		}
		return len(lags) == 3 && lags[0]+lags[1]+lags[2] == 0
	})
	if ages != n {
		t.Errorf("%d record ages observed, want one per record (%d)", ages, n)
	}
}
