package app

import (
	"context"
	"fmt"

	"github.com/edtech-analytics/platform/services/enricher/internal/pipeline"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// counters count committed records by outcome.
type counters struct {
	records metric.Int64Counter
}

func newCounters(mp metric.MeterProvider) (*counters, error) {
	c, err := mp.Meter("enricher").Int64Counter("enricher_records",
		metric.WithDescription("raw records committed, by outcome: enriched, dead, duplicate, erased, no_consent"))
	if err != nil {
		return nil, fmt.Errorf("creating enricher metrics: %w", err)
	}
	return &counters{records: c}, nil
}

func (c *counters) add(ctx context.Context, s pipeline.Stats) {
	for outcome, n := range map[string]int{"enriched": s.Enriched, "dead": s.Dead, "duplicate": s.Duplicates,
		"erased": s.Erased, "no_consent": s.NoConsent} {
		if n > 0 {
			c.records.Add(ctx, int64(n), metric.WithAttributes(attribute.String("outcome", outcome)))
		}
	}
}
