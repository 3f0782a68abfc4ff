//go:build unix

package app

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/edtech-analytics/platform/libs/chutil/chtest"
	"github.com/edtech-analytics/platform/libs/keyring"
	"github.com/edtech-analytics/platform/libs/tenancy/jobs"
)

// buildCtl builds the ctl binary into a temporary directory.
func buildCtl(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "ctl")
	out, err := exec.CommandContext(t.Context(), "go", "build", "-o", bin, "github.com/edtech-analytics/platform/services/ctl").CombinedOutput()
	if err != nil {
		t.Fatalf("building ctl: %v\n%s", err, out)
	}
	return bin
}

// lineWatch keeps what a process writes and closes seen once a whole line equal to want has arrived.
type lineWatch struct {
	want string
	seen chan struct{}
	once sync.Once
	mu   sync.Mutex
	buf  bytes.Buffer
}

func (w *lineWatch) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if strings.Contains("\n"+w.buf.String(), "\n"+w.want+"\n") {
		w.once.Do(func() { close(w.seen) })
	}
	return len(p), nil
}

func (w *lineWatch) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// TestEraseJobSurvivesSIGKILL runs `ctl erase tenant` as a process, holds it in a step (the test hook
// EDTECH_CTL_TEST_HOLD_STEP: the step has begun, its store is untouched) and SIGKILLs it there; once
// PostgreSQL has ended the dead runner's session (and with it its lock on the job), it checks that the
// job was left running with that step begun and unfinished, and that the same command,
// run again, resumes that job and finishes it: every step recorded once and finished once (in the job's
// log and in the audit log), the steps finished before the kill not run again, and every store verified
// empty.
func TestEraseJobSurvivesSIGKILL(t *testing.T) {
	bin := buildCtl(t)
	for _, held := range []string{"postgres", "clickhouse"} {
		t.Run(held, func(t *testing.T) {
			pool, url := migratedDB(t)
			ctx := t.Context()
			conn, database, addr := chtest.New(t)
			kcfg := platformTopics(t)
			mustCtl(t, url, "tenant", "create", "--id", "d1", "--name", "District 1")
			mustCtl(t, url, "keys", "create", "--tenant", "d1", "--source", "lms")
			master, err := keyring.ParseLocalKeys(testMasterKeys)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := keyring.New(pool, master, keyring.Options{}).SubjectKey(ctx, "d1", "stu-1"); err != nil {
				t.Fatal(err)
			}
			if err := conn.Exec(ctx, "CREATE TABLE events (tenant_id String, n UInt32) ENGINE = MergeTree ORDER BY tenant_id"); err != nil {
				t.Fatal(err)
			}
			batch, err := conn.PrepareBatch(ctx, "INSERT INTO events")
			if err != nil {
				t.Fatal(err)
			}
			for _, n := range []uint32{1, 2} {
				if err := batch.Append("d1", n); err != nil {
					t.Fatal(err)
				}
			}
			if err := batch.Send(); err != nil {
				t.Fatal(err)
			}
			args := append([]string{"erase", "tenant", "--tenant", "d1", "--confirm", "d1", "--enricher-wait", "0",
				"--clickhouse.addr", addr, "--clickhouse.database", database, "--output", "json"}, kafkaArgs(kcfg)...)
			env := []string{EnvDatabaseURL + "=" + url, keyring.EnvMasterKeys + "=" + testMasterKeys}

			// The first runner holds in the step; it is killed there.
			first := exec.CommandContext(ctx, bin, args...)
			first.Env = append(env, envHoldStep+"="+held)
			stdin, err := first.StdinPipe() // left open: the runner holds until it is killed
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = stdin.Close() }()
			stderr := &lineWatch{want: "holding step " + held, seen: make(chan struct{})}
			first.Stderr = stderr
			if err := first.Start(); err != nil {
				t.Fatal(err)
			}
			exited := make(chan error, 1)
			go func() { exited <- first.Wait() }()
			select {
			case <-stderr.seen:
			case err := <-exited:
				t.Fatalf("the runner ended before holding step %s: %v\n%s", held, err, stderr)
			}
			// The runner's lock on the job (a session lock, the only advisory lock in this database).
			var lockKey int64
			if err := pool.QueryRow(ctx, `SELECT (classid::bigint << 32) | objid::bigint FROM pg_locks
				WHERE locktype = 'advisory' AND objsubid = 1 AND granted
				AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`).Scan(&lockKey); err != nil {
				t.Fatalf("the held runner's lock on the job: %v", err)
			}
			if err := first.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			var exitErr *exec.ExitError
			if err := <-exited; !errors.As(err, &exitErr) || exitErr.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
				t.Fatalf("the runner was not killed by SIGKILL: %v\n%s", err, stderr)
			}

			// Taking the lock waits for PostgreSQL to end the killed runner's session.
			lockConn, err := pool.Acquire(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, q := range []string{"SELECT pg_advisory_lock($1)", "SELECT pg_advisory_unlock($1)"} {
				if _, err := lockConn.Exec(ctx, q, lockKey); err != nil {
					t.Fatal(err)
				}
			}
			lockConn.Release()

			var jobID string
			if err := pool.QueryRow(ctx, "SELECT id::text FROM control.privacy_jobs WHERE tenant_id = 'd1'").Scan(&jobID); err != nil {
				t.Fatal(err)
			}
			killed, err := jobs.New(pool).Job(ctx, jobID)
			if err != nil {
				t.Fatal(err)
			}
			last := killed.Steps[len(killed.Steps)-1]
			if killed.Status != jobs.StatusRunning || last.Name != held || last.Done() || last.FoundBefore == nil || *last.FoundBefore == 0 {
				t.Fatalf("after the kill: job %s, last step %+v", killed.Status, last)
			}
			for _, st := range killed.Steps[:len(killed.Steps)-1] {
				if !st.Done() {
					t.Fatalf("after the kill: step %s before %s unfinished", st.Name, held)
				}
			}

			// The same command again, without the hook, resumes the job.
			second := exec.CommandContext(ctx, bin, args...)
			second.Env = env
			var out, errOut bytes.Buffer
			second.Stdout, second.Stderr = &out, &errOut
			if err := second.Run(); err != nil {
				t.Fatalf("running again: %v\n%s", err, errOut.String())
			}
			var resumed jobs.Job
			if err := json.Unmarshal(out.Bytes(), &resumed); err != nil {
				t.Fatalf("%v: %s", err, out.String())
			}
			if resumed.ID != jobID || resumed.Status != jobs.StatusDone || !strings.Contains(errOut.String(), "resuming job "+jobID) {
				t.Fatalf("resumed job %s %s (stderr %q), want job %s done", resumed.ID, resumed.Status, errOut.String(), jobID)
			}
			var names []string
			for i, st := range resumed.Steps {
				names = append(names, st.Name)
				if st.Seq != i+1 || !st.Done() || st.FoundAfter == nil || *st.FoundAfter != 0 {
					t.Errorf("step %+v: want seq %d, finished, nothing left", st, i+1)
				}
				if i < len(killed.Steps)-1 && !st.StartedAt.Equal(killed.Steps[i].StartedAt) {
					t.Errorf("step %s, finished before the kill, ran again", st.Name)
				}
			}
			want := "credentials,keys,suppress,postgres,clickhouse,analyst,archive"
			if strings.Join(names, ",") != want {
				t.Fatalf("steps %v, want %s", names, want)
			}
			rows, err := pool.Query(ctx, `SELECT action, count(*) FROM control.audit_log
				WHERE tenant_id = 'd1' AND action LIKE 'erase.tenant.%' GROUP BY action ORDER BY min(seq)`)
			if err != nil {
				t.Fatal(err)
			}
			var audited []string
			for rows.Next() {
				var action string
				var n int
				if err := rows.Scan(&action, &n); err != nil {
					t.Fatal(err)
				}
				audited = append(audited, fmt.Sprintf("%s x%d", strings.TrimPrefix(action, "erase.tenant."), n))
			}
			if err := rows.Err(); err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(audited, ","); got != strings.ReplaceAll(want, ",", " x1,")+" x1,done x1" {
				t.Fatalf("audit log: %s", got)
			}
		})
	}
}
