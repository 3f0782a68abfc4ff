package devenv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// pgSystemUser runs the cluster when devenv runs as root (initdb and postgres refuse to run as root).
const pgSystemUser = "postgres"

// pgConf is appended to postgresql.conf of a new cluster: sized for tests, not durable.
const pgConf = `
# edtech-analytics throwaway test cluster (written by libs/testenv/devenv)
listen_addresses = '127.0.0.1'
unix_socket_directories = '%s'
max_connections = 200
shared_buffers = 128MB
fsync = off
synchronous_commit = off
full_page_writes = off
max_wal_size = 1GB
timezone = 'UTC'
log_timezone = 'UTC'
`

func pgURL(port int) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)
}

// pgBinDir finds a directory holding initdb, pg_ctl and postgres: on PATH first, then the newest
// /usr/lib/postgresql/*/bin.
func pgBinDir() (string, error) {
	complete := func(dir string) bool {
		for _, name := range []string{"initdb", "pg_ctl", "postgres"} {
			if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
				return false
			}
		}
		return true
	}
	if p, err := exec.LookPath("pg_ctl"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil && complete(filepath.Dir(real)) {
			return filepath.Dir(real), nil // the package's own bin dir, not a dir of symlinks
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin") // the pattern is valid, so no error
	sort.Slice(dirs, func(i, j int) bool { return pgMajor(dirs[i]) > pgMajor(dirs[j]) })
	for _, d := range dirs {
		if complete(d) {
			return d, nil
		}
	}
	return "", fmt.Errorf("postgresql server (initdb, pg_ctl) not found on PATH or under /usr/lib/postgresql/*/bin: "+
		"run `make deps` as root on Debian/Ubuntu, or set %s: %w", EnvDatabaseURL, ErrNotInstalled)
}

// PostgresTool returns the path of one of PostgreSQL's client programs (pg_dump, pg_restore, psql) of
// the installation the local server runs from, so its version matches the server's.
func PostgresTool(name string) (string, error) {
	dir, err := pgBinDir()
	if err != nil {
		return "", err
	}
	p := filepath.Join(dir, name)
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("%s not found beside the server in %s: %w", name, dir, ErrNotInstalled)
	}
	return p, nil
}

// pgMajor extracts the version from /usr/lib/postgresql/<major>/bin.
func pgMajor(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir))) // non-numeric sorts last
	return n
}

// pgAccount returns the credential to run PostgreSQL binaries with: nil when not root (run as ourselves),
// the postgres system user when root.
func pgAccount() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup(pgSystemUser)
	if err != nil {
		return nil, fmt.Errorf("running as root needs the %q system user to run postgres (install the postgresql package): %w",
			pgSystemUser, err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("parsing uid of %s: %w", pgSystemUser, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("parsing gid of %s: %w", pgSystemUser, err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}, nil
}

// pgCmd builds a command for a PostgreSQL binary, run as cred in its own session, without PG* variables
// from our environment that could redirect it.
func pgCmd(ctx context.Context, cred *syscall.Credential, dir, bin string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Setsid: true}
	cmd.WaitDelay = time.Second // never hang on a pipe held open by a server child
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	return cmd
}

type pgPaths struct{ base, data, run, log string }

func (e Env) pgPaths() pgPaths {
	base := filepath.Join(e.Dir, "postgres")
	return pgPaths{
		base: base,
		data: filepath.Join(base, "data"),
		run:  filepath.Join(base, "run"),
		log:  filepath.Join(base, "postgres.log"),
	}
}

// ensurePostgres reuses the cluster's running postmaster or starts it, creating the cluster if needed.
func (e Env) ensurePostgres(ctx context.Context, prev *pgState) (*pgState, error) {
	p := e.pgPaths()
	bin, err := pgBinDir()
	if err != nil {
		return prev, err
	}
	// postmaster.pid is the truth about a running cluster, even if state.json was lost.
	if pid, port, ok := readPostmasterPID(p.data); ok && alive(pid, "postgres") && pgAnswers(ctx, port) == nil {
		return &pgState{PID: pid, Port: port, BinDir: bin}, nil
	}
	cred, err := pgAccount()
	if err != nil {
		return prev, err
	}
	if err := e.preparePGDirs(p, cred); err != nil {
		return prev, err
	}
	if _, err := os.Stat(filepath.Join(p.data, "PG_VERSION")); errors.Is(err, fs.ErrNotExist) {
		e.log().Info("creating postgres cluster", "dir", p.data)
		initdb := pgCmd(ctx, cred, p.base, filepath.Join(bin, "initdb"),
			"-D", p.data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-locale", "--no-sync")
		if err := runOutput(initdb); err != nil {
			return prev, fmt.Errorf("creating postgres cluster: %w", err)
		}
		conf := fmt.Sprintf(pgConf, strings.ReplaceAll(p.run, "'", "''"))
		if err := appendFile(filepath.Join(p.data, "postgresql.conf"), conf); err != nil {
			return prev, fmt.Errorf("configuring postgres cluster: %w", err)
		}
	}

	want := 0
	if prev != nil {
		want = prev.Port
	}
	var port int
	for attempt := 1; ; attempt++ {
		if port, err = freePort(ctx, want); err != nil {
			return prev, err
		}
		e.log().Info("starting postgres", "dir", p.data, "port", port)
		start := pgCmd(ctx, cred, p.base, filepath.Join(bin, "pg_ctl"),
			"-D", p.data, "-l", p.log, "-w", "-t", "60", "-o", fmt.Sprintf("-p %d", port), "start")
		err = runOutput(start)
		if err == nil {
			break
		}
		logTail := tail(p.log, 20)
		// The port was free when chosen; another process can still bind it first.
		if attempt < 3 && strings.Contains(logTail, "could not bind") {
			e.log().Warn("postgres lost its port to another process; starting it on another", "port", port, "attempt", attempt)
			want = 0
			continue
		}
		return prev, fmt.Errorf("starting postgres: %w\n%s", err, logTail)
	}
	pid, _, ok := readPostmasterPID(p.data)
	if !ok {
		return prev, fmt.Errorf("starting postgres: no postmaster.pid in %s", p.data)
	}
	st := &pgState{PID: pid, Port: port, BinDir: bin}
	if err := waitFor(ctx, 30*time.Second, func(ctx context.Context) error { return pgAnswers(ctx, port) }, nil); err != nil {
		return st, fmt.Errorf("waiting for postgres on %s: %w\n%s", loopback(port), err, tail(p.log, 20))
	}
	return st, nil
}

// preparePGDirs creates the cluster's directories; as root it hands them to the postgres user and checks
// that this user can reach them.
func (e Env) preparePGDirs(p pgPaths, cred *syscall.Credential) error {
	for _, d := range []string{p.base, p.run} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("creating %s: %w", d, err)
		}
	}
	if cred == nil {
		return nil
	}
	if err := ensureTraversable(e.Dir); err != nil {
		return err
	}
	for d := filepath.Dir(e.Dir); ; d = filepath.Dir(d) {
		if !traversable(d, cred) {
			return fmt.Errorf("the %s user cannot reach %s (set %s to a directory under /tmp)", pgSystemUser, d, EnvDir)
		}
		if d == filepath.Dir(d) {
			break
		}
	}
	uid, gid := int(cred.Uid), int(cred.Gid)
	for _, d := range []string{p.base, p.run} {
		if err := os.Chown(d, uid, gid); err != nil {
			return fmt.Errorf("handing %s to %s: %w", d, pgSystemUser, err)
		}
	}
	// A cluster created by another user (a run without root) must change hands before postgres accepts it.
	if info, err := os.Stat(p.data); err == nil {
		if sys, ok := info.Sys().(*syscall.Stat_t); ok && int(sys.Uid) != uid {
			err := filepath.WalkDir(p.data, func(path string, _ fs.DirEntry, err error) error {
				if err != nil {
					return err
				}
				return os.Lchown(path, uid, gid)
			})
			if err != nil {
				return fmt.Errorf("handing %s to %s: %w", p.data, pgSystemUser, err)
			}
		}
	}
	return nil
}

// ensureTraversable adds the search bit for group and others to dir.
func ensureTraversable(dir string) error {
	info, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("checking %s: %w", dir, err)
	}
	if perm := info.Mode().Perm(); perm&0o011 != 0o011 {
		if err := os.Chmod(dir, perm|0o011); err != nil {
			return fmt.Errorf("making %s traversable: %w", dir, err)
		}
	}
	return nil
}

// traversable reports whether the user of cred may search dir.
func traversable(dir string, cred *syscall.Credential) bool {
	info, err := os.Stat(dir)
	if err != nil {
		return false
	}
	perm := info.Mode().Perm()
	sys, ok := info.Sys().(*syscall.Stat_t)
	switch {
	case perm&0o001 != 0:
		return true
	case !ok:
		return false
	case sys.Uid == cred.Uid:
		return perm&0o100 != 0
	case sys.Gid == cred.Gid:
		return perm&0o010 != 0
	}
	return false
}

func appendFile(path, text string) error {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := io.WriteString(f, text); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

// readPostmasterPID reads the pid (line 1) and port (line 4) from the data dir's postmaster.pid.
func readPostmasterPID(data string) (pid, port int, ok bool) {
	b, err := os.ReadFile(filepath.Join(data, "postmaster.pid"))
	if err != nil {
		return 0, 0, false
	}
	lines := strings.Split(string(b), "\n")
	if len(lines) < 4 {
		return 0, 0, false
	}
	pid, err1 := strconv.Atoi(strings.TrimSpace(lines[0]))
	port, err2 := strconv.Atoi(strings.TrimSpace(lines[3]))
	return pid, port, err1 == nil && err2 == nil
}

// pgAnswers checks that a PostgreSQL server answers on the loopback port: it sends an SSLRequest and
// expects the one-byte 'S' or 'N' reply.
func pgAnswers(ctx context.Context, port int) error {
	d := net.Dialer{Timeout: 2 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", loopback(port))
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close() }() // a probe: the reply below is what counts
	if err := conn.SetDeadline(time.Now().Add(2 * time.Second)); err != nil {
		return err
	}
	if _, err := conn.Write([]byte{0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f}); err != nil {
		return err
	}
	reply := make([]byte, 1)
	if _, err := io.ReadFull(conn, reply); err != nil {
		return err
	}
	if reply[0] != 'S' && reply[0] != 'N' {
		return fmt.Errorf("unexpected reply %q to ssl request", reply[0])
	}
	return nil
}

func (e Env) postgresUp(ctx context.Context, st *pgState) bool {
	return alive(st.PID, "postgres") && pgAnswers(ctx, st.Port) == nil
}

func (e Env) stopPostgres(ctx context.Context, st *pgState) error {
	if !alive(st.PID, "postgres") {
		return nil
	}
	cred, err := pgAccount()
	if err != nil {
		return err
	}
	p := e.pgPaths()
	e.log().Info("stopping postgres", "pid", st.PID)
	stop := pgCmd(ctx, cred, p.base, filepath.Join(st.BinDir, "pg_ctl"), "-D", p.data, "-m", "fast", "-w", "-t", "60", "stop")
	if err := runOutput(stop); err != nil && alive(st.PID, "postgres") {
		return fmt.Errorf("stopping postgres: %w", err)
	}
	// pg_ctl returns once postmaster.pid is gone, a moment before the process itself.
	return terminate(ctx, st.PID, "postgres", 10*time.Second)
}
