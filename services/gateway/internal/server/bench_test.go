package server

import (
	"context"
	"github.com/edtech-analytics/platform/libs/keyring/keyringtest"
	"log/slog"
	"testing"
	"time"

	"github.com/edtech-analytics/platform/libs/kafkax"
	"github.com/edtech-analytics/platform/libs/svc/stream"
	"github.com/edtech-analytics/platform/libs/tenancy/mappings"
	"github.com/edtech-analytics/platform/libs/tenancy/rosters"
	"github.com/edtech-analytics/platform/libs/testenv/sampledata"
	"github.com/edtech-analytics/platform/services/gateway/internal/ingest"
	"github.com/edtech-analytics/platform/services/gateway/internal/tenants"
	"go.opentelemetry.io/otel/metric/noop"
	tnoop "go.opentelemetry.io/otel/trace/noop"
)

// BenchmarkBatchPath measures the gateway's CPU work on one 100-event JSON batch short of Kafka:
// splitting the body, decoding and validating every event, and encoding the raw records.
func BenchmarkBatchPath(b *testing.B) {
	ctx := context.Background()
	kcfg := kafkax.Config{TopicPrefix: "bench."}
	codec, err := stream.NewCodec(ctx, kcfg)
	if err != nil {
		b.Fatal(err)
	}
	reg, err := tenants.New(func(context.Context) ([]tenants.Stored, error) { return nil, nil },
		tenants.RateLimit{EventsPerSecond: 1, Burst: 1}, 1000, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	s, err := New(Deps{Log: slog.New(slog.DiscardHandler), Tenants: reg, Codec: codec, Sealer: keyringtest.New(b), Rosters: rosters.New(nil), Mappings: mappings.New(nil), Tracer: tnoop.NewTracerProvider(), Meter: noop.NewMeterProvider()},
		Topics{Raw: kcfg.Topics().Raw, DLQ: kcfg.Topics().DLQ}, Limits{MaxBodyBytes: 5 << 20, MaxEvents: 1000})
	if err != nil {
		b.Fatal(err)
	}
	spec := sampledata.Spec{TenantID: "d1", Schools: 1, ClassesPerSchool: 2, StudentsPerClass: 10, Days: 2, EventsPerStudent: 6,
		Start: time.Date(2026, 11, 16, 0, 0, 0, 0, time.UTC), Seed: 1}
	bodies, err := sampledata.Batches(spec.Events(), 100)
	if err != nil {
		b.Fatal(err)
	}
	body := bodies[0]
	meta := ingest.Meta{TenantID: "d1", SourceID: "lms", ReceivedAt: time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)}
	tenant := reg.Settings("d1")
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		raw, err := ingest.SplitJSON(body, 1000)
		if err != nil {
			b.Fatal(err)
		}
		acc, rej := ingest.Validate(raw, meta)
		if len(acc) != 100 || len(rej) != 0 {
			b.Fatalf("accepted %d, rejected %v", len(acc), rej)
		}
		if recs, refused, err := s.encodeBatch(ctx, tenant, acc, len(body), nil, nil); err != nil || len(recs) != 100 || refused != nil {
			b.Fatalf("encoded %d, refused %v", len(recs), refused)
		}
	}
	b.ReportMetric(float64(b.N*100)/b.Elapsed().Seconds(), "events/s")
}
