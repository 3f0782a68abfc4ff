package eventquality_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/google/uuid"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/edtech-analytics/platform/libs/chutil"
	"github.com/edtech-analytics/platform/libs/chutil/chtest"
	"github.com/edtech-analytics/platform/libs/pgutil/pgtest"
	"github.com/edtech-analytics/platform/libs/quality"
	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/edtech-analytics/platform/libs/tenancy/fleet"
	"github.com/edtech-analytics/platform/libs/tenancy/tenants"
	"github.com/edtech-analytics/platform/services/query/internal/eventquality"
)

// failing fails the checks of the districts in it, and passes the others to the real checker.
type failing struct {
	*quality.Checker
	fail map[string]bool
}

func (f failing) Check(ctx context.Context, tenantID string, now time.Time) (*quality.Report, error) {
	if f.fail[tenantID] {
		return nil, errors.New("clickhouse unreachable")
	}
	return f.Checker.Check(ctx, tenantID, now)
}

// TestGaugesShowTheLastChecks: a district whose attendance marks dropped on the last closed day, and
// whose sink lacks a row of it, shows the anomaly's z-score, one anomaly and the gap; a district without
// events shows zeros; a district whose checks fail keeps its last gauges.
func TestGaugesShowTheLastChecks(t *testing.T) {
	ctx := t.Context()
	ch, db, _ := chtest.New(t)
	if err := chutil.Migrate(ctx, ch, db, os.DirFS("../../../aggregator/internal/chstore/migrations")); err != nil {
		t.Fatal(err)
	}
	pool, _ := pgtest.New(t)
	if err := tenancy.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	f := fleet.New(pool, os.Getenv)
	t.Cleanup(f.Close)
	for _, id := range []string{"d1", "d2"} {
		if _, err := tenants.New(f).Create(ctx, id, id); err != nil {
			t.Fatal(err)
		}
	}

	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	monday := time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC) // the last closed day
	batch, err := ch.PrepareBatch(ctx, `INSERT INTO events (tenant_id, event_id, source_id, type, occurred_at, student_id, attendance_date)`)
	if err != nil {
		t.Fatal(err)
	}
	mark := func(day time.Time, n int) {
		for i := range n {
			student := uuid.New()
			if err := batch.Append("d1", uuid.New(), "sis", "attendance", day.Add(8*time.Hour), student, day); err != nil {
				t.Fatal(err)
			}
			if day.Equal(monday) && i > 0 { // the sink stores all but one of the day's marks
				if _, err := pool.Exec(ctx, `INSERT INTO district_d1.attendance_daily (internal_id, day, status, event_id) VALUES ($1, $2, 'present', $3)`,
					student, day, uuid.New()); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	for w := 1; w <= 4; w++ {
		mark(monday.AddDate(0, 0, -7*w), 100)
	}
	mark(monday, 20)
	if err := batch.Send(); err != nil {
		t.Fatal(err)
	}

	checker := failing{Checker: quality.NewChecker(ch, fleet.NewDistrictPools(f), tenancy.SchemaName, quality.Config{}), fail: map[string]bool{}}
	reader := sdkmetric.NewManualReader()
	c, stop, err := eventquality.New(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)), checker,
		func(context.Context) ([]string, error) { return []string{"d1", "d2"}, nil }, func() time.Time { return now },
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	want := map[string]float64{
		"event_volume_zscore source_id=sis tenant_id=d1 type=attendance": -8, // 80 under the mean, a tenth of it is the scale
		"event_volume_anomalies tenant_id=d1":                            1,
		"event_volume_anomalies tenant_id=d2":                            0,
		"event_store_gap_ratio tenant_id=d1":                             1.0 / 20,
		"event_store_gap_ratio tenant_id=d2":                             0,
	}
	if err := c.Collect(ctx); err != nil {
		t.Fatal(err)
	}
	got := gauges(t, reader)
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("%s = %v (present %v), want %v; all: %v", k, g, ok, v, got)
		}
	}
	if len(got) != len(want) {
		t.Errorf("gauges %v, want only %v", got, want)
	}

	checker.fail["d1"] = true
	if err := c.Collect(ctx); err != nil {
		t.Fatal(err)
	}
	if got := gauges(t, reader); got["event_volume_anomalies tenant_id=d1"] != 1 || got["event_store_gap_ratio tenant_id=d1"] != 1.0/20 {
		t.Errorf("after a failed check d1 shows %v, want its last gauges", got)
	}
}

func gauges(t *testing.T, reader *sdkmetric.ManualReader) map[string]float64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(t.Context(), &rm); err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Gauge[int64]:
				for _, p := range d.DataPoints {
					got[key(m.Name, p.Attributes.ToSlice())] = float64(p.Value)
				}
			case metricdata.Gauge[float64]:
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
