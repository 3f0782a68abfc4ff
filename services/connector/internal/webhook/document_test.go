package webhook_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"github.com/edtech-analytics/platform/libs/tenancy/connectors"
	"github.com/edtech-analytics/platform/services/connector/api"
	"github.com/edtech-analytics/platform/services/connector/internal/onerostertest"
	"github.com/edtech-analytics/platform/services/connector/internal/webhook"
)

// failing is a source store that does not answer, for the webhook's 503.
type failing struct{}

func (failing) Get(context.Context, string, string) (connectors.Source, error) {
	return connectors.Source{}, errors.New("down")
}
func (failing) Open(context.Context, string, string) (connectors.Secrets, error) {
	return connectors.Secrets{}, errors.New("down")
}

// TestOpenAPIDocumentDescribesTheWebhook: real requests to the webhook handler, each answer of the
// document exercised, every request and answer checked against api/openapi.yaml.
func TestOpenAPIDocumentDescribesTheWebhook(t *testing.T) {
	doc, err := openapi3.NewLoader().LoadFromData(api.OpenAPI())
	if err != nil {
		t.Fatal(err)
	}
	if err := doc.Validate(t.Context()); err != nil {
		t.Fatalf("openapi.yaml is not a valid OpenAPI 3 document: %v", err)
	}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	_, store, _ := onerostertest.Control(t, "d1")
	src := connectors.Source{TenantID: "d1", SourceID: "sis", Kind: connectors.KindOneRosterREST, BaseURL: "https://sis.example/v1p2",
		TokenURL: "https://sis.example/token", ClientID: "c", DeltaEvery: time.Hour, FullEvery: 24 * time.Hour}
	key, err := store.Add(t.Context(), src, "secret", "apikey")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 12, 7, 4, 0, 0, 0, time.UTC)
	queued := true
	serve := func(sources webhook.Sources) *httptest.Server {
		h := webhook.New(sources, func(string, string) bool { return queued }, slog.New(slog.NewTextHandler(io.Discard, nil)), func() time.Time { return now })
		mux := http.NewServeMux()
		h.Register(mux)
		srv := httptest.NewServer(mux)
		t.Cleanup(srv.Close)
		return srv
	}
	ok, down := serve(store), serve(failing{})
	body := []byte(`{"event":"roster.changed"}`)
	covered := map[string]bool{}
	for i, c := range []struct {
		name string
		srv  *httptest.Server
		body []byte
		sig  string
		busy bool
		want int
	}{
		{"signed", ok, body, "", false, http.StatusAccepted},
		{"replayed", ok, body, "same", false, http.StatusUnauthorized},
		{"over 64 KiB", ok, bytes.Repeat([]byte("x"), webhook.MaxBody+1), "", false, http.StatusRequestEntityTooLarge},
		{"a sync already queued", ok, []byte(`{"n":1}`), "", true, http.StatusTooManyRequests},
		{"store down", down, []byte(`{"n":2}`), "", false, http.StatusServiceUnavailable},
	} {
		t.Run(c.name, func(t *testing.T) {
			queued = !c.busy
			ts := now.Add(-time.Duration(i) * time.Second)
			if c.sig == "same" {
				ts = now
			}
			sig := webhook.Sign(key, ts, c.body)
			req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, c.srv.URL+"/v1/webhooks/sis", bytes.NewReader(c.body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set(webhook.HeaderTenant, "d1")
			req.Header.Set(webhook.HeaderTimestamp, strconv.FormatInt(ts.Unix(), 10))
			req.Header.Set(webhook.HeaderSignature, sig)
			req.Header.Set("Content-Type", "application/json")
			resp, err := c.srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close() // read to its end above
			if resp.StatusCode != c.want {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, c.want, got)
			}
			check, err := http.NewRequestWithContext(t.Context(), http.MethodPost, c.srv.URL+"/v1/webhooks/sis", bytes.NewReader(c.body))
			if err != nil {
				t.Fatal(err)
			}
			check.Header = req.Header.Clone()
			route, params, err := router.FindRoute(check)
			if err != nil {
				t.Fatalf("the document has no route: %v", err)
			}
			in := &openapi3filter.RequestValidationInput{Request: check, PathParams: params, Route: route,
				Options: &openapi3filter.Options{MultiError: true, ExcludeRequestBody: len(c.body) > webhook.MaxBody}}
			if err := openapi3filter.ValidateRequest(t.Context(), in); err != nil && len(c.body) <= webhook.MaxBody {
				t.Errorf("request does not conform: %v", err)
			}
			out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: resp.StatusCode, Header: resp.Header,
				Body: io.NopCloser(bytes.NewReader(got)), Options: &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true}}
			if err := openapi3filter.ValidateResponse(t.Context(), out); err != nil {
				t.Errorf("answer does not conform: %v\nbody: %.200s", err, got)
			}
			covered[strconv.Itoa(resp.StatusCode)] = true
		})
	}
	for code := range doc.Paths.Find("/v1/webhooks/{source}").Post.Responses.Map() {
		if !covered[code] {
			t.Errorf("documented response %s is not exercised", code)
		}
	}
}
