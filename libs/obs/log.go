// Package obs holds the observability plumbing every service shares: the slog JSON logger that stamps
// trace ids, OpenTelemetry tracing and metrics providers (passed explicitly, never installed globally),
// and the admin HTTP server with health, readiness and Prometheus metrics.
package obs

import (
	"context"
	"io"
	"log/slog"
	"strings"

	"go.opentelemetry.io/otel/trace"
)

// NewLogger returns a JSON slog logger at the given level ("debug", "info", "warn", "error") that adds
// trace_id and span_id to every record logged with a context carrying a span, and the service name
// (omitted when empty, for processes that host several services).
func NewLogger(w io.Writer, level, service string) *slog.Logger {
	var lv slog.Level
	switch strings.ToLower(level) {
	case "debug":
		lv = slog.LevelDebug
	case "warn", "warning":
		lv = slog.LevelWarn
	case "error":
		lv = slog.LevelError
	default:
		lv = slog.LevelInfo
	}
	l := slog.New(traceHandler{slog.NewJSONHandler(w, &slog.HandlerOptions{Level: lv})})
	if service != "" {
		l = l.With("service", service)
	}
	return l
}

// traceHandler copies the span context of the record's context into trace_id/span_id attributes.
type traceHandler struct{ slog.Handler }

func (h traceHandler) Handle(ctx context.Context, r slog.Record) error {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		r.AddAttrs(slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String()))
	}
	return h.Handler.Handle(ctx, r)
}

func (h traceHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return traceHandler{h.Handler.WithAttrs(as)}
}
func (h traceHandler) WithGroup(name string) slog.Handler {
	return traceHandler{h.Handler.WithGroup(name)}
}
