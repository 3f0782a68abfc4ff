package usagegauges_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/edtech-analytics/platform/libs/chutil"
	"github.com/edtech-analytics/platform/libs/chutil/chtest"
	"github.com/edtech-analytics/platform/libs/pgutil/pgtest"
	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/edtech-analytics/platform/libs/tenancy/fleet"
	"github.com/edtech-analytics/platform/libs/usage"
	"github.com/edtech-analytics/platform/libs/usage/usagetest"
	"github.com/edtech-analytics/platform/services/query/internal/usagegauges"
)

// failing fails its reports while fail is set, and passes the others to the real reporter.
type failing struct {
	*usage.Reporter
	fail bool
}

func (f *failing) Report(ctx context.Context, p usage.Period, ids ...string) (*usage.Report, error) {
	if f.fail {
		return nil, errors.New("clickhouse unreachable")
	}
	return f.Reporter.Report(ctx, p, ids...)
}

// TestGaugesShowTheMonthSoFar: measured in the fixture's month, the gauges show each district's events
// by type (a zero for each known type it did not send), active and roster students, storage of both
// stores and the jobs done, exactly; a failed measure keeps the last gauges.
func TestGaugesShowTheMonthSoFar(t *testing.T) {
	ctx := t.Context()
	ch, db, _ := chtest.New(t)
	if err := chutil.Migrate(ctx, ch, db, os.DirFS("../../../aggregator/internal/chstore/migrations")); err != nil {
		t.Fatal(err)
	}
	pool, _ := pgtest.New(t)
	if err := tenancy.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	fx := usagetest.Seed(t, pool, ch)
	f := fleet.New(pool, os.Getenv)
	t.Cleanup(f.Close)

	reporter := &failing{Reporter: usage.New(pool, fleet.NewDistrictPools(f), ch)}
	reader := sdkmetric.NewManualReader()
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC) // the month so far
	c, stop, err := usagegauges.New(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)), reporter, func() time.Time { return now },
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	if got := gauges(t, reader); len(got) != 0 {
		t.Fatalf("gauges before any measure: %v", got)
	}
	if err := c.Collect(ctx); err != nil {
		t.Fatal(err)
	}
	got := gauges(t, reader)
	for _, id := range fx.Reported {
		w := fx.Want[id]
		want := map[string]int64{
			"district_usage_active_students tenant_id=" + id:                  w.ActiveStudents,
			"district_usage_roster_students tenant_id=" + id:                  w.RosterStudents,
			"district_usage_privacy_jobs kind=export_student tenant_id=" + id: w.ExportsStudent,
			"district_usage_privacy_jobs kind=export_tenant tenant_id=" + id:  w.ExportsDistrict,
			"district_usage_privacy_jobs kind=erase_student tenant_id=" + id:  w.ErasuresStudent,
			"district_usage_privacy_jobs kind=erase_tenant tenant_id=" + id:   w.ErasuresDistrict,
		}
		for _, typ := range usage.EventTypes() {
			want["district_usage_events tenant_id="+id+" type="+typ] = w.Events[typ]
		}
		for k, v := range want {
			if g, ok := got[k]; !ok || g != v {
				t.Errorf("%s = %d (present %v), want %d", k, g, ok, v)
			}
		}
		if got["district_usage_storage_bytes store=clickhouse tenant_id="+id] <= 0 {
			t.Errorf("%s: no clickhouse bytes in %v", id, got)
		}
	}
	if got["district_usage_storage_bytes store=postgresql tenant_id=d1"] <= 0 || got["district_usage_storage_bytes store=postgresql tenant_id=d4"] != 0 {
		t.Errorf("postgresql bytes: %v", got)
	}
	if n := len(got); n != len(fx.Reported)*(2+4+2+len(usage.EventTypes())) {
		t.Errorf("%d gauges: %v", n, got)
	}

	reporter.fail = true
	if err := c.Collect(ctx); err == nil {
		t.Fatal("a failed measure reported no error")
	}
	if again := gauges(t, reader); again["district_usage_events tenant_id=d1 type=attendance"] != 3 || len(again) != len(got) {
		t.Errorf("after a failed measure: %v", again)
	}
}

func gauges(t *testing.T, reader *sdkmetric.ManualReader) map[string]int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(t.Context(), &rm); err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if d, ok := m.Data.(metricdata.Gauge[int64]); ok {
				for _, p := range d.DataPoints {
					got[key(m.Name, p.Attributes.ToSlice())] = p.Value
				}
			}
		}
	}
	return got
}

func key(name string, attrs []attribute.KeyValue) string {
	out := name
	for _, a := range attrs {
		out += " " + string(a.Key) + "=" + a.Value.String()
	}
	return out
}
