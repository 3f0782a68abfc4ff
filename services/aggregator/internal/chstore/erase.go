package chstore

import (
	"context"
	"fmt"
	"time"

	"github.com/edtech-analytics/platform/libs/chutil"
	"github.com/edtech-analytics/platform/libs/records"
	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kgo"
)

// A student's erasure reaches the store as a marker in the enriched topic (records.TypeStudentErased), on
// every partition, so each partition's consumer applies it in order with its inserts, as one of its own
// writes:
//
//   - The marker's row in the journal records the student and the days and tenant the partition holds
//     of it, before anything is deleted.
//   - The student's events rows of the partition are deleted; then every rollup's rows of the partition,
//     tenant and those days are derived again from the events that remain (aggregate states such as
//     uniqExact hold the student and cannot have it subtracted), the student-level rollups included.
//   - kafka_offsets records the marker's offset.
//
// Each step is idempotent; one cut short is completed by the repair of the journal row (see repair.go),
// which does them again with the days the row recorded. Replaying enriched applies the marker again after
// the records before it, so a rebuilt store does not hold the student either.

// erasure is the skip reason of a marker: not a row, an erasure to apply.
const erasure = "erasure"

// erasureRow reads a marker: tenant, student and offset, in an eventRow.
func erasureRow(topic string, rec *kgo.Record, ev *records.EnrichedEvent) (eventRow, string, error) {
	student, err := uuid.Parse(ev.Actor.InternalID)
	if err != nil {
		return eventRow{}, SkipInvalid, fmt.Errorf("actor.internal_id: an erasure names no student: %w", err)
	}
	if err := tenancy.ValidTenantID(ev.TenantID); err != nil {
		return eventRow{}, SkipInvalid, fmt.Errorf("tenant_id: %w", err)
	}
	return eventRow{TenantID: ev.TenantID, StudentID: student, KafkaTopic: topic, KafkaPartition: uint32(rec.Partition),
		KafkaOffset: uint64(rec.Offset)}, erasure, nil
}

// eraseStudent applies the erasure marker m to the partition. The caller holds the partition's lock.
func (w write) eraseStudent(ctx context.Context, m *eventRow) error {
	if err := w.repairUnknown(ctx); err != nil {
		return err
	}
	batch, next, err := w.prepare(ctx, "erase", "INSERT INTO kafka_offsets (kafka_topic, kafka_partition, max_offset)")
	if err != nil {
		return err
	}
	if err := batch.Abort(); err != nil {
		return err
	}
	if int64(m.KafkaOffset) < next {
		w.skip(ctx, SkipFenced, 1)
		return nil
	}
	var held []struct {
		Rows uint64      `ch:"rows"`
		Min  time.Time   `ch:"min_occurred"`
		Max  time.Time   `ch:"max_occurred"`
		Days []time.Time `ch:"days"`
	}
	if err := w.conn.Select(ctx, &held, `SELECT count() AS rows, min(occurred_at) AS min_occurred, max(occurred_at) AS max_occurred,
		arrayDistinct(arrayConcat(groupUniqArray(local_day), groupUniqArray(toDate(occurred_at)),
			groupUniqArrayIf(attendance_date, type = 'attendance'))) AS days
		FROM events WHERE kafka_topic = ? AND kafka_partition = ? AND tenant_id = ? AND student_id = toUUID(?)`,
		w.topic, uint32(w.partition), m.TenantID, m.StudentID.String()); err != nil {
		return fmt.Errorf("reading what %s/%d holds of an erased student: %w", w.topic, w.partition, err)
	}
	if len(held) == 0 || held[0].Rows == 0 {
		return w.markConsumed(ctx, int64(m.KafkaOffset))
	}
	st, err := w.journal(ctx, w.topic, w.partition)
	if err != nil {
		return err
	}
	h := held[0]
	days := make([]time.Time, len(h.Days))
	for i, d := range h.Days {
		days[i] = dayOf(d)
	}
	entry := journalEntry{Topic: w.topic, Partition: uint32(w.partition), Version: 2 * (st.entry.seq() + 1),
		First: m.KafkaOffset, Last: m.KafkaOffset, Tenants: []string{m.TenantID}, Days: days,
		MinOccurred: h.Min, MaxOccurred: h.Max, EraseStudent: m.StudentID.String()}
	w.mu.Lock()
	st.entry, st.known, st.marked = entry, false, false
	w.mu.Unlock()
	if err := w.writeJournal(ctx, w.id+"journal", entry); err != nil {
		return err
	}
	if err := w.erase(ctx, entry); err != nil {
		return err
	}
	w.log.Info("student erased from the partition", "kafka_topic", w.topic, "partition", w.partition, "tenant_id", m.TenantID,
		"events", h.Rows, "days", len(days))
	w.mu.Lock()
	st.known = true
	w.mu.Unlock()
	return nil
}

// erase deletes the journaled erasure's student from events of its partition, derives the rollups of its
// days again and records its offset. Every step may run again.
func (s *Store) erase(ctx context.Context, e journalEntry) error {
	if err := s.conn.Exec(ctx, "ALTER TABLE events DELETE WHERE kafka_topic = ? AND kafka_partition = ? AND tenant_id = ? AND student_id = toUUID(?)",
		e.Topic, e.Partition, e.Tenants[0], e.EraseStudent); err != nil {
		return fmt.Errorf("deleting an erased student's events: %w", err)
	}
	if err := chutil.WaitMutations(ctx, s.conn, s.cfg.Database, "events"); err != nil {
		return err
	}
	if err := s.rederiveAll(ctx, e); err != nil {
		return err
	}
	return s.insertOffset(ctx, e, int64(e.First))
}
