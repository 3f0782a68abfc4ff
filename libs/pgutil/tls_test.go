package pgutil_test

import (
	"context"
	"net/url"
	"testing"

	"github.com/edtech-analytics/platform/libs/conf/conftest"
	"github.com/edtech-analytics/platform/libs/pgutil"
	"github.com/edtech-analytics/platform/libs/testenv/devenv"
)

// TestConnectOverMutualTLS connects to a PostgreSQL server of the test's own whose database takes only TLS
// with a client certificate, with certificates made for the test and set in the URL as DATABASE_URL would
// carry them: verify-full with the CA and a client certificate connects; no certificate, another CA or
// no TLS are refused.
func TestConnectOverMutualTLS(t *testing.T) {
	ctx := t.Context()
	env := devenv.Env{Dir: devenv.PrivateDir(t)}
	t.Cleanup(func() {
		if err := env.Down(context.Background()); err != nil {
			t.Errorf("stopping postgres: %v", err)
		}
	})
	plain, err := env.Postgres(ctx)
	if err != nil {
		t.Fatal(err)
	}
	pki := conftest.New(t)
	if err := env.EnablePostgresTLS(ctx, devenv.TLSFiles{CA: pki.CA, Cert: pki.ServerCert, Key: pki.ServerKey}); err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(plain)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + devenv.TLSDatabase
	connect := func(params map[string]string) error {
		t.Helper()
		q := url.Values{}
		for k, v := range params {
			q.Set(k, v)
		}
		c := *u
		c.RawQuery = q.Encode()
		pool, err := pgutil.Connect(ctx, c.String())
		if err != nil {
			return err
		}
		pool.Close()
		return nil
	}
	if err := connect(map[string]string{"sslmode": "verify-full", "sslrootcert": pki.CA, "sslcert": pki.ClientCert, "sslkey": pki.ClientKey}); err != nil {
		t.Fatalf("a client with the CA and a certificate: %v", err)
	}
	if err := connect(map[string]string{"sslmode": "verify-full", "sslrootcert": pki.CA}); err == nil {
		t.Error("a client without a certificate was let in")
	}
	other := conftest.New(t)
	if err := connect(map[string]string{"sslmode": "verify-full", "sslrootcert": other.CA, "sslcert": pki.ClientCert, "sslkey": pki.ClientKey}); err == nil {
		t.Error("a client trusting another CA accepted the server")
	}
	if err := connect(map[string]string{"sslmode": "disable"}); err == nil {
		t.Error("a client without TLS was let in")
	}
}
