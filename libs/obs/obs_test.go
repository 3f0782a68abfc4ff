package obs

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestLoggerAddsTraceID(t *testing.T) {
	tel, err := Init(context.Background(), "test")
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := tel.Shutdown(context.Background()); err != nil {
			t.Error(err)
		}
	}()
	ctx, span := tel.Tracer.Tracer("t").Start(context.Background(), "op")
	defer span.End()

	var buf bytes.Buffer
	NewLogger(&buf, "info", "svc").InfoContext(ctx, "hello", "tenant_id", "d1")
	var rec map[string]any
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatalf("log line is not json: %v: %s", err, buf.String())
	}
	if rec["trace_id"] != span.SpanContext().TraceID().String() || rec["service"] != "svc" || rec["tenant_id"] != "d1" {
		t.Fatalf("log record = %v", rec)
	}
}

func TestHealthEndpoints(t *testing.T) {
	tel, err := Init(context.Background(), "test")
	if err != nil {
		t.Fatal(err)
	}
	h := NewHealth("kafka", "store")
	mux := http.NewServeMux()
	h.Register(mux, tel.Metrics)
	get := func(path string) (int, string) {
		rr := httptest.NewRecorder()
		mux.ServeHTTP(rr, httptest.NewRequestWithContext(t.Context(), "GET", path, nil))
		return rr.Code, rr.Body.String()
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Fatalf("healthz = %d", code)
	}
	var waiting struct {
		Status  string   `json:"status"`
		Waiting []string `json:"waiting"`
	}
	if code, body := get("/readyz"); code != 503 || json.Unmarshal([]byte(body), &waiting) != nil || len(waiting.Waiting) != 2 ||
		waiting.Waiting[0] != "kafka" || waiting.Waiting[1] != "store" {
		t.Fatalf("readyz with two checks waiting = %d %s", code, body)
	}
	h.SetReady("kafka", true)
	if code, body := get("/readyz"); code != 503 || !strings.Contains(body, "store") {
		t.Fatalf("readyz with store waiting = %d %s", code, body)
	}
	h.SetReady("store", true)
	if code, _ := get("/readyz"); code != 200 {
		t.Fatalf("readyz = %d", code)
	}
	if code, body := get("/metrics"); code != 200 || !strings.Contains(body, "go_goroutines") {
		t.Fatalf("metrics = %d", code)
	}
}
