// Package eventquality keeps districts' event data quality as Prometheus gauges: at an interval it runs
// each district's checks (libs/quality, the same as 'ctl quality report') and the gauges show the last
// ones computed. Every query instance computes them; alert rules take the most by district
// (k8s/monitoring/alerts.yaml, group edtech-event-quality).
package eventquality

import (
	"context"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/edtech-analytics/platform/libs/obs"
	"github.com/edtech-analytics/platform/libs/quality"
)

// Districts lists the districts to check.
type Districts func(ctx context.Context) ([]string, error)

// Checker runs a district's checks as of now (a *quality.Checker).
type Checker interface {
	Check(ctx context.Context, tenantID string, now time.Time) (*quality.Report, error)
}

// Collector runs the checks (Collect, Run) and observes their last reports.
type Collector struct {
	*obs.Latest[*quality.Report]
}

// New registers the gauges on mp and returns a collector that checks as of now():
//
//   - event_volume_zscore{tenant_id, source_id, type}: the z-score of a source's event type on the last
//     closed day against the same weekdays before, for the volume anomalies only (a series per
//     district, source and type for every key would be steady noise; an anomaly's series ends when the
//     day it was found on is no longer the last closed one);
//   - event_volume_anomalies{tenant_id}: how many of the district's sources and types are anomalies;
//   - event_store_gap_ratio{tenant_id}: how far the sink's attendance student-days of the last closed day
//     are from ClickHouse's (libs/quality.CompareDays).
func New(mp metric.MeterProvider, checker Checker, districts Districts, now func() time.Time, log *slog.Logger) (*Collector, func(), error) {
	c := &Collector{obs.NewLatest("event quality checks", districts, func(ctx context.Context, tenantID string) (*quality.Report, error) {
		return checker.Check(ctx, tenantID, now())
	}, log)}
	m := mp.Meter("event-quality")
	zscore, err := m.Float64ObservableGauge("event_volume_zscore",
		metric.WithDescription("z-score of a source's event type's count on the last closed day against the same weekdays before, for anomalies"))
	if err != nil {
		return nil, nil, err
	}
	anomalies, err := m.Int64ObservableGauge("event_volume_anomalies",
		metric.WithDescription("sources and event types of the district whose count on the last closed day is an anomaly"))
	if err != nil {
		return nil, nil, err
	}
	gap, err := m.Float64ObservableGauge("event_store_gap_ratio",
		metric.WithDescription("how far the sink's attendance student-days of the last closed day are from ClickHouse's"))
	if err != nil {
		return nil, nil, err
	}
	reg, err := m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		c.Each(func(tenant string, rep *quality.Report) {
			t := attribute.String("tenant_id", tenant)
			for _, v := range rep.Volume {
				if v.Anomaly {
					o.ObserveFloat64(zscore, v.Z, metric.WithAttributes(t, attribute.String("source_id", v.Source), attribute.String("type", v.Type)))
				}
			}
			o.ObserveInt64(anomalies, int64(rep.Anomalies()), metric.WithAttributes(t))
			if g, ok := rep.LastGap(); ok {
				o.ObserveFloat64(gap, g.Ratio, metric.WithAttributes(t))
			}
		})
		return nil
	}, zscore, anomalies, gap)
	if err != nil {
		return nil, nil, err
	}
	return c, func() { _ = reg.Unregister() }, nil
}
