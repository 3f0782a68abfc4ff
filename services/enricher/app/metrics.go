package app

import (
	"context"
	"fmt"

	"github.com/edtech-analytics/platform/services/enricher/internal/pipeline"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// counters count committed records by outcome, and the personal data found in their free text. Prometheus
// exports counters with _total: enricher_records_total, enricher_pii_detected_total.
type counters struct {
	records metric.Int64Counter
	pii     metric.Int64Counter
}

func newCounters(mp metric.MeterProvider) (*counters, error) {
	m := mp.Meter("enricher")
	c, err := m.Int64Counter("enricher_records",
		metric.WithDescription("raw records committed, by outcome: enriched, dead, duplicate, erased, no_consent"))
	if err != nil {
		return nil, fmt.Errorf("creating enricher metrics: %w", err)
	}
	pii, err := m.Int64Counter("enricher_pii_detected",
		metric.WithDescription("committed records holding personal data in a free-text field, by tenant_id, field, kind (ssn, email, phone) and the action of the district's free-text rule (flag, mask, drop, reject)"))
	if err != nil {
		return nil, fmt.Errorf("creating enricher metrics: %w", err)
	}
	return &counters{records: c, pii: pii}, nil
}

func (c *counters) add(ctx context.Context, s pipeline.Stats) {
	for outcome, n := range map[string]int{"enriched": s.Enriched, "dead": s.Dead, "duplicate": s.Duplicates,
		"erased": s.Erased, "no_consent": s.NoConsent} {
		if n > 0 {
			c.records.Add(ctx, int64(n), metric.WithAttributes(attribute.String("outcome", outcome)))
		}
	}
	for k, n := range s.PII {
		c.pii.Add(ctx, int64(n), metric.WithAttributes(attribute.String("tenant_id", k.Tenant), attribute.String("field", k.Field),
			attribute.String("kind", k.Kind), attribute.String("action", k.Action)))
	}
}
