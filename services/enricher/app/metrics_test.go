package app

import (
	"testing"

	"github.com/edtech-analytics/platform/services/enricher/internal/pipeline"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// TestPIICounter: the personal data a committed batch found is added to enricher_pii_detected (exported
// as enricher_pii_detected_total) by tenant_id, field, kind and action.
func TestPIICounter(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	c, err := newCounters(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)))
	if err != nil {
		t.Fatal(err)
	}
	k := pipeline.PIIKey{Tenant: "d1", Source: "lms", Field: "attendance.reason", Kind: "phone", Action: "mask"}
	c.add(t.Context(), pipeline.Stats{Enriched: 3, PII: map[pipeline.PIIKey]int{k: 2}})
	c.add(t.Context(), pipeline.Stats{Enriched: 1, PII: map[pipeline.PIIKey]int{k: 1}})
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(t.Context(), &rm); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != "enricher_pii_detected" {
				continue
			}
			for _, p := range m.Data.(metricdata.Sum[int64]).DataPoints {
				s := p.Attributes.Encoded(attribute.DefaultEncoder())
				got = append(got, s)
				if p.Value != 3 {
					t.Errorf("%s = %d, want 3", s, p.Value)
				}
			}
		}
	}
	if want := "action=mask,field=attendance.reason,kind=phone,tenant_id=d1"; len(got) != 1 || got[0] != want {
		t.Errorf("data points %v, want one of %s", got, want)
	}
}
