package chstore_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/edtech-analytics/platform/libs/chutil"
	"github.com/edtech-analytics/platform/libs/records"
	"github.com/edtech-analytics/platform/libs/testenv/devenv"
	"github.com/edtech-analytics/platform/services/aggregator/internal/chstore"
	"github.com/edtech-analytics/platform/services/aggregator/internal/synth"
)

// syncBuffer is a log sink that the consumer writes while the test reads.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}
func (b *syncBuffer) count(s string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Count(b.buf.String(), s)
}

// TestConsumeRidesOutClickHouseDown stops a private ClickHouse server in the middle of a stream of events
// and starts it again a little later, while one consumer keeps running: the consumer must pause the
// partitions whose writes fail, retry with backoff, resume by itself once the server is back, and leave
// every event stored once and every rollup equal to the input.
func TestConsumeRidesOutClickHouseDown(t *testing.T) {
	ctx := t.Context()
	env := devenv.Env{Dir: t.TempDir()} // a server of this test's own, to stop and start
	addr, err := env.ClickHouse(ctx)
	if err != nil { // the free port it picked can be taken by a parallel package before the server binds it
		t.Logf("starting the test's clickhouse: %v; once more", err)
		addr, err = env.ClickHouse(ctx)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := env.Down(context.Background()); err != nil {
			t.Errorf("stopping the test's clickhouse: %v", err)
		}
	})
	admin, err := chutil.Open(ctx, chutil.Options{Addr: addr})
	if err != nil {
		t.Fatal(err)
	}
	if err := chutil.CreateDatabase(ctx, admin, "agg"); err != nil {
		t.Fatal(err)
	}
	if err := admin.Close(); err != nil {
		t.Fatal(err)
	}
	conn, err := chutil.Open(ctx, chutil.Options{Addr: addr, Database: "agg", DialTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	if err := chstore.Migrate(ctx, conn, "agg"); err != nil {
		t.Fatal(err)
	}
	codec, err := records.NewCodec(ctx, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	store, err := chstore.New(conn, codec, chstore.Config{Database: "agg", AnalystPrefix: "analyst_"}, chstore.Deps{})
	if err != nil {
		t.Fatal(err)
	}

	p := emptyPipeline(t)
	p.batch = 50
	logs := &syncBuffer{}
	p.deps.Log = slog.New(slog.NewJSONHandler(logs, nil))
	facts, _ := synth.Events(77, 5, 1200)

	// A steady stream: 40 events every 50 ms, for about 1.5 s.
	streamed := make(chan struct{})
	go func() {
		defer close(streamed)
		for i := 0; i < len(facts); i += 40 {
			p.send(t, codec, facts[i:min(i+40, len(facts))])
			time.Sleep(50 * time.Millisecond)
		}
	}()
	cctx, cancel := context.WithCancel(context.Background())
	consumed := make(chan struct{})
	go func() { defer close(consumed); p.run(t, cctx, store) }()
	defer func() { cancel(); <-consumed }()

	// Stop the server once the consumer has stored part of the stream, while more keeps arriving.
	waitFor(t, "the first events to be stored", func() bool {
		n, err := storedEvents(ctx, conn)
		return err == nil && n >= 100
	})
	if err := env.Down(ctx); err != nil {
		t.Fatal(err)
	}
	down := time.Now()
	waitFor(t, "a write to fail and its partition to pause", func() bool { return logs.count("store write failed; partition paused") > 0 })
	time.Sleep(time.Until(down.Add(1500 * time.Millisecond))) // down for 1.5 s while the stream goes on
	pausedWhileDown := logs.count("store write failed; partition paused") + logs.count("store still unavailable")
	resumedBefore := logs.count("partitions resumed")

	again, err := env.ClickHouse(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if again != addr {
		t.Fatalf("clickhouse came back on %s, not %s: the test cannot tell a stuck consumer from a moved server", again, addr)
	}
	<-streamed
	p.waitCaughtUp(t, store)

	if pausedWhileDown < 2 {
		t.Fatalf("the consumer failed %d writes or resumptions while the server was down: it did not retry with backoff", pausedWhileDown)
	}
	if logs.count("partitions resumed") <= resumedBefore {
		t.Fatalf("the consumer never resumed its partitions after the server came back")
	}
	if n, err := storedEvents(ctx, conn); err != nil || n != uint64(len(facts)) {
		t.Fatalf("stored %d events (%v), want %d", n, err, len(facts))
	}
	if n := count(t, conn, "SELECT uniqExact(event_id) FROM events"); n != uint64(len(facts)) {
		t.Fatalf("stored %d distinct events, want %d", n, len(facts))
	}
	if diff := synth.Diff(synth.Want(facts), got(t, conn)); len(diff) > 0 {
		t.Fatalf("rollups differ from the input (%d keys):\n%s", len(diff), strings.Join(diff, "\n"))
	}
	t.Logf("down %s; %d failed writes or resumptions while down, %d resumptions in all", time.Since(down).Round(time.Millisecond),
		pausedWhileDown, logs.count("partitions resumed"))
}

func storedEvents(ctx context.Context, conn driver.Conn) (uint64, error) {
	var n uint64
	err := conn.QueryRow(ctx, "SELECT count() FROM events").Scan(&n)
	return n, err
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
