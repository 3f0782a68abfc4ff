package app_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/edtech-analytics/platform/libs/conf"
	"github.com/edtech-analytics/platform/libs/conf/conftest"
	"github.com/edtech-analytics/platform/services/gateway/app"
)

// TestGatewayServesMutualTLS: with HTTP_TLS_CERT_FILE, HTTP_TLS_KEY_FILE and HTTP_TLS_CLIENT_CA_FILE the
// gateway serves HTTPS only, to clients presenting a certificate of the client CA: such a client's batch
// is accepted; a client without a certificate, and plain HTTP, are refused.
func TestGatewayServesMutualTLS(t *testing.T) {
	pki := conftest.New(t)
	env := newGatewayEnv(t)
	gw := env.start(t, func(c *app.Config) {
		c.HTTPTLS = conf.ServerTLS{CertFile: pki.ServerCert, KeyFile: pki.ServerKey, ClientCAFile: pki.CA}
	})
	httpsURL := "https://" + strings.TrimPrefix(gw.url, "http://")
	body := `{"events":[{"event_id":"6f1c2b7e-8a3d-4c1e-9f00-000000000001","type":"attendance","occurred_at":"2026-11-20T08:00:00Z",` +
		`"actor":{"sis_id":"S1","role":"student"},"school_id":"sch1","payload":{"status":"present","date":"2026-11-20"}}]}`
	post := func(url string, c conf.ClientTLS) (int, error) {
		t.Helper()
		cfg, err := c.Config()
		if err != nil {
			t.Fatal(err)
		}
		client := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, url+"/v1/events", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+env.key)
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		_ = resp.Body.Close()
		return resp.StatusCode, nil
	}
	if code, err := post(httpsURL, conf.ClientTLS{CAFile: pki.CA, CertFile: pki.ClientCert, KeyFile: pki.ClientKey}); err != nil || code != http.StatusAccepted {
		t.Fatalf("a client with a certificate over HTTPS: %d, %v", code, err)
	}
	if code, err := post(httpsURL, conf.ClientTLS{CAFile: pki.CA}); err == nil {
		t.Errorf("a client without a certificate got %d", code)
	}
	if code, err := post(gw.url, conf.ClientTLS{}); err == nil && code == http.StatusAccepted {
		t.Errorf("plain HTTP was accepted")
	}
}
