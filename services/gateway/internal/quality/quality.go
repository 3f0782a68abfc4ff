// Package quality keeps districts' roster data quality as Prometheus gauges: at an interval it computes
// each district's report (libs/tenancy/rosters' Quality, the same as 'ctl quality report') and the
// gauges show the last one computed. Every gateway instance computes them; alert rules take the most
// by district (k8s/monitoring/alerts.yaml).
package quality

import (
	"context"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/edtech-analytics/platform/libs/obs"
	"github.com/edtech-analytics/platform/libs/tenancy/rosters"
)

// Districts lists the districts to report on.
type Districts func(ctx context.Context) ([]string, error)

// Collector computes the reports (Collect, Run) and observes them.
type Collector struct {
	*obs.Latest[*rosters.Report]
}

// New registers the gauges on mp and returns a collector whose reports cover uploads of the last window.
//
//   - roster_held_uploads{tenant_id}: uploads held for approval;
//   - roster_held_references{tenant_id, state}: records waiting for an entity (open) or that expired
//     waiting (expired);
//   - roster_rejected_ratio{tenant_id}: rows rejected of the rows received in the window's uploads;
//   - roster_store_gap_ratio{tenant_id, entity}: how far the sink's rows are from the ledger's active
//     records, for entities over 0.5% apart;
//   - roster_orphan_enrollments{tenant_id}: stored enrollments without an active user or a class;
//   - roster_source_overdue_seconds{tenant_id, source_id}: how long past its expected interval a source
//     is silent, for silent sources;
//   - roster_quality_findings{tenant_id, check, severity}: the report's findings.
func New(mp metric.MeterProvider, store *rosters.Store, districts Districts, window time.Duration, log *slog.Logger) (*Collector, func(), error) {
	c := &Collector{obs.NewLatest("roster quality report", districts, func(ctx context.Context, tenantID string) (*rosters.Report, error) {
		return store.Quality(ctx, tenantID, time.Now().Add(-window))
	}, log)}
	m := mp.Meter("roster-quality")
	held, err := m.Int64ObservableGauge("roster_held_uploads", metric.WithDescription("roster uploads held for approval"))
	if err != nil {
		return nil, nil, err
	}
	refs, err := m.Int64ObservableGauge("roster_held_references",
		metric.WithDescription("roster records waiting for an entity they reference (state=open) or expired waiting (state=expired)"))
	if err != nil {
		return nil, nil, err
	}
	rejected, err := m.Float64ObservableGauge("roster_rejected_ratio",
		metric.WithDescription("rows rejected of the rows received by the district's roster uploads of the window"))
	if err != nil {
		return nil, nil, err
	}
	gap, err := m.Float64ObservableGauge("roster_store_gap_ratio",
		metric.WithDescription("how far the sink's roster rows are from the records sent as active, for entities over 0.5% apart"))
	if err != nil {
		return nil, nil, err
	}
	orphans, err := m.Int64ObservableGauge("roster_orphan_enrollments", metric.WithDescription("stored enrollments without an active user or a class"))
	if err != nil {
		return nil, nil, err
	}
	overdue, err := m.Float64ObservableGauge("roster_source_overdue_seconds",
		metric.WithDescription("how long past its expected interval a roster source has been silent"), metric.WithUnit("s"))
	if err != nil {
		return nil, nil, err
	}
	findings, err := m.Int64ObservableGauge("roster_quality_findings", metric.WithDescription("findings of the district's roster quality report"))
	if err != nil {
		return nil, nil, err
	}
	reg, err := m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		c.Each(func(tenant string, rep *rosters.Report) {
			t := attribute.String("tenant_id", tenant)
			var nHeld, nOpen, nExpired, nOrphans int64
			counts := map[[2]string]int64{}
			for _, f := range rep.Findings {
				counts[[2]string{f.Check, f.Severity}]++
				switch {
				case f.Check == rosters.CheckHeldUpload:
					nHeld++
				case f.Check == rosters.CheckReferences && f.Severity == rosters.SeverityError:
					nExpired += int64(f.Value)
				case f.Check == rosters.CheckReferences:
					nOpen += int64(f.Value)
				case f.Check == rosters.CheckOrphans:
					nOrphans += int64(f.Value)
				case f.Check == rosters.CheckStored:
					o.ObserveFloat64(gap, f.Value, metric.WithAttributes(t, attribute.String("entity", f.Entity)))
				case f.Check == rosters.CheckFreshness:
					o.ObserveFloat64(overdue, f.Value-f.Threshold, metric.WithAttributes(t, attribute.String("source_id", f.Source)))
				}
			}
			o.ObserveInt64(held, nHeld, metric.WithAttributes(t))
			o.ObserveInt64(refs, nOpen, metric.WithAttributes(t, attribute.String("state", "open")))
			o.ObserveInt64(refs, nExpired, metric.WithAttributes(t, attribute.String("state", "expired")))
			o.ObserveInt64(orphans, nOrphans, metric.WithAttributes(t))
			ratio := 0.0
			if rep.Rows["received"] > 0 {
				ratio = float64(rep.Rows["rejected"]) / float64(rep.Rows["received"])
			}
			o.ObserveFloat64(rejected, ratio, metric.WithAttributes(t))
			for k, n := range counts {
				o.ObserveInt64(findings, n, metric.WithAttributes(t, attribute.String("check", k[0]), attribute.String("severity", k[1])))
			}
		})
		return nil
	}, held, refs, rejected, gap, orphans, overdue, findings)
	if err != nil {
		return nil, nil, err
	}
	return c, func() { _ = reg.Unregister() }, nil
}
