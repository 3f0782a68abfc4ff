// Package usagegauges keeps the current month's usage of every district as Prometheus gauges: at an
// interval it measures the UTC month so far (libs/usage, the same report as 'ctl usage report' and
// GET /v1/usage), and the gauges show the last report. They are gauges, not counters: each is the
// month's figure so far, which starts again from zero with the next month (a counter that fell at every
// month's start would read as resets to rate()), and storage and roster sizes go down as well as up.
//
//   - district_usage_events{tenant_id, type}: events received this month, by type
//   - district_usage_active_students{tenant_id}: distinct students active this month
//   - district_usage_roster_students{tenant_id}: students in the roster
//   - district_usage_storage_bytes{tenant_id, store}: store "postgresql" (the district's schema) or
//     "clickhouse" (its apportioned share of the shared tables)
//   - district_usage_privacy_jobs{tenant_id, kind}: exports and erasures done this month, by job kind
//
// Every query instance computes them; take max by (tenant_id, ...) over instances to read each once.
package usagegauges

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/edtech-analytics/platform/libs/usage"
)

// Reporter measures usage (usage.Reporter).
type Reporter interface {
	Report(ctx context.Context, p usage.Period, tenantIDs ...string) (*usage.Report, error)
}

// Collector measures the current month (Collect, Run) and keeps the last report for the gauges.
type Collector struct {
	reporter Reporter
	now      func() time.Time
	log      *slog.Logger

	mu   sync.Mutex
	last *usage.Report
}

// New registers the gauges on mp and returns a collector that measures the month of now(). The returned
// function unregisters them.
func New(mp metric.MeterProvider, reporter Reporter, now func() time.Time, log *slog.Logger) (*Collector, func(), error) {
	c := &Collector{reporter: reporter, now: now, log: log}
	m := mp.Meter("district-usage")
	events, err := m.Int64ObservableGauge("district_usage_events",
		metric.WithDescription("events of the district received this UTC month and stored, by type"))
	if err != nil {
		return nil, nil, err
	}
	active, err := m.Int64ObservableGauge("district_usage_active_students",
		metric.WithDescription("distinct students of the district with at least one event this UTC month"))
	if err != nil {
		return nil, nil, err
	}
	roster, err := m.Int64ObservableGauge("district_usage_roster_students",
		metric.WithDescription("students in the district's roster"))
	if err != nil {
		return nil, nil, err
	}
	storage, err := m.Int64ObservableGauge("district_usage_storage_bytes",
		metric.WithDescription("bytes of the district: its PostgreSQL schema (store=postgresql), its apportioned share of ClickHouse's shared tables (store=clickhouse)"))
	if err != nil {
		return nil, nil, err
	}
	jobs, err := m.Int64ObservableGauge("district_usage_privacy_jobs",
		metric.WithDescription("exports and erasures of the district done this UTC month, by job kind"))
	if err != nil {
		return nil, nil, err
	}
	reg, err := m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		c.mu.Lock()
		rep := c.last
		c.mu.Unlock()
		if rep == nil {
			return nil
		}
		for _, d := range rep.Districts {
			t := attribute.String("tenant_id", d.TenantID)
			for _, typ := range usage.EventTypes() {
				o.ObserveInt64(events, d.Events[typ], metric.WithAttributes(t, attribute.String("type", typ)))
			}
			for typ, n := range d.Events {
				if !slices.Contains(usage.EventTypes(), typ) {
					o.ObserveInt64(events, n, metric.WithAttributes(t, attribute.String("type", typ)))
				}
			}
			o.ObserveInt64(active, d.ActiveStudents, metric.WithAttributes(t))
			o.ObserveInt64(roster, d.RosterStudents, metric.WithAttributes(t))
			o.ObserveInt64(storage, d.PostgreSQLBytes, metric.WithAttributes(t, attribute.String("store", "postgresql")))
			o.ObserveInt64(storage, d.ClickHouseBytesApportioned, metric.WithAttributes(t, attribute.String("store", "clickhouse")))
			for kind, n := range map[string]int64{usage.KindExportStudent: d.ExportsStudent, usage.KindExportTenant: d.ExportsDistrict,
				usage.KindEraseStudent: d.ErasuresStudent, usage.KindEraseTenant: d.ErasuresDistrict} {
				o.ObserveInt64(jobs, n, metric.WithAttributes(t, attribute.String("kind", kind)))
			}
		}
		return nil
	}, events, active, roster, storage, jobs)
	if err != nil {
		return nil, nil, err
	}
	return c, func() { _ = reg.Unregister() }, nil
}

// Collect measures the current month once. On failure the gauges keep the last report.
func (c *Collector) Collect(ctx context.Context) error {
	rep, err := c.reporter.Report(ctx, usage.MonthOf(c.now()))
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.last = rep
	c.mu.Unlock()
	return nil
}

// Run collects every interval until ctx is done.
func (c *Collector) Run(ctx context.Context, every time.Duration) error {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if err := c.Collect(ctx); err != nil && ctx.Err() == nil {
			c.log.WarnContext(ctx, "district usage gauges", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
