package kafkax

import (
	"context"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// TestRecordTracingCarriesUnsampledTracesWithoutSpans: a record under an unsampled trace carries the
// trace from producer to consumer and no span is made; a sampled trace gets kotel's publish and receive
// spans as before; a record without a trace starts one.
func TestRecordTracingCarriesUnsampledTracesWithoutSpans(t *testing.T) {
	for _, tt := range []struct {
		name    string
		sampler sdktrace.Sampler
		spans   int // spans recorded: the request's, kotel's publish and receive
	}{
		{"not sampled", sdktrace.NeverSample(), 0},
		{"sampled", sdktrace.AlwaysSample(), 3},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rec := tracetest.NewSpanRecorder()
			tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.ParentBased(tt.sampler)), sdktrace.WithSpanProcessor(rec))
			counting := &countingProvider{TracerProvider: tp}
			deps := Deps{Tracer: counting, Propagator: propagation.TraceContext{}}
			hooks := recordTracing{Tracer: deps.kotelTracer("test", "group"), prop: deps.Propagator}

			ctx, request := tp.Tracer("gateway").Start(context.Background(), "request")
			r := &kgo.Record{Topic: "raw", Value: []byte("v"), Context: ctx}
			hooks.OnProduceRecordBuffered(r)
			hooks.OnProduceRecordUnbuffered(r, nil)
			if request.IsRecording() != (tt.spans > 0) {
				t.Fatalf("the request span ended or started wrongly: recording %v", request.IsRecording())
			}
			request.End()

			fetched := &kgo.Record{Topic: "raw", Value: r.Value, Headers: r.Headers}
			hooks.OnFetchRecordBuffered(fetched)
			if got, want := trace.SpanContextFromContext(fetched.Context).TraceID(), request.SpanContext().TraceID(); got != want {
				t.Fatalf("fetched record's trace %s, want the request's %s", got, want)
			}
			hooks.OnFetchRecordUnbuffered(fetched, true)
			if got := len(rec.Ended()); got != tt.spans {
				t.Fatalf("%d spans recorded, want %d", got, tt.spans)
			}
			if wantStarts := min(tt.spans, 2); counting.starts != wantStarts { // kotel's spans; none unsampled
				t.Fatalf("kotel started %d spans, want %d", counting.starts, wantStarts)
			}
		})
	}
	t.Run("no trace", func(t *testing.T) {
		tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.NeverSample())))
		deps := Deps{Tracer: tp, Propagator: propagation.TraceContext{}}
		hooks := recordTracing{Tracer: deps.kotelTracer("test", ""), prop: deps.Propagator}
		r := &kgo.Record{Topic: "raw", Value: []byte("v"), Context: context.Background()}
		hooks.OnProduceRecordBuffered(r)
		fetched := &kgo.Record{Topic: "raw", Value: r.Value, Headers: r.Headers}
		hooks.OnFetchRecordBuffered(fetched)
		if !trace.SpanContextFromContext(fetched.Context).HasTraceID() {
			t.Fatal("a record produced without a trace reached the consumer without one")
		}
	})
}

// countingProvider counts the spans its tracers start.
type countingProvider struct {
	trace.TracerProvider
	starts int
}

func (p *countingProvider) Tracer(name string, opts ...trace.TracerOption) trace.Tracer {
	return countingTracer{Tracer: p.TracerProvider.Tracer(name, opts...), p: p}
}

type countingTracer struct {
	trace.Tracer
	p *countingProvider
}

func (t countingTracer) Start(ctx context.Context, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	t.p.starts++
	return t.Tracer.Start(ctx, name, opts...)
}
