package app

import (
	"context"
	"testing"
	"time"

	"github.com/edtech-analytics/platform/libs/archive"
	"github.com/edtech-analytics/platform/libs/kafkax"
	"github.com/edtech-analytics/platform/libs/testenv/kafkatest"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// TestReportLag checks both lag gauges of a partition archived to its end and of one behind, and that a
// partition found caught up at one collection is measured from that collection, not from the older
// timestamp of its last archived record.
func TestReportLag(t *testing.T) {
	_, kcfg := kafkatest.New(t)
	cl, err := kafkax.NewClient(kcfg, kafkax.Deps{}, "", append(kafkax.ProducerOptions(), kgo.RecordPartitioner(kgo.ManualPartitioner()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl.Client)
	const topic = "test.lag"
	if _, err := adm.CreateTopic(t.Context(), 2, 1, nil, topic); err != nil {
		t.Fatal(err)
	}
	produce := func(p int32, n int) {
		t.Helper()
		for range n {
			if err := cl.ProduceSync(t.Context(), &kgo.Record{Topic: topic, Partition: p, Value: []byte("v")}).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
	}
	produce(0, 10)
	produce(1, 10)

	hourAgo := time.Now().Add(-time.Hour)
	marks := map[int32]archive.Mark{0: {Offset: 9, At: hourAgo}, 1: {Offset: 4, At: hourAgo}}
	reader := sdkmetric.NewManualReader()
	stop, err := reportLag(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)), adm,
		[]lagSource{{"raw", topic, func() map[int32]archive.Mark { return marks }}})
	if err != nil {
		t.Fatal(err)
	}
	defer stop()

	records, seconds := collect(t, reader)
	if records[0] != 0 || seconds[0] != 0 {
		t.Errorf("partition 0 archived to its end: lag %d records, %.0f s; want 0, 0", records[0], seconds[0])
	}
	if records[1] != 5 || seconds[1] < 3600 || seconds[1] > 3700 {
		t.Errorf("partition 1 five records behind since an hour: lag %d records, %.0f s", records[1], seconds[1])
	}

	produce(0, 1) // partition 0 was caught up at the last collection: its new record is younger than that
	records, seconds = collect(t, reader)
	if records[0] != 1 || seconds[0] <= 0 || seconds[0] > 60 {
		t.Errorf("partition 0 one record behind since the last collection: lag %d records, %.0f s", records[0], seconds[0])
	}
}

// collect returns the lag gauges by partition.
func collect(t *testing.T, reader *sdkmetric.ManualReader) (map[int32]int64, map[int32]float64) {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	records, seconds := map[int32]int64{}, map[int32]float64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Gauge[int64]:
				for _, dp := range d.DataPoints {
					p, _ := dp.Attributes.Value("partition")
					records[int32(p.AsInt64())] = dp.Value
				}
			case metricdata.Gauge[float64]:
				for _, dp := range d.DataPoints {
					p, _ := dp.Attributes.Value("partition")
					seconds[int32(p.AsInt64())] = dp.Value
				}
			}
		}
	}
	if len(records) != 2 || len(seconds) != 2 {
		t.Fatalf("series: records %v, seconds %v; want both partitions in each", records, seconds)
	}
	return records, seconds
}
