package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/edtech-analytics/platform/libs/kafkatest"
	"github.com/edtech-analytics/platform/libs/kafkax"
	"github.com/edtech-analytics/platform/libs/obs"
	"github.com/edtech-analytics/platform/libs/records"
	"github.com/edtech-analytics/platform/libs/svc"
	"github.com/edtech-analytics/platform/services/gateway/internal/server"
	"github.com/edtech-analytics/platform/services/gateway/internal/tenants"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// keyMap is an in-memory KeyStore: the key model's own tests run against PostgreSQL in libs/tenancy.
type keyMap map[string]server.Key

func (m keyMap) Lookup(_ context.Context, plaintext string) (server.Key, error) {
	if k, ok := m[plaintext]; ok {
		return k, nil
	}
	return server.Key{}, server.ErrInvalidKey
}

type fixture struct {
	srv     *httptest.Server
	gw      *server.Server
	cl      *kafkax.Client
	kafka   *kfake.Cluster
	kcfg    kafkax.Config
	codec   *records.Codec
	tenants *tenants.Registry
}

// setup adjusts a fixture before it starts.
type setup struct {
	stored   []tenants.Stored // districts' stored settings
	producer []kgo.Opt        // extra producer options
	limits   server.Limits
}

func newFixture(t *testing.T, opts ...func(*setup)) *fixture {
	t.Helper()
	st := setup{limits: server.Limits{MaxBodyBytes: 64 << 10, MaxEvents: 5}}
	for _, o := range opts {
		o(&st)
	}
	ctx := context.Background()
	kafka, kcfg := kafkatest.New(t)
	tel, err := obs.Init(ctx, "test")
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kafkax.NewClient(kcfg, kafkax.Deps{Tracer: tel.Tracer, Propagator: tel.Propagator}, "", append(kafkax.ProducerOptions(), st.producer...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	if err := kafkax.EnsureTopics(ctx, cl.Client, 4, 1, kafkax.PlatformTopics(kcfg)); err != nil {
		t.Fatal(err)
	}
	codec, err := svc.NewCodec(ctx, kcfg)
	if err != nil {
		t.Fatal(err)
	}
	keys := keyMap{
		"good":   {ID: "k1", TenantID: "d1", SourceID: "lms", Verbs: []string{server.VerbEventsWrite}},
		"roster": {ID: "k2", TenantID: "d1", SourceID: "sis", Verbs: []string{server.VerbRosterWrite}},
		"hot":    {ID: "k3", TenantID: "hot", SourceID: "lms", Verbs: []string{server.VerbEventsWrite}},
		"small":  {ID: "k4", TenantID: "small", SourceID: "lms", Verbs: []string{server.VerbEventsWrite}},
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	reg, err := tenants.New(func(context.Context) ([]tenants.Stored, error) { return st.stored, nil },
		tenants.RateLimit{EventsPerSecond: 100_000, Burst: 100_000}, st.limits.MaxEvents, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := reg.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	gw, err := server.New(server.Deps{Log: log, Keys: keys, Tenants: reg, Producer: cl.Client, Codec: codec, Tracer: tel.Tracer, Meter: tel.Meter},
		server.Topics{Raw: kcfg.Topics().Raw, DLQ: kcfg.Topics().DLQ}, st.limits)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(gw.Handler())
	t.Cleanup(srv.Close)
	return &fixture{srv: srv, gw: gw, cl: cl, kafka: kafka, kcfg: kcfg, codec: codec, tenants: reg}
}

func (f *fixture) post(t *testing.T, key, ctype, body string) (int, http.Header, map[string]any) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), "POST", f.srv.URL+"/v1/events", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	req.Header.Set("Content-Type", ctype)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := resp.Body.Close(); err != nil {
			t.Error(err)
		}
	}()
	var out map[string]any
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("answer is not JSON: %s", b)
	}
	return resp.StatusCode, resp.Header, out
}

func event(i int, status string) string {
	return fmt.Sprintf(`{"event_id":"6f1c2b7e-8a3d-4c1e-9f00-%012d","type":"attendance","occurred_at":"2026-11-20T08:00:00Z",`+
		`"actor":{"sis_id":"S%d","role":"student"},"school_id":"sch1","payload":{"status":%q,"date":"2026-11-20"}}`, i, i, status)
}

// readTopic returns every record of topic, reading each partition up to the end offset it had when
// called.
func (f *fixture) readTopic(t *testing.T, topic string) []*kgo.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl, err := kafkax.NewClient(f.kcfg, kafkax.Deps{}, "", kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl.Client).ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	left := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			left[o.Partition] = o.Offset
		}
	})
	var out []*kgo.Record
	for len(left) > 0 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("reading %s: partitions not read to the end: %v", topic, left)
		}
		fs.EachRecord(func(r *kgo.Record) {
			out = append(out, r)
			if end, ok := left[r.Partition]; ok && r.Offset+1 >= end {
				delete(left, r.Partition)
			}
		})
	}
	return out
}

func TestPartialAcceptanceProducesValidEventsAndDeadLettersTheRest(t *testing.T) {
	f := newFixture(t)
	body := `{"events":[` + event(1, "present") + `,` + event(2, "asleep") + `,` + event(3, "absent") + `]}`
	code, _, out := f.post(t, "good", "application/json", body)
	if code != http.StatusAccepted || out["accepted"] != 2.0 {
		t.Fatalf("answer %d %v", code, out)
	}
	rej := out["rejected"].([]any)
	first := rej[0].(map[string]any)
	errs := first["errors"].([]any)
	if first["index"] != 1.0 || errs[0].(map[string]any)["field"] != "payload.status" {
		t.Fatalf("rejected = %v", rej)
	}

	raw := f.readTopic(t, f.kcfg.Topics().Raw)
	if len(raw) != 2 {
		t.Fatalf("raw holds %d records, want 2", len(raw))
	}
	for _, r := range raw {
		var ev records.RawEvent
		if err := f.codec.Decode(r.Value, &ev); err != nil {
			t.Fatal(err)
		}
		if string(r.Key) != "d1" || ev.TenantID != "d1" || ev.SourceID != "lms" {
			t.Fatalf("record key %q event %+v", r.Key, ev)
		}
		if !hasHeader(r, "traceparent") {
			t.Fatalf("raw record carries no trace context: %v", r.Headers)
		}
	}
	dlq := f.readTopic(t, f.kcfg.Topics().DLQ)
	if len(dlq) != 1 {
		t.Fatalf("dlq holds %d records, want 1", len(dlq))
	}
	var d records.DLQRecord
	if err := f.codec.Decode(dlq[0].Value, &d); err != nil {
		t.Fatal(err)
	}
	if d.Reason != records.ReasonInvalidField || d.Errors[0].Field != "payload.status" || !bytes.Contains(d.Original, []byte("asleep")) {
		t.Fatalf("dlq record = %+v", d)
	}
}

func hasHeader(r *kgo.Record, key string) bool {
	for _, h := range r.Headers {
		if h.Key == key {
			return true
		}
	}
	return false
}

func TestWholeRequestErrors(t *testing.T) {
	f := newFixture(t)
	five := make([]string, 6)
	for i := range five {
		five[i] = event(i, "present")
	}
	tests := []struct {
		name   string
		key    string
		ctype  string
		body   string
		status int
		slug   string
	}{
		{"no key", "", "application/json", `{"events":[]}`, 401, "missing-api-key"},
		{"unknown key", "nope", "application/json", `{"events":[]}`, 401, "invalid-api-key"},
		{"key without verb", "roster", "application/json", `{"events":[]}`, 403, "forbidden"},
		{"wrong content type", "good", "text/plain", `{"events":[]}`, 415, "unsupported-media-type"},
		{"malformed json", "good", "application/json", `{"events":[{"a":}]}`, 400, "malformed-body"},
		{"malformed ndjson", "good", "application/x-ndjson", event(1, "present") + "\n{nope\n", 400, "malformed-body"},
		{"too many events", "good", "application/json", `{"events":[` + strings.Join(five, ",") + `]}`, 413, "too-many-events"},
		{"body too large", "good", "application/json", `{"events":[` + strings.Repeat(" ", 70<<10) + `]}`, 413, "body-too-large"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, hdr, out := f.post(t, tt.key, tt.ctype, tt.body)
			if code != tt.status || out["type"] != "/problems/"+tt.slug || out["status"] != float64(tt.status) {
				t.Fatalf("got %d %v", code, out)
			}
			if ct := hdr.Get("Content-Type"); ct != "application/problem+json" {
				t.Fatalf("content type %q", ct)
			}
		})
	}
	if n := len(f.readTopic(t, f.kcfg.Topics().Raw)); n != 0 {
		t.Fatalf("rejected requests produced %d records", n)
	}
}

func TestNDJSONAndDrain(t *testing.T) {
	f := newFixture(t)
	code, _, out := f.post(t, "good", "application/x-ndjson", event(1, "present")+"\n"+event(2, "tardy")+"\n")
	if code != 202 || out["accepted"] != 2.0 {
		t.Fatalf("ndjson answer %d %v", code, out)
	}
	f.gw.Drain()
	code, hdr, _ := f.post(t, "good", "application/json", `{"events":[`+event(3, "present")+`]}`)
	if code != 503 || hdr.Get("Retry-After") == "" {
		t.Fatalf("draining answer %d, Retry-After %q", code, hdr.Get("Retry-After"))
	}
}

func TestKafkaUnavailableIs503(t *testing.T) {
	f := newFixture(t)
	f.cl.Close() // the producer is gone: nothing can be acknowledged
	code, hdr, out := f.post(t, "good", "application/json", `{"events":[`+event(1, "present")+`]}`)
	if code != 503 || hdr.Get("Retry-After") == "" || out["type"] != "/problems/kafka-unavailable" {
		t.Fatalf("got %d %v", code, out)
	}
}
