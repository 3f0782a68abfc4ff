package obs

import (
	"context"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// TestSampledChildrenOnly: under an unsampled parent no child span is made and the parent's context is
// handed back; under a sampled parent, and for a root, children are recorded as before.
func TestSampledChildrenOnly(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	for _, tt := range []struct {
		name    string
		sampler sdktrace.Sampler
		spans   int // recorded: the parent and the child, or none
	}{
		{"sampled", sdktrace.AlwaysSample(), 2},
		{"not sampled", sdktrace.NeverSample(), 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := len(rec.Ended())
			tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.ParentBased(tt.sampler)), sdktrace.WithSpanProcessor(rec))
			ctx, parent := tp.Tracer("gateway").Start(context.Background(), "request")
			cctx, child := sampledChildrenOnly{tp: tp}.Tracer("kotel").Start(ctx, "publish")
			if child.SpanContext().TraceID() != parent.SpanContext().TraceID() {
				t.Fatal("the child left the request's trace")
			}
			if (child.SpanContext().SpanID() == parent.SpanContext().SpanID()) != (tt.spans == 0) {
				t.Fatalf("child span id reused: %v, want %v", tt.spans == 0, tt.spans == 0)
			}
			if tt.spans == 0 && cctx != ctx {
				t.Fatal("an unsampled child did not hand back the parent's context")
			}
			child.End()
			parent.End()
			if got := len(rec.Ended()) - before; got != tt.spans {
				t.Fatalf("%d spans recorded, want %d", got, tt.spans)
			}
		})
	}
	// A root span (no parent) is left to the sampler.
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	_, root := sampledChildrenOnly{tp: tp}.Tracer("kotel").Start(context.Background(), "publish")
	if !root.IsRecording() {
		t.Fatal("a root span was not started")
	}
	root.End()
}
