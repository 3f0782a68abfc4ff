package chstore_test

import (
	"context"
	"log/slog"
	"maps"
	"math/rand/v2"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/edtech-analytics/platform/libs/chutil"
	"github.com/edtech-analytics/platform/libs/records"
	"github.com/edtech-analytics/platform/libs/testenv/devenv"
	"github.com/edtech-analytics/platform/services/aggregator/internal/chstore"
	"github.com/edtech-analytics/platform/services/aggregator/internal/synth"
)

// repairLog counts the store's repairs by their log message.
type repairLog struct {
	mu    sync.Mutex
	n     map[string]int
	lines []string // every record, with its attributes, for a failure's report
}

func (l *repairLog) Enabled(context.Context, slog.Level) bool { return true }
func (l *repairLog) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n == nil {
		l.n = map[string]int{}
	}
	l.n[r.Message]++
	line := r.Time.Format("15:04:05.000") + " " + r.Level.String() + " " + r.Message
	r.Attrs(func(a slog.Attr) bool { line += " " + a.String(); return true })
	l.lines = append(l.lines, line)
	return nil
}

// report logs every record the store logged.
func (l *repairLog) report(t *testing.T) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, line := range l.lines {
		t.Log(line)
	}
}
func (l *repairLog) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *repairLog) WithGroup(string) slog.Handler      { return l }

func (l *repairLog) counts() map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return maps.Clone(l.n)
}

// killServer is a ClickHouse server of the test's own, which the test kills and starts again.
type killServer struct {
	env  devenv.Env
	addr string
	db   string
}

func (k *killServer) open(t *testing.T) driver.Conn {
	t.Helper()
	conn, err := chutil.Open(t.Context(), chutil.Options{Addr: k.addr, Database: k.db})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() }) // the server may be gone by then
	return conn
}

// kill SIGKILLs the server and starts it again; the address can change if its port was taken meanwhile.
func (k *killServer) kill(t *testing.T) {
	t.Helper()
	st, err := k.env.Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(st.ClickHouse.PID, syscall.SIGKILL); err != nil {
		t.Fatalf("killing clickhouse-server %d: %v", st.ClickHouse.PID, err)
	}
	if k.addr, err = k.env.ClickHouse(t.Context()); err != nil {
		t.Fatalf("starting clickhouse-server again: %v", err)
	}
}

// TestServerKilledMidInsertLeavesExactState SIGKILLs the ClickHouse server in the middle of the
// aggregator's inserts, over 20 trials on a server of the test's own. In each trial new events of five
// districts (spanning two months, so an insert into events writes two parts) are produced into four
// partitions; the test waits until an insert into events is running on the server, and kills it at once
// or after a random moment of up to 30 ms, which lands between the parts of events and the views' parts.
// The server is started again and the consumer goes on: on even trials the same one, with the same store
// (the server comes back), on odd trials a new one with a new store (a partition assigned after a crash).
// Once the store has caught up, the consumer stops and a new store takes the partitions over, as their
// next owner would. Then events holds every input event once and every rollup equals what the input says.
func TestServerKilledMidInsertLeavesExactState(t *testing.T) {
	const trials = 20
	ctx := t.Context()
	k := &killServer{env: devenv.Env{Dir: t.TempDir()}}
	t.Cleanup(func() { _ = k.env.Down(context.Background()) })
	var err error
	if k.addr, err = k.env.ClickHouse(ctx); err != nil {
		t.Fatal(err)
	}
	k.db = "kill_test"
	admin, err := chutil.Open(ctx, chutil.Options{Addr: k.addr})
	if err != nil {
		t.Fatal(err)
	}
	if err := chutil.CreateDatabase(ctx, admin, k.db); err != nil {
		t.Fatal(err)
	}
	_ = admin.Close()
	conn := k.open(t)
	if err := chstore.Migrate(ctx, conn, k.db); err != nil {
		t.Fatal(err)
	}
	codec, err := records.NewCodec(ctx, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	logs := &repairLog{}
	newStore := func(conn driver.Conn) *chstore.Store {
		store, err := chstore.New(conn, codec, chstore.Config{Database: k.db}, chstore.Deps{Log: slog.New(logs)})
		if err != nil {
			t.Fatal(err)
		}
		return store
	}
	store := newStore(conn)
	p := emptyPipeline(t)
	p.batch = 20000
	rng := rand.New(rand.NewPCG(7, 11))

	stop := p.start(t, store)
	landed := 0
	for trial := range trials {
		facts, _ := synth.Events(uint64(1000+trial), 5, 4000)
		p.send(t, codec, facts)
		watch := k.open(t)
		// One kill in four as soon as the insert shows; the others after a random number of further looks
		// at the process list (a few milliseconds each), which moves where in the insert the kill lands.
		if waitInsertRunning(t, watch, p, conn, rng.IntN(4)*rng.IntN(12)) {
			landed++
		}
		prev := k.addr
		k.kill(t)
		if trial%2 == 1 || k.addr != prev {
			stop()
			conn = k.open(t)
			store = newStore(conn)
			stop = p.start(t, store)
		}
	}
	conn = k.open(t)
	waitStored(t, p, conn)
	stop()
	// kafka_offsets can reach the end while the last repair still runs (a kill after kafka_offsets_mv and
	// before a later view), and stopping the consumer cuts that repair short: the partition's next owner
	// finishes it when it takes the partition over. Be that owner before comparing.
	if _, err := newStore(conn).NextOffsets(ctx, p.topic, p.parts); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d of %d kills landed while an insert into events ran; repairs: %v", landed, trials, logs.counts())
	if landed < trials/2 {
		t.Fatalf("only %d of %d kills landed during an insert: the test proves little", landed, trials)
	}
	if n := logs.counts()["an insert whose outcome was unknown is in events; deriving its rollups again"] +
		logs.counts()["deleting what was applied of an insert, to write it again"]; n == 0 {
		t.Fatalf("no kill left a batch partly applied: the test proves little")
	}

	if t.Failed() {
		return
	}
	defer func() {
		if t.Failed() {
			logs.report(t)
		}
	}()
	assertStoredOnce(t, conn, p.facts)
}

// waitInsertRunning waits until the aggregator's insert into events runs on the server and has been seen
// running looks times more (or has ended), and reports whether one ran before the store caught up with
// everything sent.
func waitInsertRunning(t *testing.T, watch driver.Conn, p *pipeline, conn driver.Conn, looks int) bool {
	t.Helper()
	running := func() bool {
		var n uint64
		err := watch.QueryRow(t.Context(), "SELECT count() FROM system.processes WHERE startsWith(query_id, 'aggregator:') AND endsWith(query_id, ':events')").Scan(&n)
		if err != nil {
			t.Fatalf("reading the server's process list: %v", err)
		}
		return n > 0
	}
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		if running() {
			for i := 0; i < looks && running(); i++ {
			}
			return true
		}
		if caughtUpIn(t, p, conn) {
			return false
		}
	}
	t.Fatal("no insert into events ran within 2 minutes")
	return false
}

// caughtUpIn reads kafka_offsets itself, so that checking does not repair (only the consumer's store may).
func caughtUpIn(t *testing.T, p *pipeline, conn driver.Conn) bool {
	t.Helper()
	var rows []struct {
		P    uint32 `ch:"kafka_partition"`
		Next uint64 `ch:"next"`
	}
	if err := conn.Select(t.Context(), &rows, "SELECT kafka_partition, max(max_offset) + 1 AS next FROM kafka_offsets WHERE kafka_topic = ? GROUP BY kafka_partition", p.topic); err != nil {
		return false // the server is starting again
	}
	next := map[int32]int64{}
	for _, r := range rows {
		next[int32(r.P)] = int64(r.Next)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return maps.Equal(next, p.ends)
}

// waitStored waits until the store holds every partition up to its end.
func waitStored(t *testing.T, p *pipeline, conn driver.Conn) {
	t.Helper()
	deadline := time.After(3 * time.Minute)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !caughtUpIn(t, p, conn) {
		select {
		case <-deadline:
			t.Fatalf("the store did not catch up with %v within 3 minutes", p.ends)
		case <-tick.C:
		}
	}
}
