package webhook_test

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/edtech-analytics/platform/libs/tenancy/connectors"
	"github.com/edtech-analytics/platform/services/connector/internal/onerostertest"
	"github.com/edtech-analytics/platform/services/connector/internal/webhook"
)

// TestWebhookSignatures: a well-signed, fresh request triggers a delta sync of its source (202); a wrong
// key, a changed body, another district, an unknown source, a stale or future timestamp, and the same
// request sent again are refused (401) and trigger nothing. The clock is the test's.
func TestWebhookSignatures(t *testing.T) {
	_, store, _ := onerostertest.Control(t, "d1", "d2")
	ctx := t.Context()
	src := connectors.Source{TenantID: "d1", SourceID: "sis", Kind: connectors.KindOneRosterREST, BaseURL: "https://sis.example/v1p2",
		TokenURL: "https://sis.example/token", ClientID: "c", DeltaEvery: time.Hour, FullEvery: 24 * time.Hour}
	key, err := store.Add(ctx, src, "secret", "apikey")
	if err != nil {
		t.Fatal(err)
	}
	src.TenantID = "d2"
	otherKey, err := store.Add(ctx, src, "secret", "apikey")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 12, 7, 4, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	var triggered []string
	h := webhook.New(store, func(tenant, source string) bool {
		mu.Lock()
		defer mu.Unlock()
		triggered = append(triggered, tenant+"/"+source)
		return true
	}, slog.New(slog.NewTextHandler(io.Discard, nil)), func() time.Time { return now })
	mux := http.NewServeMux()
	h.Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	send := func(tenant, source string, ts time.Time, sig string, body []byte) int {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/v1/webhooks/"+source, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set(webhook.HeaderTenant, tenant)
		req.Header.Set(webhook.HeaderTimestamp, strconv.FormatInt(ts.Unix(), 10))
		req.Header.Set(webhook.HeaderSignature, sig)
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	body := []byte(`{"event":"roster.changed"}`)
	ts := now.Add(-time.Minute)
	good := webhook.Sign(key, ts, body)
	for _, c := range []struct {
		name           string
		tenant, source string
		ts             time.Time
		sig            string
		body           []byte
		want           int
	}{
		{"good", "d1", "sis", ts, good, body, http.StatusAccepted},
		{"replayed", "d1", "sis", ts, good, body, http.StatusUnauthorized},
		{"another request of the same second", "d1", "sis", ts, webhook.Sign(key, ts, []byte(`{}`)), []byte(`{}`), http.StatusAccepted},
		{"wrong key", "d1", "sis", ts, webhook.Sign(otherKey, ts, body), body, http.StatusUnauthorized},
		{"changed body", "d1", "sis", ts, webhook.Sign(key, ts, body), []byte(`{"event":"x"}`), http.StatusUnauthorized},
		{"changed timestamp", "d1", "sis", ts.Add(time.Second), good, body, http.StatusUnauthorized},
		{"another district's key", "d2", "sis", ts, good, body, http.StatusUnauthorized},
		{"unknown source", "d1", "nope", ts, webhook.Sign(key, ts, body), body, http.StatusUnauthorized},
		{"stale", "d1", "sis", now.Add(-6 * time.Minute), webhook.Sign(key, now.Add(-6*time.Minute), body), body, http.StatusUnauthorized},
		{"future", "d1", "sis", now.Add(6 * time.Minute), webhook.Sign(key, now.Add(6*time.Minute), body), body, http.StatusUnauthorized},
		{"no signature", "d1", "sis", ts, "", body, http.StatusUnauthorized},
		{"other district good", "d2", "sis", ts, webhook.Sign(otherKey, ts, body), body, http.StatusAccepted},
	} {
		if got := send(c.tenant, c.source, c.ts, c.sig, c.body); got != c.want {
			t.Errorf("%s: %d, want %d", c.name, got, c.want)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []string{"d1/sis", "d1/sis", "d2/sis"}; len(triggered) != 3 || triggered[0] != want[0] || triggered[1] != want[1] || triggered[2] != want[2] {
		t.Fatalf("triggered %v, want %v", triggered, want)
	}
}
