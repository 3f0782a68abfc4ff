package devenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// alive reports whether pid is a live (not zombie) process whose command line contains name.
func alive(pid int, name string) bool {
	if pid <= 0 {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return false
		}
		// No procfs: fall back to signal 0.
		return syscall.Kill(pid, 0) == nil
	}
	// The state field follows the parenthesised command name.
	if i := bytes.LastIndexByte(stat, ')'); i >= 0 && i+2 < len(stat) && (stat[i+2] == 'Z' || stat[i+2] == 'X') {
		return false
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	return bytes.Contains(cmdline, []byte(name))
}

// freePort returns a loopback TCP port that is free now, preferring want when it is free and not in avoid.
//
// A server is told its port before it binds it, so the port must stay free in between. One the kernel
// hands out for port 0 comes from its ephemeral range, where any process's next outgoing connection or
// listener on port 0 (a parallel test package's, say) can take it first. So ports are drawn at random
// below that range, where only processes that name their port bind; a start that still loses its port is
// retried on another.
func freePort(ctx context.Context, want int, avoid ...int) (int, error) {
	if want > 0 && !contains(avoid, want) && portFree(ctx, want) {
		return want, nil
	}
	lo, hi := fixedPortRange()
	for range 100 {
		port := lo + rand.IntN(hi-lo)
		if !contains(avoid, port) && portFree(ctx, port) {
			return port, nil
		}
	}
	return 0, fmt.Errorf("finding a free port: none free of 100 tried in %d-%d", lo, hi-1)
}

// fixedPortRange is the range of ports freePort draws from: from 10000 up to the start of the kernel's
// ephemeral range (net.ipv4.ip_local_port_range), or 10000-32767 where that cannot be read or leaves
// too little room.
func fixedPortRange() (lo, hi int) {
	lo, hi = 10000, 32768
	raw, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return lo, hi
	}
	if f := strings.Fields(string(raw)); len(f) == 2 {
		if first, err := strconv.Atoi(f[0]); err == nil && first-lo >= 2000 {
			hi = first
		}
	}
	return lo, hi
}

func portFree(ctx context.Context, port int) bool {
	var lc net.ListenConfig
	l, err := lc.Listen(ctx, "tcp", loopback(port))
	if err != nil {
		return false
	}
	return l.Close() == nil
}

func contains(xs []int, x int) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

func loopback(port int) string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
}

// waitFor polls check every 100ms until it returns nil, ctx ends or limit passes. stop, when it returns an
// error, aborts the wait early (for example when the server process died).
func waitFor(ctx context.Context, limit time.Duration, check func(context.Context) error, stop func() error) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	for {
		err := check(ctx)
		if err == nil {
			return nil
		}
		if stop != nil {
			if serr := stop(); serr != nil {
				return serr
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last error: %v)", ctx.Err(), err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// terminate sends SIGTERM to pid, waits up to grace for it to exit, then sends SIGKILL.
func terminate(ctx context.Context, pid int, name string, grace time.Duration) error {
	if !alive(pid, name) {
		return nil
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("stopping %s (pid %d): %w", name, pid, err)
	}
	gone := func(context.Context) error {
		if alive(pid, name) {
			return fmt.Errorf("pid %d still running", pid)
		}
		return nil
	}
	if waitFor(ctx, grace, gone, nil) == nil {
		return nil
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("killing %s (pid %d): %w", name, pid, err)
	}
	return waitFor(ctx, 5*time.Second, gone, nil)
}

// tail returns the last n lines of the file at path, for error messages.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// runOutput runs cmd and returns an error carrying its combined output when it fails.
func runOutput(cmd *exec.Cmd) error {
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", strings.Join(cmd.Args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// exitedOf is the stop check of a waitFor for a process started by startDetached: it fails, naming what,
// once the process has ended.
func exitedOf(done <-chan error, what string) func() error {
	return func() error {
		select {
		case err := <-done:
			return fmt.Errorf("%w: %s (%v)", errExited, what, err)
		default:
			return nil
		}
	}
}
