package chstore

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/edtech-analytics/platform/libs/chutil"
	"github.com/google/uuid"
)

// A ClickHouse server that dies in the middle of an INSERT into events can leave the batch partly applied:
// events is written first, one part per month the batch spans, and then each materialized view's target,
// one after another. The journal (insert_journal) makes that repairable without a manual step:
//
//   - Before each insert into events, Write records the batch in the journal: its partition, offsets, row
//     count, tenants, days and time range (a row with done = 0). The days are every day a view may count
//     one of its rows on: its local day (events.local_day, the district's day), its UTC date and, for
//     attendance, its attendance date.
//   - When the outcome of that insert is unknown to the store (the server died or answered with an error,
//     or another process wrote the row and stopped), NextOffsets repairs the batch before it returns the
//     partition's offset, which is what the consumer calls when a partition is assigned and after a failed
//     write: when the server comes back.
//   - The repair first waits until no insert of the partition runs on the server and no delete of events
//     or kafka_offsets is pending, then counts the batch's rows in events. Some: a multi-month batch died
//     between its parts; the batch is taken back wholly (its rows, its kafka_offsets rows and its share of
//     each view) and the consumer writes it again. None: nothing was applied, or a take-back was cut short
//     after its delete from events; kafka_offsets and the views are made to agree with events as a
//     take-back does. All: some views may lack the batch; each view's rows of the batch's partition,
//     tenants and days are deleted and derived again from events with the view's own query (rollup rows
//     carry their source partition, which only this partition's consumer writes, so no other insert races
//     the repair). kafka_offsets then gets the batch's offset. Each step can be cut short and done again.
//   - A batch ClickHouse refused for a value (a view may refuse after events took the block) is taken back
//     instead: its events rows and kafka_offsets row deleted and the views' rows derived again without it,
//     before the refused record is dead-lettered.
//   - A done = 1 row records the outcome, as does Release when the consumer gives a partition up after a
//     write it saw succeed, so the next owner does not repair what is whole.

// journalEntry is a row of insert_journal.
type journalEntry struct {
	Topic       string      `ch:"kafka_topic"`
	Partition   uint32      `ch:"kafka_partition"`
	Version     uint64      `ch:"version"` // 2*seq for a begun insert, 2*seq+1 once its outcome is known
	First       uint64      `ch:"first_offset"`
	Last        uint64      `ch:"last_offset"`
	Rows        uint64      `ch:"rows"`
	Tenants     []string    `ch:"tenants"`
	Days        []time.Time `ch:"days"`
	MinOccurred time.Time   `ch:"min_occurred"`
	MaxOccurred time.Time   `ch:"max_occurred"`
	Done        uint8       `ch:"done"`
	// EraseStudent is set on the row of a student's erasure (see erase.go): the student's internal id.
	EraseStudent string `ch:"erase_student"`
}

const journalColumns = "kafka_topic, kafka_partition, version, first_offset, last_offset, rows, tenants, days, min_occurred, max_occurred, done, erase_student"

// partKey names a partition of a topic.
type partKey struct {
	topic     string
	partition int32
}

// journalState is what the store knows of a partition's last journaled insert.
type journalState struct {
	entry  journalEntry
	known  bool // the insert's outcome is known: it succeeded (or was repaired)
	marked bool // a done row records it
}

// newJournalEntry describes the insert of rows (of one partition, in offset order) as the insert after seq.
func newJournalEntry(topic string, partition int32, seq uint64, rows []eventRow) journalEntry {
	e := journalEntry{
		Topic: topic, Partition: uint32(partition), Version: 2 * (seq + 1),
		First: rows[0].KafkaOffset, Last: rows[len(rows)-1].KafkaOffset, Rows: uint64(len(rows)),
		MinOccurred: rows[0].OccurredAt, MaxOccurred: rows[0].OccurredAt,
	}
	days := map[time.Time]bool{}
	for i := range rows {
		r := &rows[i]
		if !slices.Contains(e.Tenants, r.TenantID) {
			e.Tenants = append(e.Tenants, r.TenantID)
		}
		// The days the rollups count the row on (local_day, attendance_date) and its UTC date: a view
		// keyed by either is repaired.
		days[r.LocalDay] = true
		days[dayOf(r.OccurredAt)] = true
		if r.Type == "attendance" {
			days[dayOf(r.AttendanceDate)] = true
		}
		if r.OccurredAt.Before(e.MinOccurred) {
			e.MinOccurred = r.OccurredAt
		}
		if r.OccurredAt.After(e.MaxOccurred) {
			e.MaxOccurred = r.OccurredAt
		}
	}
	for d := range days {
		e.Days = append(e.Days, d)
	}
	slices.SortFunc(e.Days, time.Time.Compare)
	return e
}

func dayOf(t time.Time) time.Time {
	y, m, d := t.UTC().Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}

func (e journalEntry) seq() uint64 { return e.Version / 2 }

// done is the row that records e's outcome.
func (e journalEntry) done() journalEntry {
	e.Version, e.Done = 2*e.seq()+1, 1
	return e
}

// writeJournal inserts entries, all of one partition, into insert_journal under a query id of that
// partition's inserts (queryID, or a fresh one), so that NextOffsets waits for a journal write whose
// client gave up before it reads the journal.
func (s *Store) writeJournal(ctx context.Context, queryID string, entries ...journalEntry) error {
	if len(entries) == 0 {
		return nil
	}
	if queryID == "" {
		queryID = insertPrefix(entries[0].Topic, int32(entries[0].Partition)) + "journal:" + uuid.NewString()
	}
	batch, err := s.conn.PrepareBatch(clickhouse.Context(ctx, clickhouse.WithQueryID(queryID)), "INSERT INTO insert_journal ("+journalColumns+")")
	if err != nil {
		return fmt.Errorf("preparing insert into insert_journal: %w", err)
	}
	for i := range entries {
		if err := batch.AppendStruct(&entries[i]); err != nil {
			return errors.Join(fmt.Errorf("appending to insert_journal: %w", err), batch.Abort())
		}
	}
	if err := batch.Send(); err != nil {
		return fmt.Errorf("writing insert_journal: %w", err)
	}
	return nil
}

// journal returns what the store knows of the partition's last journaled insert, reading the journal
// the first time.
func (s *Store) journal(ctx context.Context, topic string, partition int32) (*journalState, error) {
	s.mu.Lock()
	st, ok := s.journals[partKey{topic, partition}]
	s.mu.Unlock()
	if ok {
		return st, nil
	}
	st, err := s.readJournal(ctx, topic, partition)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if cur, ok := s.journals[partKey{topic, partition}]; ok {
		return cur, nil
	}
	s.journals[partKey{topic, partition}] = st
	return st, nil
}

// readJournal reads what the journal says of the partition's last insert: its latest row, or nothing
// to repair when the partition has none.
func (s *Store) readJournal(ctx context.Context, topic string, partition int32) (*journalState, error) {
	var rows []journalEntry
	if err := s.conn.Select(ctx, &rows, "SELECT "+journalColumns+" FROM insert_journal WHERE kafka_topic = ? AND kafka_partition = ? "+
		"ORDER BY version DESC LIMIT 1", topic, partition); err != nil {
		return nil, fmt.Errorf("reading insert_journal of %s/%d: %w", topic, partition, err)
	}
	if len(rows) == 0 {
		return &journalState{entry: journalEntry{Topic: topic, Partition: uint32(partition)}, known: true, marked: true}, nil
	}
	return &journalState{entry: rows[0], known: rows[0].Done == 1, marked: rows[0].Done == 1}, nil
}

// partLock returns the lock that makes a partition's writes and repairs take turns within the store.
func (s *Store) partLock(topic string, partition int32) *sync.Mutex {
	s.mu.Lock()
	defer s.mu.Unlock()
	l, ok := s.locks[partKey{topic, partition}]
	if !ok {
		l = &sync.Mutex{}
		s.locks[partKey{topic, partition}] = l
	}
	return l
}

// repairPartitions repairs the last journaled insert of each partition whose outcome the store does not
// know, completing it. The caller has waited for the partitions' running inserts.
func (s *Store) repairPartitions(ctx context.Context, topic string, partitions []int32) error {
	for _, p := range partitions {
		l := s.partLock(topic, p)
		l.Lock()
		err := s.repairLocked(ctx, topic, p, false)
		l.Unlock()
		if err != nil {
			return err
		}
	}
	return nil
}

// repairLocked repairs the partition's last journaled insert if the store does not know its outcome,
// completing it or, with undo, taking it back. The caller holds the partition's lock.
func (s *Store) repairLocked(ctx context.Context, topic string, p int32, undo bool) error {
	s.mu.Lock()
	st, ok := s.journals[partKey{topic, p}]
	s.mu.Unlock()
	if ok && st.known {
		return nil
	}
	// An insert of the partition may still run on the server: one whose client gave up, or one this store
	// began after a caller of NextOffsets had waited. The repair must see its outcome, never race it, and
	// no write of this store can begin while the lock is held.
	if err := s.waitInserts(ctx, topic, []int32{p}); err != nil {
		return err
	}
	st, err := s.readJournal(ctx, topic, p)
	if err != nil {
		return err
	}
	if e := st.entry; !st.known {
		if err := s.repair(ctx, e, undo); err != nil {
			return fmt.Errorf("repairing the insert of %s/%d offsets %d to %d: %w", topic, p, e.First, e.Last, err)
		}
		st.entry = e.done()
		if err := s.writeJournal(ctx, "", st.entry); err != nil {
			return err
		}
		st.known, st.marked = true, true
	}
	s.mu.Lock()
	s.journals[partKey{topic, p}] = st
	s.mu.Unlock()
	return nil
}

// repair makes the journaled insert e either wholly applied or, with undo or when events holds only part
// of it, not applied at all.
func (s *Store) repair(ctx context.Context, e journalEntry, undo bool) error {
	if e.EraseStudent != "" {
		s.log.Info("completing an erasure whose outcome was unknown", "kafka_topic", e.Topic, "partition", e.Partition, "offset", e.First)
		return s.erase(ctx, e)
	}
	filter := "kafka_topic = ? AND kafka_partition = ? AND kafka_offset BETWEEN ? AND ? AND tenant_id IN ? " +
		"AND occurred_at BETWEEN toDateTime(?) AND toDateTime(?)"
	args := []any{e.Topic, e.Partition, e.First, e.Last, set(e.Tenants), e.MinOccurred.Unix(), e.MaxOccurred.Unix()}
	// A repair cut short may have left its deletes running: count what they leave, not what they will
	// delete later.
	for _, table := range []string{"events", "kafka_offsets"} {
		if err := chutil.WaitMutations(ctx, s.conn, s.cfg.Database, table); err != nil {
			return err
		}
	}
	var stored uint64
	if err := s.conn.QueryRow(ctx, "SELECT count() FROM events WHERE "+filter, args...).Scan(&stored); err != nil {
		return fmt.Errorf("counting the batch's rows in events: %w", err)
	}
	log := s.log.With("kafka_topic", e.Topic, "partition", e.Partition, "first_offset", e.First, "last_offset", e.Last,
		"rows", e.Rows, "stored", stored)
	switch {
	case stored > e.Rows:
		return fmt.Errorf("events holds %d rows of a batch of %d: stored twice", stored, e.Rows)
	case stored == e.Rows && !undo:
		log.Info("an insert whose outcome was unknown is in events; deriving its rollups again")
		if err := s.rederiveAll(ctx, e); err != nil {
			return err
		}
		return s.insertOffset(ctx, e, int64(e.Last))
	case stored == 0:
		// Nothing of the batch is in events, yet a take-back cut short after its delete from events leaves
		// the batch's offset in kafka_offsets and its share in the views: the consumer would skip the batch.
		// Taking back what is left makes both agree with events again.
		log.Info("an insert whose outcome was unknown was not applied; it is written again")
	default:
		// Take the batch back wholly: its events rows, its kafka_offsets rows and its share of every view,
		// derived again from events without it. Views run only once every part of events is written, but
		// events holding part of the batch does not prove that no view has it. Leaving kafka_offsets ahead
		// of events would make the consumer skip the batch it writes again.
		log.Warn("deleting what was applied of an insert, to write it again", "undo", undo)
		if err := s.conn.Exec(ctx, "ALTER TABLE events DELETE WHERE "+filter, args...); err != nil {
			return fmt.Errorf("deleting the batch's rows from events: %w", err)
		}
		if err := chutil.WaitMutations(ctx, s.conn, s.cfg.Database, "events"); err != nil {
			return err
		}
	}
	if err := s.conn.Exec(ctx, "ALTER TABLE kafka_offsets DELETE WHERE kafka_topic = ? AND kafka_partition = ? AND max_offset >= ?",
		e.Topic, e.Partition, e.First); err != nil {
		return fmt.Errorf("deleting the batch's offset from kafka_offsets: %w", err)
	}
	if err := chutil.WaitMutations(ctx, s.conn, s.cfg.Database, "kafka_offsets"); err != nil {
		return err
	}
	// A merge of kafka_offsets (ReplacingMergeTree) may have folded the rows of the batches before this
	// one into the row just deleted: say again that the partition is stored up to the batch, or the
	// consumer would resume it from its start and store it all a second time.
	if e.First > 0 {
		if err := s.insertOffset(ctx, e, int64(e.First)-1); err != nil {
			return err
		}
	}
	return s.rederiveAll(ctx, e)
}

// insertOffset records in kafka_offsets that e's partition is stored up to offset. It runs within a
// repair, which the partition's consumer waits for, so it needs none of Write's fencing.
func (s *Store) insertOffset(ctx context.Context, e journalEntry, offset int64) error {
	batch, err := s.conn.PrepareBatch(clickhouse.Context(ctx, clickhouse.WithQueryID(repairID(e)+"offsets")),
		"INSERT INTO kafka_offsets (kafka_topic, kafka_partition, max_offset)")
	if err != nil {
		return fmt.Errorf("preparing insert into kafka_offsets: %w", err)
	}
	if err := batch.Append(e.Topic, e.Partition, uint64(offset)); err != nil {
		return errors.Join(fmt.Errorf("appending repaired offset: %w", err), batch.Abort())
	}
	if err := batch.Send(); err != nil {
		return fmt.Errorf("recording repaired offset %d of %s/%d: %w", offset, e.Topic, e.Partition, err)
	}
	return nil
}

// repairID starts the query id of a repair's inserts: the partition's insert prefix, so that another
// writer of the partition waits for them.
func repairID(e journalEntry) string {
	return insertPrefix(e.Topic, int32(e.Partition)) + "repair:" + uuid.NewString() + ":"
}

// rederiveAll derives every rollup's rows of e's partition, tenants and days again from events.
func (s *Store) rederiveAll(ctx context.Context, e journalEntry) error {
	views, err := s.rollupViews(ctx)
	if err != nil {
		return err
	}
	for _, v := range views {
		if err := s.rederive(ctx, v, e); err != nil {
			return err
		}
	}
	return nil
}

// rollupView is a materialized view on events whose target is a rollup.
type rollupView struct {
	name, target string
	columns      []string
	query        string // the view's SELECT; from is the span of its "FROM events"
	from         [2]int
}

// rollupViews reads the materialized views on events, except kafka_offsets_mv, from the server: the
// repair derives with each view's own query, so a view added or changed by a migration is repaired as it
// is.
func (s *Store) rollupViews(ctx context.Context) ([]rollupView, error) {
	return s.viewsOn(ctx, "events", "kafka_offsets_mv")
}

// viewsOn reads the materialized views on table except those named in skip, each with its query's FROM
// table.
func (s *Store) viewsOn(ctx context.Context, table string, skip ...string) ([]rollupView, error) {
	var deps []struct {
		Names []string `ch:"dependencies_table"`
	}
	if err := s.conn.Select(ctx, &deps, "SELECT dependencies_table FROM system.tables WHERE database = ? AND name = ?", s.cfg.Database, table); err != nil {
		return nil, fmt.Errorf("reading the views on %s: %w", table, err)
	}
	if len(deps) != 1 {
		return nil, fmt.Errorf("reading the views on %s: %s not found in %s", table, table, s.cfg.Database)
	}
	var views []rollupView
	for _, name := range deps[0].Names {
		if slices.Contains(skip, name) {
			continue
		}
		v, err := s.rollupView(ctx, name, table)
		if err != nil {
			return nil, err
		}
		views = append(views, v)
	}
	return views, nil
}

func (s *Store) rollupView(ctx context.Context, name, source string) (rollupView, error) {
	v := rollupView{name: name}
	var create string
	if err := s.conn.QueryRow(ctx, "SELECT create_table_query FROM system.tables WHERE database = ? AND name = ?", s.cfg.Database, name).Scan(&create); err != nil {
		return v, fmt.Errorf("reading view %s: %w", name, err)
	}
	to := strings.Index(create, " TO ")
	as := strings.Index(create, " AS SELECT ")
	if to < 0 || as < 0 {
		return v, fmt.Errorf("view %s: not a materialized view with a TO table: %s", name, create)
	}
	target := strings.Fields(create[to+len(" TO "):])[0]
	if i := strings.LastIndexByte(target, '.'); i >= 0 {
		target = target[i+1:]
	}
	v.target = strings.Trim(target, "`")
	v.query = create[as+len(" AS "):]
	from := regexp.MustCompile("FROM\\s+(?:`?[A-Za-z0-9_]+`?\\.)?`?" + regexp.QuoteMeta(source) + "`?(?:\\s|$)")
	loc := from.FindAllStringIndex(v.query, -1)
	if len(loc) != 1 {
		return v, fmt.Errorf("view %s: want one FROM %s in its query, found %d: %s", name, source, len(loc), v.query)
	}
	v.from = [2]int{loc[0][0], loc[0][1]}
	var cols []struct {
		Name string `ch:"name"`
	}
	if err := s.conn.Select(ctx, &cols, "SELECT name FROM system.columns WHERE database = ? AND table = ?", s.cfg.Database, name); err != nil {
		return v, fmt.Errorf("reading the columns of view %s: %w", name, err)
	}
	for _, c := range cols {
		v.columns = append(v.columns, c.Name)
	}
	for _, need := range []string{"tenant_id", "day", "kafka_partition"} {
		if !slices.Contains(v.columns, need) {
			return v, fmt.Errorf("view %s: a rollup must have column %s to be repairable", name, need)
		}
	}
	return v, nil
}

// rederive deletes the view target's rows of e's partition, tenants and days and inserts them again from
// events with the view's query.
func (s *Store) rederive(ctx context.Context, v rollupView, e journalEntry) error {
	days := make([]string, len(e.Days))
	for i, d := range e.Days {
		days[i] = d.Format(time.DateOnly)
	}
	target := chutil.QuoteIdent(v.target)
	keys := "kafka_partition = ? AND tenant_id IN ? AND day IN ?"
	if err := s.conn.Exec(ctx, "ALTER TABLE "+target+" DELETE WHERE "+keys, e.Partition, set(e.Tenants), set(days)); err != nil {
		return fmt.Errorf("deleting %s's rows of the batch: %w", v.target, err)
	}
	if err := chutil.WaitMutations(ctx, s.conn, s.cfg.Database, v.target); err != nil {
		return err
	}
	source := "FROM (SELECT * FROM events WHERE kafka_topic = ? AND kafka_partition = ? AND tenant_id IN ? " +
		"AND (local_day IN ? OR toDate(occurred_at) IN ? OR attendance_date IN ?)) "
	query := v.query[:v.from[0]] + source + v.query[v.from[1]:]
	cols := make([]string, len(v.columns))
	for i, c := range v.columns {
		cols[i] = chutil.QuoteIdent(c)
	}
	list := strings.Join(cols, ", ")
	insert := "INSERT INTO " + target + " (" + list + ") SELECT " + list + " FROM (" + query + ") WHERE " + keys
	qctx := clickhouse.Context(ctx, clickhouse.WithQueryID(repairID(e)+v.target))
	if err := s.conn.Exec(qctx, insert, e.Topic, e.Partition, set(e.Tenants), set(days), set(days), set(days), e.Partition, set(e.Tenants), set(days)); err != nil {
		return fmt.Errorf("deriving %s's rows of the batch again: %w", v.target, err)
	}
	return nil
}

// Release records, for partitions the consumer gives up, that their last insert succeeded, so that their
// next owner does not repair it. Failing only costs that owner a needless repair.
func (s *Store) Release(ctx context.Context, topic string, partitions []int32) {
	if s.keeper != nil {
		s.clusterRelease(topic, partitions)
		return
	}
	var rows []journalEntry
	s.mu.Lock()
	for _, p := range partitions {
		st, ok := s.journals[partKey{topic, p}]
		if ok && st.known && !st.marked {
			rows = append(rows, st.entry.done())
		}
		delete(s.journals, partKey{topic, p})
	}
	s.mu.Unlock()
	for _, row := range rows {
		if err := s.writeJournal(ctx, "", row); err != nil {
			s.log.Warn("recording the last insert of a released partition", "partition", row.Partition, "err", err)
		}
	}
}

// set binds xs as a parenthesised list, for IN ?.
func set[T any](xs []T) clickhouse.GroupSet {
	vals := make([]any, len(xs))
	for i, x := range xs {
		vals[i] = x
	}
	return clickhouse.GroupSet{Value: vals}
}
