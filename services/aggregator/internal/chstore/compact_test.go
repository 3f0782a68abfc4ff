package chstore_test

import (
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/edtech-analytics/platform/services/aggregator/internal/chstore"
	"github.com/edtech-analytics/platform/services/aggregator/internal/synth"
)

// parts counts the active parts of each partition of each rollup.
func parts(t *testing.T, conn driver.Conn) map[[2]string]uint64 {
	t.Helper()
	var rows []struct {
		Table     string `ch:"table"`
		Partition string `ch:"partition_id"`
		Parts     uint64 `ch:"parts"`
	}
	if err := conn.Select(t.Context(), &rows, `SELECT table, partition_id, count() AS parts FROM system.parts
		WHERE database = currentDatabase() AND active AND has(?, table) GROUP BY table, partition_id`, chstore.Rollups); err != nil {
		t.Fatal(err)
	}
	out := map[[2]string]uint64{}
	for _, r := range rows {
		out[[2]string{r.Table, r.Partition}] = r.Parts
	}
	return out
}

// TestCompactMergesClosedMonthsAndKeepsRollupsExact writes three batches into two closed months and two
// into the current one, then proves a round merges every closed month of every rollup into one part and
// leaves the current month until it reaches OpenMinParts, that a second round finds nothing to do, and
// that the merged rollups still equal what the events must give (exact distinct counts and quantiles).
func TestCompactMergesClosedMonthsAndKeepsRollupsExact(t *testing.T) {
	store, conn, codec := newStore(t)
	db := currentDatabase(t, conn)
	evs, _ := synth.Events(31, 3, 900) // 2025-09-28 to 2025-10-03: two closed months
	now := time.Now().UTC().Truncate(time.Millisecond)
	for i := range 100 { // and the current month
		ev := evs[i]
		ev.EventID = ev.EventID[:len(ev.EventID)-4] + "ffff"
		ev.OccurredAt, ev.ReceivedAt, ev.EnrichedAt = now, now, now
		if ev.Attendance != nil {
			a := *ev.Attendance
			a.Date = time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
			ev.Attendance = &a
		}
		evs = append(evs, ev)
	}
	offset := int64(0)
	for _, batch := range [][2]int{{0, 300}, {300, 600}, {600, 900}, {900, 950}, {950, 1000}} {
		recs := facts(t, codec, 0, offset, evs[batch[0]:batch[1]])
		if err := store.Write(t.Context(), topic, 0, recs); err != nil {
			t.Fatal(err)
		}
		offset += int64(len(recs))
	}
	thisMonth := time.Now().UTC().Format("200601")
	before := parts(t, conn)
	for _, table := range chstore.Rollups {
		for _, month := range []string{"202509", "202510"} {
			if before[[2]string{table, month}] < 2 {
				t.Fatalf("%s %s has %d parts before compaction; the test needs several", table, month, before[[2]string{table, month}])
			}
		}
	}

	merged, err := chstore.Compact(t.Context(), conn, db, 3)
	if err != nil {
		t.Fatal(err)
	}
	if len(merged) != 2*len(chstore.Rollups) {
		t.Errorf("merged %d partitions, want the two closed months of %d rollups: %+v", len(merged), len(chstore.Rollups), merged)
	}
	after := parts(t, conn)
	for key, n := range after {
		switch {
		case key[1] == thisMonth && n != before[key]:
			t.Errorf("%s %s: the current month went from %d to %d parts below OpenMinParts", key[0], key[1], before[key], n)
		case key[1] != thisMonth && n != 1:
			t.Errorf("%s %s: %d parts after compaction, want 1", key[0], key[1], n)
		}
	}
	if diff := synth.Diff(synth.Want(evs), got(t, conn)); len(diff) > 0 {
		t.Fatalf("rollups after compaction differ from the events' (%d keys), first: %v", len(diff), diff[:min(5, len(diff))])
	}
	if again, err := chstore.Compact(t.Context(), conn, db, 3); err != nil || len(again) != 0 {
		t.Errorf("second round: merged %+v, err %v; want nothing to do", again, err)
	}

	if _, err := chstore.Compact(t.Context(), conn, db, 2); err != nil {
		t.Fatal(err)
	}
	for key, n := range parts(t, conn) {
		if n != 1 {
			t.Errorf("%s %s: %d parts once OpenMinParts is reached, want 1", key[0], key[1], n)
		}
	}
	if diff := synth.Diff(synth.Want(evs), got(t, conn)); len(diff) > 0 {
		t.Fatalf("rollups after merging the current month differ (%d keys), first: %v", len(diff), diff[:min(5, len(diff))])
	}
	if count(t, conn, "SELECT count() FROM events") != uint64(len(evs)) {
		t.Error("events lost")
	}
}
