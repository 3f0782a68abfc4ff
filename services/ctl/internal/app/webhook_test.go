package app

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/edtech-analytics/platform/libs/chutil/chtest"
	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/edtech-analytics/platform/libs/tenancy/jobs"
	"github.com/edtech-analytics/platform/libs/tenancy/webhooks"
)

// hookReceiver is a district's webhook endpoint on loopback: it answers with status and keeps each
// request with its body.
type hookReceiver struct {
	*httptest.Server
	mu       sync.Mutex
	status   int
	received []*http.Request
	bodies   [][]byte
}

func newHookReceiver(t *testing.T, status int) *hookReceiver {
	t.Helper()
	h := &hookReceiver{status: status}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			t.Error(err)
		}
		h.mu.Lock()
		h.received, h.bodies = append(h.received, r), append(h.bodies, body)
		status := h.status
		h.mu.Unlock()
		w.WriteHeader(status)
	}))
	t.Cleanup(h.Close)
	return h
}

func (h *hookReceiver) answer(status int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.status = status
}

// request returns the i-th request and its body; the test fails if there are not that many.
func (h *hookReceiver) request(t *testing.T, i int) (*http.Request, []byte) {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.received) <= i {
		t.Fatalf("the receiver got %d requests, want at least %d", len(h.received), i+1)
	}
	return h.received[i], h.bodies[i]
}

func (h *hookReceiver) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.received)
}

// verifies reports whether request i is signed with secret.
func (h *hookReceiver) verifies(t *testing.T, i int, secret string) error {
	t.Helper()
	r, body := h.request(t, i)
	return webhooks.Verify(secret, r.Header.Get(webhooks.HeaderTimestamp), body, r.Header.Get(webhooks.HeaderSignature))
}

// setWebhook gives the district a webhook through ctl and returns the secret ctl printed.
func setWebhook(t *testing.T, dbURL, tenant, hookURL string) string {
	t.Helper()
	var set struct{ Secret, URL string }
	out := mustCtl(t, dbURL, "webhook", "set", "--tenant", tenant, "--url", hookURL, "--output", "json")
	if err := json.Unmarshal([]byte(out), &set); err != nil || len(set.Secret) != 64 || set.URL != hookURL {
		t.Fatalf("webhook set printed %q (%v)", out, err)
	}
	return set.Secret
}

// TestWebhookCommands sets, shows, pings and removes a district's webhook through ctl, checks that bad
// flags are usage errors naming the flag, that the secret ctl printed verifies the ping's signature and is
// not shown again, that a master rotation keeps the webhook working, and that every change is audited.
func TestWebhookCommands(t *testing.T) {
	_, url := migratedDB(t)
	for _, d := range []string{"d1", "d2"} {
		mustCtl(t, url, "tenant", "create", "--id", d, "--name", "District "+d)
	}
	recv := newHookReceiver(t, http.StatusNoContent)

	for _, tt := range []struct {
		args []string
		flag string
	}{
		{[]string{"--tenant", "d1", "--url", "ftp://example.com/hook"}, "--url"},
		{[]string{"--tenant", "d1", "--url", "example.com/hook"}, "--url"},
		{[]string{"--tenant", "d1", "--url", "https://"}, "--url"},
		{[]string{"--tenant", "d1"}, "--url"},
		{[]string{"--tenant", "D 1", "--url", recv.URL}, "--tenant"},
	} {
		_, _, err := ctl(t, url, append([]string{"webhook", "set"}, tt.args...)...)
		if !errors.Is(err, ErrUsage) || !strings.Contains(err.Error(), tt.flag) {
			t.Errorf("webhook set %v: %v, want a usage error naming %s", tt.args, err, tt.flag)
		}
	}
	if _, _, err := ctl(t, url, "webhook", "set", "--tenant", "d9", "--url", recv.URL); !errors.Is(err, tenancy.ErrNotFound) {
		t.Errorf("webhook set for an unknown district: %v", err)
	}
	if _, _, err := ctl(t, url, "webhook", "show", "--tenant", "d1"); !errors.Is(err, tenancy.ErrNotFound) {
		t.Errorf("webhook show before set: %v", err)
	}

	secret := setWebhook(t, url, "d1", recv.URL)
	if out := mustCtl(t, url, "webhook", "show", "--tenant", "d1"); !strings.Contains(out, recv.URL) || strings.Contains(out, secret) {
		t.Errorf("webhook show printed %q", out)
	}
	if out := mustCtl(t, url, "webhook", "test", "--tenant", "d1"); !strings.Contains(out, "answered the ping with 204") {
		t.Errorf("webhook test printed %q", out)
	}
	if err := recv.verifies(t, 0, secret); err != nil {
		t.Fatalf("the ping does not verify with the secret ctl printed: %v", err)
	}

	recv.answer(http.StatusGone)
	if _, _, err := ctl(t, url, "webhook", "test", "--tenant", "d1"); !errors.Is(err, webhooks.ErrNotDelivered) ||
		!strings.Contains(err.Error(), "410") {
		t.Errorf("a ping answered 410: %v", err)
	}
	if recv.count() != 2 {
		t.Errorf("the receiver got %d requests, want 2 (a ping is not retried)", recv.count())
	}
	setWebhook(t, url, "d2", recv.URL)
	mustCtl(t, url, "webhook", "remove", "--tenant", "d2")
	if _, _, err := ctl(t, url, "webhook", "remove", "--tenant", "d2"); !errors.Is(err, tenancy.ErrNotFound) {
		t.Errorf("removing twice: %v", err)
	}

	// After a master rotation, with the new master key alone, the webhook signs with the same secret.
	newMaster := strings.TrimSpace(mustCtl(t, url, "keys", "new-master", "--id", "m2"))
	if out := mustCtl(t, url, "keys", "rotate-master", "--master-keys", newMaster+","+testMasterKeys); !strings.Contains(out, "(and 1 webhook secrets)") {
		t.Fatalf("rotate-master printed %q", out)
	}
	recv.answer(http.StatusOK)
	mustCtl(t, url, "webhook", "test", "--tenant", "d1", "--master-keys", newMaster)
	if err := recv.verifies(t, 2, secret); err != nil {
		t.Fatalf("after the master rotation: %v", err)
	}

	for d, actions := range map[string][]string{"d1": {"webhook.set", "webhook.test"}, "d2": {"webhook.set", "webhook.remove"}} {
		out := mustCtl(t, url, "audit", "list", "--tenant", d)
		for _, action := range actions {
			if !strings.Contains(out, action) {
				t.Errorf("the audit log of %s has no %s:\n%s", d, action, out)
			}
		}
		if strings.Contains(out, secret) {
			t.Error("the audit log holds the webhook secret")
		}
	}
}

// TestEraseNotifiesTheWebhook erases three districts and checks that a finished job reaches its
// district's webhook, signed with the secret ctl printed and carrying the job's verification log; that
// a receiver answering 400 is not retried, leaves the job done and is reported as a warning, recorded,
// and sent again by webhook retry; and that a district without a webhook sends nothing.
func TestEraseNotifiesTheWebhook(t *testing.T) {
	pool, url := migratedDB(t)
	_, database, addr := chtest.New(t)
	kcfg := platformTopics(t)
	for _, d := range []string{"d1", "d2", "d3"} {
		mustCtl(t, url, "tenant", "create", "--id", d, "--name", "District "+d)
	}
	ok, refusing := newHookReceiver(t, http.StatusOK), newHookReceiver(t, http.StatusBadRequest)
	secret := setWebhook(t, url, "d1", ok.URL)
	setWebhook(t, url, "d2", refusing.URL)
	erase := func(tenant string) (jobs.Job, string) {
		t.Helper()
		out, errOut, err := ctl(t, url, append([]string{"erase", "tenant", "--tenant", tenant, "--confirm", tenant, "--enricher-wait", "0",
			"--clickhouse.addr", addr, "--clickhouse.database", database, "--output", "json"}, kafkaArgs(kcfg)...)...)
		if err != nil {
			t.Fatalf("erasing %s: %v\n%s", tenant, err, errOut)
		}
		var job jobs.Job
		if err := json.Unmarshal([]byte(out), &job); err != nil || job.Status != jobs.StatusDone {
			t.Fatalf("erasing %s: job %+v (%v)", tenant, job, err)
		}
		return job, errOut
	}

	job, errOut := erase("d1")
	if ok.count() != 1 || !strings.Contains(errOut, "the webhook of district d1 was notified (1 attempts)") {
		t.Fatalf("%d notifications; stderr %q", ok.count(), errOut)
	}
	if err := ok.verifies(t, 0, secret); err != nil {
		t.Fatalf("the notification does not verify with the secret ctl printed: %v", err)
	}
	_, body := ok.request(t, 0)
	var got webhooks.JobFinished
	if err := json.Unmarshal(body, &got); err != nil || got.Event != webhooks.EventJobFinished || got.ID != job.ID || got.Tenant != "d1" ||
		got.Status != jobs.StatusDone || len(got.Steps) != 7 || got.FinishedAt == nil || got.Steps[3].FoundAfter == nil || *got.Steps[3].FoundAfter != 0 {
		t.Fatalf("notification %s (%v)", body, err)
	}

	job, errOut = erase("d2")
	if refusing.count() != 1 || !strings.Contains(errOut, "warning: job "+job.ID) || !strings.Contains(errOut, "400") {
		t.Fatalf("%d attempts at a receiver answering 400; stderr %q", refusing.count(), errOut)
	}
	var shown struct{ Deliveries []webhooks.Delivery }
	if err := json.Unmarshal([]byte(mustCtl(t, url, "webhook", "show", "--tenant", "d2", "--output", "json")), &shown); err != nil ||
		len(shown.Deliveries) != 1 || shown.Deliveries[0].JobID != job.ID || shown.Deliveries[0].Attempts != 1 ||
		shown.Deliveries[0].LastStatus == nil || *shown.Deliveries[0].LastStatus != 400 || shown.Deliveries[0].Delivered() {
		t.Fatalf("webhook show: %+v (%v)", shown, err)
	}
	refusing.answer(http.StatusAccepted)
	var retried []webhooks.Delivery
	if err := json.Unmarshal([]byte(mustCtl(t, url, "webhook", "retry", "--tenant", "d2", "--output", "json")), &retried); err != nil ||
		len(retried) != 1 || !retried[0].Delivered() || retried[0].Attempts != 2 || refusing.count() != 2 {
		t.Fatalf("webhook retry: %+v (%v), %d requests", retried, err, refusing.count())
	}

	erase("d3")
	var d3 int
	if err := pool.QueryRow(t.Context(), "SELECT count(*) FROM control.webhook_deliveries WHERE tenant_id = 'd3'").Scan(&d3); err != nil ||
		d3 != 0 || ok.count() != 1 || refusing.count() != 2 {
		t.Fatalf("erasing a district without a webhook: %d deliveries (%v), receivers got %d and %d requests", d3, err, ok.count(), refusing.count())
	}
	for _, d := range []string{"d1", "d2"} {
		if out := mustCtl(t, url, "audit", "list", "--tenant", d); !strings.Contains(out, "webhook.notify") {
			t.Errorf("the audit log of %s has no webhook.notify:\n%s", d, out)
		}
	}
}
