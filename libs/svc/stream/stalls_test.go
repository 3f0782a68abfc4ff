package stream_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/edtech-analytics/platform/libs/kafkax"
	"github.com/edtech-analytics/platform/libs/obs"
	"github.com/edtech-analytics/platform/libs/svc/stream"
	"github.com/edtech-analytics/platform/libs/testenv/kafkatest"
	"github.com/twmb/franz-go/pkg/kgo"
)

// downStore refuses every write, as a database that is down does, and says so on writes.
type downStore struct{ writes chan struct{} }

func (downStore) NextOffsets(context.Context, string, []int32) (map[int32]int64, error) {
	return map[int32]int64{}, nil
}

func (s downStore) Write(context.Context, string, int32, []*kgo.Record) error {
	select {
	case s.writes <- struct{}{}:
	default:
	}
	return errors.New("connection refused")
}

// TestStalledPartitionsShowInReadinessAndMetrics: records that wait on a failing store make /readyz
// answer "degraded" naming the partition and the error, and consumer_partition_stalled_seconds appear
// for it in /metrics (what an alert watches).
func TestStalledPartitionsShowInReadinessAndMetrics(t *testing.T) {
	_, kcfg := kafkatest.New(t)
	topic := kcfg.Topics().Enriched
	cl, err := kafkax.NewClient(kcfg, kafkax.Deps{}, "", kafkax.ProducerOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := kafkax.EnsureTopics(t.Context(), cl.Client, 2, 1, []kafkax.TopicSpec{{Name: topic}}); err != nil {
		t.Fatal(err)
	}
	if err := cl.ProduceSync(t.Context(), &kgo.Record{Topic: topic, Key: []byte("d1"), Value: []byte("x")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	tel, err := obs.Init(t.Context(), "svc-test")
	if err != nil {
		t.Fatal(err)
	}
	health := obs.NewHealth()
	store := downStore{writes: make(chan struct{}, 1)}
	deps := kafkax.Deps{Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	c, err := kafkax.NewStoreConsumer(deps.Log, kafkax.ConsumerConfig{
		Group: "g", Topic: topic, RetryMin: 10 * time.Millisecond, RetryMax: 20 * time.Millisecond,
	}, store, nil)
	if err != nil {
		t.Fatal(err)
	}
	member, err := kafkax.NewGroupConsumer(kcfg, deps, "g", topic, kafkax.Batching{}, c.Rebalance(), kafkatest.GroupOpts()...)
	if err != nil {
		t.Fatal(err)
	}
	stopReports, err := stream.ReportStalls(tel.Meter, health, topic, c)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx, member) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	mux := http.NewServeMux()
	health.Register(mux, tel.Metrics)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	get := func(path string) (int, string) {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = resp.Body.Close() }()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, string(b)
	}
	// A second write comes only after the first failed, was recorded as a stall and its backoff passed;
	// every write fails, so the stall stays.
	for range 2 {
		select {
		case <-store.writes:
		case <-time.After(time.Minute):
			t.Fatal("the consumer never wrote")
		}
	}
	code, ready := get("/readyz")
	if code != http.StatusOK || !strings.Contains(ready, `"degraded"`) {
		t.Fatalf("/readyz = %d %s, want 200 and degraded: a stall must not take the consumer out of service", code, ready)
	}
	if !strings.Contains(ready, `"stalled_partitions"`) || !strings.Contains(ready, "connection refused") {
		t.Errorf("/readyz = %s, want the stalled partition and its error", ready)
	}
	if _, metrics := get("/metrics"); !strings.Contains(metrics, `consumer_partition_stalled_seconds{`) ||
		!strings.Contains(metrics, `topic="`+topic+`"`) {
		t.Errorf("/metrics has no consumer_partition_stalled_seconds for %s:\n%s", topic, grepLines(metrics, "stalled"))
	}
	// A consumer that stops reports nothing more.
	stopReports()
	if _, ready := get("/readyz"); strings.Contains(ready, "degraded") {
		t.Errorf("/readyz after the reports stopped = %s", ready)
	}
	if _, metrics := get("/metrics"); strings.Contains(metrics, `consumer_partition_stalled_seconds{`) {
		t.Errorf("/metrics still reports the stall after the reports stopped:\n%s", grepLines(metrics, "stalled"))
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
