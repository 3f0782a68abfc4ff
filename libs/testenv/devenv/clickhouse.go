package devenv

import (
	"bufio"
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/template"
	"time"
)

// chServer is what every private server's config.xml holds (under <yandex>): logs, data and users under
// .Base, loopback only, UTC. The configs below add their ports and roles.
const chServer = `
    <logger>
        <level>information</level>
        <log>{{x .Base}}/server.log</log>
        <errorlog>{{x .Base}}/server.err.log</errorlog>
        <size>50M</size>
        <count>2</count>
    </logger>
    <listen_host>127.0.0.1</listen_host>
    <path>{{x .Base}}/data/</path>
    <tmp_path>{{x .Base}}/tmp/</tmp_path>
    <user_files_path>{{x .Base}}/user_files/</user_files_path>
    <format_schema_path>{{x .Base}}/format_schemas/</format_schema_path>
    <users_config>{{x .Base}}/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
    <max_concurrent_queries>200</max_concurrent_queries>
    <mark_cache_size>268435456</mark_cache_size>
    <uncompressed_cache_size>268435456</uncompressed_cache_size>
`

// chConfig is a minimal loopback server config that ClickHouse 18.16 and later accept.
const chConfig = `<?xml version="1.0"?>
<!-- Written by libs/testenv/devenv: a private loopback ClickHouse for tests and the demo. -->
<yandex>` + chServer + `    <tcp_port>{{.TCPPort}}</tcp_port>
    <http_port>{{.HTTPPort}}</http_port>
</yandex>
`

// chUsers has one passwordless user, default, reachable from loopback only.
const chUsers = `<?xml version="1.0"?>
<!-- Written by libs/devenv. -->
<yandex>
    <profiles>
        <default>
            <allow_experimental_low_cardinality_type>1</allow_experimental_low_cardinality_type>
        </default>
    </profiles>
    <users>
        <default>
            <password></password>
            <networks>
                <ip>127.0.0.1</ip>
                <ip>::1</ip>
            </networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
    </users>
    <quotas>
        <default></default>
    </quotas>
</yandex>
`

func xmlText(s string) (string, error) {
	var b strings.Builder
	if err := xml.EscapeText(&b, []byte(s)); err != nil {
		return "", err
	}
	return b.String(), nil
}

// chBinary finds clickhouse-server on PATH or in the Debian package's locations.
func chBinary() (string, error) {
	if p, err := exec.LookPath("clickhouse-server"); err == nil {
		return p, nil
	}
	for _, p := range []string{"/usr/sbin/clickhouse-server", "/usr/bin/clickhouse-server"} {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("clickhouse-server not found: run `make deps` as root on Debian/Ubuntu, or set %s: %w",
		EnvClickHouseAddr, ErrNotInstalled)
}

type chPaths struct{ base, config, users, data, stdout, errLog string }

func (e Env) chPaths() chPaths {
	base := filepath.Join(e.Dir, "clickhouse")
	return chPaths{
		base:   base,
		config: filepath.Join(base, "config.xml"),
		users:  filepath.Join(base, "users.xml"),
		data:   filepath.Join(base, "data"),
		stdout: filepath.Join(base, "stdout.log"),
		errLog: filepath.Join(base, "server.err.log"),
	}
}

// ensureClickHouse reuses the recorded server when it answers, and otherwise starts one.
func (e Env) ensureClickHouse(ctx context.Context, prev *chState) (*chState, error) {
	bin, err := chBinary()
	if err != nil {
		return prev, err
	}
	p := e.chPaths()
	if prev != nil && alive(prev.PID, "clickhouse") {
		if waitFor(ctx, 5*time.Second, func(ctx context.Context) error { return chAnswers(ctx, prev) }, nil) == nil {
			return prev, nil
		}
		e.log().Warn("replacing clickhouse that does not answer", "pid", prev.PID)
		if err := terminate(ctx, prev.PID, "clickhouse", 10*time.Second); err != nil {
			return prev, err
		}
	}
	if st, ok := adoptClickHouse(ctx, p); ok {
		return st, nil
	}

	for _, d := range []string{p.base, p.data, filepath.Join(p.base, "tmp"), filepath.Join(p.base, "user_files"),
		filepath.Join(p.base, "format_schemas")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return prev, fmt.Errorf("creating %s: %w", d, err)
		}
	}
	var wantTCP, wantHTTP int
	if prev != nil {
		wantTCP, wantHTTP = prev.TCPPort, prev.HTTPPort
	}
	// A server can exit while starting for reasons outside it: the free ports it was given taken by
	// another process in the meantime (test packages run side by side). Up to three starts, each on
	// fresh ports.
	var errs []error
	for attempt := 1; attempt <= 3; attempt++ {
		st, err := e.startClickHouse(ctx, bin, p, wantTCP, wantHTTP)
		if err == nil {
			return st, nil
		}
		errs = append(errs, fmt.Errorf("attempt %d: %w", attempt, err))
		if st != nil { // running but not answering: recorded, so that the next call replaces it
			return st, errors.Join(errs...)
		}
		if !errors.Is(err, errExited) || ctx.Err() != nil {
			break
		}
		e.log().Warn("clickhouse-server exited while starting; starting it again", "attempt", attempt, "err", err)
		wantTCP, wantHTTP = 0, 0
	}
	return prev, errors.Join(errs...)
}

// errExited is a server process that ended while it was expected to start.
var errExited = errors.New("clickhouse-server exited")

// startClickHouse starts one server on the given ports (any free ones when 0) and waits until it answers.
// On failure it returns the server's state only if the process still runs.
func (e Env) startClickHouse(ctx context.Context, bin string, p chPaths, wantTCP, wantHTTP int) (*chState, error) {
	tcpPort, err := freePort(ctx, wantTCP)
	if err != nil {
		return nil, err
	}
	httpPort, err := freePort(ctx, wantHTTP, tcpPort)
	if err != nil {
		return nil, err
	}
	if err := writeCHConfig(p, tcpPort, httpPort); err != nil {
		return nil, err
	}
	// A killed server's process can look dead (its main thread a zombie) while its other threads still
	// exit and it still holds the lock on data/status; a server started then refuses to run.
	status := filepath.Join(p.data, "status")
	if err := waitFor(ctx, 30*time.Second, func(context.Context) error { return unlocked(status) }, nil); err != nil {
		return nil, fmt.Errorf("waiting for the previous clickhouse-server to release %s: %w", status, err)
	}
	if err := removeTemporaryParts(filepath.Join(p.data, "data")); err != nil {
		return nil, fmt.Errorf("clearing what the previous clickhouse-server was writing: %w", err)
	}
	e.log().Info("starting clickhouse", "dir", p.base, "tcp_port", tcpPort, "http_port", httpPort)
	pid, done, err := startDetached(ctx, bin, p.base, p.stdout, "--config-file="+p.config)
	if err != nil {
		return nil, fmt.Errorf("starting clickhouse-server: %w", err)
	}
	st := &chState{PID: pid, TCPPort: tcpPort, HTTPPort: httpPort}
	if err := waitFor(ctx, 60*time.Second, func(ctx context.Context) error { return chAnswers(ctx, st) }, exitedOf(done, "clickhouse-server")); err != nil {
		err = fmt.Errorf("waiting for clickhouse on %s: %w\n%s\n%s", loopback(tcpPort), err, tail(p.stdout, 10), tail(p.errLog, 20))
		if errors.Is(err, errExited) {
			return nil, err
		}
		return st, err // still running
	}
	return st, nil
}

func writeCHConfig(p chPaths, tcpPort, httpPort int) error {
	tmpl, err := template.New("config.xml").Funcs(template.FuncMap{"x": xmlText}).Parse(chConfig)
	if err != nil {
		return fmt.Errorf("parsing clickhouse config template: %w", err)
	}
	var cfg bytes.Buffer
	data := struct {
		Base              string
		TCPPort, HTTPPort int
	}{p.base, tcpPort, httpPort}
	if err := tmpl.Execute(&cfg, data); err != nil {
		return fmt.Errorf("rendering clickhouse config: %w", err)
	}
	if err := os.WriteFile(p.config, cfg.Bytes(), 0o644); err != nil {
		return fmt.Errorf("writing clickhouse config: %w", err)
	}
	if err := os.WriteFile(p.users, []byte(chUsers), 0o644); err != nil {
		return fmt.Errorf("writing clickhouse users: %w", err)
	}
	return nil
}

// startDetached starts bin in its own session with output appended to logPath, so that it outlives this
// process, and returns its pid and a channel that receives how it ended if it ends while this process
// runs (the process is reaped, so it never lingers as a zombie). The server outlives ctx too: the
// command gets ctx without its cancellation, so the end of ctx does not kill it.
func startDetached(ctx context.Context, bin, dir, logPath string, args ...string) (int, <-chan error, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return 0, nil, err
	}
	defer func() { _ = logf.Close() }() // the child holds its own copy; nothing was written through this one
	cmd := exec.CommandContext(context.WithoutCancel(ctx), bin, args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return 0, nil, err
	}
	done := make(chan error, 1)
	go func() {
		err := cmd.Wait()
		if err == nil {
			err = errors.New("exit status 0")
		}
		done <- err
	}()
	return cmd.Process.Pid, done, nil
}

// adoptClickHouse finds a server already running on this state dir's data (state.json was lost) through the
// pid in data/status and the ports in config.xml.
func adoptClickHouse(ctx context.Context, p chPaths) (*chState, bool) {
	f, err := os.Open(filepath.Join(p.data, "status"))
	if err != nil {
		return nil, false
	}
	defer func() { _ = f.Close() }() // read-only: nothing to lose on close
	pid := 0
	for sc := bufio.NewScanner(f); sc.Scan(); {
		if v, ok := strings.CutPrefix(sc.Text(), "PID:"); ok {
			pid, _ = strconv.Atoi(strings.TrimSpace(v))
		}
	}
	if !alive(pid, "clickhouse") {
		return nil, false
	}
	b, err := os.ReadFile(p.config)
	if err != nil {
		return nil, false
	}
	var cfg struct {
		TCPPort  int `xml:"tcp_port"`
		HTTPPort int `xml:"http_port"`
	}
	if xml.Unmarshal(b, &cfg) != nil {
		return nil, false
	}
	st := &chState{PID: pid, TCPPort: cfg.TCPPort, HTTPPort: cfg.HTTPPort}
	if chAnswers(ctx, st) != nil {
		return nil, false
	}
	return st, true
}

// chAnswers checks the HTTP /ping endpoint (which answers once the server has started all its listeners)
// and that the native port accepts connections.
func chAnswers(ctx context.Context, st *chState) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	status, body, err := httpGet(ctx, "http://"+loopback(st.HTTPPort)+"/ping", 64)
	if err != nil {
		return err
	}
	if status != http.StatusOK || strings.TrimSpace(string(body)) != "Ok." {
		return fmt.Errorf("ping answered %d %q", status, body)
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", loopback(st.TCPPort))
	if err != nil {
		return err
	}
	return conn.Close()
}

// httpGet fetches url on a connection of its own (no proxy, none kept) and returns the status and up to
// limit bytes of the body.
func httpGet(ctx context.Context, url string, limit int64) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, nil, err
	}
	client := http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit))
	_ = resp.Body.Close()
	return resp.StatusCode, body, err
}

func clickhouseUp(ctx context.Context, st *chState) bool {
	return alive(st.PID, "clickhouse") && chAnswers(ctx, st) == nil
}

func (e Env) stopClickHouse(ctx context.Context, st *chState) error {
	if !alive(st.PID, "clickhouse") {
		return nil
	}
	e.log().Info("stopping clickhouse", "pid", st.PID)
	return terminate(ctx, st.PID, "clickhouse", 30*time.Second)
}

// unlocked reports an error while another process holds the flock on path (a missing file is unlocked).
func unlocked(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer func() { _ = f.Close() }() // opened read-only only to probe the lock
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return fmt.Errorf("%s is locked: %w", path, err)
	}
	return syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
}
