package chutil_test

import (
	"context"
	"testing"
	"time"

	"github.com/edtech-analytics/platform/libs/chutil"
	"github.com/edtech-analytics/platform/libs/conf"
	"github.com/edtech-analytics/platform/libs/conf/conftest"
	"github.com/edtech-analytics/platform/libs/testenv/devenv"
)

// TestOpenOverMutualTLS connects to a ClickHouse server that takes TLS only and requires client
// certificates, with certificates made for the test: a client with the CA and a certificate reads; one
// without a certificate, one that trusts another CA and one without TLS are refused.
func TestOpenOverMutualTLS(t *testing.T) {
	ctx := t.Context()
	pki := conftest.New(t)
	srv, err := devenv.StartSecureClickHouse(ctx, t.TempDir(), devenv.TLSFiles{CA: pki.CA, Cert: pki.ServerCert, Key: pki.ServerKey})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Stop(context.Background()); err != nil {
			t.Errorf("stopping clickhouse: %v", err)
		}
	})
	query := func(c *conf.ClientTLS) error {
		t.Helper()
		opts := chutil.Options{Addr: srv.Addr, DialTimeout: 5 * time.Second}
		if c != nil {
			cfg, err := c.Config()
			if err != nil {
				t.Fatal(err)
			}
			opts.TLS = cfg
		}
		conn, err := chutil.Open(ctx, opts)
		if err != nil {
			return err
		}
		defer func() { _ = conn.Close() }()
		var n uint8
		return conn.QueryRow(ctx, "SELECT 1").Scan(&n)
	}
	if err := query(&conf.ClientTLS{CAFile: pki.CA, CertFile: pki.ClientCert, KeyFile: pki.ClientKey}); err != nil {
		t.Fatalf("a client with the CA and a certificate: %v", err)
	}
	if err := query(&conf.ClientTLS{CAFile: pki.CA}); err == nil {
		t.Error("a client without a certificate was let in")
	}
	other := conftest.New(t)
	if err := query(&conf.ClientTLS{CAFile: other.CA, CertFile: pki.ClientCert, KeyFile: pki.ClientKey}); err == nil {
		t.Error("a client trusting another CA accepted the server")
	}
	if err := query(nil); err == nil {
		t.Error("a client without TLS was let in")
	}
}
