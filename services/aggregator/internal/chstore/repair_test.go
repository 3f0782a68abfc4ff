package chstore_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/edtech-analytics/platform/libs/chutil"
	"github.com/edtech-analytics/platform/libs/kafkax"
	"github.com/edtech-analytics/platform/libs/records"
	"github.com/edtech-analytics/platform/services/aggregator/internal/chstore"
	"github.com/edtech-analytics/platform/services/aggregator/internal/synth"
	"github.com/twmb/franz-go/pkg/kgo"
)

const (
	repairedForward = "an insert whose outcome was unknown is in events; deriving its rollups again"
	repairedBack    = "deleting what was applied of an insert, to write it again"
)

// TestViewRefusalTakesTheBatchBack proves that a batch a view refuses after events took it (here a view
// that cannot parse a date made from one event's content id) is taken back whole, its refused record
// dead-lettered and the rest stored once, in events and in every rollup.
func TestViewRefusalTakesTheBatchBack(t *testing.T) {
	store, conn, codec := newStore(t)
	for _, ddl := range []string{
		"CREATE TABLE picky (tenant_id LowCardinality(String), day Date, kafka_partition UInt32, parsed Date) ENGINE = MergeTree ORDER BY tenant_id",
		"CREATE MATERIALIZED VIEW picky_mv TO picky AS SELECT tenant_id, toDate(occurred_at) AS day, kafka_partition, " +
			"toDate(if(content_id = 'poison', 'not a date', '2020-01-01')) AS parsed FROM events",
	} {
		if err := conn.Exec(t.Context(), ddl); err != nil {
			t.Fatal(err)
		}
	}
	evs, _ := synth.Events(5, 2, 40)
	poison := slices.IndexFunc(evs[20:], func(ev records.EnrichedEvent) bool { return ev.ContentView != nil }) + 20
	if poison < 20 {
		t.Fatal("no content view in the second half of the input")
	}
	evs[poison].ContentView.ContentID = "poison"
	var dead []int64
	letter := func(_ context.Context, r *kgo.Record, _ string, cause error) error {
		t.Log(r.Offset, cause)
		dead = append(dead, r.Offset)
		return nil
	}
	if err := kafkax.WriteDeadLettering(t.Context(), store, topic, 0, facts(t, codec, 0, 0, evs), letter, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(dead, []int64{int64(poison)}) {
		t.Fatalf("dead-lettered offsets %v, want [%d]", dead, poison)
	}
	kept := slices.Delete(slices.Clone(evs), poison, poison+1)
	if n := count(t, conn, "SELECT count() FROM events"); n != uint64(len(kept)) {
		t.Fatalf("stored %d events, want %d", n, len(kept))
	}
	if n := count(t, conn, "SELECT count() FROM picky"); n != uint64(len(kept)) {
		t.Fatalf("the refusing view holds %d rows, want %d", n, len(kept))
	}
	if diff := synth.Diff(synth.Want(kept), got(t, conn)); len(diff) > 0 {
		t.Fatalf("rollups differ from the input (%d keys):\n%s", len(diff), strings.Join(diff, "\n"))
	}
	assertNext(t, store, topic, []int32{0}, map[int32]int64{0: int64(len(evs))})
}

// TestJournalTellsTheNextOwnerWhatToRepair proves that a store taking over a partition repairs the last
// insert of a store that stopped without saying how it ended (completing it: the rollups equal the
// input), and repairs nothing after a store that released the partition.
func TestJournalTellsTheNextOwnerWhatToRepair(t *testing.T) {
	_, conn, codec := newStore(t)
	var dbName string
	if err := conn.QueryRow(t.Context(), "SELECT currentDatabase()").Scan(&dbName); err != nil {
		t.Fatal(err)
	}
	open := func() (*chstore.Store, *repairLog) {
		logs := &repairLog{}
		s, err := chstore.New(conn, codec, chstore.Config{Database: dbName}, chstore.Deps{Log: slog.New(logs)})
		if err != nil {
			t.Fatal(err)
		}
		return s, logs
	}
	evs, _ := synth.Events(9, 3, 60)
	recs := facts(t, codec, 2, 0, evs)

	first, _ := open()
	if err := first.Write(t.Context(), topic, 2, recs[:30]); err != nil {
		t.Fatal(err)
	}
	second, logs := open() // first stopped without a word: its last insert's outcome is unknown
	assertNext(t, second, topic, []int32{2}, map[int32]int64{2: 30})
	if n := logs.counts()[repairedForward]; n != 1 {
		t.Fatalf("the next owner completed %d inserts, want 1 (logs %v)", n, logs.counts())
	}
	if err := second.Write(t.Context(), topic, 2, recs[30:]); err != nil {
		t.Fatal(err)
	}
	second.Release(t.Context(), topic, []int32{2})
	third, logs := open()
	assertNext(t, third, topic, []int32{2}, map[int32]int64{2: 60})
	if c := logs.counts(); c[repairedForward]+c[repairedBack] != 0 {
		t.Fatalf("a released partition was repaired: %v", c)
	}
	if n := count(t, conn, "SELECT count() FROM events"); n != 60 {
		t.Fatalf("stored %d events, want 60", n)
	}
	if diff := synth.Diff(synth.Want(evs), got(t, conn)); len(diff) > 0 {
		t.Fatalf("rollups differ from the input (%d keys):\n%s", len(diff), strings.Join(diff, "\n"))
	}
}

// secondBatchCutShort builds, with a store and SQL, what a repair finds after a store wrote 60 events
// (seed) into partition 1 as two batches of 30 and stopped without a word, so that the journal's last
// entry (done = 0) is the second batch, and something then deleted from events alone the second batch's
// rows that match where. It returns the connection, the codec, the database, the events and their records.
func secondBatchCutShort(t *testing.T, seed uint64, where string) (driver.Conn, *records.Codec, string, []records.EnrichedEvent, []*kgo.Record) {
	t.Helper()
	first, conn, codec := newStore(t)
	ctx := t.Context()
	db := currentDatabase(t, conn)
	evs, _ := synth.Events(seed, 2, 60)
	recs := facts(t, codec, 1, 0, evs)
	for _, batch := range [][]*kgo.Record{recs[:30], recs[30:]} {
		if err := first.Write(ctx, topic, 1, batch); err != nil {
			t.Fatal(err)
		}
	}
	if err := conn.Exec(ctx, "ALTER TABLE events DELETE WHERE kafka_partition = 1 AND kafka_offset >= 30 AND "+where); err != nil {
		t.Fatal(err)
	}
	if err := chutil.WaitMutations(ctx, conn, db, "events"); err != nil {
		t.Fatal(err)
	}
	return conn, codec, db, evs, recs
}

// TestTakeBackKeepsAnOffsetAMergeFolded proves that taking a batch back leaves its partition stored up to
// the batch even when a merge of kafka_offsets has folded the earlier batches' row into the batch's own:
// the delete of the batch's offset then removes the partition's only row. The second batch's rows of
// October are deleted from events (secondBatchCutShort), so events holds only part of it while
// kafka_offsets holds its offset, as a multi-month insert that died between its parts leaves them; and
// OPTIMIZE ... FINAL folds the two batches' kafka_offsets rows into one. A fresh store must then resume
// at the second batch, and writing from there stores the input exactly once.
func TestTakeBackKeepsAnOffsetAMergeFolded(t *testing.T) {
	ctx := t.Context()
	conn, codec, db, evs, recs := secondBatchCutShort(t, 11, "toYYYYMM(occurred_at) = 202510")
	if n := count(t, conn, "SELECT count() FROM events WHERE kafka_offset >= 30"); n == 0 || n >= 30 {
		t.Fatalf("events holds %d rows of the second batch, want some of its 30", n)
	}
	if err := conn.Exec(ctx, "OPTIMIZE TABLE kafka_offsets FINAL"); err != nil {
		t.Fatal(err)
	}
	if n := count(t, conn, "SELECT count() FROM kafka_offsets WHERE kafka_partition = 1"); n != 1 {
		t.Fatalf("kafka_offsets holds %d rows of the partition after OPTIMIZE FINAL, want 1", n)
	}
	if n := count(t, conn, "SELECT max(max_offset) FROM kafka_offsets WHERE kafka_partition = 1"); n != 59 {
		t.Fatalf("kafka_offsets stores the partition up to %d, want 59", n)
	}

	logs := &repairLog{}
	second, err := chstore.New(conn, codec, chstore.Config{Database: db}, chstore.Deps{Log: slog.New(logs)})
	if err != nil {
		t.Fatal(err)
	}
	next, err := second.NextOffsets(ctx, topic, []int32{1})
	if err != nil {
		t.Fatal(err)
	}
	if n := logs.counts()[repairedBack]; n != 1 {
		t.Fatalf("the second batch was taken back %d times, want 1 (logs %v)", n, logs.counts())
	}
	// The consumer resumes where NextOffsets says, or at the partition's start when it says nothing.
	if next[1] != 30 {
		t.Errorf("NextOffsets = %v, want map[1:30]", next)
	}
	if err := second.Write(ctx, topic, 1, recs[next[1]:]); err != nil {
		t.Fatal(err)
	}
	assertStoredOnce(t, conn, evs)
	assertNext(t, second, topic, []int32{1}, map[int32]int64{1: 60})
}

// TestRepairCompletesATakeBackCutShort proves that a take-back cut short after its delete from events,
// which leaves the batch's offset in kafka_offsets and its share in the rollups, is completed by the next
// repair: the partition resumes at the batch, and writing from there stores the input once. The second
// batch's rows are all deleted from events alone (secondBatchCutShort).
func TestRepairCompletesATakeBackCutShort(t *testing.T) {
	ctx := t.Context()
	conn, codec, db, evs, recs := secondBatchCutShort(t, 12, "1")
	if n := count(t, conn, "SELECT max(max_offset) FROM kafka_offsets WHERE kafka_partition = 1"); n != 59 {
		t.Fatalf("kafka_offsets stores the partition up to %d, want 59", n)
	}

	second, err := chstore.New(conn, codec, chstore.Config{Database: db}, chstore.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	assertNext(t, second, topic, []int32{1}, map[int32]int64{1: 30})
	if err := second.Write(ctx, topic, 1, recs[30:]); err != nil {
		t.Fatal(err)
	}
	assertStoredOnce(t, conn, evs)
	assertNext(t, second, topic, []int32{1}, map[int32]int64{1: 60})
}

// gate is an HTTP endpoint a view reads through url(): armed, the next request blocks until released,
// which holds the INSERT that runs the view on the server.
type gate struct {
	url      string
	mu       sync.Mutex
	armed    bool
	entered  chan struct{} // closed when the armed request arrives
	released chan struct{}
	once     sync.Once
}

func newGate(t *testing.T) *gate {
	t.Helper()
	g := &gate{entered: make(chan struct{}), released: make(chan struct{})}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.mu.Lock()
		armed := g.armed
		g.armed = false
		g.mu.Unlock()
		if armed {
			close(g.entered)
			select {
			case <-g.released:
			case <-r.Context().Done():
			}
		}
		_, _ = fmt.Fprintln(w, 1)
	}))
	g.url = srv.URL
	t.Cleanup(srv.Close)
	t.Cleanup(g.release) // before srv.Close, which waits for the held request
	return g
}

func (g *gate) arm() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.armed = true
}

func (g *gate) release() { g.once.Do(func() { close(g.released) }) }

// TestRepairWaitsForAnInsertStillRunning proves that a repair never races an insert of its partition
// that still runs on the server after its client gave up. kafka_offsets_mv is made to read through a
// gate; views run in the order of their names, so the insert of a second batch is held with events and
// attendance_daily written and metrics_daily, metrics_student_daily and school_daily not yet. The write
// is cut short there. A repair whose caller waited for running inserts before the write began (as a
// concurrent NextOffsets did) must not touch the batch while it is held: it answers ErrBusy. Once the
// gate opens, the store resumes after the batch and holds the input once, rollups included. A repair
// that went ahead would have derived the held views' rows from events, and the insert then added them
// a second time.
func TestRepairWaitsForAnInsertStillRunning(t *testing.T) {
	store, conn, codec := newStore(t)
	ctx := t.Context()
	g := newGate(t)
	for _, ddl := range []string{
		"DROP TABLE kafka_offsets_mv",
		"CREATE MATERIALIZED VIEW kafka_offsets_mv TO kafka_offsets AS " +
			"SELECT kafka_topic, kafka_partition, max(kafka_offset) AS max_offset FROM events " +
			"WHERE (SELECT count() FROM url('" + g.url + "/gate', CSV, 'x UInt8')) = 1 GROUP BY kafka_topic, kafka_partition",
	} {
		if err := conn.Exec(ctx, ddl); err != nil {
			t.Fatal(err)
		}
	}
	evs, _ := synth.Events(14, 2, 60)
	recs := facts(t, codec, 1, 0, evs)
	if err := store.Write(ctx, topic, 1, recs[:30]); err != nil {
		t.Fatal(err)
	}

	g.arm()
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- store.Write(wctx, topic, 1, recs[30:]) }()
	select {
	case <-g.entered:
	case err := <-done:
		t.Fatalf("the write ended (%v) before its insert reached the gate", err)
	}
	cancel()
	if err := <-done; err == nil {
		t.Fatal("the write succeeded with its insert held at the gate")
	}
	if n := count(t, conn, "SELECT count() FROM events WHERE kafka_offset >= 30"); n != 30 {
		t.Fatalf("events holds %d rows of the held batch, want 30", n)
	}

	chstore.SetInsertWait(store, time.Second)
	if err := chstore.RepairPartitions(ctx, store, topic, []int32{1}); !errors.Is(err, chstore.ErrBusy) {
		t.Fatalf("repairing while the insert is held: %v, want ErrBusy", err)
	}
	g.release()
	chstore.SetInsertWait(store, time.Minute)
	assertNext(t, store, topic, []int32{1}, map[int32]int64{1: 60})
	assertStoredOnce(t, conn, evs)
}
