package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/edtech-analytics/platform/libs/keyring/keyringtest"
	"io"
	"net/http"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/edtech-analytics/platform/libs/kafkax"
	"github.com/edtech-analytics/platform/libs/obs/obstest"
	"github.com/edtech-analytics/platform/libs/pgutil/pgtest"
	"github.com/edtech-analytics/platform/libs/records"
	"github.com/edtech-analytics/platform/libs/svc/stream"
	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/edtech-analytics/platform/libs/tenancy/credentials"
	"github.com/edtech-analytics/platform/libs/tenancy/fleet"
	"github.com/edtech-analytics/platform/libs/tenancy/tenants"
	"github.com/edtech-analytics/platform/libs/testenv/kafkatest"
	"github.com/edtech-analytics/platform/libs/testenv/sampledata"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// runAsGateway makes the test binary the gateway process itself: the durability test starts it with this
// variable set, so the process under test is main() exactly as shipped.
const runAsGateway = "GATEWAY_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(runAsGateway) == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

// outcome is what one request of the load got.
type outcome struct {
	ids        []string
	start, end time.Time
	status     int    // 0 when the request failed in transport
	problem    string // problem type of an error answer
	refused    bool   // the connection was refused: the request never reached the gateway
	err        error
}

// TestSIGTERMLosesNoAcknowledgedEvent runs the gateway binary against kfake and a real PostgreSQL, sends
// it concurrent load, and SIGTERMs it mid-stream while Kafka is briefly unreachable. It proves that readiness
// went false, that every request sent after that got 503 or a refused connection, that requests in flight
// finished with 202, that the process exited cleanly, and, reading raw back, that every event whose
// request got 202 is there exactly once while no event of a refused request is.
func TestSIGTERMLosesNoAcknowledgedEvent(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a gateway process")
	}
	kafka, kcfg := kafkatest.New(t)
	pool, dbURL := pgtest.New(t)
	ctx := t.Context()
	if err := tenancy.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	if _, err := tenants.New(fleet.New(pool, os.Getenv)).Create(ctx, "d1", "District 1"); err != nil {
		t.Fatal(err)
	}
	apiKey, _, err := credentials.New(pool).CreateAPIKey(ctx, "d1", "lms", []string{credentials.VerbEventsWrite})
	if err != nil {
		t.Fatal(err)
	}

	logs := obstest.NewLog() // the gateway says where it listens
	cmd := exec.CommandContext(t.Context(), os.Args[0])
	cmd.Env = append(os.Environ(), runAsGateway+"=1",
		"DATABASE_URL="+dbURL, "MASTER_KEYS="+keyringtest.MasterKeys(), "KAFKA_BROKERS="+kcfg.Brokers[0], "KAFKA_TOPIC_PREFIX="+kcfg.TopicPrefix, "KAFKA_PARTITIONS=4",
		"SCHEMA_REGISTRY_URL=", "OTEL_EXPORTER_OTLP_ENDPOINT=", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=",
		"HTTP_ADDR=127.0.0.1:0", "ADMIN_ADDR=127.0.0.1:0", "GATEWAY_SHUTDOWN_DELAY=300ms", "GATEWAY_DRAIN_TIMEOUT=20s", "LOG_LEVEL=info")
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var exitErr error
	exited := make(chan struct{})
	go func() { exitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		select {
		case <-exited:
		default:
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("gateway log:\n%s", logs.String())
		}
	})
	base, adminAddr := "http://"+logs.Addr(t, "listening", exited), logs.Addr(t, "admin listening", exited)
	waitReady(t, base, exited)

	// Load: eight workers post batches of 100 distinct events over keep-alive connections until the
	// gateway refuses connections.
	batches := newBatches(t)
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	var (
		mu       sync.Mutex
		outcomes []outcome
		wg       sync.WaitGroup
		stop     = make(chan struct{})
	)
	for w := range 8 {
		wg.Go(func() {
			for seq := 0; ; seq++ {
				select {
				case <-stop:
					return
				default:
				}
				ids, body := batches.next(w, seq)
				o := post(ctx, client, base, apiKey, ids, body)
				mu.Lock()
				outcomes = append(outcomes, o)
				mu.Unlock()
				if o.refused {
					return
				}
			}
		})
	}
	// Readiness is watched on both ports from before the signal.
	readyFalse := make(chan time.Time, 1)
	go watchReadiness(ctx, base, "http://"+adminAddr, readyFalse, stop)

	waitAcknowledged(t, &mu, &outcomes, 40)
	// Kafka becomes unreachable as the signal arrives (produce connections are cut before a request is
	// applied), so the requests in flight are still waiting for their acks, with records in the
	// producer's buffer, when the drain begins; it answers again 700ms later.
	release := make(chan struct{})
	kafka.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		select {
		case <-release:
			kafka.DropControl()
			return nil, nil, false
		default:
			kafka.KeepControl()
			return nil, errors.New("kafka unreachable"), true
		}
	})
	time.AfterFunc(700*time.Millisecond, func() { close(release) })
	sentTerm := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	var notReadyAt time.Time
	select {
	case notReadyAt = <-readyFalse:
	case <-exited:
		t.Fatalf("the gateway exited (%v) without readiness going false", exitErr)
	case <-time.After(10 * time.Second):
		t.Fatal("readiness did not go false within 10s of SIGTERM")
	}
	select {
	case <-exited:
		if exitErr != nil {
			t.Fatalf("the gateway exited with %v", exitErr)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the gateway did not exit within 30s of SIGTERM")
	}
	close(stop)
	wg.Wait()

	acked, refusedIDs := map[string]bool{}, map[string]bool{}
	var nAcked, nDraining, nRefused, nUnknown, inflightAcked int
	for _, o := range outcomes {
		switch {
		case o.status == http.StatusAccepted:
			nAcked++
			for _, id := range o.ids {
				acked[id] = true
			}
			if o.start.After(notReadyAt) {
				t.Errorf("a request sent %s after readiness went false was accepted", o.start.Sub(notReadyAt))
			}
			if o.end.After(sentTerm) {
				inflightAcked++
			}
		case o.refused || o.status == http.StatusServiceUnavailable && o.problem == "/problems/draining":
			if o.refused {
				nRefused++
			} else {
				nDraining++
			}
			for _, id := range o.ids {
				refusedIDs[id] = true
			}
		case o.status == 0:
			nUnknown++ // the outcome is unknown to the client: nothing is claimed either way
		default:
			t.Errorf("unexpected answer %d %s", o.status, o.problem)
		}
	}
	t.Logf("%d batches acknowledged (%d finishing after SIGTERM), %d refused while draining, %d connections refused, %d transport errors",
		nAcked, inflightAcked, nDraining, nRefused, nUnknown)
	if nDraining+nRefused == 0 {
		t.Fatal("no request met the drain: the load stopped before SIGTERM took effect")
	}
	if inflightAcked == 0 {
		t.Fatal("no request in flight at SIGTERM finished with 202")
	}

	counts := readRaw(t, kcfg)
	for id := range acked {
		if counts[id] != 1 {
			t.Errorf("acknowledged event %s is in raw %d times, want exactly once", id, counts[id])
		}
	}
	for id := range refusedIDs {
		if counts[id] != 0 {
			t.Errorf("event %s of a refused request is in raw", id)
		}
	}
	for id, n := range counts {
		if !batches.sent(id) {
			t.Errorf("raw holds event %s (%d times) that the test never sent", id, n)
		}
	}
}

func waitReady(t *testing.T, base string, exited <-chan struct{}) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, base+"/readyz", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			if err := resp.Body.Close(); err != nil {
				t.Error(err)
			}
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-exited:
			t.Fatal("the gateway exited before it was ready")
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("the gateway did not get ready within 30s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// watchReadiness polls /readyz on the public and admin ports and reports when either first answers
// 503.
func watchReadiness(ctx context.Context, public, admin string, notReady chan<- time.Time, stop <-chan struct{}) {
	c := &http.Client{Timeout: time.Second}
	for {
		for _, base := range []string{public, admin} {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/readyz", nil)
			if err != nil {
				continue
			}
			resp, err := c.Do(req)
			if err != nil {
				continue
			}
			_ = resp.Body.Close() // only the status is read; this goroutine has no test to report to
			if resp.StatusCode == http.StatusServiceUnavailable {
				notReady <- time.Now()
				return
			}
		}
		select {
		case <-stop:
			return
		case <-time.After(2 * time.Millisecond):
		}
	}
}

func waitAcknowledged(t *testing.T, mu *sync.Mutex, outcomes *[]outcome, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		acked := 0
		for _, o := range *outcomes {
			if o.status == http.StatusAccepted {
				acked++
			} else if o.status != 0 || o.err != nil {
				mu.Unlock()
				t.Fatalf("before SIGTERM a request got %d %s %v", o.status, o.problem, o.err)
			}
		}
		mu.Unlock()
		if acked >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d batches acknowledged in 30s", acked)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func post(ctx context.Context, c *http.Client, base, key string, ids []string, body []byte) outcome {
	o := outcome{ids: ids, start: time.Now()}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/events", bytes.NewReader(body))
	if err != nil {
		o.err = err
		return o
	}
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	o.end = time.Now()
	if err != nil {
		o.err, o.refused = err, errors.Is(err, syscall.ECONNREFUSED)
		return o
	}
	defer func() { _ = resp.Body.Close() }() // read to the end below; a read error is the outcome's
	var ans struct {
		Type     string `json:"type"`
		Accepted int    `json:"accepted"`
	}
	b, err := io.ReadAll(resp.Body)
	o.end = time.Now()
	if err != nil {
		o.err = err
		return o
	}
	if err := json.Unmarshal(b, &ans); err != nil {
		o.err = fmt.Errorf("answer %d is not JSON: %s", resp.StatusCode, b)
		return o
	}
	o.status, o.problem = resp.StatusCode, ans.Type
	if o.status == http.StatusAccepted && ans.Accepted != len(ids) {
		o.err = fmt.Errorf("accepted %d of %d valid events", ans.Accepted, len(ids))
		o.status = -1
	}
	return o
}

// batchSource makes batches of 100 valid events with ids unique to (worker, sequence, index).
type batchSource struct {
	events []sampledata.Event
	mu     sync.Mutex
	ids    map[string]bool
}

func newBatches(t *testing.T) *batchSource {
	t.Helper()
	spec := sampledata.Spec{TenantID: "d1", Schools: 2, ClassesPerSchool: 2, StudentsPerClass: 10, Days: 2, EventsPerStudent: 5,
		Start: time.Now().UTC().Truncate(24*time.Hour).AddDate(0, 0, -3), Seed: 11}
	return &batchSource{events: spec.Events()[:100], ids: map[string]bool{}}
}

func (b *batchSource) next(worker, seq int) ([]string, []byte) {
	evs := make([]sampledata.Event, len(b.events))
	ids := make([]string, len(b.events))
	for i, e := range b.events {
		e.EventID = fmt.Sprintf("%08x-0000-4000-8000-%012x", worker, seq*1000+i)
		evs[i], ids[i] = e, e.EventID
	}
	body, err := json.Marshal(map[string]any{"events": evs})
	if err != nil {
		panic(err) // plain structs of strings and numbers always marshal
	}
	b.mu.Lock()
	for _, id := range ids {
		b.ids[id] = true
	}
	b.mu.Unlock()
	return ids, body
}

func (b *batchSource) sent(id string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.ids[id]
}

// readRaw reads raw up to its end offsets and counts its records by event id.
func readRaw(t *testing.T, kcfg kafkax.Config) map[string]int {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	topic := kcfg.Topics().Raw
	cl, err := kafkax.NewClient(kcfg, kafkax.Deps{}, "", kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
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
	codec, err := stream.NewCodec(ctx, kcfg)
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]int{}
	for len(left) > 0 {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("reading raw: %v (partitions not read to the end: %v)", err, left)
		}
		fs.EachRecord(func(r *kgo.Record) {
			var ev records.RawEvent
			if err := codec.Decode(r.Value, &ev); err != nil {
				t.Fatal(err)
			}
			counts[ev.EventID]++
			if end, ok := left[r.Partition]; ok && r.Offset+1 >= end {
				delete(left, r.Partition)
			}
		})
	}
	return counts
}
