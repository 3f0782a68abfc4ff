package chstore_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/edtech-analytics/platform/libs/chutil"
	"github.com/edtech-analytics/platform/libs/records"
	"github.com/edtech-analytics/platform/services/aggregator/internal/chstore"
	"github.com/edtech-analytics/platform/services/aggregator/internal/synth"
	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kgo"
)

// without returns the events not of student.
func without(evs []records.EnrichedEvent, student string) []records.EnrichedEvent {
	var out []records.EnrichedEvent
	for _, ev := range evs {
		if ev.Actor.InternalID != student {
			out = append(out, ev)
		}
	}
	return out
}

// assertRollups compares every rollup with what the events must produce.
func assertRollups(t *testing.T, ctx context.Context, want []records.EnrichedEvent, conn driver.Conn) {
	t.Helper()
	r, err := synth.Got(ctx, conn)
	if err != nil {
		t.Fatal(err)
	}
	if diff := synth.Diff(synth.Want(want), r); len(diff) > 0 {
		t.Errorf("rollups differ from those of the events left:\n%s", strings.Join(diff, "\n"))
	}
}

// TestErasureMarkerRemovesTheStudentFromEventsAndEveryRollup writes two partitions of a district's events,
// then the erasure marker of one student on each with more events after it, and proves that events and
// every rollup (the district, school and student rows of the student's days: uniqExact states included)
// are exactly those of the events left, that the marker's offset is stored, and that a second marker (a
// job run again) changes nothing.
func TestErasureMarkerRemovesTheStudentFromEventsAndEveryRollup(t *testing.T) {
	store, conn, codec := newStore(t)
	ctx := t.Context()
	evs, regular := synth.Events(7, 1, 400)
	before, after := evs[:300], evs[300:]
	var kept []records.EnrichedEvent
	for p := range int32(2) {
		var first []records.EnrichedEvent
		for i := int(p); i < len(before); i += 2 {
			first = append(first, before[i])
		}
		recs := facts(t, codec, p, 0, first)
		marker := records.NewStudentErased(uuid.NewString(), regular.Tenant, regular.Student, time.Now())
		recs = append(recs, record(t, codec, p, int64(len(recs)), marker))
		var later []records.EnrichedEvent
		for i := int(p); i < len(after); i += 2 {
			if after[i].Actor.InternalID != regular.Student { // the enricher suppresses the student from here on
				later = append(later, after[i])
			}
		}
		recs = append(recs, facts(t, codec, p, int64(len(recs)), later)...)
		if err := store.Write(ctx, topic, p, recs); err != nil {
			t.Fatal(err)
		}
		kept = append(kept, without(first, regular.Student)...)
		kept = append(kept, later...)
	}
	if n := count(t, conn, "SELECT count() FROM events WHERE student_id = toUUID(?)", regular.Student); n != 0 {
		t.Fatalf("events holds %d rows of the erased student", n)
	}
	if n := count(t, conn, "SELECT count() FROM metrics_student_daily WHERE student_id = toUUID(?)", regular.Student); n != 0 {
		t.Fatalf("metrics_student_daily holds %d rows of the erased student", n)
	}
	if n := count(t, conn, "SELECT count() FROM events"); n != uint64(len(kept)) {
		t.Fatalf("events holds %d rows, want %d", n, len(kept))
	}
	assertRollups(t, ctx, kept, conn)

	// Again, as a resumed job does: nothing changes, and the offset moves past the marker.
	next, err := store.NextOffsets(ctx, topic, []int32{0})
	if err != nil {
		t.Fatal(err)
	}
	again := records.NewStudentErased(uuid.NewString(), regular.Tenant, regular.Student, time.Now())
	if err := store.Write(ctx, topic, 0, []*kgo.Record{record(t, codec, 0, next[0], again)}); err != nil {
		t.Fatal(err)
	}
	assertNext(t, store, topic, []int32{0}, map[int32]int64{0: next[0] + 1})
	assertRollups(t, ctx, kept, conn)
}

// TestErasureCutShortIsCompletedByTheNextOwner stops an erasure after its journal row and its delete
// from events (as a process killed there would), and proves the partition's next owner completes it from
// the journal: the rollups of the student's days are derived again and the marker is stored.
func TestErasureCutShortIsCompletedByTheNextOwner(t *testing.T) {
	store, conn, codec := newStore(t)
	ctx := t.Context()
	evs, regular := synth.Events(11, 1, 200)
	if err := store.Write(ctx, topic, 0, facts(t, codec, 0, 0, evs)); err != nil {
		t.Fatal(err)
	}
	// What eraseStudent writes first: the journal row naming the student and its days, then the delete.
	var days []time.Time
	seen := map[time.Time]bool{}
	for _, ev := range evs {
		if ev.Actor.InternalID != regular.Student {
			continue
		}
		for _, d := range []time.Time{ev.OccurredAt, dateOf(ev)} {
			d = time.Date(d.Year(), d.Month(), d.Day(), 0, 0, 0, 0, time.UTC)
			if !d.IsZero() && d.Year() > 1970 && !seen[d] {
				seen[d] = true
				days = append(days, d)
			}
		}
	}
	batch, err := conn.PrepareBatch(ctx, "INSERT INTO insert_journal (kafka_topic, kafka_partition, version, first_offset, last_offset, rows, tenants, days, min_occurred, max_occurred, done, erase_student)")
	if err != nil {
		t.Fatal(err)
	}
	marker := uint64(len(evs))
	if err := batch.Append(topic, uint32(0), uint64(1000), marker, marker, uint64(0), []string{regular.Tenant}, days,
		synth.FirstDay, synth.FirstDay.AddDate(0, 0, 6), uint8(0), regular.Student); err != nil {
		t.Fatal(err)
	}
	if err := batch.Send(); err != nil {
		t.Fatal(err)
	}
	if err := conn.Exec(ctx, "ALTER TABLE events DELETE WHERE student_id = toUUID(?)", regular.Student); err != nil {
		t.Fatal(err)
	}
	db := currentDatabase(t, conn)
	if err := chutil.WaitMutations(ctx, conn, db, "events"); err != nil {
		t.Fatal(err)
	}

	owner, err := chstore.New(conn, codec, chstore.Config{Database: db}, chstore.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	assertNext(t, owner, topic, []int32{0}, map[int32]int64{0: int64(marker) + 1})
	assertRollups(t, ctx, without(evs, regular.Student), conn)
}

func dateOf(ev records.EnrichedEvent) time.Time {
	if ev.Attendance != nil {
		return ev.Attendance.Date
	}
	return time.Time{}
}
