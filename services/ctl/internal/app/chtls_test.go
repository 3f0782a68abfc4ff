package app

import (
	"context"
	"flag"
	"io"
	"testing"

	"github.com/edtech-analytics/platform/libs/conf/conftest"
	"github.com/edtech-analytics/platform/libs/testenv/devenv"
)

// TestClickHouseFlagsConnectOverMutualTLS connects through ctl's ClickHouse flags to a server that takes
// TLS only and requires client certificates: with the CA and a client certificate ctl reads; without the
// certificate, or without TLS, it is refused.
func TestClickHouseFlagsConnectOverMutualTLS(t *testing.T) {
	ctx := t.Context()
	pki := conftest.New(t)
	srv, err := devenv.StartSecureClickHouse(ctx, devenv.PrivateDir(t), devenv.TLSFiles{CA: pki.CA, Cert: pki.ServerCert, Key: pki.ServerKey})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Stop(context.Background()); err != nil {
			t.Errorf("stopping clickhouse: %v", err)
		}
	})
	query := func(args ...string) error {
		t.Helper()
		fs := flag.NewFlagSet("ctl", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		var c chConfig
		c.registerFlags(fs)
		if err := fs.Parse(append([]string{"--clickhouse.addr", srv.Addr, "--clickhouse.database", "default"}, args...)); err != nil {
			t.Fatal(err)
		}
		conn, err := c.open(ctx)
		if err != nil {
			return err
		}
		defer func() { _ = conn.Close() }()
		var n uint8
		return conn.QueryRow(ctx, "SELECT 1").Scan(&n)
	}
	if err := query("--clickhouse.tls-ca-file", pki.CA, "--clickhouse.tls-cert-file", pki.ClientCert, "--clickhouse.tls-key-file", pki.ClientKey); err != nil {
		t.Fatalf("with the CA and a client certificate: %v", err)
	}
	if err := query("--clickhouse.tls-ca-file", pki.CA); err == nil {
		t.Error("a client without a certificate was let in")
	}
	if err := query(); err == nil {
		t.Error("a client without TLS was let in")
	}
}
