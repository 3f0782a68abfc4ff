package chstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/edtech-analytics/platform/libs/chutil"
	"github.com/edtech-analytics/platform/libs/records"
	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kgo"
)

// A district's ClickHouse rows are rebuilt (ctl rebuild --store clickhouse) without stopping the
// aggregator and without counting anything twice:
//
//   - The rebuild stages the district's rows in a table of its own, like events, from the records it
//     replays (the archive, then the topic), and registers itself in district_rebuilds ('staging').
//   - It puts a marker (records.TypeClickHouseRebuild, event id = the rebuild) on each partition of the
//     district, stages the district's records up to each marker, and sets the rebuild 'ready'.
//   - The aggregator reaches a partition's marker in order with its inserts, so events then holds exactly
//     the partition's records before the marker, as the staging does. Under the partition's lock it
//     deletes the district's rows of the partition from events and from every rollup (all are tagged by
//     partition), and inserts the staged rows of the partition into events: the views derive the rollups
//     from them as from any insert. Then it records the marker's offset.
//
// Every step may run again: a swap cut short is done again whole when the marker is read again (the
// deletes remove what the cut-short insert left). The replicated cluster layout does the same on every
// replica, under a swap intent in Keeper (clusterRebuildMarker in cluster.go). A marker whose rebuild is not ready waits, the batch
// retried, until DefaultRebuildWait after the rebuild was registered; then the rebuild is abandoned and
// the marker passed over. A marker of an unknown, abandoned or finished rebuild is passed over.

// DefaultRebuildWait is Config.RebuildWait's default.
const DefaultRebuildWait = 5 * time.Minute

// States of a rebuild in district_rebuilds.
const (
	RebuildStaging   = "staging"
	RebuildReady     = "ready"
	RebuildAbandoned = "abandoned"
	RebuildDone      = "done"
)

// ErrRebuildNotReady: a partition reached a rebuild's marker before the rebuild finished staging; the
// batch is retried.
var ErrRebuildNotReady = errors.New("the rebuild's rows are not staged yet")

// rebuildMarker is the skip reason of a rebuild marker: not a row, a swap to make.
const rebuildMarker = "rebuild"

// rebuildRow reads a rebuild marker: tenant, rebuild id (event id) and offset, in an eventRow.
func rebuildRow(topic string, rec *kgo.Record, ev *records.EnrichedEvent) (eventRow, string, error) {
	id, err := uuid.Parse(ev.EventID)
	if err != nil {
		return eventRow{}, SkipInvalid, fmt.Errorf("event_id: a rebuild marker names no rebuild: %w", err)
	}
	if err := tenancy.ValidTenantID(ev.TenantID); err != nil {
		return eventRow{}, SkipInvalid, fmt.Errorf("tenant_id: %w", err)
	}
	return eventRow{TenantID: ev.TenantID, EventID: id, KafkaTopic: topic, KafkaPartition: uint32(rec.Partition),
		KafkaOffset: uint64(rec.Offset)}, rebuildMarker, nil
}

// Rebuild is a rebuild's row in district_rebuilds.
type Rebuild struct {
	ID        string    `ch:"rebuild_id"`
	TenantID  string    `ch:"tenant_id"`
	Staging   string    `ch:"staging"`
	State     string    `ch:"state"`
	Version   uint64    `ch:"version"`
	CreatedAt time.Time `ch:"created_at"`
}

// ReadRebuild reads the latest row of rebuild id; ok is false when there is none.
func ReadRebuild(ctx context.Context, conn driver.Conn, id string) (r Rebuild, ok bool, err error) {
	var rows []Rebuild
	if err := conn.Select(ctx, &rows, `SELECT rebuild_id, tenant_id, staging, state, version, created_at FROM district_rebuilds
		WHERE rebuild_id = ? ORDER BY version DESC LIMIT 1`, id); err != nil {
		return Rebuild{}, false, fmt.Errorf("reading rebuild %s: %w", id, err)
	}
	if len(rows) == 0 {
		return Rebuild{}, false, nil
	}
	return rows[0], true, nil
}

// SetRebuildState records that rebuild r is now in state.
func SetRebuildState(ctx context.Context, conn driver.Conn, r Rebuild, state string) (Rebuild, error) {
	r.State, r.Version = state, r.Version+1
	// In the cluster layout district_rebuilds is Distributed: the row is on its shard when this returns.
	ctx = clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{"insert_distributed_sync": 1}))
	batch, err := conn.PrepareBatch(ctx, "INSERT INTO district_rebuilds (rebuild_id, tenant_id, staging, state, version, created_at)")
	if err == nil {
		if err = batch.Append(r.ID, r.TenantID, r.Staging, r.State, r.Version, r.CreatedAt); err != nil {
			err = errors.Join(err, batch.Abort())
		} else {
			err = batch.Send()
		}
	}
	if err != nil {
		return r, fmt.Errorf("recording rebuild %s as %s: %w", r.ID, state, err)
	}
	return r, nil
}

// rebuildAt reads the rebuild of marker m and says whether to swap its rows in now. A marker of an
// unknown, abandoned or finished rebuild is passed over (swap false); one whose rebuild is not ready
// waits (ErrRebuildNotReady) until wait after the rebuild was registered, and then abandons it.
func rebuildAt(ctx context.Context, conn driver.Conn, m *eventRow, wait time.Duration, log *slog.Logger) (r Rebuild, swap bool, err error) {
	r, ok, err := ReadRebuild(ctx, conn, m.EventID.String())
	switch {
	case err != nil:
		return r, false, err
	case !ok || r.TenantID != m.TenantID:
		log.Warn("passing over the marker of an unknown rebuild")
		return r, false, nil
	case r.State == RebuildAbandoned || r.State == RebuildDone:
		log.Info("passing over the marker of a rebuild that is " + r.State)
		return r, false, nil
	case r.State != RebuildReady && time.Since(r.CreatedAt) < wait:
		return r, false, fmt.Errorf("%w: rebuild %s of district %s", ErrRebuildNotReady, r.ID, r.TenantID)
	case r.State != RebuildReady:
		log.Warn("abandoning a rebuild not staged in time", "wait", wait)
		_, err := SetRebuildState(ctx, conn, r, RebuildAbandoned)
		return r, false, err
	}
	return r, true, nil
}

// swapDistrict makes the swap of rebuild marker m on the partition. The caller holds the partition's lock.
func (w write) swapDistrict(ctx context.Context, m *eventRow) error {
	if err := w.repairUnknown(ctx); err != nil {
		return err
	}
	batch, next, err := w.prepare(ctx, "rebuild", "INSERT INTO kafka_offsets (kafka_topic, kafka_partition, max_offset)")
	if err != nil {
		return err
	}
	if err := batch.Abort(); err != nil {
		return err
	}
	offset := int64(m.KafkaOffset)
	if offset < next {
		w.skip(ctx, SkipFenced, 1)
		return nil
	}
	log := w.log.With("rebuild", m.EventID.String(), "tenant_id", m.TenantID, "kafka_topic", w.topic, "partition", w.partition, "offset", offset)
	r, swap, err := rebuildAt(ctx, w.conn, m, w.cfg.RebuildWait, log)
	if err != nil {
		return err
	}
	if !swap {
		return w.markConsumed(ctx, offset)
	}
	if err := w.conn.Exec(ctx, "ALTER TABLE events DELETE WHERE kafka_topic = ? AND kafka_partition = ? AND tenant_id = ?",
		w.topic, uint32(w.partition), m.TenantID); err != nil {
		return fmt.Errorf("deleting the district's events of the partition: %w", err)
	}
	if err := chutil.WaitMutations(ctx, w.conn, w.cfg.Database, "events"); err != nil {
		return err
	}
	views, err := w.rollupViews(ctx)
	if err != nil {
		return err
	}
	for _, v := range views {
		if err := w.conn.Exec(ctx, "ALTER TABLE "+chutil.QuoteIdent(v.target)+" DELETE WHERE tenant_id = ? AND kafka_partition = ?",
			m.TenantID, uint32(w.partition)); err != nil {
			return fmt.Errorf("deleting the district's rows of %s: %w", v.target, err)
		}
		if err := chutil.WaitMutations(ctx, w.conn, w.cfg.Database, v.target); err != nil {
			return err
		}
	}
	qctx := clickhouse.Context(ctx, clickhouse.WithQueryID(w.id+"rebuild-insert"))
	if err := w.conn.Exec(qctx, "INSERT INTO events SELECT * FROM "+chutil.QuoteIdent(r.Staging)+
		" WHERE kafka_topic = ? AND kafka_partition = ? AND tenant_id = ? AND kafka_offset < ?",
		w.topic, uint32(w.partition), m.TenantID, m.KafkaOffset); err != nil {
		return fmt.Errorf("inserting the rebuilt rows of the district: %w", err)
	}
	log.Info("district's rows of the partition swapped for the rebuilt ones")
	return w.markConsumed(ctx, offset)
}

// Stager stages a district's rows for a rebuild: a table like events (rebuild_<tenant>), filled with
// the rows of the district's records it is given, each partition's in offset order.
type Stager struct {
	conn    driver.Conn
	codec   *records.Codec
	db      string
	cluster *chutil.Cluster // the cluster layout's nodes; nil for one server
	rb      Rebuild
	erased  []eventRow // erasure markers met; their students' earlier rows are deleted at Ready
	// Staged counts the rows staged by type, Skipped the records not staged by reason.
	Staged, Skipped map[string]int64
}

// NewStager creates the staging table of rebuild id of tenant (dropping one an earlier rebuild left) and
// registers the rebuild as staging. database is conn's, where events is. In the cluster layout (cluster
// not nil) the staging table is rebuild_<tenant>_local, replicated like events_local on every node, with
// the Distributed rebuild_<tenant> over it, sharded as events is.
func NewStager(ctx context.Context, conn driver.Conn, codec *records.Codec, database, tenant, id string, cluster *chutil.Cluster) (*Stager, error) {
	if err := tenancy.ValidTenantID(tenant); err != nil {
		return nil, err
	}
	st := &Stager{conn: conn, codec: codec, db: database, cluster: cluster, Staged: map[string]int64{}, Skipped: map[string]int64{},
		rb: Rebuild{ID: id, TenantID: tenant, Staging: "rebuild_" + tenant, CreatedAt: time.Now().UTC().Truncate(time.Second)}}
	if err := st.drop(ctx); err != nil {
		return nil, err
	}
	if err := st.create(ctx); err != nil {
		return nil, err
	}
	var err error
	st.rb, err = SetRebuildState(ctx, conn, st.rb, RebuildStaging)
	return st, err
}

// create creates the staging table.
func (st *Stager) create(ctx context.Context) error {
	table := chutil.QuoteIdent(st.db) + "." + chutil.QuoteIdent(st.rb.Staging)
	if st.cluster == nil {
		if err := st.conn.Exec(ctx, "CREATE TABLE "+table+" AS "+chutil.QuoteIdent(st.db)+".events"); err != nil {
			return fmt.Errorf("creating the staging table %s: %w", st.rb.Staging, err)
		}
		return nil
	}
	// On each node, not ON CLUSTER: a node that does not answer fails the rebuild at its start. The
	// replication path names the rebuild, so nothing an earlier rebuild left in Keeper is in the way.
	local := chutil.QuoteIdent(st.db) + "." + chutil.QuoteIdent(st.rb.Staging+"_local")
	zkPath := "/clickhouse/tables/{shard}/" + st.db + "/rebuild_" + strings.ReplaceAll(st.rb.ID, "-", "")
	ddl := []string{
		"CREATE TABLE " + local + " AS " + chutil.QuoteIdent(st.db) + ".events_local ENGINE = ReplicatedMergeTree(" + quoteString(zkPath) +
			", '{replica}') PARTITION BY toYYYYMM(occurred_at) ORDER BY (tenant_id, type, occurred_at, event_id)",
		"CREATE TABLE " + table + " AS " + local + " ENGINE = Distributed(" + chutil.QuoteIdent(st.cluster.Name) + ", " +
			chutil.QuoteIdent(st.db) + ", " + chutil.QuoteIdent(st.rb.Staging+"_local") + ", cityHash64(tenant_id))",
	}
	return st.cluster.EachNode(ctx, func(ctx context.Context, _ chutil.Node, conn driver.Conn) error {
		for _, q := range ddl {
			if err := conn.Exec(ctx, q); err != nil {
				return fmt.Errorf("creating the staging table %s: %w", st.rb.Staging, err)
			}
		}
		return nil
	})
}

// drop drops the staging table, if it exists.
func (st *Stager) drop(ctx context.Context) error {
	tables := []string{st.rb.Staging}
	if st.cluster != nil {
		tables = append(tables, st.rb.Staging+"_local")
	}
	drop := func(ctx context.Context, conn driver.Conn) error {
		for _, t := range tables {
			if err := conn.Exec(ctx, "DROP TABLE IF EXISTS "+chutil.QuoteIdent(st.db)+"."+chutil.QuoteIdent(t)); err != nil {
				return fmt.Errorf("dropping the staging table %s: %w", t, err)
			}
		}
		return nil
	}
	if st.cluster == nil {
		return drop(ctx, st.conn)
	}
	return st.cluster.EachNode(ctx, func(ctx context.Context, _ chutil.Node, conn driver.Conn) error { return drop(ctx, conn) })
}

// quoteString quotes s as a ClickHouse string literal.
func quoteString(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, "'", `\'`).Replace(s) + "'"
}

// Table is the staging table's name.
func (st *Stager) Table() string { return st.rb.Staging }

// Add stages the district's facts among recs, records of topic of one partition in offset order.
func (st *Stager) Add(ctx context.Context, topic string, recs []*kgo.Record) error {
	ctx = clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{"insert_distributed_sync": 1}))
	batch, err := st.conn.PrepareBatch(ctx, "INSERT INTO "+chutil.QuoteIdent(st.rb.Staging)+" ("+eventColumns+")")
	if err != nil {
		return fmt.Errorf("preparing the staging insert: %w", err)
	}
	n := 0
	for _, rec := range recs {
		row, reason, err := rowOf(st.codec, topic, rec)
		switch {
		case errors.Is(err, errRetry):
			return errors.Join(err, batch.Abort())
		case reason == erasure && row.TenantID == st.rb.TenantID:
			st.erased = append(st.erased, row)
		case reason != "":
			st.Skipped[reason]++
		case row.TenantID != st.rb.TenantID:
			st.Skipped["other_district"]++
		default:
			if err := batch.AppendStruct(&row); err != nil {
				return errors.Join(fmt.Errorf("staging event %s: %w", row.EventID, err), batch.Abort())
			}
			st.Staged[row.Type]++
			n++
		}
	}
	if n == 0 {
		return batch.Abort()
	}
	if err := batch.Send(); err != nil {
		return fmt.Errorf("staging %d rows: %w", n, err)
	}
	return nil
}

// Ready applies the erasures met to the staged rows (a student's rows of the partition before the marker
// go) and records the rebuild as ready: the aggregator swaps at each marker from then on. In the cluster
// layout every replica of the staging table holds every staged row first.
func (st *Stager) Ready(ctx context.Context) error {
	table := st.rb.Staging
	if st.cluster != nil {
		table += "_local"
	}
	for _, m := range st.erased {
		q := "ALTER TABLE " + chutil.QuoteIdent(st.db) + "." + chutil.QuoteIdent(table) +
			" DELETE WHERE kafka_topic = ? AND kafka_partition = ? AND student_id = toUUID(?) AND kafka_offset < ?"
		args := []any{m.KafkaTopic, m.KafkaPartition, m.StudentID.String(), m.KafkaOffset}
		var err error
		if st.cluster != nil {
			err = st.cluster.OnEachShard(ctx, q, args...)
		} else {
			err = st.conn.Exec(ctx, q, args...)
		}
		if err != nil {
			return fmt.Errorf("erasing a student from the staged rows: %w", err)
		}
	}
	if err := st.settle(ctx, table, len(st.erased) > 0); err != nil {
		return err
	}
	var err error
	st.rb, err = SetRebuildState(ctx, st.conn, st.rb, RebuildReady)
	return err
}

// settle waits for the mutations of a staging table, if any, and in the cluster layout until every
// replica holds every staged row.
func (st *Stager) settle(ctx context.Context, table string, mutated bool) error {
	if st.cluster == nil {
		if !mutated {
			return nil
		}
		return chutil.WaitMutations(ctx, st.conn, st.db, table)
	}
	if mutated {
		if err := st.cluster.WaitMutations(ctx, table); err != nil {
			return err
		}
	}
	return st.cluster.SyncReplicas(ctx, table)
}

// Finish records the rebuild as done (or abandoned, when it did not swap) and drops the staging table.
func (st *Stager) Finish(ctx context.Context, swapped bool) error {
	state := RebuildDone
	if !swapped {
		state = RebuildAbandoned
	}
	var err error
	if st.rb, err = SetRebuildState(ctx, st.conn, st.rb, state); err != nil {
		return err
	}
	return st.drop(ctx)
}

// StoredOffsets reads, per partition of topic, the offset after the highest one the aggregator stored.
func StoredOffsets(ctx context.Context, conn driver.Conn, topic string) (map[int32]int64, error) {
	return (&Store{conn: conn}).stored(ctx, topic)
}

// Checksum sums a district's rows of a table like events: how many, and a sum of a hash of each row's
// identity and facts (order-independent; a row twice counts twice).
type Checksum struct {
	Rows uint64 `json:"rows"`
	Sum  uint64 `json:"sum"`
}

// ChecksumOf sums tenant's rows of topic in table (events or a staging table) below the offset given
// for each partition.
func ChecksumOf(ctx context.Context, conn driver.Conn, table, tenant, topic string, below map[int32]int64) (Checksum, error) {
	if len(below) == 0 {
		return Checksum{}, nil
	}
	cond := ""
	args := []any{tenant, topic}
	for p, off := range below {
		if cond != "" {
			cond += " OR "
		}
		cond += "(kafka_partition = ? AND kafka_offset < ?)"
		args = append(args, uint32(p), uint64(max(off, 0)))
	}
	var c Checksum
	// Every argument of the hash is not Nullable: a NULL one would make the row's hash NULL, which sum
	// passes over (score is NULL on every row but an assessment's).
	err := conn.QueryRow(ctx, `SELECT count(), sum(cityHash64(toString(event_id), kafka_offset, toString(student_id), type, occurred_at,
		isNull(score), ifNull(score, 0), duration_seconds, attendance_status, school_id, class_id)) FROM `+chutil.QuoteIdent(table)+
		` WHERE tenant_id = ? AND kafka_topic = ? AND (`+cond+`)`, args...).Scan(&c.Rows, &c.Sum)
	if err != nil {
		return Checksum{}, fmt.Errorf("summing the district's rows of %s: %w", table, err)
	}
	return c, nil
}
