package conf_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/edtech-analytics/platform/libs/conf"
	"github.com/edtech-analytics/platform/libs/conf/conftest"
)

// TestMutualTLS: a server of ServerTLS with a client CA answers a client of ClientTLS that trusts its CA
// and presents a certificate it signs, and refuses one without a certificate; a client that does not trust
// the CA refuses the server; half a certificate is a configuration error.
func TestMutualTLS(t *testing.T) {
	pki := conftest.New(t)
	serverCfg, err := conf.ServerTLS{CertFile: pki.ServerCert, KeyFile: pki.ServerKey, ClientCAFile: pki.CA}.Config()
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) }))
	srv.TLS = serverCfg
	srv.StartTLS()
	defer srv.Close()
	get := func(c conf.ClientTLS) error {
		t.Helper()
		cfg, err := c.Config()
		if err != nil {
			t.Fatal(err)
		}
		client := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return errors.New(resp.Status)
		}
		return nil
	}
	if err := get(conf.ClientTLS{CAFile: pki.CA, CertFile: pki.ClientCert, KeyFile: pki.ClientKey}); err != nil {
		t.Fatalf("a client with the CA and a client certificate: %v", err)
	}
	if err := get(conf.ClientTLS{CAFile: pki.CA}); err == nil {
		t.Error("a client without a certificate was served")
	}
	if err := get(conf.ClientTLS{Enabled: true, CertFile: pki.ClientCert, KeyFile: pki.ClientKey}); err == nil {
		t.Error("a client that does not trust the test CA accepted the server")
	}
	if _, err := (conf.ClientTLS{CertFile: pki.ClientCert}).Config(); err == nil {
		t.Error("a client certificate without its key was accepted")
	}
	if _, err := (conf.ServerTLS{CertFile: pki.ServerCert}).Config(); err == nil {
		t.Error("a server certificate without its key was accepted")
	}
	if cfg, err := (conf.ClientTLS{}).Config(); cfg != nil || err != nil {
		t.Errorf("no TLS settings: %v, %v; want plain connections", cfg, err)
	}
}
