package app_test

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/edtech-analytics/platform/libs/obs/obstest"
	"github.com/edtech-analytics/platform/libs/testenv/kafkatest"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestReadyOnlyOnceDedupStateIsRestored: a restarted enricher owns its partitions only once their dedup
// state is rebuilt from the changelog, and /readyz says so. The restore is held (a client hook blocks the
// changelog fetch): meanwhile /readyz answers 503 waiting for "partitions" alone (Kafka, PostgreSQL and
// the erasures are ready); released, the enricher turns ready and drops a retry of an event it enriched
// before the restart.
func TestReadyOnlyOnceDedupStateIsRestored(t *testing.T) {
	h := newHarness(t, "d1")
	first := h.event("d1", "A")
	h.produceRaw(first)
	r := h.start(h.config("enricher"))
	h.waitFor("the first event", 20*time.Second, func() bool { return has(h.enriched(), first.EventID) })
	r.stop()

	hold := newFetchHold(h.kcfg.Topics().Dedup)
	logs := obstest.NewLog()
	h.startWith(h.config("enricher"), slog.New(slog.NewJSONHandler(logs, nil)), append(kafkatest.GroupOpts(), kgo.WithHooks(hold))...)
	t.Cleanup(hold.let) // before the enricher stops (cleanups run last first): a held restore never ends
	admin := "http://" + logs.Addr(t, "admin listening", nil)
	select {
	case <-hold.reached:
	case <-time.After(time.Minute): // generous: only a broken restore never reads the changelog
		t.Fatal("the dedup changelog was never read")
	}
	if code, waiting := readyz(t, admin); code != http.StatusServiceUnavailable || !slices.Equal(waiting, []string{"partitions"}) {
		t.Fatalf("while the dedup state is restored, /readyz = %d waiting for %v; want 503 waiting for [partitions]", code, waiting)
	}

	hold.let()
	h.waitFor("readiness", 30*time.Second, func() bool { code, _ := readyz(t, admin); return code == http.StatusOK })
	retry, second := *first, h.event("d1", "A")
	h.produceRaw(&retry, second)
	h.waitFor("the second event", 20*time.Second, func() bool { return has(h.enriched(), second.EventID) })
	n := 0
	for _, ev := range h.enriched() {
		if ev.EventID == first.EventID {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("the event enriched before the restart is in enriched %d times, want 1 (its retry is dropped)", n)
	}
}

// fetchHold is a client hook that blocks the fetches of one topic from the first batch read until let is
// called, and says when that first batch arrived.
type fetchHold struct {
	topic   string
	reached chan struct{}
	release chan struct{}
	once    sync.Once
	letOnce sync.Once
}

func newFetchHold(topic string) *fetchHold {
	return &fetchHold{topic: topic, reached: make(chan struct{}), release: make(chan struct{})}
}

func (f *fetchHold) OnFetchBatchRead(_ kgo.BrokerMetadata, topic string, _ int32, _ kgo.FetchBatchMetrics) {
	if topic != f.topic {
		return
	}
	f.once.Do(func() { close(f.reached) })
	<-f.release
}

func (f *fetchHold) let() { f.letOnce.Do(func() { close(f.release) }) }

// readyz returns the status of the admin server's /readyz and the checks it waits for.
func readyz(t *testing.T, admin string) (int, []string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, admin+"/readyz", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	if cerr := resp.Body.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	var r struct {
		Waiting []string `json:"waiting"`
	}
	_ = json.Unmarshal(body, &r) // a ready answer may carry no list
	return resp.StatusCode, r.Waiting
}
