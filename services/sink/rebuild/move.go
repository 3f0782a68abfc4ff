package rebuild

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/edtech-analytics/platform/libs/kafkax"
	"github.com/edtech-analytics/platform/libs/records"
	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/edtech-analytics/platform/libs/tenancy/fleet"
	"github.com/edtech-analytics/platform/libs/tenancy/ingest"
	"github.com/edtech-analytics/platform/libs/tenancy/tenants"
	"github.com/edtech-analytics/platform/services/sink/internal/pgstore"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"
)

// Named points of a move, in order (MovePoints).
const (
	MovePointCopied       = "copied"        // the copy stands at the source's snapshot
	MovePointReplayed     = "replayed"      // the copy is within SwitchLag of the live sink
	MovePointSourceLocked = "source-locked" // holding the district's lock on the source, not yet on the target
	MovePointLocked       = "locked"        // holding the district's lock on both instances, nothing applied yet
	MovePointCompared     = "compared"      // caught up and compared, under the locks
	MovePointRenamed      = "renamed"       // both schemas renamed in their transactions, nothing committed
	MovePointPlaced       = "placed"        // the placement committed, the target's and source's transactions not
	MovePointCommitted    = "committed"     // the target's transaction committed, the source's not
)

// MovePoints are the named points of a move, in order.
var MovePoints = []string{MovePointCopied, MovePointReplayed, MovePointSourceLocked, MovePointLocked, MovePointCompared,
	MovePointRenamed, MovePointPlaced, MovePointCommitted}

var (
	// ErrMoveRefused: the district cannot be moved as things are (the message says why and what to do).
	ErrMoveRefused = errors.New("move refused")
	// ErrMoveDiffers: the copy does not equal the source under the lock; nothing was switched.
	ErrMoveDiffers = errors.New("the copy differs from the source")
	// ErrNothingMoved: no old copy of the district is kept (DropMoved).
	ErrNothingMoved = errors.New("no old copy of the district is kept")
)

// Phases of a move (Progress.Phase), besides the rebuild's replay, catch-up, verify and compare.
const (
	PhaseCopy   = "copy"
	PhaseSwitch = "switch"
)

// MoveConfig says what to move where, and how.
type MoveConfig struct {
	TenantID string
	// To is the instance the district moves to (control.instances).
	To string
	// Group is the live sink's consumer group (its stored offsets are what the copy catches up to).
	Group string
	// Kafka names the enriched topic.
	Kafka kafkax.Config
	// BatchRecords and SwitchLag are as the rebuild's (DefaultBatchRecords, DefaultSwitchLag).
	BatchRecords int
	SwitchLag    int64
	Progress     func(Progress)
	Log          *slog.Logger
	// Keys open the identifying fields the enricher sealed, as the sink's do.
	Keys pgstore.Keys
}

// MoveReport is what a move did.
type MoveReport struct {
	ID       string `json:"id"` // the move's start time, UTC, to the second
	TenantID string `json:"tenant_id"`
	From     string `json:"from"`
	To       string `json:"to"`
	// Recovered says what was left of an interrupted move and what was done with it: "finished" (the
	// placement had switched; the source schema was renamed now), "rolled back" (the placement had
	// switched but the target's schema had not committed: the placement went back, and the move ran
	// again), or empty.
	Recovered  string  `json:"recovered,omitempty"`
	Partitions []int32 `json:"partitions,omitempty"`
	// Copied counts the rows copied per table from the source's snapshot.
	Copied       map[string]int64  `json:"copied,omitempty"`
	Scanned      int64             `json:"scanned"`
	Applied      int64             `json:"applied"` // the district's records applied to the copy after the snapshot
	Offsets      []MoveOffset      `json:"offsets,omitempty"`
	Verification Verification      `json:"verification"`
	Tables       []TableComparison `json:"tables,omitempty"` // live = the source, shadow = the copy
	Moved        bool              `json:"moved"`
	OldSchema    string            `json:"old_schema,omitempty"` // the kept copy, on From
	// Paused is how long the district's exclusive lock on the source was held: the sink's writes of the
	// district waited at most that long.
	Paused  time.Duration `json:"paused"`
	Elapsed time.Duration `json:"elapsed"`
}

// MoveOffset is where one partition stood at the switch.
type MoveOffset struct {
	Partition int32 `json:"partition"`
	Source    int64 `json:"source"` // the source's stored offset: the copy held the district's records below it
	Target    int64 `json:"target"` // the target's stored offset at the switch
	Floor     int64 `json:"floor"`  // the district's floor on the target: the higher of the two
}

// moveRow is a district's last move (control.district_moves).
type moveRow struct {
	from, to   string
	switchedAt *time.Time
	droppedAt  *time.Time
}

func readMove(ctx context.Context, q querier, tenantID string) (*moveRow, error) {
	m := &moveRow{}
	err := q.QueryRow(ctx, `SELECT from_instance, to_instance, switched_at, dropped_at FROM control.district_moves
		WHERE tenant_id = $1`, tenantID).Scan(&m.from, &m.to, &m.switchedAt, &m.droppedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the last move of district %s: %w", tenantID, err)
	}
	return m, nil
}

// mover is one move in progress.
type mover struct {
	cfg       MoveConfig
	opts      options
	fleet     *fleet.Fleet
	control   *pgxpool.Pool
	tenant    tenants.Tenant
	schema    string // district_<id>
	moving    string // moving_<id>, on the target
	moved     string // moved_<id>, on the source after the switch
	from, to  string
	src, dst  *pgxpool.Pool
	report    MoveReport
	start     time.Time
	jobLocks  []*pgxpool.Conn
	lockedIns map[string]bool
}

// Move moves cfg.TenantID to cfg.To: it copies the district's schema to the other PostgreSQL instance
// while the sink keeps writing it, catches the copy up from the enriched topic, and switches the
// district's placement under its exclusive lock on both instances (ADR 0028). The old schema is kept on
// the instance the district left, as moved_<id>, until DropMoved.
//
// Steps, each safe to be killed at (a rerun of Move resumes or restarts, see recoverMove):
//
//  1. copy: the district's tables, from one snapshot of the source (a REPEATABLE READ transaction that
//     also reads the source's stored offsets, so the copy stands exactly at them), streamed with COPY
//     into moving_<id> on the target, built from the district template;
//  2. replay: the district's records from those offsets up to the live sink's, as a rebuild's replay;
//  3. switch, holding the district's exclusive lock on the source (the sink's writes of the district
//     wait) and on the target: the last records up to the source's offsets; the tables that are not the
//     sink's copied again; every table compared (rows and checksum) between the source and the copy;
//     the records of the district between the source's offset and the target's, where the target's is
//     ahead, applied too (the target's sink would skip them); the district's offset floors written on
//     the target (where the target's offset is behind, the records below the floor are in the copy);
//     moving_<id> renamed district_<id> on the target and district_<id> moved_<id> on the source. The
//     placement commits on the control instance first, then the target, then the source.
//
// reader is as Run's. A rerun after an interruption recovers first (MoveReport.Recovered); a district
// already on cfg.To with its move finished is left as it is (Moved false, no error).
func Move(ctx context.Context, instances *fleet.Fleet, codec *records.Codec, reader *kgo.Client, cfg MoveConfig, opts ...Option) (MoveReport, error) {
	if cfg.Group == "" || cfg.To == "" {
		return MoveReport{}, errors.New("move: the live sink's group and the target instance are required")
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	m := &mover{cfg: cfg, fleet: instances, control: instances.Control(), start: time.Now(), lockedIns: map[string]bool{}}
	for _, o := range opts {
		o(&m.opts)
	}
	defer m.unlock(ctx)
	m.report = MoveReport{ID: m.start.UTC().Format("20060102T150405Z"), TenantID: cfg.TenantID}
	var err error
	if m.tenant, err = tenants.New(instances).Tenant(ctx, cfg.TenantID); err != nil {
		return m.report, err
	}
	if m.tenant.DeletedAt != nil {
		return m.report, fmt.Errorf("tenant %s is deleted: %w", m.tenant.ID, tenancy.ErrNotFound)
	}
	if m.to, err = instances.Resolve(ctx, cfg.To); err != nil {
		return m.report, err
	}
	m.schema, _ = tenancy.SchemaName(m.tenant.ID)
	m.moving, _ = tenancy.MovingSchemaName(m.tenant.ID)
	m.moved, _ = tenancy.MovedSchemaName(m.tenant.ID)
	m.report.To = m.to

	last, err := readMove(ctx, m.control, m.tenant.ID)
	if err != nil {
		return m.report, err
	}
	if last != nil {
		if err := m.lock(ctx, last.from, last.to); err != nil {
			return m.report, err
		}
		if last, err = m.recoverMove(ctx, last); err != nil {
			return m.report, err
		}
		if last.switchedAt == nil && last.to != m.to {
			// An interrupted move elsewhere: its copy is of no use to this one.
			if err := m.dropLeftover(ctx, last.to); err != nil {
				return m.report, err
			}
		}
	}
	if m.from, err = instances.Placement(ctx, m.tenant.ID); err != nil {
		return m.report, err
	}
	m.report.From = m.from
	if m.from == m.to {
		if last != nil && last.to == m.to && last.switchedAt != nil {
			m.report.OldSchema = m.moved
			m.report.From = last.from
			return m.report, nil // moved before (or just now finished)
		}
		return m.report, fmt.Errorf("%w: district %s is on instance %s already", ErrMoveRefused, m.tenant.ID, m.to)
	}
	if last != nil && last.switchedAt != nil && last.droppedAt == nil {
		return m.report, fmt.Errorf("%w: the copy district %s left on instance %s in its last move is still kept as %s; drop it first (ctl tenant move --drop-old --id %s)",
			ErrMoveRefused, m.tenant.ID, last.from, m.moved, m.tenant.ID)
	}
	if err := m.lock(ctx, m.from, m.to); err != nil {
		return m.report, err
	}
	if m.src, err = instances.Pool(ctx, m.from); err != nil {
		return m.report, err
	}
	if m.dst, err = instances.Pool(ctx, m.to); err != nil {
		return m.report, err
	}
	if err := m.preconditions(ctx); err != nil {
		return m.report, err
	}
	if _, err := m.control.Exec(ctx, `INSERT INTO control.district_moves (tenant_id, from_instance, to_instance)
		VALUES ($1, $2, $3) ON CONFLICT (tenant_id) DO UPDATE SET from_instance = EXCLUDED.from_instance,
		to_instance = EXCLUDED.to_instance, started_at = now(), switched_at = NULL, dropped_at = NULL`,
		m.tenant.ID, m.from, m.to); err != nil {
		return m.report, fmt.Errorf("recording the move of district %s: %w", m.tenant.ID, err)
	}
	if err := tenancy.UpgradeDistrictSchema(ctx, m.src, m.tenant.ID); err != nil {
		return m.report, err
	}
	r, err := m.newRun(ctx, codec, reader)
	if err != nil {
		return m.report, err
	}
	if err := m.copyState(ctx, r); err != nil {
		return m.report, err
	}
	m.hook(MovePointCopied)
	if err := r.replay(ctx); err != nil {
		return m.report, err
	}
	m.report.Scanned, m.report.Applied = r.report.Scanned, r.report.Applied
	m.hook(MovePointReplayed)
	if err := m.switchOver(ctx, r); err != nil {
		return m.report, err
	}
	m.report.Elapsed = time.Since(m.start)
	r.progress(PhaseDone, true)
	return m.report, nil
}

// DropMoved drops the old copy the district's last move kept (moved_<id> on the instance it left) and
// returns where it was. Nothing kept: ErrNothingMoved.
func DropMoved(ctx context.Context, instances *fleet.Fleet, tenantID string) (MoveReport, error) {
	report := MoveReport{TenantID: tenantID}
	moved, err := tenancy.MovedSchemaName(tenantID)
	if err != nil {
		return report, err
	}
	last, err := readMove(ctx, instances.Control(), tenantID)
	if err != nil {
		return report, err
	}
	if last == nil || last.switchedAt == nil || last.droppedAt != nil {
		return report, fmt.Errorf("district %s: %w", tenantID, ErrNothingMoved)
	}
	report.From, report.To, report.OldSchema = last.from, last.to, moved
	m := &mover{cfg: MoveConfig{Log: slog.New(slog.DiscardHandler)}, fleet: instances, control: instances.Control(),
		tenant: tenants.Tenant{ID: tenantID}, lockedIns: map[string]bool{}}
	defer m.unlock(ctx)
	if err := m.lock(ctx, last.from, last.to); err != nil {
		return report, err
	}
	// An interrupted move is finished first: its source schema may not have been renamed yet.
	m.schema, _ = tenancy.SchemaName(tenantID)
	m.moved = moved
	if last, err = m.recoverMove(ctx, last); err != nil {
		return report, err
	}
	if last.switchedAt == nil {
		return report, fmt.Errorf("district %s: %w", tenantID, ErrNothingMoved)
	}
	pool, err := instances.Pool(ctx, last.from)
	if err != nil {
		return report, err
	}
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", tenancy.DistrictLockKey(tenantID)); err != nil {
			return fmt.Errorf("locking district %s: %w", tenantID, err)
		}
		_, err := tx.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{moved}.Sanitize()+" CASCADE")
		return err
	})
	if err != nil {
		return report, fmt.Errorf("dropping %s on instance %s: %w", moved, last.from, err)
	}
	if _, err := instances.Control().Exec(ctx, "UPDATE control.district_moves SET dropped_at = now() WHERE tenant_id = $1", tenantID); err != nil {
		return report, fmt.Errorf("recording the drop: %w", err)
	}
	return report, nil
}

// dropLeftover drops the copy an interrupted move left on instance (moving_<id>).
func (m *mover) dropLeftover(ctx context.Context, instance string) error {
	pool, err := m.fleet.Pool(ctx, instance)
	if err != nil {
		return err
	}
	if _, err := pool.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{m.moving}.Sanitize()+" CASCADE"); err != nil {
		return fmt.Errorf("dropping leftover schema %s on instance %s: %w", m.moving, instance, err)
	}
	return nil
}

// lock takes the session lock that one rebuild, rollback, drop or move of the district holds, on each
// named instance not locked yet (ErrBusy when taken): a rebuild locks the district's instance, so a move
// locks both ends.
func (m *mover) lock(ctx context.Context, names ...string) error {
	for _, name := range names {
		if m.lockedIns[name] {
			continue
		}
		pool, err := m.fleet.Pool(ctx, name)
		if err != nil {
			return err
		}
		conn, err := pool.Acquire(ctx)
		if err != nil {
			return fmt.Errorf("acquiring connection: %w", err)
		}
		var ok bool
		if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", jobLockKey(m.tenant.ID)).Scan(&ok); err != nil || !ok {
			conn.Release()
			if err != nil {
				return fmt.Errorf("locking the move of district %s: %w", m.tenant.ID, err)
			}
			return fmt.Errorf("district %s: %w", m.tenant.ID, ErrBusy)
		}
		m.jobLocks = append(m.jobLocks, conn)
		m.lockedIns[name] = true
	}
	return nil
}

func (m *mover) unlock(ctx context.Context) {
	for _, conn := range m.jobLocks {
		if _, err := conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", jobLockKey(m.tenant.ID)); err != nil {
			_ = conn.Conn().Close(context.WithoutCancel(ctx)) // the session ends either way, and its lock with it
		}
		conn.Release()
	}
	m.jobLocks = nil
}

func (m *mover) hook(point string) {
	if m.opts.hook != nil {
		m.opts.hook(point)
	}
}

// recoverMove finishes or undoes what an interrupted move left, and returns the move's row as it then
// stands. The placement commits before the target's transaction, and that before the source's:
//   - not switched: the placement never changed, and the source is live; a leftover moving_<id> on the
//     target is dropped by the next copy;
//   - switched, but the target has no district_<id>: its transaction did not commit. The placement goes
//     back to the source, whose schema no sink wrote meanwhile (they re-check the placement under the
//     district's lock, and the target has no schema to write);
//   - switched, and the source still has district_<id>: the source's transaction did not commit. It is
//     renamed moved_<id> now, under the district's lock.
func (m *mover) recoverMove(ctx context.Context, last *moveRow) (*moveRow, error) {
	if last.switchedAt == nil || last.droppedAt != nil {
		return last, nil
	}
	src, err := m.fleet.Pool(ctx, last.from)
	if err != nil {
		return nil, err
	}
	dst, err := m.fleet.Pool(ctx, last.to)
	if err != nil {
		return nil, err
	}
	atTarget, err := schemaExists(ctx, dst, m.schema)
	if err != nil {
		return nil, err
	}
	if !atTarget {
		err := pgx.BeginFunc(ctx, m.control, func(tx pgx.Tx) error {
			if err := fleet.Move(ctx, tx, m.tenant.ID, last.from); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "UPDATE control.district_moves SET switched_at = NULL WHERE tenant_id = $1", m.tenant.ID)
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("rolling back the placement of district %s: %w", m.tenant.ID, err)
		}
		m.report.Recovered = "rolled back"
		m.cfg.Log.Warn("rolled back an interrupted move", "tenant_id", m.tenant.ID, "from", last.from, "to", last.to)
		last.switchedAt = nil
		return last, nil
	}
	err = pgx.BeginFunc(ctx, src, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", tenancy.DistrictLockKey(m.tenant.ID)); err != nil {
			return fmt.Errorf("locking district %s: %w", m.tenant.ID, err)
		}
		live, err := schemaExists(ctx, tx, m.schema)
		if err != nil || !live {
			return err
		}
		if _, err := tx.Exec(ctx, "ALTER SCHEMA "+pgx.Identifier{m.schema}.Sanitize()+" RENAME TO "+pgx.Identifier{m.moved}.Sanitize()); err != nil {
			return fmt.Errorf("renaming %s on instance %s: %w", m.schema, last.from, err)
		}
		m.report.Recovered = "finished"
		return nil
	})
	if err != nil {
		return nil, err
	}
	if m.report.Recovered != "" {
		m.cfg.Log.Warn("finished an interrupted move", "tenant_id", m.tenant.ID, "from", last.from, "to", last.to)
	}
	return last, nil
}

func schemaExists(ctx context.Context, q querier, name string) (bool, error) {
	var ok bool
	if err := q.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)", name).Scan(&ok); err != nil {
		return false, fmt.Errorf("looking for schema %s: %w", name, err)
	}
	return ok, nil
}

// preconditions refuses a move the instances are not ready for.
func (m *mover) preconditions(ctx context.Context) error {
	retired, _ := tenancy.RetiredSchemaName(m.tenant.ID)
	for _, c := range []struct {
		pool   *pgxpool.Pool
		in     string
		schema string
		want   bool
		why    string
	}{
		{m.src, m.from, m.schema, true, "the district's schema is missing on its instance"},
		{m.src, m.from, retired, false, "the tables an earlier rebuild replaced are kept there; roll back or drop them first (ctl rebuild --drop-old)"},
		{m.src, m.from, m.moved, false, "an old copy of an earlier move is kept there; drop it first"},
		{m.dst, m.to, m.schema, false, "the target instance already has a schema of the district"},
	} {
		ok, err := schemaExists(ctx, c.pool, c.schema)
		if err != nil {
			return err
		}
		if ok != c.want {
			return fmt.Errorf("%w: district %s, %s on instance %s: %s", ErrMoveRefused, m.tenant.ID, c.schema, c.in, c.why)
		}
	}
	return nil
}

func (m *mover) newRun(ctx context.Context, codec *records.Codec, reader *kgo.Client) (*run, error) {
	applier, err := pgstore.NewApplier()
	if err != nil {
		return nil, err
	}
	rcfg := Config{TenantID: m.tenant.ID, Group: m.cfg.Group, Kafka: m.cfg.Kafka, BatchRecords: m.cfg.BatchRecords,
		SwitchLag: m.cfg.SwitchLag, Progress: m.cfg.Progress, Log: m.cfg.Log, Keys: m.cfg.Keys}
	if err := rcfg.defaults(); err != nil {
		return nil, err
	}
	topic := m.cfg.Kafka.Topics().Enriched
	r := &run{cfg: rcfg, opts: m.opts, pool: m.dst, live: m.src, tenant: m.tenant.ID, topic: topic, codec: codec,
		applier: applier, cl: reader, start: m.start, schema: m.schema, shadow: m.moving, target: m.moving,
		seen: map[string]int64{}, outcomes: map[string]*TypeCount{}}
	r.key = []byte(m.tenant.ID)
	r.prefix = []byte(m.tenant.ID + "/")
	hot, err := hotShards(ctx, ingest.New(m.control), m.tenant.ID)
	if err != nil {
		return nil, err
	}
	parts, starts, err := partitions(ctx, reader, topic, m.tenant.ID, hot > 0)
	if err != nil {
		return nil, err
	}
	m.report.Partitions = parts
	r.parts = map[int32]*part{}
	for _, p := range parts {
		r.parts[p] = &part{start: starts[p], next: starts[p], fetched: starts[p]}
	}
	return r, nil
}

// copyState builds moving_<id> on the target from the district template and copies every table of the
// source's district schema into it from one snapshot, with the source's stored offsets of that snapshot
// as the copy's replay offsets; then starts consuming from there.
func (m *mover) copyState(ctx context.Context, r *run) error {
	r.progress(PhaseCopy, true)
	if err := m.dropLeftover(ctx, m.to); err != nil {
		return err
	}
	if err := tenancy.ApplyDistrictTemplate(ctx, m.dst, m.moving); err != nil {
		return fmt.Errorf("building %s on instance %s: %w", m.moving, m.to, err)
	}
	if _, err := m.dst.Exec(ctx, "CREATE TABLE "+r.replayOffsets()+" (partition int PRIMARY KEY, next_offset bigint NOT NULL)"); err != nil {
		return fmt.Errorf("creating replay offsets: %w", err)
	}
	srcConn, dstConn, err := m.acquireBoth(ctx)
	if err != nil {
		return err
	}
	defer srcConn.Release()
	defer dstConn.Release()
	from := map[int32]int64{}
	m.report.Copied = map[string]int64{}
	err = pgx.BeginTxFunc(ctx, srcConn, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		// The snapshot is taken by the first statement: the offsets and the tables are read in it.
		stored, err := appliedOffsets(ctx, tx, m.cfg.Group, r.topic, m.tenant.ID, slices.Collect(maps.Keys(r.parts)))
		if err != nil {
			return err
		}
		for p, st := range r.parts {
			from[p] = max(stored[p], st.next) // the sink may not have reached where the topic starts
		}
		tables, err := tableColumns(ctx, tx, m.schema)
		if err != nil {
			return err
		}
		order, err := referencedFirst(ctx, tx, m.schema, tables)
		if err != nil {
			return err
		}
		for _, t := range order {
			n, err := copyTable(ctx, tx.Conn().PgConn(), dstConn.Conn().PgConn(), m.schema, m.moving, t, tables[t])
			if err != nil {
				return err
			}
			m.report.Copied[t] = n
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("copying district %s to instance %s: %w", m.tenant.ID, m.to, err)
	}
	b := &pgx.Batch{}
	for p, next := range from {
		b.Queue("INSERT INTO "+r.replayOffsets()+" VALUES ($1, $2)", p, next)
	}
	if err := m.dst.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("recording replay offsets: %w", err)
	}
	if r.baseEvents, err = r.events(ctx, m.dst, m.moving); err != nil {
		return err
	}
	r.consume(slices.Sorted(maps.Keys(from)), from)
	return nil
}

// tableColumns lists the tables of schema (but goose's version table, which the template fills) with
// their columns in order.
func tableColumns(ctx context.Context, q querier, schema string) (map[string][]string, error) {
	rows, err := q.Query(ctx, `SELECT c.relname::text, a.attname::text FROM pg_class c
		JOIN pg_namespace n ON n.oid = c.relnamespace
		JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
		WHERE n.nspname = $1 AND c.relkind = 'r' AND c.relname <> 'goose_db_version'
		ORDER BY c.relname, a.attnum`, schema)
	if err != nil {
		return nil, fmt.Errorf("listing the tables of %s: %w", schema, err)
	}
	out := map[string][]string{}
	var table, column string
	if _, err := pgx.ForEachRow(rows, []any{&table, &column}, func() error {
		out[table] = append(out[table], column)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("listing the tables of %s: %w", schema, err)
	}
	return out, nil
}

// referencedFirst orders tables so that each comes after the tables its foreign keys reference (among
// tables), the order their rows can be copied in.
func referencedFirst(ctx context.Context, q querier, schema string, tables map[string][]string) ([]string, error) {
	rows, err := q.Query(ctx, `SELECT c.relname::text, r.relname::text FROM pg_constraint k
		JOIN pg_class c ON c.oid = k.conrelid JOIN pg_class r ON r.oid = k.confrelid
		JOIN pg_namespace n ON n.oid = k.connamespace
		WHERE k.contype = 'f' AND n.nspname = $1 AND k.conrelid <> k.confrelid`, schema)
	if err != nil {
		return nil, fmt.Errorf("reading the foreign keys of %s: %w", schema, err)
	}
	refs := map[string][]string{}
	var table, ref string
	if _, err := pgx.ForEachRow(rows, []any{&table, &ref}, func() error {
		refs[table] = append(refs[table], ref)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("reading the foreign keys of %s: %w", schema, err)
	}
	var order []string
	state := map[string]int{} // 1: being visited, 2: placed
	var visit func(string) error
	visit = func(t string) error {
		switch state[t] {
		case 1:
			return fmt.Errorf("the foreign keys of %s form a cycle through %s", schema, t)
		case 2:
			return nil
		}
		state[t] = 1
		for _, r := range refs[t] {
			if _, ok := tables[r]; ok {
				if err := visit(r); err != nil {
					return err
				}
			}
		}
		state[t] = 2
		order = append(order, t)
		return nil
	}
	for _, t := range slices.Sorted(maps.Keys(tables)) {
		if err := visit(t); err != nil {
			return nil, err
		}
	}
	return order, nil
}

// copyTable streams a table from one server to the other with COPY in binary form (the two tables have
// the same columns and types: both come from the district template), and returns the rows copied.
func copyTable(ctx context.Context, from, to *pgconn.PgConn, fromSchema, toSchema, table string, columns []string) (int64, error) {
	cols := make([]string, len(columns))
	for i, c := range columns {
		cols[i] = pgx.Identifier{c}.Sanitize()
	}
	list := strings.Join(cols, ", ")
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		_, err := from.CopyTo(ctx, pw, "COPY (SELECT "+list+" FROM "+pgx.Identifier{fromSchema, table}.Sanitize()+") TO STDOUT (FORMAT binary)")
		pw.CloseWithError(err) // nil: the reader sees EOF
		done <- err
	}()
	tag, err := to.CopyFrom(ctx, pr, "COPY "+pgx.Identifier{toSchema, table}.Sanitize()+" ("+list+") FROM STDIN (FORMAT binary)")
	pr.CloseWithError(errors.New("copy ended")) // unblocks the writer if the copy in stopped early
	if werr := <-done; werr != nil && err == nil {
		err = werr
	}
	if err != nil {
		return 0, fmt.Errorf("copying %s: %w", table, err)
	}
	return tag.RowsAffected(), nil
}

// acquireBoth takes a connection from the source's pool and one from the target's; the caller releases
// both.
func (m *mover) acquireBoth(ctx context.Context) (src, dst *pgxpool.Conn, err error) {
	if src, err = m.src.Acquire(ctx); err != nil {
		return nil, nil, fmt.Errorf("acquiring connection on instance %s: %w", m.from, err)
	}
	if dst, err = m.dst.Acquire(ctx); err != nil {
		src.Release()
		return nil, nil, fmt.Errorf("acquiring connection on instance %s: %w", m.to, err)
	}
	return src, dst, nil
}

// switchOver finishes the move under the district's exclusive lock on both instances (see Move).
func (m *mover) switchOver(ctx context.Context, r *run) error {
	srcConn, dstConn, err := m.acquireBoth(ctx)
	if err != nil {
		return err
	}
	defer srcConn.Release()
	defer dstConn.Release()
	s, err := srcConn.Begin(ctx)
	if err != nil {
		return fmt.Errorf("beginning on instance %s: %w", m.from, err)
	}
	defer func() { _ = s.Rollback(context.WithoutCancel(ctx)) }() // after Commit: a no-op
	t, err := dstConn.Begin(ctx)
	if err != nil {
		return fmt.Errorf("beginning on instance %s: %w", m.to, err)
	}
	defer func() { _ = t.Rollback(context.WithoutCancel(ctx)) }()
	// Checksums hash the rows' text: both sessions render values alike.
	for _, tx := range []pgx.Tx{s, t} {
		if _, err := tx.Exec(ctx, "SET LOCAL TimeZone = 'UTC'; SET LOCAL extra_float_digits = 1; SET LOCAL DateStyle = 'ISO, MDY'; SET LOCAL IntervalStyle = 'postgres'"); err != nil {
			return fmt.Errorf("setting the session: %w", err)
		}
	}
	r.progress(PhaseCatchUp, true)
	key := tenancy.DistrictLockKey(m.tenant.ID)
	if _, err := s.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", key); err != nil {
		return fmt.Errorf("locking district %s on instance %s: %w", m.tenant.ID, m.from, err)
	}
	locked := time.Now()
	m.hook(MovePointSourceLocked)
	if _, err := t.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", key); err != nil {
		return fmt.Errorf("locking district %s on instance %s: %w", m.tenant.ID, m.to, err)
	}
	m.hook(MovePointLocked)
	// Under the source's lock its stored offsets mark exactly what it holds of the district.
	if err := r.readCaps(ctx, s); err != nil {
		return err
	}
	source := maps.Clone(r.caps)
	if err := r.applyToCaps(ctx, t); err != nil {
		return err
	}
	if err := m.recopyOthers(ctx, s, t); err != nil {
		return err
	}
	r.progress(PhaseCompare, true)
	if err := m.compare(ctx, s, t); err != nil {
		return err
	}
	m.hook(MovePointCompared)
	// Where the target's offset is ahead of the source's, its sink would skip the district's records
	// between the two: the copy takes them now. Where it is behind, the floor skips those the copy holds.
	target, err := appliedOffsets(ctx, t, m.cfg.Group, r.topic, m.tenant.ID, slices.Collect(maps.Keys(r.parts)))
	if err != nil {
		return err
	}
	for p := range r.parts {
		r.caps[p] = max(source[p], target[p])
	}
	r.resume()
	if err := r.applyToCaps(ctx, t); err != nil {
		return err
	}
	r.progress(PhaseVerify, true)
	if err := r.verify(ctx, t); err != nil {
		return err
	}
	m.report.Verification = r.report.Verification
	m.report.Scanned, m.report.Applied = r.report.Scanned, r.report.Applied
	r.progress(PhaseSwitch, true)
	b := &pgx.Batch{}
	for _, p := range slices.Sorted(maps.Keys(r.parts)) {
		o := MoveOffset{Partition: p, Source: source[p], Target: target[p], Floor: r.caps[p]}
		m.report.Offsets = append(m.report.Offsets, o)
		b.Queue(`INSERT INTO control.district_offsets (consumer, tenant_id, topic, partition, next_offset)
			VALUES ($1, $2, $3, $4, $5) ON CONFLICT (consumer, topic, partition, tenant_id) DO UPDATE
			SET next_offset = EXCLUDED.next_offset`, m.cfg.Group, m.tenant.ID, r.topic, p, o.Floor)
	}
	b.Queue("DROP TABLE " + r.replayOffsets())
	b.Queue("ALTER SCHEMA " + pgx.Identifier{m.moving}.Sanitize() + " RENAME TO " + pgx.Identifier{m.schema}.Sanitize())
	if err := t.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("switching on instance %s: %w", m.to, err)
	}
	if _, err := s.Exec(ctx, "ALTER SCHEMA "+pgx.Identifier{m.schema}.Sanitize()+" RENAME TO "+pgx.Identifier{m.moved}.Sanitize()); err != nil {
		return fmt.Errorf("renaming %s on instance %s: %w", m.schema, m.from, err)
	}
	m.hook(MovePointRenamed)
	// The placement first: a sink that takes the district's lock on either instance after the commits
	// below reads the new placement.
	err = pgx.BeginFunc(ctx, m.control, func(tx pgx.Tx) error {
		if err := fleet.Move(ctx, tx, m.tenant.ID, m.to); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, "UPDATE control.district_moves SET switched_at = now() WHERE tenant_id = $1", m.tenant.ID)
		return err
	})
	if err != nil {
		return fmt.Errorf("switching the placement of district %s: %w", m.tenant.ID, err)
	}
	m.hook(MovePointPlaced)
	if err := t.Commit(ctx); err != nil {
		return fmt.Errorf("committing on instance %s (rerun the move to recover): %w", m.to, err)
	}
	m.hook(MovePointCommitted)
	if err := s.Commit(ctx); err != nil {
		return fmt.Errorf("committing on instance %s (rerun the move to recover): %w", m.from, err)
	}
	m.report.Paused = time.Since(locked)
	m.report.Moved, m.report.OldSchema = true, m.moved
	return nil
}

// recopyOthers copies again, under the lock, the tables of the district that are not the sink's (the
// enricher's and the gateway's): they are not derived from the topic, so the replay did not bring them
// up to date. Their writers do not take the district's advisory lock, so the source's tables are locked
// against writes (EXCLUSIVE: reads go on) until the source's transaction ends; a write waiting for them
// then finds the schema renamed, and fails instead of landing in the old copy.
func (m *mover) recopyOthers(ctx context.Context, s, t pgx.Tx) error {
	tables, err := tableColumns(ctx, s, m.schema)
	if err != nil {
		return err
	}
	for _, table := range pgstore.Tables() {
		delete(tables, table)
	}
	order, err := referencedFirst(ctx, s, m.schema, tables)
	if err != nil {
		return err
	}
	names, sources := make([]string, len(order)), make([]string, len(order))
	for i, table := range order {
		names[i] = pgx.Identifier{m.moving, table}.Sanitize()
		sources[i] = pgx.Identifier{m.schema, table}.Sanitize()
	}
	if _, err := s.Exec(ctx, "LOCK TABLE "+strings.Join(sources, ", ")+" IN EXCLUSIVE MODE"); err != nil {
		return fmt.Errorf("locking the tables that are not the sink's: %w", err)
	}
	// One statement: the tables reference one another (none of the sink's references them).
	if _, err := t.Exec(ctx, "TRUNCATE "+strings.Join(names, ", ")); err != nil {
		return fmt.Errorf("emptying the tables that are not the sink's: %w", err)
	}
	for _, table := range order {
		if _, err := copyTable(ctx, s.Conn().PgConn(), t.Conn().PgConn(), m.schema, m.moving, table, tables[table]); err != nil {
			return err
		}
	}
	return nil
}

// compare counts and checksums every table of the district on both sides, each in its transaction,
// concurrently; any difference is ErrMoveDiffers.
func (m *mover) compare(ctx context.Context, s, t pgx.Tx) error {
	tables, err := tableColumns(ctx, s, m.schema)
	if err != nil {
		return err
	}
	names := slices.Sorted(maps.Keys(tables))
	sums := func(tx pgx.Tx, schema string, rows []int64, checks []string) error {
		for i, table := range names {
			err := tx.QueryRow(ctx, "SELECT count(*), coalesce(sum(hashtextextended(t::text, 0)), 0)::text FROM "+
				pgx.Identifier{schema, table}.Sanitize()+" t").Scan(&rows[i], &checks[i])
			if err != nil {
				return fmt.Errorf("comparing %s: %w", table, err)
			}
		}
		return nil
	}
	srcRows, dstRows := make([]int64, len(names)), make([]int64, len(names))
	srcSums, dstSums := make([]string, len(names)), make([]string, len(names))
	var g errgroup.Group
	g.Go(func() error { return sums(s, m.schema, srcRows, srcSums) })
	g.Go(func() error { return sums(t, m.moving, dstRows, dstSums) })
	if err := g.Wait(); err != nil {
		return err
	}
	var differ []string
	m.report.Tables = nil
	for i, table := range names {
		c := TableComparison{Table: table, LiveRows: srcRows[i], ShadowRows: dstRows[i], LiveChecksum: srcSums[i], ShadowChecksum: dstSums[i]}
		c.Equal = c.LiveRows == c.ShadowRows && c.LiveChecksum == c.ShadowChecksum
		if !c.Equal {
			differ = append(differ, table)
		}
		m.report.Tables = append(m.report.Tables, c)
	}
	if len(differ) > 0 {
		return fmt.Errorf("%w: %s (nothing was switched)", ErrMoveDiffers, strings.Join(differ, ", "))
	}
	return nil
}
