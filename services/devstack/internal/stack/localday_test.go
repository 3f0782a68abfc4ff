package stack_test

import (
	"encoding/json"
	"io"
	"log/slog"
	"testing"
	"time"

	"go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/edtech-analytics/platform/libs/obs"
	"github.com/edtech-analytics/platform/libs/tenancy/credentials"
	"github.com/edtech-analytics/platform/libs/tenancy/timezones"
	"github.com/edtech-analytics/platform/libs/testenv/sampledata"
)

// TestDistrictSummaryCountsLocalDays: a Chicago district's 10:30 p.m. login (03:30 UTC the next day) goes
// through the whole platform and its district summary counts it on the local day, beside a morning login
// of the next day.
func TestDistrictSummaryCountsLocalDays(t *testing.T) {
	tel := &obs.Telemetry{Tracer: sdktrace.NewTracerProvider(), Meter: noop.NewMeterProvider(), Propagator: propagation.TraceContext{}}
	st, pgURL, chAddr, chDB := testStack(t, tel, slog.New(slog.NewTextHandler(io.Discard, nil)))
	admin := openPG(t, pgURL)
	ctx := t.Context()
	keys, _, _, _ := seedDistricts(t, admin, []string{"d1"}, 50, func(int, string) sampledata.Spec {
		return sampledata.Spec{TenantID: "d1", Schools: 1, ClassesPerSchool: 1, StudentsPerClass: 1, Days: 1, EventsPerStudent: 1,
			Start: time.Date(2026, 10, 5, 0, 0, 0, 0, time.UTC), Seed: 1}
	})
	if _, err := timezones.New(admin).Set(ctx, "d1", "America/Chicago"); err != nil {
		t.Fatal(err)
	}
	login := func(id, sis, at string) sampledata.Event {
		return sampledata.Event{EventID: id, Type: "session", OccurredAt: at, Actor: sampledata.Actor{SISID: sis, Role: "student"},
			Payload: map[string]any{"action": "login"}}
	}
	body, err := json.Marshal(map[string]any{"events": []sampledata.Event{
		login("f0000000-0000-4000-8000-000000000001", "stu-evening", "2026-10-06T03:30:00Z"),
		login("f0000000-0000-4000-8000-000000000002", "stu-morning", "2026-10-06T15:00:00Z"),
	}})
	if err != nil {
		t.Fatal(err)
	}
	post(t, st.GatewayURL, keys["d1"], body)
	ch := openCH(t, chAddr, chDB)
	// The rollup the summary reads (a view writes it after events took the rows, within the same insert).
	waitUntil(t, "the district rollup to hold both logins", func() bool {
		return countCH(t, ch, `SELECT toUInt64(sumMerge(events)) FROM metrics_daily WHERE tenant_id = 'd1' AND level = 'district'`) == 2
	})

	token, _, err := credentials.New(admin).CreateDashboardToken(ctx, credentials.DashboardToken{TenantID: "d1", Role: credentials.RoleDistrictAdmin})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		day    string
		events int
	}{{"2026-10-05", 1}, {"2026-10-06", 1}} {
		var summary struct {
			Totals struct {
				Events int `json:"events"`
				Logins int `json:"logins"`
			} `json:"totals"`
		}
		if code := getJSON(t, st.QueryURL+"/v1/district/summary?from="+tt.day+"&to="+tt.day, token, &summary); code != 200 ||
			summary.Totals.Events != tt.events || summary.Totals.Logins != tt.events {
			t.Errorf("district summary of %s answered %d: %+v, want %d login", tt.day, code, summary, tt.events)
		}
	}
}
