package kafkax

import (
	"context"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kotel"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// recordTracing is kotel's per-record tracing with a short path for records whose trace is not sampled:
// such a record only carries its trace context (into its headers when produced, into its Context when
// fetched) and no span is started, so none of kotel's span attributes are built for a span that records
// nothing. That was about a tenth of the pipeline's CPU with sampling off (BENCHMARKS.md, "Whole
// pipeline"). Sampled records, and records without a trace (which start one), go through kotel as before.
type recordTracing struct {
	*kotel.Tracer
	prop propagation.TextMapPropagator // nil: always kotel's path
}

// unsampled reports whether ctx holds a valid span context that is neither sampled nor recording.
func unsampled(ctx context.Context) bool {
	span := trace.SpanFromContext(ctx)
	sc := span.SpanContext()
	return sc.IsValid() && !sc.IsSampled() && !span.IsRecording()
}

// OnProduceRecordBuffered puts an unsampled parent's trace context in the record's headers, as kotel's
// hook does after starting a child span that would record nothing.
func (t recordTracing) OnProduceRecordBuffered(r *kgo.Record) {
	if t.prop != nil && r.Context != nil && unsampled(r.Context) {
		t.prop.Inject(r.Context, kotel.NewRecordCarrier(r))
		return
	}
	t.Tracer.OnProduceRecordBuffered(r)
}

// OnFetchRecordBuffered gives the record the trace context of its headers; only a sampled trace (or a
// record without one) gets kotel's receive span.
func (t recordTracing) OnFetchRecordBuffered(r *kgo.Record) {
	if t.prop == nil {
		t.Tracer.OnFetchRecordBuffered(r)
		return
	}
	ctx := r.Context
	if ctx == nil {
		ctx = context.Background()
	}
	ctx = t.prop.Extract(ctx, kotel.NewRecordCarrier(r))
	if unsampled(ctx) {
		r.Context = ctx
		return
	}
	t.Tracer.OnFetchRecordBuffered(r)
}
