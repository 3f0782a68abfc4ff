package webhooks_test

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/edtech-analytics/platform/libs/pgutil/pgtest"
	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/edtech-analytics/platform/libs/tenancy/internal/controltest"
	"github.com/edtech-analytics/platform/libs/tenancy/jobs"
	"github.com/edtech-analytics/platform/libs/tenancy/webhooks"
)

// masterKeys seal with AES-GCM under keys named by id, as libs/keyring's local master keys do (that
// module depends on this one, so its keys are not imported here).
type masterKeys struct {
	current string
	keys    map[string]cipher.AEAD
}

func newMasterKeys(t *testing.T, ids ...string) *masterKeys {
	t.Helper()
	m := &masterKeys{current: ids[0], keys: map[string]cipher.AEAD{}}
	for _, id := range ids {
		m.add(t, id)
	}
	return m
}

func (m *masterKeys) add(t *testing.T, id string) {
	t.Helper()
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	b, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	if m.keys[id], err = cipher.NewGCMWithRandomNonce(b); err != nil {
		t.Fatal(err)
	}
}

func (m *masterKeys) Current() string { return m.current }

func (m *masterKeys) Wrap(_ context.Context, id string, plaintext, aad []byte) ([]byte, error) {
	return m.keys[id].Seal(nil, nil, plaintext, aad), nil
}

func (m *masterKeys) Unwrap(_ context.Context, id string, wrapped, aad []byte) ([]byte, error) {
	k, ok := m.keys[id]
	if !ok {
		return nil, fmt.Errorf("no master key %q", id)
	}
	return k.Open(nil, nil, wrapped, aad)
}

// receiver is a webhook endpoint on loopback that answers with the statuses it is given, in turn (the
// last one again when they run out), and keeps what it received.
type receiver struct {
	*httptest.Server
	mu       sync.Mutex
	answers  []int
	received []*http.Request
	bodies   [][]byte
}

func newReceiver(t *testing.T, answers ...int) *receiver {
	t.Helper()
	r := &receiver{answers: answers}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, err := io.ReadAll(req.Body)
		if err != nil {
			t.Error(err)
		}
		r.mu.Lock()
		r.received = append(r.received, req)
		r.bodies = append(r.bodies, body)
		status := r.answers[min(len(r.received), len(r.answers))-1]
		r.mu.Unlock()
		w.WriteHeader(status)
		_, _ = fmt.Fprintf(w, "answer %d", status)
	}))
	t.Cleanup(r.Close)
	return r
}

// verifies checks the signature of request i with secret.
func (r *receiver) verifies(i int, secret string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	req := r.received[i]
	return webhooks.Verify(secret, req.Header.Get(webhooks.HeaderTimestamp), r.bodies[i], req.Header.Get(webhooks.HeaderSignature))
}

func (r *receiver) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.received)
}

// setup returns a store over a fresh control database with districts d1 and d2, that retries at once.
func setup(t *testing.T, opt webhooks.Options) (*pgxpool.Pool, *webhooks.Store, *masterKeys) {
	t.Helper()
	pool, districts := controltest.Districts(t, pgtest.New)
	for _, id := range []string{"d1", "d2"} {
		if _, err := districts.Create(t.Context(), id, "District "+id); err != nil {
			t.Fatal(err)
		}
	}
	if opt.BackOff == nil {
		opt.BackOff = func() backoff.BackOff { return &backoff.ZeroBackOff{} }
	}
	keys := newMasterKeys(t, "m1")
	return pool, webhooks.New(pool, keys, opt), keys
}

// finishedJob records a finished erasure of the district with two steps.
func finishedJob(t *testing.T, pool *pgxpool.Pool, tenant string) jobs.Job {
	t.Helper()
	ctx := t.Context()
	store := jobs.New(pool)
	job, _, err := store.Start(ctx, jobs.Request{Kind: "erase_tenant", TenantID: tenant, By: "test"})
	if err != nil {
		t.Fatal(err)
	}
	for i, name := range []string{"credentials", "postgres"} {
		if err := store.BeginStep(ctx, job.ID, i+1, name, "store "+name, int64(i+2)); err != nil {
			t.Fatal(err)
		}
		if err := store.FinishStep(ctx, job.ID, i+1, 0, "removed"); err != nil {
			t.Fatal(err)
		}
	}
	if err := store.Finish(ctx, job.ID, jobs.StatusDone, ""); err != nil {
		t.Fatal(err)
	}
	job, err = store.Job(ctx, job.ID)
	if err != nil {
		t.Fatal(err)
	}
	return job
}

// TestSetGetRemove proves a webhook is stored with its secret sealed (the secret is shown once, in hex,
// and is nowhere in the row), that setting it again replaces the secret, that only http(s) URLs with a
// host are taken, and that an unknown district or a missing webhook is ErrNotFound.
func TestSetGetRemove(t *testing.T) {
	pool, store, _ := setup(t, webhooks.Options{})
	ctx := t.Context()
	for _, bad := range []string{"ftp://example.com/x", "example.com/hook", "http://", "https:///path", "http://a b/", ""} {
		if _, _, err := store.Set(ctx, "d1", bad); !errors.Is(err, tenancy.ErrInvalidArgument) || !strings.Contains(err.Error(), "webhook url") {
			t.Errorf("Set(%q) = %v, want ErrInvalidArgument naming the webhook url", bad, err)
		}
	}
	if _, _, err := store.Set(ctx, "d9", "https://example.com/hook"); !errors.Is(err, tenancy.ErrNotFound) {
		t.Errorf("Set for an unknown district: %v", err)
	}
	if _, err := store.Get(ctx, "d1"); !errors.Is(err, tenancy.ErrNotFound) {
		t.Errorf("Get before Set: %v", err)
	}

	w, secret, err := store.Set(ctx, "d1", "https://user:pw@example.com/hook")
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(secret) || w.Redacted() != "https://user:xxxxx@example.com/hook" {
		t.Fatalf("Set = %+v, secret %q", w, secret)
	}
	var url string
	var sealed []byte
	if err := pool.QueryRow(ctx, `SELECT url, sealed_secret FROM control.district_webhooks WHERE tenant_id = 'd1'`).Scan(&url, &sealed); err != nil {
		t.Fatal(err)
	}
	if url != w.URL || bytes.Contains(sealed, []byte(secret)) {
		t.Fatalf("stored url %q; the secret is stored in plain form: %v", url, bytes.Contains(sealed, []byte(secret)))
	}
	if got, err := store.Get(ctx, "d1"); err != nil || got.URL != w.URL || !got.CreatedAt.Equal(w.CreatedAt) {
		t.Fatalf("Get = %+v, %v", got, err)
	}
	_, again, err := store.Set(ctx, "d1", "https://example.com/other")
	if err != nil || again == secret {
		t.Fatalf("setting again: %v (same secret: %v)", err, again == secret)
	}
	if got, err := store.Get(ctx, "d1"); err != nil || got.URL != "https://example.com/other" {
		t.Fatalf("Get after replacing = %+v, %v", got, err)
	}
	if err := store.Remove(ctx, "d1"); err != nil {
		t.Fatal(err)
	}
	if err := store.Remove(ctx, "d1"); !errors.Is(err, tenancy.ErrNotFound) {
		t.Errorf("removing twice: %v", err)
	}
	if _, err := store.Get(ctx, "d1"); !errors.Is(err, tenancy.ErrNotFound) {
		t.Errorf("Get after Remove: %v", err)
	}
}

// TestNotifyRetries proves which answers are retried (none, 5xx, 429) and which are final (other 4xx),
// that attempts are bounded, and that every attempt is recorded: a delivered notification has its 2xx
// and no next attempt, one given up its last status and error and no next attempt either.
func TestNotifyRetries(t *testing.T) {
	pool, store, _ := setup(t, webhooks.Options{MaxAttempts: 4})
	tests := []struct {
		name          string
		answers       []int
		wantAttempts  int
		wantDelivered bool
	}{
		{"500 twice, then 200", []int{500, 500, 200}, 3, true},
		{"429 and 503 are retried", []int{429, 503, 204}, 3, true},
		{"400 is final", []int{400, 200}, 1, false},
		{"a redirect is final", []int{302, 200}, 1, false},
		{"attempts are bounded", []int{500}, 4, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			recv := newReceiver(t, tt.answers...)
			if _, _, err := store.Set(t.Context(), "d1", recv.URL+"/hook"); err != nil {
				t.Fatal(err)
			}
			job := finishedJob(t, pool, "d1")
			d, err := store.Notify(t.Context(), job)
			if tt.wantDelivered != (err == nil) || (err != nil && !errors.Is(err, webhooks.ErrNotDelivered)) {
				t.Fatalf("Notify: %v", err)
			}
			if recv.count() != tt.wantAttempts || d.Attempts != tt.wantAttempts || d.Delivered() != tt.wantDelivered ||
				d.NextAttemptAt != nil || d.LastStatus == nil || *d.LastStatus != tt.answers[min(tt.wantAttempts, len(tt.answers))-1] {
				t.Fatalf("%d requests; delivery %+v", recv.count(), d)
			}
			if !tt.wantDelivered && !strings.Contains(d.LastError, fmt.Sprintf("answer %d", *d.LastStatus)) {
				t.Errorf("last error %q does not say what the receiver answered", d.LastError)
			}
		})
	}
}

// TestNotifySignsTheJob proves what a receiver gets: the job and its steps with their counts as JSON, the
// headers, a signature that verifies with the secret Set returned, the same body on every attempt; and
// that a job already delivered is not sent again.
func TestNotifySignsTheJob(t *testing.T) {
	pool, store, _ := setup(t, webhooks.Options{})
	recv := newReceiver(t, 503, 200)
	_, secret, err := store.Set(t.Context(), "d1", recv.URL)
	if err != nil {
		t.Fatal(err)
	}
	job := finishedJob(t, pool, "d1")
	if _, err := store.Notify(t.Context(), job); err != nil {
		t.Fatal(err)
	}
	if recv.count() != 2 || !bytes.Equal(recv.bodies[0], recv.bodies[1]) {
		t.Fatalf("%d requests, bodies %q", recv.count(), recv.bodies)
	}
	for i, req := range recv.received {
		if req.Method != http.MethodPost || req.Header.Get("Content-Type") != "application/json" ||
			req.Header.Get(webhooks.HeaderEvent) != webhooks.EventJobFinished ||
			!regexp.MustCompile(`^[0-9]{10}$`).MatchString(req.Header.Get(webhooks.HeaderTimestamp)) {
			t.Errorf("request %d: %s with headers %v", i, req.Method, req.Header)
		}
		if err := recv.verifies(i, secret); err != nil {
			t.Errorf("request %d does not verify: %v", i, err)
		}
		if err := recv.verifies(i, strings.Repeat("0", 64)); !errors.Is(err, webhooks.ErrBadSignature) {
			t.Errorf("request %d verifies with another secret: %v", i, err)
		}
	}
	var got struct {
		Event, ID, Kind, Tenant, Status string
		Error                           *string
		FinishedAt                      *string `json:"finished_at"`
		Steps                           []struct {
			Step        string
			FoundBefore *int64 `json:"found_before"`
		}
	}
	if err := json.Unmarshal(recv.bodies[0], &got); err != nil {
		t.Fatal(err)
	}
	if got.Event != "job.finished" || got.ID != job.ID || got.Kind != "erase_tenant" || got.Tenant != "d1" ||
		got.Status != "done" || got.Error == nil || got.FinishedAt == nil || len(got.Steps) != 2 ||
		got.Steps[1].Step != "postgres" || got.Steps[1].FoundBefore == nil || *got.Steps[1].FoundBefore != 3 ||
		!strings.Contains(string(recv.bodies[0]), `"found_after":0`) {
		t.Fatalf("body %s", recv.bodies[0])
	}

	if d, err := store.Notify(t.Context(), job); err != nil || d.Attempts != 2 || recv.count() != 2 {
		t.Fatalf("notifying a delivered job again: %+v, %v, %d requests", d, err, recv.count())
	}
	running, _, err := jobs.New(pool).Start(t.Context(), jobs.Request{Kind: "erase_tenant", TenantID: "d1", By: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Notify(t.Context(), running); !errors.Is(err, tenancy.ErrInvalidArgument) {
		t.Fatalf("notifying a running job: %v", err)
	}
}

// TestNotifyWithoutWebhook proves that a district without a webhook sends nothing and records nothing,
// while another district's webhook is not used for it.
func TestNotifyWithoutWebhook(t *testing.T) {
	pool, store, _ := setup(t, webhooks.Options{})
	recv := newReceiver(t, 200)
	if _, _, err := store.Set(t.Context(), "d2", recv.URL); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Notify(t.Context(), finishedJob(t, pool, "d1")); !errors.Is(err, tenancy.ErrNotFound) {
		t.Fatalf("Notify without a webhook: %v", err)
	}
	var n int
	if err := pool.QueryRow(t.Context(), "SELECT count(*) FROM control.webhook_deliveries").Scan(&n); err != nil || n != 0 || recv.count() != 0 {
		t.Fatalf("%d deliveries recorded (%v), %d requests", n, err, recv.count())
	}
}

// stopSender is a back-off that stops the sender (ends its context) when it would wait for its next
// attempt, as when its process is stopped between attempts.
type stopSender struct{ stop context.CancelFunc }

func (s stopSender) Reset() {}

func (s stopSender) NextBackOff() time.Duration {
	s.stop()
	return 0
}

// TestRedeliverAfterTheSenderStopped stops a sender after its first attempt and proves that the delivery
// stays due and that Redeliver finishes it, counting the earlier attempt; and that one given up is sent
// again too.
func TestRedeliverAfterTheSenderStopped(t *testing.T) {
	pool, store, keys := setup(t, webhooks.Options{})
	recv := newReceiver(t, 500, 200)
	if _, _, err := store.Set(t.Context(), "d1", recv.URL); err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(t.Context())
	stopped := webhooks.New(pool, keys, webhooks.Options{BackOff: func() backoff.BackOff { return stopSender{stop} }})
	job := finishedJob(t, pool, "d1")
	if _, err := stopped.Notify(ctx, job); err == nil {
		t.Fatal("Notify stopped after its first attempt succeeded")
	}
	deliveries, err := store.Deliveries(t.Context(), "d1", 10)
	if err != nil || len(deliveries) != 1 || deliveries[0].Attempts != 1 || deliveries[0].Delivered() ||
		deliveries[0].NextAttemptAt == nil || recv.count() != 1 {
		t.Fatalf("after the stop: %+v, %v (%d requests)", deliveries, err, recv.count())
	}

	redelivered, err := store.Redeliver(t.Context(), "d1")
	if err != nil || len(redelivered) != 1 || redelivered[0].JobID != job.ID || redelivered[0].Attempts != 2 || !redelivered[0].Delivered() {
		t.Fatalf("Redeliver = %+v, %v", redelivered, err)
	}
	if again, err := store.Redeliver(t.Context(), "d1"); err != nil || len(again) != 0 || recv.count() != 2 {
		t.Fatalf("Redeliver with nothing due = %+v, %v (%d requests)", again, err, recv.count())
	}

	refusing := newReceiver(t, 410, 200)
	if _, _, err := store.Set(t.Context(), "d1", refusing.URL); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Notify(t.Context(), finishedJob(t, pool, "d1")); !errors.Is(err, webhooks.ErrNotDelivered) {
		t.Fatalf("Notify to a 410: %v", err)
	}
	if redelivered, err := store.Redeliver(t.Context(), "d1"); err != nil || len(redelivered) != 1 || !redelivered[0].Delivered() {
		t.Fatalf("Redeliver of a given-up notification = %+v, %v", redelivered, err)
	}
}

// TestRedeliverFindsJobsNeverNotified proves that Redeliver sends the jobs that finished after the
// webhook was set without a notification recorded (their runner died between finishing the job and
// notifying), and not those that finished before the webhook was set.
func TestRedeliverFindsJobsNeverNotified(t *testing.T) {
	pool, store, _ := setup(t, webhooks.Options{})
	finishedJob(t, pool, "d1") // before the webhook
	recv := newReceiver(t, 200)
	if _, _, err := store.Set(t.Context(), "d1", recv.URL); err != nil {
		t.Fatal(err)
	}
	missed := finishedJob(t, pool, "d1")
	redelivered, err := store.Redeliver(t.Context(), "d1")
	if err != nil || len(redelivered) != 1 || redelivered[0].JobID != missed.ID || !redelivered[0].Delivered() || recv.count() != 1 {
		t.Fatalf("Redeliver = %+v, %v (%d requests)", redelivered, err, recv.count())
	}
	var got webhooks.JobFinished
	if err := json.Unmarshal(recv.bodies[0], &got); err != nil || got.ID != missed.ID || len(got.Steps) != 2 {
		t.Fatalf("body %s (%v)", recv.bodies[0], err)
	}
}

// TestAttemptTimeout proves that a receiver that does not answer is given up on after the per-request
// timeout, as an attempt without an answer.
func TestAttemptTimeout(t *testing.T) {
	pool, store, _ := setup(t, webhooks.Options{Timeout: 1, MaxAttempts: 2})
	silent := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
	t.Cleanup(silent.Close)
	if _, _, err := store.Set(t.Context(), "d1", silent.URL); err != nil {
		t.Fatal(err)
	}
	d, err := store.Notify(t.Context(), finishedJob(t, pool, "d1"))
	if !errors.Is(err, webhooks.ErrNotDelivered) || d.Attempts != 2 || d.LastStatus != nil || !strings.Contains(d.LastError, "deadline exceeded") {
		t.Fatalf("Notify to a silent receiver: %+v, %v", d, err)
	}
}

// TestPing proves a ping is one signed attempt, not recorded, that reports what the receiver answered.
func TestPing(t *testing.T) {
	pool, store, _ := setup(t, webhooks.Options{})
	recv := newReceiver(t, 500)
	_, secret, err := store.Set(t.Context(), "d1", recv.URL)
	if err != nil {
		t.Fatal(err)
	}
	if status, err := store.Ping(t.Context(), "d1"); status != 500 || !errors.Is(err, webhooks.ErrNotDelivered) || recv.count() != 1 {
		t.Fatalf("Ping = %d, %v (%d requests)", status, err, recv.count())
	}
	req := recv.received[0]
	if err := recv.verifies(0, secret); err != nil ||
		req.Header.Get(webhooks.HeaderEvent) != webhooks.EventPing || string(recv.bodies[0]) != `{"event":"ping","tenant":"d1"}` {
		t.Fatalf("ping %s with headers %v: %v", recv.bodies[0], req.Header, err)
	}
	var n int
	if err := pool.QueryRow(t.Context(), "SELECT count(*) FROM control.webhook_deliveries").Scan(&n); err != nil || n != 0 {
		t.Fatalf("a ping was recorded as a delivery: %d, %v", n, err)
	}
	if _, err := store.Ping(t.Context(), "d2"); !errors.Is(err, tenancy.ErrNotFound) {
		t.Fatalf("Ping without a webhook: %v", err)
	}
}

// TestRewrap proves that after a master rotation the secrets sealed by the old key are sealed by the
// new one, so that the old key can be dropped and the webhook still signs with the same secret.
func TestRewrap(t *testing.T) {
	pool, store, keys := setup(t, webhooks.Options{})
	recv := newReceiver(t, 200)
	_, secret, err := store.Set(t.Context(), "d1", recv.URL)
	if err != nil {
		t.Fatal(err)
	}
	keys.add(t, "m2")
	keys.current = "m2"
	if n, err := store.Rewrap(t.Context()); err != nil || n != 1 {
		t.Fatalf("Rewrap = %d, %v", n, err)
	}
	if n, err := store.Rewrap(t.Context()); err != nil || n != 0 {
		t.Fatalf("Rewrap again = %d, %v", n, err)
	}
	delete(keys.keys, "m1")
	if _, err := webhooks.New(pool, keys, webhooks.Options{}).Ping(t.Context(), "d1"); err != nil {
		t.Fatal(err)
	}
	if err := recv.verifies(0, secret); err != nil {
		t.Fatalf("after the rotation: %v", err)
	}
}

// TestVerify proves that a signature verifies only with its secret, timestamp and body, and that a
// malformed one is refused.
func TestVerify(t *testing.T) {
	secret, ts, body := strings.Repeat("ab", 32), "1767225600", []byte(`{"event":"ping"}`)
	sig := webhooks.Sign(secret, ts, body)
	if err := webhooks.Verify(secret, ts, body, sig); err != nil {
		t.Fatalf("Verify(Sign) = %v", err)
	}
	tests := []struct{ name, secret, ts, body, sig string }{
		{"another secret", strings.Repeat("cd", 32), ts, string(body), sig},
		{"another timestamp", secret, "1767225601", string(body), sig},
		{"another body", secret, ts, `{"event":"pong"}`, sig},
		{"no prefix", secret, ts, string(body), strings.TrimPrefix(sig, "sha256=")},
		{"not hex", secret, ts, string(body), "sha256=zz"},
		{"empty", secret, ts, string(body), ""},
	}
	for _, tt := range tests {
		if err := webhooks.Verify(tt.secret, tt.ts, []byte(tt.body), tt.sig); !errors.Is(err, webhooks.ErrBadSignature) {
			t.Errorf("%s: Verify = %v", tt.name, err)
		}
	}
}
