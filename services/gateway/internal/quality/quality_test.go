package quality_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/edtech-analytics/platform/libs/pgutil/pgtest"
	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/edtech-analytics/platform/libs/tenancy/fleet"
	"github.com/edtech-analytics/platform/libs/tenancy/rosters"
	"github.com/edtech-analytics/platform/libs/tenancy/tenants"
	"github.com/edtech-analytics/platform/services/gateway/internal/quality"
)

// upload imports a bulk users file of n users (none sent: nothing here produces), and returns its result.
func upload(t *testing.T, store *rosters.Store, n int) *rosters.Result {
	t.Helper()
	up := &rosters.Upload{TenantID: "d1", SourceID: "sis", Kind: "test", ReceivedAt: time.Now(),
		Files: []rosters.File{{Name: "users.csv", Entity: rosters.Users, Mode: rosters.Bulk, Received: n + 1, Rejected: 1}}}
	for i := range n {
		id := fmt.Sprintf("u%02d", i)
		up.Items = append(up.Items, rosters.Item{File: "users.csv", Entity: rosters.Users, SourcedID: id, Active: true, Person: id, Hash: []byte(id)})
	}
	plan, err := store.Plan(t.Context(), up)
	if err != nil {
		t.Fatal(err)
	}
	enc := make([]rosters.Encoded, len(plan.Sent)+len(plan.Missing))
	for i := range enc {
		enc[i] = rosters.Encoded{Key: []byte("d1"), Value: []byte("record")}
	}
	res, err := plan.Commit(t.Context(), "test", func(context.Context, []rosters.Encoded) error { return nil }, enc, nil)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// TestGaugesShowTheLastReports: a district with a held upload, a file that rejected a row, records sent
// but not stored and a silent source shows each in its gauge; a district without roster shows zeros.
func TestGaugesShowTheLastReports(t *testing.T) {
	pool, _ := pgtest.New(t)
	ctx := t.Context()
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
	store := rosters.New(fleet.NewDistrictPools(f))
	upload(t, store, 20)
	if res := upload(t, store, 2); res.Status != rosters.StatusHeld {
		t.Fatalf("upload %+v", res)
	}
	if err := store.ExpectEvery(ctx, "d1", "sis", time.Nanosecond); err != nil {
		t.Fatal(err)
	}
	// Personal data the enricher found in free text today: two findings (field and kind) of d1.
	if _, err := pool.Exec(ctx, `INSERT INTO district_d1.quality_pii_daily (day, source_id, field, kind, records) VALUES
		(current_date, 'lms', 'attendance.reason', 'phone', 3), (current_date, 'sis', 'roster_result.comment', 'email', 1)`); err != nil {
		t.Fatal(err)
	}

	reader := sdkmetric.NewManualReader()
	c, stop, err := quality.New(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)), store,
		func(context.Context) ([]string, error) { return []string{"d1", "d2"}, nil }, 24*time.Hour, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	if err := c.Collect(ctx); err != nil {
		t.Fatal(err)
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
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
	for k, want := range map[string]float64{
		"roster_held_uploads tenant_id=d1":                                      1,
		"roster_held_uploads tenant_id=d2":                                      0,
		"roster_rejected_ratio tenant_id=d1":                                    2.0 / 24, // one rejected row in each upload's file
		"roster_store_gap_ratio entity=users tenant_id=d1":                      1,        // 20 sent, none stored (no sink here)
		"roster_held_references state=expired tenant_id=d1":                     0,
		"roster_quality_findings check=held_upload severity=error tenant_id=d1": 1,
		"roster_quality_findings check=pii severity=warning tenant_id=d1":       2,
	} {
		if v, ok := got[k]; !ok || v != want {
			t.Errorf("%s = %v (present %v), want %v", k, v, ok, want)
		}
	}
	if v := got["roster_source_overdue_seconds source_id=sis tenant_id=d1"]; v <= 0 {
		t.Errorf("roster_source_overdue_seconds of sis = %v, want > 0; all: %v", v, got)
	}
}

func key(name string, attrs []attribute.KeyValue) string {
	out := name
	for _, a := range attrs {
		out += " " + string(a.Key) + "=" + a.Value.String()
	}
	return out
}
