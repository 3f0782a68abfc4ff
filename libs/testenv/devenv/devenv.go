// Package devenv starts, reuses and stops the local PostgreSQL and ClickHouse servers that the tests and the
// demo run against.
//
// The servers are private to this repository: a throwaway PostgreSQL cluster (initdb, trust auth, loopback
// only) and a ClickHouse server with a minimal loopback config, both kept under one state directory. Every
// call takes an exclusive lock on that directory, so concurrent test processes share one pair of servers;
// servers started by one process keep running after it exits and are reused by the next.
//
// A user's own servers win: Postgres returns $DATABASE_URL and ClickHouse returns $CLICKHOUSE_ADDR when set.
package devenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Environment variables read by this package.
const (
	// EnvDatabaseURL, when set, is the PostgreSQL URL to use instead of the private cluster.
	EnvDatabaseURL = "DATABASE_URL"
	// EnvClickHouseAddr, when set, is the ClickHouse native address (host:port) to use instead of the
	// private server.
	EnvClickHouseAddr = "CLICKHOUSE_ADDR"
	// EnvDir overrides the state directory (DefaultDir).
	EnvDir = "EDTECH_DEV_DIR"
)

// DefaultDir is the state directory used when EnvDir is unset. It lives outside the repository because the
// PostgreSQL data directory must be reachable by the postgres system user when running as root.
const DefaultDir = "/tmp/edtech-analytics-dev"

// ErrNotInstalled is returned (wrapped) when a server binary cannot be found.
var ErrNotInstalled = errors.New("server binary not installed")

// Dir returns the state directory: $EDTECH_DEV_DIR when set, DefaultDir otherwise.
func Dir() string {
	if d := os.Getenv(EnvDir); d != "" {
		return d
	}
	return DefaultDir
}

// Postgres returns a PostgreSQL URL: $DATABASE_URL when set, otherwise the URL of the private cluster under
// Dir(), started first if it is not running.
func Postgres(ctx context.Context) (string, error) {
	if u := os.Getenv(EnvDatabaseURL); u != "" {
		return u, nil
	}
	return Env{Dir: Dir()}.Postgres(ctx)
}

// ClickHouse returns a ClickHouse native-protocol address (host:port): $CLICKHOUSE_ADDR when set, otherwise
// the address of the private server under Dir(), started first if it is not running.
func ClickHouse(ctx context.Context) (string, error) {
	if a := os.Getenv(EnvClickHouseAddr); a != "" {
		return a, nil
	}
	return Env{Dir: Dir()}.ClickHouse(ctx)
}

// Env manages the servers kept under one state directory. It ignores DATABASE_URL and CLICKHOUSE_ADDR.
//
// Layout of Dir:
//
//	lock                      flock taken while ensuring or stopping servers
//	state.json                pids and ports of the servers started here
//	postgres/data/            PGDATA (owned by the postgres user when run as root)
//	postgres/run/             unix socket directory
//	postgres/postgres.log     server log
//	clickhouse/config.xml     generated server config (users.xml beside it)
//	clickhouse/data/          data (also tmp/, user_files/, format_schemas/ beside it)
//	clickhouse/*.log          server.log, server.err.log, stdout.log
type Env struct {
	// Dir is the state directory.
	Dir string
	// Logger receives progress messages; nil discards them.
	Logger *slog.Logger
}

// ServerStatus describes one server.
type ServerStatus struct {
	// Running is true when the recorded process is alive and answering.
	Running bool `json:"running"`
	// PID of the server process, 0 when none is recorded.
	PID int `json:"pid,omitempty"`
	// Addr is the PostgreSQL URL or the ClickHouse native address.
	Addr string `json:"addr,omitempty"`
}

// Status describes the servers under one state directory.
type Status struct {
	Dir        string       `json:"dir"`
	Postgres   ServerStatus `json:"postgres"`
	ClickHouse ServerStatus `json:"clickhouse"`
}

// state is persisted in state.json.
type state struct {
	Postgres   *pgState `json:"postgres,omitempty"`
	ClickHouse *chState `json:"clickhouse,omitempty"`
}

type pgState struct {
	PID    int    `json:"pid"`
	Port   int    `json:"port"`
	BinDir string `json:"bin_dir"`
}

type chState struct {
	PID      int `json:"pid"`
	TCPPort  int `json:"tcp_port"`
	HTTPPort int `json:"http_port"`
}

// Postgres ensures the private PostgreSQL cluster runs and returns its URL.
func (e Env) Postgres(ctx context.Context) (string, error) {
	var url string
	err := e.withState(ctx, func(e Env, st *state) error {
		var err error
		st.Postgres, err = e.ensurePostgres(ctx, st.Postgres)
		if err != nil {
			return err
		}
		url = pgURL(st.Postgres.Port)
		return nil
	})
	return url, err
}

// ClickHouse ensures the private ClickHouse server runs and returns its native address.
func (e Env) ClickHouse(ctx context.Context) (string, error) {
	var addr string
	err := e.withState(ctx, func(e Env, st *state) error {
		var err error
		st.ClickHouse, err = e.ensureClickHouse(ctx, st.ClickHouse)
		if err != nil {
			return err
		}
		addr = loopback(st.ClickHouse.TCPPort)
		return nil
	})
	return addr, err
}

// Status reports the servers recorded under Dir without starting anything.
func (e Env) Status(ctx context.Context) (Status, error) {
	s := Status{Dir: e.Dir}
	err := e.withState(ctx, func(e Env, st *state) error {
		if p := st.Postgres; p != nil {
			s.Postgres = ServerStatus{PID: p.PID, Addr: pgURL(p.Port), Running: e.postgresUp(ctx, p)}
		}
		if c := st.ClickHouse; c != nil {
			s.ClickHouse = ServerStatus{PID: c.PID, Addr: loopback(c.TCPPort), Running: clickhouseUp(ctx, c)}
		}
		return nil
	})
	return s, err
}

// Down stops the servers recorded under Dir. Data directories are kept, so a later start is quick.
func (e Env) Down(ctx context.Context) error {
	return e.withState(ctx, func(e Env, st *state) error {
		// Ports stay recorded so that the next start reuses them when they are free.
		var errs []error
		if st.Postgres != nil {
			if err := e.stopPostgres(ctx, st.Postgres); err != nil {
				errs = append(errs, err)
			} else {
				st.Postgres.PID = 0
			}
		}
		if st.ClickHouse != nil {
			if err := e.stopClickHouse(ctx, st.ClickHouse); err != nil {
				errs = append(errs, err)
			} else {
				st.ClickHouse.PID = 0
			}
		}
		return errors.Join(errs...)
	})
}

func (e Env) log() *slog.Logger {
	if e.Logger != nil {
		return e.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// withState runs fn with the state directory locked, loading state.json before and saving it after (also
// when fn fails, so servers started before the failure are still recorded). fn gets e with an absolute Dir.
func (e Env) withState(ctx context.Context, fn func(Env, *state) error) error {
	if e.Dir == "" {
		return errors.New("devenv: empty state dir")
	}
	dir, err := filepath.Abs(e.Dir)
	if err != nil {
		return fmt.Errorf("resolving state dir: %w", err)
	}
	e.Dir = dir
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating state dir: %w", err)
	}
	unlock, err := lockFile(ctx, filepath.Join(dir, "lock"))
	if err != nil {
		return err
	}
	defer unlock()

	st, err := readState(filepath.Join(dir, "state.json"))
	if err != nil {
		return err
	}
	fnErr := fn(e, &st)
	if err := writeState(filepath.Join(dir, "state.json"), st); err != nil {
		return errors.Join(fnErr, err)
	}
	return fnErr
}

// lockFile takes an exclusive flock on path, polling so that ctx can cancel the wait. The descriptor is
// close-on-exec, so servers started while holding it do not inherit the lock.
func lockFile(ctx context.Context, path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening lock file: %w", err)
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { _ = f.Close() }, nil // closing releases the lock
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			_ = f.Close()
			return nil, fmt.Errorf("locking %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			_ = f.Close()
			return nil, fmt.Errorf("waiting for lock %s: %w", path, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func readState(path string) (state, error) {
	var st state
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("reading state: %w", err)
	}
	if err := json.Unmarshal(b, &st); err != nil {
		// A corrupt state file only loses the pids: servers are found again through their data dirs.
		return state{}, nil
	}
	return st, nil
}

func writeState(path string, st state) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding state: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("writing state: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("writing state: %w", err)
	}
	return nil
}

// DatabaseName returns a unique database name for a test: "t_", the test name folded to [a-z0-9_] and cut
// short, and a random suffix; at most 51 bytes, valid unquoted in PostgreSQL and ClickHouse.
func DatabaseName(testName string) (string, error) {
	var b strings.Builder
	b.WriteString("t_")
	for _, r := range strings.ToLower(testName) {
		if b.Len() >= 40 {
			break
		}
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	suffix := make([]byte, 5)
	if _, err := rand.Read(suffix); err != nil {
		return "", fmt.Errorf("generating database name: %w", err)
	}
	b.WriteString("_" + hex.EncodeToString(suffix))
	return b.String(), nil
}

// PrivateDir is a fresh directory for a test's own servers (an Env's Dir), which the postgres user can
// reach when the test runs as root.
func PrivateDir(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	if os.Geteuid() == 0 {
		if err := os.Chmod(filepath.Dir(dir), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}
