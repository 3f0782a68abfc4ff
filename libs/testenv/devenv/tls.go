package devenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"text/template"
	"time"
)

// TLSFiles are the PEM files of a server that takes TLS and requires a client certificate signed by CA.
type TLSFiles struct{ CA, Cert, Key string }

// SecureClickHouse is a private ClickHouse server whose native protocol takes TLS only, with client
// certificates required (its HTTP port stays plain, on loopback, for the readiness check).
type SecureClickHouse struct {
	Addr string // the secure native port, host:port
	dir  string
	pid  int
}

// secureCHConfig is chConfig with tcp_port_secure instead of tcp_port, and the server's TLS settings.
const secureCHConfig = `<?xml version="1.0"?>
<!-- Written by libs/testenv/devenv: a private loopback ClickHouse that takes TLS only. -->
<yandex>` + chServer + `    <tcp_port_secure>{{.TCP}}</tcp_port_secure>
    <http_port>{{.HTTP}}</http_port>
    <openSSL>
        <server>
            <certificateFile>{{x .Cert}}</certificateFile>
            <privateKeyFile>{{x .Key}}</privateKeyFile>
            <caConfig>{{x .CA}}</caConfig>
            <verificationMode>strict</verificationMode>
            <loadDefaultCAFile>false</loadDefaultCAFile>
            <cacheSessions>true</cacheSessions>
            <disableProtocols>sslv2,sslv3,tlsv1,tlsv1_1</disableProtocols>
            <preferServerCiphers>true</preferServerCiphers>
        </server>
    </openSSL>
</yandex>
`

// StartSecureClickHouse starts a ClickHouse server under dir with the given certificates and waits until
// it answers. Stop ends it.
func StartSecureClickHouse(ctx context.Context, dir string, files TLSFiles) (*SecureClickHouse, error) {
	bin, err := chBinary()
	if err != nil {
		return nil, err
	}
	for _, d := range []string{"data", "tmp", "user_files", "format_schemas"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return nil, fmt.Errorf("creating %s: %w", d, err)
		}
	}
	tcp, err := freePort(ctx, 0)
	if err != nil {
		return nil, err
	}
	http, err := freePort(ctx, 0, tcp)
	if err != nil {
		return nil, err
	}
	tmpl, err := template.New("config.xml").Funcs(template.FuncMap{"x": xmlText}).Parse(secureCHConfig)
	if err != nil {
		return nil, fmt.Errorf("parsing the secure clickhouse config: %w", err)
	}
	var cfg bytes.Buffer
	if err := tmpl.Execute(&cfg, map[string]any{"Base": dir, "TCP": tcp, "HTTP": http, "CA": files.CA, "Cert": files.Cert, "Key": files.Key}); err != nil {
		return nil, fmt.Errorf("rendering the secure clickhouse config: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.xml"), cfg.Bytes(), 0o644); err != nil {
		return nil, fmt.Errorf("writing clickhouse config: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "users.xml"), []byte(chUsers), 0o644); err != nil {
		return nil, fmt.Errorf("writing clickhouse users: %w", err)
	}
	pid, done, err := startDetached(ctx, bin, dir, filepath.Join(dir, "stdout.log"), "--config-file="+filepath.Join(dir, "config.xml"))
	if err != nil {
		return nil, fmt.Errorf("starting clickhouse-server: %w", err)
	}
	s := &SecureClickHouse{Addr: loopback(tcp), dir: dir, pid: pid}
	st := &chState{PID: pid, TCPPort: tcp, HTTPPort: http}
	if err := waitFor(ctx, 60*time.Second, func(ctx context.Context) error { return chAnswers(ctx, st) }, exitedOf(done, "clickhouse-server")); err != nil {
		return nil, errors.Join(fmt.Errorf("waiting for the secure clickhouse on %s: %w\n%s", s.Addr, err,
			tail(filepath.Join(dir, "server.err.log"), 20)), s.Stop(ctx))
	}
	return s, nil
}

// Stop ends the server.
func (s *SecureClickHouse) Stop(ctx context.Context) error {
	if s.pid == 0 || !alive(s.pid, "clickhouse") {
		return nil
	}
	err := terminate(ctx, s.pid, "clickhouse", 30*time.Second)
	s.pid = 0
	return err
}

// TLSDatabase is the database that EnablePostgresTLS makes reachable over TLS with a client certificate
// only; the server's other databases keep their plain connections (the readiness check uses one).
const TLSDatabase = "tls_only"

// EnablePostgresTLS turns TLS on in the PostgreSQL server of e (started by e.Postgres; use an Env of the
// test's own, since this changes the server) with the given certificates, and creates TLSDatabase, which
// takes only TLS connections that present a client certificate signed by files.CA.
func (e Env) EnablePostgresTLS(ctx context.Context, files TLSFiles) error {
	st, err := e.Status(ctx)
	if err != nil {
		return err
	}
	if !st.Postgres.Running {
		return errors.New("enabling postgres TLS: start postgres first (Env.Postgres)")
	}
	p := e.pgPaths()
	cred, err := pgAccount()
	if err != nil {
		return err
	}
	// PostgreSQL reads the key only if no one else may: its own copy, owned by the server's user.
	for _, f := range []struct{ src, dst string }{{files.Cert, "tls-server.crt"}, {files.Key, "tls-server.key"}, {files.CA, "tls-ca.crt"}} {
		b, err := os.ReadFile(f.src)
		if err != nil {
			return fmt.Errorf("reading %s: %w", f.src, err)
		}
		dst := filepath.Join(p.data, f.dst)
		if err := os.WriteFile(dst, b, 0o600); err != nil {
			return fmt.Errorf("writing %s: %w", dst, err)
		}
		if cred != nil {
			if err := os.Chown(dst, int(cred.Uid), int(cred.Gid)); err != nil {
				return fmt.Errorf("handing %s to %s: %w", dst, pgSystemUser, err)
			}
		}
	}
	conf := "\n# TLS (written by libs/testenv/devenv EnablePostgresTLS)\nssl = on\nssl_cert_file = 'tls-server.crt'\n" +
		"ssl_key_file = 'tls-server.key'\nssl_ca_file = 'tls-ca.crt'\n"
	if err := appendFile(filepath.Join(p.data, "postgresql.conf"), conf); err != nil {
		return fmt.Errorf("configuring postgres TLS: %w", err)
	}
	hbaPath := filepath.Join(p.data, "pg_hba.conf")
	hba, err := os.ReadFile(hbaPath)
	if err != nil {
		return fmt.Errorf("reading pg_hba.conf: %w", err)
	}
	rules := "hostssl " + TLSDatabase + " all 127.0.0.1/32 trust clientcert=verify-ca\n" +
		"host " + TLSDatabase + " all 127.0.0.1/32 reject\n"
	if err := os.WriteFile(hbaPath, append([]byte(rules), hba...), 0o600); err != nil {
		return fmt.Errorf("writing pg_hba.conf: %w", err)
	}
	if cred != nil {
		if err := os.Chown(hbaPath, int(cred.Uid), int(cred.Gid)); err != nil {
			return fmt.Errorf("handing pg_hba.conf to %s: %w", pgSystemUser, err)
		}
	}
	bin, err := pgBinDir()
	if err != nil {
		return err
	}
	if err := runOutput(pgCmd(ctx, cred, p.base, filepath.Join(bin, "pg_ctl"), "-D", p.data, "reload")); err != nil {
		return fmt.Errorf("reloading postgres: %w", err)
	}
	psql, err := PostgresTool("psql")
	if err != nil {
		return err
	}
	create := exec.CommandContext(ctx, psql, "-d", st.Postgres.Addr, "-v", "ON_ERROR_STOP=1", "-c", "CREATE DATABASE "+TLSDatabase)
	create.Env = append(os.Environ(), "PGSSLMODE=disable")
	if err := runOutput(create); err != nil {
		return fmt.Errorf("creating database %s: %w", TLSDatabase, err)
	}
	return nil
}
