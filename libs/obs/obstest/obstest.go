// Package obstest reads what a service under test says in its JSON log, so a test learns from the
// service itself, not from the clock, where it listens.
package obstest

import (
	"bytes"
	"encoding/json"
	"sync"
	"testing"
	"time"
)

// Log is a log destination for a service under test (slog's JSON handler, or a child process's
// stderr). It keeps every line.
type Log struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	lines   []map[string]any
	partial []byte
	changed chan struct{}
}

// NewLog returns an empty log.
func NewLog() *Log { return &Log{changed: make(chan struct{})} }

// Write keeps p and parses each complete JSON line.
func (l *Log) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	l.partial = append(l.partial, p...)
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			break
		}
		var m map[string]any
		if json.Unmarshal(l.partial[:i], &m) == nil {
			l.lines = append(l.lines, m)
		}
		l.partial = l.partial[i+1:]
	}
	close(l.changed)
	l.changed = make(chan struct{})
	return len(p), nil
}

// String is everything written so far.
func (l *Log) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// Addr waits until a line with message msg carries an "addr" attribute and returns it. It fails the
// test if exited is closed first (the service stopped), or after a minute.
func (l *Log) Addr(t testing.TB, msg string, exited <-chan struct{}) string {
	t.Helper()
	timeout := time.After(time.Minute) // generous: a loaded machine is slow, never this slow
	for {
		l.mu.Lock()
		for _, m := range l.lines {
			if m["msg"] == msg {
				if addr, ok := m["addr"].(string); ok {
					l.mu.Unlock()
					return addr
				}
			}
		}
		changed := l.changed
		l.mu.Unlock()
		select {
		case <-changed:
		case <-exited:
			t.Fatalf("the service stopped before it logged %q:\n%s", msg, l.String())
		case <-timeout:
			t.Fatalf("no %q line with an addr in the log after a minute:\n%s", msg, l.String())
		}
	}
}
