package obs

import (
	"context"

	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/embedded"
)

// SampledChildrenOnly wraps the tracer provider given to per-record Kafka tracing hooks (kotel). Under a
// parent span that is not sampled (and so records nothing) its tracers start no span and hand back the
// parent: the record still carries the request's trace context in its headers, and no per-record span is
// built only to be dropped. Under a sampled parent, or with no parent, spans start as usual. With sampling
// off this saves a span per record on the gateway and enricher hot paths.
func SampledChildrenOnly(tp trace.TracerProvider) trace.TracerProvider {
	return sampledChildrenOnly{tp: tp}
}

type sampledChildrenOnly struct {
	embedded.TracerProvider
	tp trace.TracerProvider
}

func (p sampledChildrenOnly) Tracer(name string, opts ...trace.TracerOption) trace.Tracer {
	return sampledChildrenTracer{Tracer: p.tp.Tracer(name, opts...)}
}

type sampledChildrenTracer struct{ trace.Tracer }

func (t sampledChildrenTracer) Start(ctx context.Context, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	parent := trace.SpanFromContext(ctx)
	if sc := parent.SpanContext(); sc.IsValid() && !sc.IsSampled() && !parent.IsRecording() {
		return ctx, parent // ending or annotating a span that does not record is a no-op
	}
	return t.Tracer.Start(ctx, name, opts...)
}
