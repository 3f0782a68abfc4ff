package chstore_test

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"testing"

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

// TestTakeBackKeepsAnOffsetAMergeFolded proves that taking a batch back leaves its partition stored up to
// the batch even when a merge of kafka_offsets has folded the earlier batches' row into the batch's own:
// the delete of the batch's offset then removes the partition's only row. The state is built with the
// store and SQL: a store writes two batches and stops without a word, so the journal's last entry (done =
// 0) is the second batch; its rows of October are deleted from events, so events holds only part of it
// while kafka_offsets holds its offset (as when a repair counts an insert still finishing on the server);
// and OPTIMIZE ... FINAL folds the two batches' kafka_offsets rows into one. A fresh store must then
// resume at the second batch, and writing from there stores the input exactly once.
func TestTakeBackKeepsAnOffsetAMergeFolded(t *testing.T) {
	first, conn, codec := newStore(t)
	ctx := t.Context()
	db := currentDatabase(t, conn)
	evs, _ := synth.Events(11, 2, 60)
	recs := facts(t, codec, 1, 0, evs)
	for _, batch := range [][]*kgo.Record{recs[:30], recs[30:]} {
		if err := first.Write(ctx, topic, 1, batch); err != nil {
			t.Fatal(err)
		}
	}

	if err := conn.Exec(ctx, "ALTER TABLE events DELETE WHERE kafka_partition = 1 AND kafka_offset >= 30 AND toYYYYMM(occurred_at) = 202510"); err != nil {
		t.Fatal(err)
	}
	if err := chutil.WaitMutations(ctx, conn, db, "events"); err != nil {
		t.Fatal(err)
	}
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
