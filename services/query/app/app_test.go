package app

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/edtech-analytics/platform/libs/obs"
)

// TestRequestLatencyPerEndpoint proves that each request is measured in http.server.request.duration
// under its route pattern, not its path: two schools' summaries are one series, the district summary
// another, and a path no route has is counted without a route.
func TestRequestLatencyPerEndpoint(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	tel := &obs.Telemetry{Meter: sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)), Tracer: tracenoop.NewTracerProvider(),
		Propagator: propagation.TraceContext{}}
	mux := http.NewServeMux()
	ok := func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) }
	mux.HandleFunc("GET /v1/schools/{school_id}/summary", ok)
	mux.HandleFunc("GET /v1/district/summary", ok)
	srv := httptest.NewServer(Instrument(mux, tel))
	defer srv.Close()
	for _, path := range []string{"/v1/schools/s1/summary", "/v1/schools/s2/summary", "/v1/district/summary", "/v1/nothing"} {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(t.Context(), &rm); err != nil {
		t.Fatal(err)
	}
	counts := map[string]uint64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != "http.server.request.duration" {
				continue
			}
			for _, dp := range m.Data.(metricdata.Histogram[float64]).DataPoints {
				route, _ := dp.Attributes.Value("http.route")
				counts[route.AsString()] += dp.Count
			}
		}
	}
	if counts["/v1/schools/{school_id}/summary"] != 2 || counts["/v1/district/summary"] != 1 || counts[""] != 1 {
		t.Errorf("requests by route: %v", counts)
	}
}
