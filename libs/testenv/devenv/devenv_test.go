package devenv

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// stateDir returns a fresh state dir that the postgres user can reach when the test runs as root.
func stateDir(t *testing.T) string { return PrivateDir(t) }

// newEnv returns an Env on a fresh state dir whose servers are stopped when the test ends.
func newEnv(t *testing.T) Env {
	t.Helper()
	return stoppedAtCleanup(t, Env{Dir: stateDir(t)})
}

func stoppedAtCleanup(t *testing.T, env Env) Env {
	t.Helper()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := env.Down(ctx); err != nil {
			t.Errorf("down: %v", err)
		}
	})
	return env
}

func loadState(t *testing.T, env Env) state {
	t.Helper()
	st, err := readState(filepath.Join(env.Dir, "state.json"))
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func TestPostgresLifecycle(t *testing.T) {
	ctx := t.Context()
	env := newEnv(t)

	url, err := env.Postgres(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(url, "postgres://postgres@127.0.0.1:") {
		t.Fatalf("url = %q, want a loopback postgres url", url)
	}
	first := loadState(t, env).Postgres
	if err := pgAnswers(ctx, first.Port); err != nil {
		t.Fatalf("server does not answer: %v", err)
	}

	again, err := env.Postgres(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if again != url || loadState(t, env).Postgres.PID != first.PID {
		t.Fatalf("second call started a new server: %q pid %d, want %q pid %d", again, loadState(t, env).Postgres.PID, url, first.PID)
	}

	// Losing state.json must not start a second cluster on the same data dir.
	if err := os.Remove(filepath.Join(env.Dir, "state.json")); err != nil {
		t.Fatal(err)
	}
	adopted, err := env.Postgres(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if adopted != url || loadState(t, env).Postgres.PID != first.PID {
		t.Fatalf("after losing state got %q pid %d, want the running %q pid %d", adopted, loadState(t, env).Postgres.PID, url, first.PID)
	}

	if err := env.Down(ctx); err != nil {
		t.Fatal(err)
	}
	if alive(first.PID, "postgres") {
		t.Fatal("postgres still running after Down")
	}
	s, err := env.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if s.Postgres.Running {
		t.Fatal("status reports postgres running after Down")
	}

	restarted, err := env.Postgres(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := pgAnswers(ctx, loadState(t, env).Postgres.Port); err != nil {
		t.Fatalf("restarted server %q does not answer: %v", restarted, err)
	}
}

func TestClickHouseLifecycle(t *testing.T) {
	ctx := t.Context()
	env := newEnv(t)

	addr, err := env.ClickHouse(ctx)
	if err != nil {
		t.Fatal(err)
	}
	first := loadState(t, env).ClickHouse
	if addr != loopback(first.TCPPort) {
		t.Fatalf("addr = %q, want %q", addr, loopback(first.TCPPort))
	}
	if err := chAnswers(ctx, first); err != nil {
		t.Fatalf("server does not answer: %v", err)
	}
	assertLowCardinalityEnabled(t, first.HTTPPort)

	again, err := env.ClickHouse(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if again != addr || loadState(t, env).ClickHouse.PID != first.PID {
		t.Fatalf("second call started a new server")
	}

	// A dead server is started again.
	if err := syscall.Kill(first.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := waitFor(ctx, 10*time.Second, func(context.Context) error {
		if alive(first.PID, "clickhouse") {
			return errors.New("still alive")
		}
		return nil
	}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := env.ClickHouse(ctx); err != nil {
		t.Fatal(err)
	}
	second := loadState(t, env).ClickHouse
	if second.PID == first.PID || !alive(second.PID, "clickhouse") {
		t.Fatalf("dead server not replaced: pid %d -> %d", first.PID, second.PID)
	}
	if err := chAnswers(ctx, second); err != nil {
		t.Fatalf("restarted server does not answer: %v", err)
	}

	// Losing state.json adopts the running server instead of failing on its data dir.
	if err := os.Remove(filepath.Join(env.Dir, "state.json")); err != nil {
		t.Fatal(err)
	}
	if _, err := env.ClickHouse(ctx); err != nil {
		t.Fatal(err)
	}
	if got := loadState(t, env).ClickHouse.PID; got != second.PID {
		t.Fatalf("after losing state pid = %d, want the running %d", got, second.PID)
	}
}

// assertLowCardinalityEnabled checks that users.xml took effect: the default profile enables LowCardinality.
func assertLowCardinalityEnabled(t *testing.T, httpPort int) {
	t.Helper()
	q := "SELECT value FROM system.settings WHERE name = 'allow_experimental_low_cardinality_type'"
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, "http://"+loopback(httpPort)+"/", strings.NewReader(q))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := resp.Body.Close(); err != nil {
			t.Error(err)
		}
	}()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(b)); got != "1" {
		t.Fatalf("allow_experimental_low_cardinality_type = %q, want 1", got)
	}
}

func TestConcurrentCallersShareOneServer(t *testing.T) {
	ctx := t.Context()
	t.Chdir(stateDir(t))
	env := stoppedAtCleanup(t, Env{Dir: "dev"}) // a relative dir, as EDTECH_DEV_DIR=dev would give

	const callers = 4
	var wg sync.WaitGroup
	addrs := make([]string, callers)
	urls := make([]string, callers)
	errs := make([]error, callers)
	for i := range callers {
		wg.Go(func() {
			// Separate Env values open the lock file separately, as separate processes would.
			e := Env{Dir: env.Dir}
			if addrs[i], errs[i] = e.ClickHouse(ctx); errs[i] != nil {
				return
			}
			urls[i], errs[i] = e.Postgres(ctx)
		})
	}
	wg.Wait()
	for i := range callers {
		if errs[i] != nil {
			t.Fatalf("caller %d: %v", i, errs[i])
		}
		if addrs[i] != addrs[0] || urls[i] != urls[0] {
			t.Fatalf("caller %d got %s %s, caller 0 got %s %s", i, addrs[i], urls[i], addrs[0], urls[0])
		}
	}
	if err := pgAnswers(ctx, loadState(t, env).Postgres.Port); err != nil {
		t.Fatalf("postgres does not answer: %v", err)
	}
}

func TestEnvironmentOverrides(t *testing.T) {
	t.Setenv(EnvDir, filepath.Join(t.TempDir(), "never-used"))
	t.Setenv(EnvDatabaseURL, "postgres://app@db.internal:5432/app")
	t.Setenv(EnvClickHouseAddr, "ch.internal:9000")

	url, err := Postgres(t.Context())
	if err != nil || url != "postgres://app@db.internal:5432/app" {
		t.Fatalf("Postgres() = %q, %v; want DATABASE_URL", url, err)
	}
	addr, err := ClickHouse(t.Context())
	if err != nil || addr != "ch.internal:9000" {
		t.Fatalf("ClickHouse() = %q, %v; want CLICKHOUSE_ADDR", addr, err)
	}
	if _, err := os.Stat(Dir()); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("state dir created although both servers came from the environment: %v", err)
	}
}

func TestDir(t *testing.T) {
	t.Setenv(EnvDir, "")
	if got := Dir(); got != DefaultDir {
		t.Fatalf("Dir() = %q, want %q", got, DefaultDir)
	}
	t.Setenv(EnvDir, "/srv/dev")
	if got := Dir(); got != "/srv/dev" {
		t.Fatalf("Dir() = %q, want /srv/dev", got)
	}
}

func TestStateSurvivesCorruptFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	if err := os.WriteFile(path, []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	st, err := readState(path)
	if err != nil || st.Postgres != nil || st.ClickHouse != nil {
		t.Fatalf("readState(corrupt) = %+v, %v; want empty state", st, err)
	}
	want := state{ClickHouse: &chState{PID: 7, TCPPort: 9000, HTTPPort: 8123}}
	if err := writeState(path, want); err != nil {
		t.Fatal(err)
	}
	got, err := readState(path)
	if err != nil || got.ClickHouse == nil || *got.ClickHouse != *want.ClickHouse || got.Postgres != nil {
		t.Fatalf("round trip = %+v, %v; want %+v", got, err, want)
	}
}

func TestFreePortAvoids(t *testing.T) {
	first, err := freePort(t.Context(), 0)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := freePort(t.Context(), first); err != nil || got != first {
		t.Fatalf("freePort(%d) = %d, %v; want the free preferred port", first, got, err)
	}
	if got, err := freePort(t.Context(), first, first); err != nil || got == first {
		t.Fatalf("freePort(%d, avoid %d) = %d, %v; want another port", first, first, got, err)
	}
	// Never one the kernel could hand to another process's listener on port 0 meanwhile.
	if lo, hi := fixedPortRange(); first < lo || first >= hi {
		t.Fatalf("freePort(0) = %d, outside %d-%d", first, lo, hi-1)
	}
}

func TestLockExcludesSecondHolder(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lock")
	unlock, err := lockFile(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	if _, err := lockFile(ctx, path); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("second lock while held: err = %v, want deadline exceeded", err)
	}
	unlock()
	unlock2, err := lockFile(t.Context(), path)
	if err != nil {
		t.Fatalf("lock after release: %v", err)
	}
	unlock2()
}

func TestUnreachableStateDirIsReported(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the postgres user only matters when running as root")
	}
	cred, err := pgAccount()
	if err != nil {
		t.Fatal(err)
	}
	hidden := t.TempDir() // mode 0700, owned by root
	if err := os.Chmod(hidden, 0o700); err != nil {
		t.Fatal(err)
	}
	env := Env{Dir: filepath.Join(hidden, "dev")}
	if err := os.MkdirAll(env.Dir, 0o755); err != nil {
		t.Fatal(err)
	}
	err = env.preparePGDirs(env.pgPaths(), cred)
	if err == nil || !strings.Contains(err.Error(), EnvDir) {
		t.Fatalf("preparePGDirs under a 0700 dir: err = %v, want advice naming %s", err, EnvDir)
	}
}

func TestDatabaseNameIsValidAndUnique(t *testing.T) {
	long := "TestSomething/with spaces and ünïcode/" + strings.Repeat("x", 100)
	a, err := DatabaseName(long)
	if err != nil {
		t.Fatal(err)
	}
	b, err := DatabaseName(long)
	if err != nil {
		t.Fatal(err)
	}
	if a == b {
		t.Fatalf("two names for one test are equal: %s", a)
	}
	for _, n := range []string{a, b} {
		if len(n) > 63 || strings.Trim(n, "abcdefghijklmnopqrstuvwxyz0123456789_") != "" {
			t.Fatalf("name %q is not a plain identifier of at most 63 bytes", n)
		}
	}
}

// TestUnlockedWaitsForTheStatusLock: the check that guards a ClickHouse start sees a lock held by another
// open file (as a server that is still exiting holds data/status) and sees it released.
func TestUnlockedWaitsForTheStatusLock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "status")
	if err := unlocked(path); err != nil {
		t.Fatalf("missing file: %v", err)
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	if err := unlocked(path); err == nil {
		t.Fatal("a held lock reads as free")
	}
	if err := f.Close(); err != nil { // closing releases the lock, as a process's exit does
		t.Fatal(err)
	}
	if err := unlocked(path); err != nil {
		t.Fatalf("a released lock: %v", err)
	}
}

// TestStartReportsAServerThatExits: a server process that ends while starting is reported as such, with
// how it ended, so that ensureClickHouse starts another instead of waiting out its minute.
func TestStartReportsAServerThatExits(t *testing.T) {
	e := Env{Dir: t.TempDir()}
	p := e.chPaths()
	if err := os.MkdirAll(p.data, 0o755); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err := e.startClickHouse(t.Context(), "/bin/false", p, 0, 0)
	if !errors.Is(err, errExited) || !strings.Contains(err.Error(), "exit status 1") {
		t.Fatalf("err = %v, want errExited with the exit status", err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("noticed the exit after %v", took)
	}
}
