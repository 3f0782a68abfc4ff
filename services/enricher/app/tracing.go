package app

import (
	"context"

	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/embedded"
)

// sampledChildrenOnly wraps the tracer provider of the pipeline's per-record tracing hooks (kotel starts
// a span per consumed and per produced record). Under a parent that is not sampled, its tracers start no
// span and hand back the parent: records still carry the trace context in their headers, and no span is
// built per record only to be dropped. Under a sampled parent, or with no parent, spans start as usual.
// The gateway does the same for its producer (services/gateway/app.SampledChildrenOnly); both belong in
// libs/obs.
func sampledChildrenOnly(tp trace.TracerProvider) trace.TracerProvider {
	return sampledChildren{tp: tp}
}

type sampledChildren struct {
	embedded.TracerProvider
	tp trace.TracerProvider
}

func (p sampledChildren) Tracer(name string, opts ...trace.TracerOption) trace.Tracer {
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
