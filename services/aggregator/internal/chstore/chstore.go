// Package chstore keeps the aggregator's ClickHouse schema and writes enriched events into it: the events
// fact table, the rollups materialized views keep from it, and the consumed Kafka offsets that make the
// store a kafkax.Store.
//
// Exactly-once without insert dedup: every events row carries its record's topic, partition and offset,
// and a batch of one partition is one INSERT, which ClickHouse applies to events and to every view
// (rollups and kafka_offsets) before it answers. The consumer resumes each partition after the highest
// offset stored (NextOffsets), so a batch is stored with its offsets or not at all, and a consumer that
// stops or fails at any point neither loses nor repeats a record. Write's fencing (see there) extends this
// to two consumers that both believe they own a partition, and to inserts the server still commits after
// their client gave up.
//
// A ClickHouse server that dies in the middle of one INSERT can leave the batch partly applied: the events
// block is written as one part per month it spans and each view's rows as parts of their own, one after
// another. Every insert into events is therefore journaled first (insert_journal), and a batch whose
// outcome the store does not know is repaired, with no manual step, before its partition's offset is
// returned: completed by deriving the views' rows again from events, or taken back (see repair.go).
package chstore

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/ClickHouse/clickhouse-go/v2/lib/proto"
	"github.com/edtech-analytics/platform/libs/chutil"
	"github.com/edtech-analytics/platform/libs/kafkax"
	"github.com/edtech-analytics/platform/libs/records"
	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Migrate applies the aggregator's migrations to database, which must be conn's default database.
func Migrate(ctx context.Context, conn driver.Conn, database string) error {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return fmt.Errorf("opening embedded migrations: %w", err)
	}
	if err := chutil.Migrate(ctx, conn, database, sub); err != nil {
		return fmt.Errorf("migrating clickhouse database %s: %w", database, err)
	}
	return nil
}

// Reasons a record is skipped instead of stored (the reason attribute of the skipped-records counter).
const (
	SkipNotFact     = "not_fact"    // roster and other types that are not learning events
	SkipUndecodable = "undecodable" // bad frame or unknown schema: it will never decode
	SkipInvalid     = "invalid"     // decodes but cannot be stored (bad UUID, time out of range)
	SkipFenced      = "fenced"      // already stored, by this or another consumer
	// SkipDeadLettered is a stand-in for a record refused before and dead-lettered by the consumer.
	SkipDeadLettered = "dead_lettered"
)

const (
	maxDateTime   = math.MaxUint32         // the last second a DateTime holds (seconds since 1970 in a UInt32)
	maxInsertWait = 60 * time.Second       // how long a repair or NextOffsets waits for inserts running on the server
	busyGrace     = 200 * time.Millisecond // how long Write waits for another insert of its partition
)

// Deps are the store's observability dependencies; nil fields mean none.
type Deps struct {
	Log    *slog.Logger
	Tracer trace.TracerProvider
	Meter  metric.MeterProvider
}

// Config says where the store writes.
type Config struct {
	// Database is conn's default database, which Migrate has prepared; the analyst views read from it.
	Database string
	// AnalystPrefix starts the name of each district's analyst database (<prefix><tenant_id>); empty
	// turns analyst views off.
	AnalystPrefix string
	// RebuildWait is how long after a rebuild was registered its marker waits for the staged rows to be
	// ready before the rebuild is abandoned (DefaultRebuildWait).
	RebuildWait time.Duration
	// Cluster chooses the replicated cluster layout (MigrateCluster); zero is the single-server layout.
	Cluster ClusterConfig
	// Reread reads a partition's records again; the cluster layout needs it to settle an open insert.
	Reread Reread
}

// Store writes enriched events into ClickHouse and implements kafkax.Store.
type Store struct {
	conn     driver.Conn
	codec    *records.Codec
	cfg      Config
	log      *slog.Logger
	tracer   trace.Tracer
	inserted metric.Int64Counter
	skipped  metric.Int64Counter

	insertWait time.Duration // how long to wait for inserts running on the server (maxInsertWait)

	keeper  *keeper         // the cluster layout's offsets; nil in the single-server layout
	cluster *chutil.Cluster // the cluster layout's nodes; nil in the single-server layout
	reread  Reread

	mu       sync.Mutex
	analysts map[string]bool // districts whose analyst views exist
	// analystRetry holds when a district whose analyst views could not be made may try again.
	analystRetry map[string]time.Time
	journals     map[partKey]*journalState // what the store knows of each partition's last insert
	locks        map[partKey]*sync.Mutex   // see partLock
}

// New returns a store over conn, whose default database (cfg.Database) Migrate has prepared.
func New(conn driver.Conn, codec *records.Codec, cfg Config, deps Deps) (*Store, error) {
	if cfg.Database == "" {
		return nil, errors.New("chstore: the database name is required")
	}
	if cfg.RebuildWait <= 0 {
		cfg.RebuildWait = DefaultRebuildWait
	}
	if deps.Log == nil {
		deps.Log = slog.New(slog.DiscardHandler)
	}
	if deps.Tracer == nil {
		deps.Tracer = tracenoop.NewTracerProvider()
	}
	if deps.Meter == nil {
		deps.Meter = metricnoop.NewMeterProvider()
	}
	meter := deps.Meter.Meter("aggregator/chstore")
	inserted, err := meter.Int64Counter("aggregator_events_inserted", metric.WithDescription("events rows inserted into clickhouse"))
	if err != nil {
		return nil, fmt.Errorf("creating inserted counter: %w", err)
	}
	skipped, err := meter.Int64Counter("aggregator_records_skipped", metric.WithDescription("enriched records not stored, by reason"))
	if err != nil {
		return nil, fmt.Errorf("creating skipped counter: %w", err)
	}
	s := &Store{
		conn: conn, codec: codec, cfg: cfg, log: deps.Log, tracer: deps.Tracer.Tracer("aggregator/chstore"), reread: cfg.Reread, insertWait: maxInsertWait,
		inserted: inserted, skipped: skipped, analysts: map[string]bool{}, analystRetry: map[string]time.Time{}, journals: map[partKey]*journalState{}, locks: map[partKey]*sync.Mutex{},
	}
	if cfg.Cluster.Enabled() {
		if s.keeper, err = newKeeper(cfg.Cluster, cfg.Database, deps.Log); err != nil {
			return nil, err
		}
		s.cluster = chutil.NewCluster(conn, cfg.Cluster.Name, cfg.Database, cfg.Cluster.Dial)
	}
	return s, nil
}

// NextOffsets returns, per partition of topic that the store holds, the offset after the highest one
// stored. It first waits for inserts into those partitions still running on the server (one whose client
// gave up or died is still committed), then reads kafka_offsets, which holds one small row per partition
// and insert, not events.
func (s *Store) NextOffsets(ctx context.Context, topic string, partitions []int32) (map[int32]int64, error) {
	if s.keeper != nil {
		return s.clusterNextOffsets(ctx, topic, partitions)
	}
	if err := s.waitInserts(ctx, topic, partitions); err != nil {
		return nil, err
	}
	if err := s.repairPartitions(ctx, topic, partitions); err != nil {
		return nil, err
	}
	stored, err := s.stored(ctx, topic)
	if err != nil {
		return nil, err
	}
	out := make(map[int32]int64, len(partitions))
	for _, p := range partitions {
		if next, ok := stored[p]; ok {
			out[p] = next
		}
	}
	return out, nil
}

func (s *Store) stored(ctx context.Context, topic string) (map[int32]int64, error) {
	rows, err := s.conn.Query(ctx, "SELECT kafka_partition, max(max_offset) FROM kafka_offsets WHERE kafka_topic = ? GROUP BY kafka_partition", topic)
	if err != nil {
		return nil, fmt.Errorf("reading stored offsets of %s: %w", topic, err)
	}
	defer func() { _ = rows.Close() }() // read-only; after a full iteration Close only repeats rows.Err
	out := map[int32]int64{}
	for rows.Next() {
		var (
			p    uint32
			last uint64
		)
		if err := rows.Scan(&p, &last); err != nil {
			return nil, fmt.Errorf("reading stored offsets of %s: %w", topic, err)
		}
		out[int32(p)] = int64(last) + 1
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading stored offsets of %s: %w", topic, err)
	}
	return out, nil
}

// Write stores the events among recs, records of one partition in offset order, with one INSERT into
// events: ClickHouse writes the block and runs every materialized view on it within that INSERT, and a
// block is atomic per month partition of events. A record that can never be stored (undecodable,
// invalid, or a value ClickHouse refuses) is refused with a *kafkax.PoisonError, and the consumer
// dead-letters it and writes a stand-in, which is skipped. Records that are not facts (roster) are
// counted and skipped; when the batch ends in skipped records a row in kafka_offsets records that they
// were consumed, so a restart does not read them again (losing that row only means reading them again).
//
// Fencing, so that no record is stored twice even by two consumers that both believe they own the
// partition (one lost it during a long write), or after a client gave up on an INSERT that the server
// still commits: every insert carries a query id naming its topic and partition. An insert is first
// prepared, which registers it in the server's process list; then Write checks that no other insert of
// the partition is running (ErrBusy otherwise: the consumer backs off and re-reads NextOffsets, which
// waits for it), and only then reads the stored offset and drops the records at or below it. Of two
// writers, the later to register sees the other, so at most one inserts at a time, and each inserts only
// past what the other stored. The process list is per server: this holds while every aggregator inserts
// into the same ClickHouse server, the deployment this store is for (replicated tables would use insert
// deduplication instead).
func (s *Store) Write(ctx context.Context, topic string, partition int32, recs []*kgo.Record) (err error) {
	if len(recs) == 0 {
		return nil
	}
	ctx, span := s.tracer.Start(ctx, "chstore.write", trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("messaging.destination.name", topic),
			attribute.Int("messaging.destination.partition.id", int(partition)), attribute.Int("records", len(recs))))
	defer func() {
		if err != nil {
			span.RecordError(err)
		}
		span.End()
	}()

	if s.keeper != nil {
		return s.clusterWrite(ctx, topic, partition, recs)
	}
	// The batch in segments: the rows before each erasure marker are inserted before it is applied.
	var segs []segment
	rows := make([]eventRow, 0, len(recs))
	for _, rec := range recs {
		row, reason, err := s.row(topic, rec)
		if errors.Is(err, errRetry) {
			return err
		}
		if dlq, ok := refusals[reason]; ok {
			return kafkax.Poison(rec.Offset, dlq, fmt.Errorf("the aggregator cannot store it (%s): %w", reason, err))
		}
		switch reason {
		case "":
			rows = append(rows, row)
		case erasure:
			segs = append(segs, segment{rows: rows, erase: &row})
			rows = nil
		case rebuildMarker:
			segs = append(segs, segment{rows: rows, rebuild: &row})
			rows = nil
		default:
			s.skip(ctx, reason, 1)
		}
	}
	segs = append(segs, segment{rows: rows})
	for _, seg := range segs {
		for _, tenant := range tenantsOf(seg.rows) {
			// Analyst views are not part of the data: failing to make them (a user without CREATE rights, a
			// server hiccup) must not stall ingestion. The next batch of the district tries again.
			if err := s.EnsureAnalystViews(ctx, tenant); err != nil && ctx.Err() == nil {
				s.log.Warn("creating analyst views", "tenant_id", tenant, "err", err)
			}
		}
	}
	l := s.partLock(topic, partition)
	l.Lock()
	defer l.Unlock()
	w := write{Store: s, topic: topic, partition: partition, id: insertPrefix(topic, partition) + uuid.NewString() + ":"}
	last, stored := recs[len(recs)-1].Offset, int64(-1)
	for _, seg := range segs {
		if len(seg.rows) > 0 {
			if err := w.repairUnknown(ctx); err != nil {
				return err
			}
			if err := w.insertEvents(ctx, seg.rows); err != nil {
				return err
			}
			stored = int64(seg.rows[len(seg.rows)-1].KafkaOffset)
		}
		if seg.erase != nil {
			if err := w.eraseStudent(ctx, seg.erase); err != nil {
				return err
			}
			stored = int64(seg.erase.KafkaOffset)
		}
		if seg.rebuild != nil {
			if err := w.swapDistrict(ctx, seg.rebuild); err != nil {
				return err
			}
			stored = int64(seg.rebuild.KafkaOffset)
		}
	}
	if stored == last {
		return nil
	}
	return w.markConsumed(ctx, last)
}

// segment is a run of a batch's rows, then the marker that ends it, if one does.
type segment struct {
	rows    []eventRow
	erase   *eventRow // an erasure marker: its tenant, student and offset
	rebuild *eventRow // a rebuild marker: its tenant, rebuild (event id) and offset
}

// tenantsOf lists the distinct tenants of rows.
func tenantsOf(rows []eventRow) []string {
	var out []string
	for i := range rows {
		if i == 0 || rows[i].TenantID != rows[i-1].TenantID {
			if !slices.Contains(out, rows[i].TenantID) {
				out = append(out, rows[i].TenantID)
			}
		}
	}
	return out
}

// write is one Write's inserts; their query ids start with id.
type write struct {
	*Store
	topic     string
	partition int32
	id        string
}

// repairUnknown repairs the partition's last insert if this store did not see it end (a store that
// writes without NextOffsets first; the consumer's NextOffsets repairs on assignment).
func (w write) repairUnknown(ctx context.Context) error {
	st, err := w.journal(ctx, w.topic, w.partition)
	if err != nil || st.known {
		return err
	}
	return w.repairLocked(ctx, w.topic, w.partition, false)
}

// insertEvents inserts the rows past the stored offset.
func (w write) insertEvents(ctx context.Context, rows []eventRow) error {
	batch, next, err := w.prepare(ctx, "events", "INSERT INTO events ("+eventColumns+")")
	if err != nil {
		return err
	}
	if fenced := sort.Search(len(rows), func(i int) bool { return int64(rows[i].KafkaOffset) >= next }); fenced > 0 {
		w.log.Warn("dropping records already stored", "partition", w.partition, "from", rows[0].KafkaOffset, "stored_next", next, "dropped", fenced)
		w.skip(ctx, SkipFenced, fenced)
		rows = rows[fenced:]
	}
	if len(rows) == 0 {
		return batch.Abort()
	}
	for i := range rows {
		if err := batch.AppendStruct(&rows[i]); err != nil {
			err = errors.Join(fmt.Errorf("appending event %s: %w", rows[i].EventID, err), batch.Abort())
			return kafkax.Poison(int64(rows[i].KafkaOffset), records.ReasonStoreRefused, err)
		}
	}
	// The journal row goes in before the data: if the insert's outcome is lost, NextOffsets repairs it.
	st, err := w.journal(ctx, w.topic, w.partition)
	if err != nil {
		return errors.Join(err, batch.Abort())
	}
	entry := newJournalEntry(w.topic, w.partition, st.entry.seq(), rows)
	// From here the journal may hold the entry (a failed write may still have landed): the outcome is
	// unknown until the insert answers, and a repair reads the journal again before the next insert, so
	// that two entries never share a version.
	w.mu.Lock()
	st.entry, st.known, st.marked = entry, false, false
	w.mu.Unlock()
	if err := w.writeJournal(ctx, w.id+"journal", entry); err != nil {
		return errors.Join(err, batch.Abort())
	}
	if err := batch.Send(); err != nil {
		err = fmt.Errorf("inserting %d events into clickhouse: %w", len(rows), err)
		if refusedContent(err) {
			// A view may have refused a value after events took the block: undo what was applied before
			// the record is dead-lettered.
			if rerr := w.repairLocked(ctx, w.topic, w.partition, true); rerr != nil {
				return errors.Join(err, rerr)
			}
			return kafkax.Poison(-1, records.ReasonStoreRefused, err)
		}
		return err
	}
	w.mu.Lock()
	st.known = true
	w.mu.Unlock()
	w.inserted.Add(ctx, int64(len(rows)))
	return nil
}

// markConsumed records that the partition was consumed up to offset without a fact to carry it.
func (w write) markConsumed(ctx context.Context, offset int64) error {
	batch, next, err := w.prepare(ctx, "offsets", "INSERT INTO kafka_offsets (kafka_topic, kafka_partition, max_offset)")
	if err != nil {
		return err
	}
	if offset < next {
		return batch.Abort()
	}
	if err := batch.Append(w.topic, uint32(w.partition), uint64(offset)); err != nil {
		return errors.Join(fmt.Errorf("appending consumed offset: %w", err), batch.Abort())
	}
	if err := batch.Send(); err != nil {
		return fmt.Errorf("recording consumed offset %d of %s/%d: %w", offset, w.topic, w.partition, err)
	}
	return nil
}

// prepare prepares query (an INSERT) under a query id naming the partition, returns ErrBusy if an
// insert of another Write into the partition keeps running, and then reads the partition's stored
// offset. The server lists a finished insert for a moment after its client has the answer, so a
// previous Write's insert is given busyGrace to go away.
func (w write) prepare(ctx context.Context, name, query string) (driver.Batch, int64, error) {
	batch, err := w.conn.PrepareBatch(clickhouse.Context(ctx, clickhouse.WithQueryID(w.id+name)), query)
	if err != nil {
		return nil, 0, fmt.Errorf("preparing insert into %s: %w", name, err)
	}
	deadline := time.Now().Add(busyGrace)
	for {
		var others uint64
		err = w.conn.QueryRow(ctx, "SELECT count() FROM system.processes WHERE startsWith(query_id, ?) AND NOT startsWith(query_id, ?)",
			insertPrefix(w.topic, w.partition), w.id).Scan(&others)
		if err != nil || others == 0 {
			break
		}
		if time.Now().After(deadline) {
			err = fmt.Errorf("%w: %s/%d", ErrBusy, w.topic, w.partition)
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	var stored map[int32]int64
	if err == nil {
		stored, err = w.stored(ctx, w.topic)
	}
	if err != nil {
		return nil, 0, errors.Join(err, batch.Abort())
	}
	return batch, stored[w.partition], nil
}

// ErrBusy means an insert into the same partition is running on the server; retry later.
var ErrBusy = errors.New("another insert into the partition is running")

// insertPrefix starts the query id of every insert into a partition: aggregator:<topic>:<partition>:.
// Kafka topic names cannot hold ':'.
func insertPrefix(topic string, partition int32) string {
	return "aggregator:" + topic + ":" + strconv.Itoa(int(partition)) + ":"
}

// waitInserts waits until no insert into the given partitions runs on the server, or returns ErrBusy
// after s.insertWait.
func (s *Store) waitInserts(ctx context.Context, topic string, partitions []int32) error {
	deadline := time.Now().Add(s.insertWait)
	for {
		var running []struct {
			ID string `ch:"query_id"`
		}
		if err := s.conn.Select(ctx, &running, "SELECT query_id FROM system.processes WHERE startsWith(query_id, ?)", "aggregator:"+topic+":"); err != nil {
			return fmt.Errorf("reading running inserts: %w", err)
		}
		busy := false
		for _, r := range running {
			for _, p := range partitions {
				busy = busy || strings.HasPrefix(r.ID, insertPrefix(topic, p))
			}
		}
		if !busy {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("waiting for running inserts into %s: %w", topic, ErrBusy)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for running inserts into %s: %w", topic, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (s *Store) skip(ctx context.Context, reason string, n int) {
	s.skipped.Add(ctx, int64(n), metric.WithAttributes(attribute.String("reason", reason)))
}

// errRetry marks an error worth retrying the whole batch for (the schema registry unreachable).
var errRetry = errors.New("transient")

// row turns a record into an events row. A record that is not stored has a reason; err says why when
// the record is invalid, and wraps errRetry when decoding may succeed later.
func (s *Store) row(topic string, rec *kgo.Record) (eventRow, string, error) {
	return rowOf(s.codec, topic, rec)
}

func rowOf(codec *records.Codec, topic string, rec *kgo.Record) (eventRow, string, error) {
	if kafkax.DeadLettered(rec) {
		return eventRow{}, SkipDeadLettered, nil
	}
	var ev records.EnrichedEvent
	if err := codec.Decode(rec.Value, &ev); err != nil {
		if errors.Is(err, records.ErrBadFrame) || errors.Is(err, records.ErrUnknownSchema) {
			return eventRow{}, SkipUndecodable, err
		}
		return eventRow{}, "", fmt.Errorf("%w: decoding record at offset %d: %w", errRetry, rec.Offset, err)
	}
	switch ev.Type {
	case records.TypeStudentErased:
		return erasureRow(topic, rec, &ev)
	case records.TypeClickHouseRebuild:
		return rebuildRow(topic, rec, &ev)
	}
	if !isFact(ev.Type) {
		return eventRow{}, SkipNotFact, nil
	}
	if err := ev.CheckPayload(); err != nil {
		return eventRow{}, SkipInvalid, err
	}
	// Text PostgreSQL refuses (a NUL byte, invalid UTF-8) is refused here too, so the two stores agree on
	// what they hold: both dead-letter such a record.
	if errs := records.TextErrors(&ev, ""); len(errs) > 0 {
		return eventRow{}, SkipInvalid, fmt.Errorf("%s: %s", errs[0].Field, errs[0].Message)
	}
	row, err := newEventRow(&ev)
	if err != nil {
		return eventRow{}, SkipInvalid, err
	}
	row.TraceID = traceID(rec)
	row.KafkaTopic, row.KafkaPartition, row.KafkaOffset = topic, uint32(rec.Partition), uint64(rec.Offset)
	return row, "", nil
}

func isFact(typ string) bool {
	switch typ {
	case records.TypeAttendance, records.TypeAssessmentResult, records.TypeAssignmentSubmission,
		records.TypeSession, records.TypeContentView, records.TypeCustom, records.TypeGeneric:
		return true
	}
	return false
}

// traceID is the trace of the record's consume span, which continues the producer's trace (the kotel
// hooks put it in rec.Context), or else the producer's trace in its traceparent header, or "".
func traceID(rec *kgo.Record) string {
	if rec.Context != nil {
		if sc := trace.SpanContextFromContext(rec.Context); sc.HasTraceID() {
			return sc.TraceID().String()
		}
	}
	return headerTraceID(rec)
}

// headerTraceID is the producer's trace in the record's traceparent header, or "". The cluster layout
// reads only this, never the consume span (whose trace is new for a record without the header), so that
// a record read again gives the same row.
func headerTraceID(rec *kgo.Record) string {
	for _, h := range rec.Headers {
		if h.Key != "traceparent" {
			continue
		}
		ctx := propagation.TraceContext{}.Extract(context.Background(), propagation.MapCarrier{"traceparent": string(h.Value)})
		if sc := trace.SpanContextFromContext(ctx); sc.HasTraceID() {
			return sc.TraceID().String()
		}
	}
	return ""
}

// eventColumns lists the columns of events that eventRow fills, in the order of its fields.
const eventColumns = "tenant_id, event_id, source_id, type, occurred_at, occurred_ms, local_day, received_at, enriched_at, " +
	"school_id, class_id, session_id, student_id, pseudonym, role, policy_version, age_band, grade_level, academic_session_id, " +
	"attendance_status, attendance_date, minutes_present, assessment_id, score, max_score, assignment_id, " +
	"submission_status, late, session_action, session_seconds, content_id, content_type, duration_seconds, " +
	"percent_complete, custom_name, generic_standard, generic_type, generic_action, generic_object_id, " +
	"generic_object_type, generic_statement_id, prop_keys, prop_values, trace_id, kafka_topic, kafka_partition, kafka_offset"

// eventRow is one row of events.
type eventRow struct {
	TenantID         string    `ch:"tenant_id"`
	EventID          uuid.UUID `ch:"event_id"`
	SourceID         string    `ch:"source_id"`
	Type             string    `ch:"type"`
	OccurredAt       time.Time `ch:"occurred_at"`
	OccurredMS       uint16    `ch:"occurred_ms"`
	LocalDay         time.Time `ch:"local_day"` // the day the rollups count the event on (attendance: AttendanceDate)
	ReceivedAt       time.Time `ch:"received_at"`
	EnrichedAt       time.Time `ch:"enriched_at"`
	SchoolID         string    `ch:"school_id"`
	ClassID          string    `ch:"class_id"`
	SessionID        string    `ch:"session_id"`
	StudentID        uuid.UUID `ch:"student_id"`
	Pseudonym        string    `ch:"pseudonym"`
	Role             string    `ch:"role"`
	PolicyVersion    int32     `ch:"policy_version"`
	AgeBand          string    `ch:"age_band"`
	GradeLevel       string    `ch:"grade_level"`
	AcademicSession  string    `ch:"academic_session_id"`
	AttendanceStatus string    `ch:"attendance_status"`
	AttendanceDate   time.Time `ch:"attendance_date"`
	MinutesPresent   *uint32   `ch:"minutes_present"`
	AssessmentID     string    `ch:"assessment_id"`
	Score            *float64  `ch:"score"`
	MaxScore         *float64  `ch:"max_score"`
	AssignmentID     string    `ch:"assignment_id"`
	SubmissionStatus string    `ch:"submission_status"`
	Late             *uint8    `ch:"late"`
	SessionAction    string    `ch:"session_action"`
	SessionSeconds   uint32    `ch:"session_seconds"`
	ContentID        string    `ch:"content_id"`
	ContentType      string    `ch:"content_type"`
	DurationSeconds  uint32    `ch:"duration_seconds"`
	PercentComplete  *float64  `ch:"percent_complete"`
	CustomName       string    `ch:"custom_name"`
	GenericStandard  string    `ch:"generic_standard"`
	GenericType      string    `ch:"generic_type"`
	GenericAction    string    `ch:"generic_action"`
	GenericObjectID  string    `ch:"generic_object_id"`
	GenericObjectTyp string    `ch:"generic_object_type"`
	GenericStatement string    `ch:"generic_statement_id"`
	PropKeys         []string  `ch:"prop_keys"`   // a custom event's properties or a generic event's extensions
	PropValues       []string  `ch:"prop_values"` // the values of PropKeys, in the same order
	TraceID          string    `ch:"trace_id"`
	KafkaTopic       string    `ch:"kafka_topic"`
	KafkaPartition   uint32    `ch:"kafka_partition"`
	KafkaOffset      uint64    `ch:"kafka_offset"`
}

// newEventRow flattens an event whose payload matches its type. Only pseudonymous fields are copied: the
// actor's SIS id, if the policy kept it, stays out of ClickHouse. Values ClickHouse cannot hold (a
// malformed UUID, a time outside DateTime's range) are an error, so one bad record cannot fail a batch.
func newEventRow(ev *records.EnrichedEvent) (eventRow, error) {
	eventID, err := uuid.Parse(ev.EventID)
	if err != nil {
		return eventRow{}, fmt.Errorf("event_id %q: %w", ev.EventID, err)
	}
	studentID, err := uuid.Parse(ev.Actor.InternalID)
	if err != nil {
		return eventRow{}, fmt.Errorf("actor internal_id of event %s: %w", ev.EventID, err)
	}
	for _, t := range []struct {
		name string
		at   time.Time
	}{{"occurred_at", ev.OccurredAt}, {"received_at", ev.ReceivedAt}, {"enriched_at", ev.EnrichedAt}} {
		if t.at.Unix() < 0 || t.at.Unix() > maxDateTime {
			return eventRow{}, fmt.Errorf("%s %s of event %s is outside 1970-2106", t.name, t.at.Format(time.RFC3339), ev.EventID)
		}
	}
	// The district's local date, stamped by the enricher; a record enriched before it did counts on its
	// UTC date, as it always did.
	localDay := dayOf(ev.OccurredAt)
	if ev.LocalDate != nil {
		localDay = dayOf(*ev.LocalDate)
		if localDay.Unix() < 0 || localDay.Year() > 2148 {
			return eventRow{}, fmt.Errorf("local_date %s of event %s is outside 1970-2148", localDay.Format(time.DateOnly), ev.EventID)
		}
	}
	r := eventRow{
		TenantID: ev.TenantID, EventID: eventID, SourceID: ev.SourceID, Type: ev.Type,
		OccurredAt: ev.OccurredAt.UTC(), OccurredMS: uint16(ev.OccurredAt.Nanosecond() / int(time.Millisecond)), LocalDay: localDay,
		ReceivedAt: ev.ReceivedAt.UTC(), EnrichedAt: ev.EnrichedAt.UTC(),
		SchoolID: deref(ev.SchoolID), ClassID: deref(ev.ClassID), SessionID: deref(ev.SessionID),
		StudentID: studentID, Pseudonym: ev.Actor.Pseudonym, Role: ev.Actor.Role, PolicyVersion: int32(ev.PolicyVersion),
		AgeBand: deref(ev.Derived.AgeBand), GradeLevel: deref(ev.Derived.GradeLevel), AcademicSession: deref(ev.Derived.AcademicSessionID),
		AttendanceDate: time.Unix(0, 0).UTC(), PropKeys: []string{}, PropValues: []string{},
	}
	if ev.Derived.Late != nil {
		late := uint8(0)
		if *ev.Derived.Late {
			late = 1
		}
		r.Late = &late
	}
	switch {
	case ev.Attendance != nil:
		a := ev.Attendance
		if a.Date.Unix() < 0 || a.Date.Year() > 2148 {
			return eventRow{}, fmt.Errorf("attendance date %s of event %s is outside 1970-2148", a.Date.Format(time.DateOnly), ev.EventID)
		}
		r.AttendanceStatus, r.AttendanceDate = a.Status, a.Date.UTC()
		if a.MinutesPresent != nil {
			m := clamp(int64(*a.MinutesPresent))
			r.MinutesPresent = &m
		}
	case ev.AssessmentResult != nil:
		a := ev.AssessmentResult
		r.AssessmentID, r.Score, r.MaxScore = a.AssessmentID, &a.Score, &a.MaxScore
	case ev.AssignmentSubmission != nil:
		a := ev.AssignmentSubmission
		r.AssignmentID, r.SubmissionStatus, r.Score, r.MaxScore = a.AssignmentID, a.Status, a.Score, a.MaxScore
	case ev.Session != nil:
		r.SessionAction = ev.Session.Action
		switch {
		case ev.Derived.SessionSeconds != nil:
			r.SessionSeconds = clamp(*ev.Derived.SessionSeconds)
		case ev.Session.DurationSeconds != nil:
			r.SessionSeconds = clamp(*ev.Session.DurationSeconds)
		}
	case ev.ContentView != nil:
		c := ev.ContentView
		r.ContentID, r.ContentType, r.DurationSeconds, r.PercentComplete = c.ContentID, c.ContentType, clamp(c.DurationSeconds), c.PercentComplete
	case ev.Custom != nil:
		c := ev.Custom
		if len(c.PropertyKeys) != len(c.PropertyValues) {
			return eventRow{}, fmt.Errorf("custom event %s has %d property keys and %d values", ev.EventID, len(c.PropertyKeys), len(c.PropertyValues))
		}
		r.CustomName, r.PropKeys, r.PropValues = c.Name, c.PropertyKeys, c.PropertyValues
	case ev.Generic != nil:
		g := ev.Generic
		if len(g.ExtensionKeys) != len(g.ExtensionValues) {
			return eventRow{}, fmt.Errorf("generic event %s has %d extension keys and %d values", ev.EventID, len(g.ExtensionKeys), len(g.ExtensionValues))
		}
		r.GenericStandard, r.GenericType, r.GenericAction, r.GenericObjectID = g.Standard, g.Type, g.Action, g.ObjectID
		r.GenericObjectTyp, r.GenericStatement, r.PropKeys, r.PropValues = g.ObjectType, deref(g.StatementID), g.ExtensionKeys, g.ExtensionValues
	}
	return r, nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// clamp fits a count of seconds or minutes into UInt32; negative values become 0.
func clamp(v int64) uint32 {
	return uint32(min(max(v, 0), math.MaxUint32))
}

// refusals are the skip reasons that refuse a record, with the dead-letter reason each is sent under.
// Records that are not facts (roster) are only skipped: they belong to the sink.
var refusals = map[string]string{
	SkipUndecodable: records.ReasonUndecodable,
	SkipInvalid:     records.ReasonInvalidField,
}

// contentErrors are ClickHouse's error codes for a value it cannot take: a retry of the same rows would
// be refused again.
var contentErrors = map[int32]bool{
	6: true, 27: true, 38: true, 41: true, 53: true, 69: true, 70: true, 72: true, 117: true, 131: true, 321: true,
}

// refusedContent tells whether ClickHouse refused a value of the inserted rows.
func refusedContent(err error) bool {
	var ex *proto.Exception
	return errors.As(err, &ex) && contentErrors[ex.Code]
}
