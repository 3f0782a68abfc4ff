// Package rebuild rebuilds one district's sink state from a replay of the enriched topic: the district's
// records are applied from the earliest offset into a shadow schema built from the district template,
// the shadow catches up with the live sink, is verified against the log (every record of the district in
// the replayed range applied or skipped for a stated reason) and compared with the live schema table by
// table. An equal shadow replaces the live tables; a different one only when the difference is accepted
// (Config.AcceptDiff), and then the replaced tables are kept in retired_<id> until DropOld, so that
// Rollback can swap them back. Live ingestion goes on meanwhile; only the last catch-up and the swap hold
// the district's exclusive lock, which the sink's writes of that district wait for.
//
// Only the sink's tables (pgstore.Tables) are rebuilt and swapped: the rest of the district schema (the
// enricher's tables, the migration record) is not derived from the enriched topic and stays as it is.
package rebuild

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"time"

	"github.com/edtech-analytics/platform/libs/archive"
	"github.com/edtech-analytics/platform/libs/kafkax"
	"github.com/edtech-analytics/platform/libs/records"
	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/edtech-analytics/platform/libs/tenancy/fleet"
	"github.com/edtech-analytics/platform/libs/tenancy/ingest"
	"github.com/edtech-analytics/platform/libs/tenancy/tenants"
	"github.com/edtech-analytics/platform/services/sink/internal/pgstore"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

var (
	// ErrHistoryTruncated: retention removed records of the district from a partition the rebuild needs,
	// so a replay would miss them.
	ErrHistoryTruncated = errors.New("topic history truncated")
	// ErrDiffNotAccepted: the rebuilt state differs from the live one and Config.AcceptDiff was not set;
	// the live tables are untouched.
	ErrDiffNotAccepted = errors.New("rebuilt state differs from the live state (not accepted)")
	// ErrVerification: the shadow does not hold what the log says it should; nothing was swapped.
	ErrVerification = errors.New("rebuilt state does not match the log")
	// ErrOldTablesKept: the tables an earlier rebuild replaced are still kept; roll back or drop them
	// before another rebuild replaces the live tables with different ones.
	ErrOldTablesKept = errors.New("replaced tables of an earlier rebuild are still kept")
	// ErrNothingKept: no replaced tables are kept for the district (Rollback, DropOld).
	ErrNothingKept = errors.New("no replaced tables are kept")
	// ErrBusy: another rebuild, rollback or drop of the district is running.
	ErrBusy = errors.New("another rebuild of the district is running")
)

// Defaults of Config.
const (
	DefaultBatchRecords = 50_000
	DefaultSwitchLag    = 5_000
	// DiffExamples is how many keys a table's diff shows per kind of difference.
	DiffExamples = 5
	// ClockSkew is how much earlier than the district's creation a record of the district may be stamped
	// (producers' clocks against the control database's): the history before that is not the district's.
	ClockSkew = time.Hour
)

// Config says what to rebuild and how.
type Config struct {
	TenantID string
	// Group is the live sink's consumer group: the shadow catches up to the offsets the sink stored
	// under it on the district's instance.
	Group string
	// Kafka names the enriched topic (Topics); the reader given to Run or Rollback reads it.
	Kafka kafkax.Config
	// AllPartitions scans every partition instead of the one the district's key hashes to. A hot
	// district (records keyed tenant/shard) is always scanned in full.
	AllPartitions bool
	// DryRun builds, catches up, verifies and compares, then drops the shadow instead of swapping it in.
	DryRun bool
	// AcceptDiff swaps the shadow in even when it differs from the live tables (which are then kept).
	// Without it a different shadow is refused with ErrDiffNotAccepted.
	AcceptDiff bool
	// AllowTruncatedHistory rebuilds even when retention removed records of the district from the start
	// of a scanned partition.
	AllowTruncatedHistory bool
	// BatchRecords is how many of the district's records one shadow transaction applies at most
	// (DefaultBatchRecords).
	BatchRecords int
	// SwitchLag is how far behind the live sink (records, over the partitions) the shadow may be when
	// the final catch-up under the district's lock starts (DefaultSwitchLag).
	SwitchLag int64
	// Progress, if set, is called about once a second and at each phase change.
	Progress func(Progress)
	Log      *slog.Logger
	// Archive, if set, is the archive (libs/archive) whose enriched layer the replay reads the district's
	// history from: its own files up to the offsets the archive's index records, then the topic from the
	// offset after. Neither the topic's retention nor the other districts' records of the partition
	// matter then. A partition the archive has no index of is replayed from the topic alone.
	Archive archive.Bucket
	// Keys open the identifying fields the enricher sealed (a *keyring.Keyring), as the sink's do.
	Keys pgstore.Keys
}

// Option changes how Run or Rollback works, for tests.
type Option func(*options)

type options struct {
	// drop loses the records it selects before they are counted as applied or skipped, as a replay bug
	// would (see export_test.go).
	drop func(offset int64, ev *records.EnrichedEvent) bool
	// hook is called at each named point of a move (MovePoints), for tests that stop it there.
	hook func(point string)
}

// Phases of a rebuild, in order.
const (
	PhaseReplay  = "replay"  // applying the district's records into the shadow
	PhaseCatchUp = "catchup" // under the district's lock: the last records up to the live sink
	PhaseVerify  = "verify"  // the shadow against the log
	PhaseCompare = "compare"
	PhaseSwap    = "swap"
	PhaseDone    = "done"
)

// Progress is a rebuild's state for display.
type Progress struct {
	Phase   string        `json:"phase"`
	Scanned int64         `json:"scanned"` // records read, the district's and others'
	Target  int64         `json:"target"`  // records to read to reach the live sink, as last known
	Applied int64         `json:"applied"` // the district's records applied to the shadow
	Elapsed time.Duration `json:"elapsed"`
}

// TableComparison compares one table of the live schema and the shadow at the swap.
type TableComparison struct {
	Table          string     `json:"table"`
	LiveRows       int64      `json:"live_rows"`
	ShadowRows     int64      `json:"shadow_rows"`
	LiveChecksum   string     `json:"live_checksum"`
	ShadowChecksum string     `json:"shadow_checksum"`
	Equal          bool       `json:"equal"`
	Diff           *TableDiff `json:"diff,omitempty"` // when not equal
}

// TableDiff is how the rows of a table differ, matched by primary key.
type TableDiff struct {
	OnlyLive   DiffRows `json:"only_live"`   // rows the rebuild would remove
	OnlyShadow DiffRows `json:"only_shadow"` // rows the rebuild would add
	Changed    DiffRows `json:"changed"`     // rows on both sides with other values
}

// DiffRows counts rows of one kind of difference and names a few by key.
type DiffRows struct {
	Count    int64    `json:"count"`
	Examples []string `json:"examples,omitempty"` // primary keys (columns joined by " / "), up to DiffExamples
}

// Kept describes the replaced tables a district keeps.
type Kept struct {
	Schema string    `json:"schema"`
	ID     string    `json:"id"`     // the rebuild or rollback that replaced them
	Action string    `json:"action"` // "rebuild" or "rollback"
	At     time.Time `json:"at"`
}

// Report is what a rebuild or rollback did.
type Report struct {
	// ID names the rebuild or rollback: its start time, UTC, to the second.
	ID         string  `json:"id"`
	Action     string  `json:"action"` // "rebuild" or "rollback"
	TenantID   string  `json:"tenant_id"`
	Instance   string  `json:"instance"`
	Schema     string  `json:"schema"`
	Partitions []int32 `json:"partitions"`
	Scanned    int64   `json:"scanned"`
	// FromArchive counts the records of Scanned read from the archive (Config.Archive).
	FromArchive int64     `json:"from_archive,omitempty"`
	Applied     int64     `json:"applied"`
	Truncated   []History `json:"truncated,omitempty"` // partitions whose start retention removed (AllowTruncatedHistory)
	// Verification checks the shadow against the log (a rebuild) or the kept tables' catch-up (a rollback).
	Verification Verification      `json:"verification"`
	Tables       []TableComparison `json:"tables,omitempty"`
	Equal        bool              `json:"equal"`          // every table matched the live one
	Swapped      bool              `json:"swapped"`        // the shadow (or the kept tables) replaced the live tables
	Kept         *Kept             `json:"kept,omitempty"` // where the replaced tables are kept, if they are
	Elapsed      time.Duration     `json:"elapsed"`
}

// ReaderOptions are the options of the reader a rebuild or rollback replays the enriched topic with,
// added by its caller to kafkax.NewReader: large fetches, as a replay reads partitions from their start.
func ReaderOptions() []kgo.Opt {
	return []kgo.Opt{kgo.FetchMaxBytes(64 << 20), kgo.FetchMaxPartitionBytes(32 << 20)}
}

// Run rebuilds cfg.TenantID's sink state. instances reach the control schema and the district's instance; codec decodes the
// enriched records; reader replays the enriched topic: a kafkax.NewReader client (with ReaderOptions)
// that nothing else reads with, which the caller closes. The report is filled as far as the rebuild got,
// also when it returns an error (the comparison with ErrDiffNotAccepted, the verification with
// ErrVerification).
func Run(ctx context.Context, instances *fleet.Fleet, codec *records.Codec, reader *kgo.Client, cfg Config, opts ...Option) (Report, error) {
	if err := cfg.defaults(); err != nil {
		return Report{}, err
	}
	d, err := open(ctx, instances, cfg.TenantID, "rebuild")
	if err != nil {
		return Report{}, err
	}
	defer d.close(ctx)
	report := d.report()
	// The shadow gets the whole template; the live schema must have it too for the tables to match.
	if err := tenancy.UpgradeDistrictSchema(ctx, d.pool, d.tenant.ID); err != nil {
		return report, err
	}
	if !cfg.DryRun && cfg.AcceptDiff {
		// Fail before the replay rather than after it: a different shadow could not be swapped in.
		if kept, err := readKept(ctx, d.pool, d.retired); err != nil {
			return report, err
		} else if kept != nil {
			return report, keptError(kept)
		}
	}
	hot, err := hotShards(ctx, ingest.New(d.control), d.tenant.ID)
	if err != nil {
		return report, err
	}
	topic := cfg.Kafka.Topics().Enriched
	parts, starts, err := partitions(ctx, reader, topic, d.tenant.ID, hot > 0 || cfg.AllPartitions)
	if err != nil {
		return report, err
	}
	report.Partitions = parts
	var arch *fromArchive
	if cfg.Archive != nil {
		// The archived partitions start at the archive's first file; their topic history is not needed.
		if arch, starts, err = openArchive(ctx, cfg.Archive, d.tenant.ID, parts, starts); err != nil {
			return report, err
		}
	}
	truncated, err := checkHistory(ctx, kadm.NewClient(reader), topic, parts, starts, d.tenant.CreatedAt)
	if err != nil {
		return report, err
	}
	if len(truncated) > 0 {
		if !cfg.AllowTruncatedHistory {
			return report, historyError(topic, d.tenant, truncated)
		}
		report.Truncated = truncated
		cfg.Log.Warn("rebuilding from a truncated history", "tenant_id", d.tenant.ID, "partitions", truncated)
	}
	r, err := d.newRun(cfg, reader, codec, topic, report, opts)
	if err != nil {
		return report, err
	}
	r.arch = arch
	defer func() {
		if r.arch != nil {
			r.arch.close()
		}
	}()
	if err := r.prepareShadow(ctx, parts, starts); err != nil {
		return r.report, err
	}
	if err := r.replay(ctx); err != nil {
		return r.report, err
	}
	if err := r.finishRebuild(ctx); err != nil {
		return r.report, err
	}
	r.report.Elapsed = time.Since(r.start)
	r.progress(PhaseDone, true)
	return r.report, nil
}

// Rollback swaps the tables the last rebuild replaced (kept in retired_<id>) back in, and keeps the
// ones it replaces there instead, so a second Rollback undoes the first. The kept tables are first caught
// up with the records the live sink applied since they were replaced, so nothing the sink wrote
// meanwhile is lost; the swap takes the district's exclusive lock, as the rebuild's does. Nothing kept:
// ErrNothingKept. reader is as Run's.
func Rollback(ctx context.Context, instances *fleet.Fleet, codec *records.Codec, reader *kgo.Client, cfg Config, opts ...Option) (Report, error) {
	if err := cfg.defaults(); err != nil {
		return Report{}, err
	}
	d, err := open(ctx, instances, cfg.TenantID, "rollback")
	if err != nil {
		return Report{}, err
	}
	defer d.close(ctx)
	report := d.report()
	kept, err := readKept(ctx, d.pool, d.retired)
	if err != nil {
		return report, err
	}
	if kept == nil {
		return report, fmt.Errorf("district %s: %w", d.tenant.ID, ErrNothingKept)
	}
	if err := tenancy.UpgradeDistrictSchema(ctx, d.pool, d.tenant.ID); err != nil {
		return report, err
	}
	topic := cfg.Kafka.Topics().Enriched
	r, err := d.newRun(cfg, reader, codec, topic, report, opts)
	if err != nil {
		return report, err
	}
	r.target = d.retired
	parts, from, err := r.storedOffsets(ctx, r.pool)
	if err != nil {
		return r.report, err
	}
	r.report.Partitions = parts
	_, starts, err := partitions(ctx, reader, topic, d.tenant.ID, true)
	if err != nil {
		return r.report, err
	}
	for _, p := range parts {
		if starts[p] > from[p] {
			return r.report, fmt.Errorf("%w: the kept tables of district %s stand at offset %d of %s partition %d, which now starts at %d: they cannot be caught up",
				ErrHistoryTruncated, d.tenant.ID, from[p], topic, p, starts[p])
		}
	}
	if err := r.prepareKept(ctx, parts, from); err != nil {
		return r.report, err
	}
	if err := r.replay(ctx); err != nil {
		return r.report, err
	}
	if err := r.finishRollback(ctx); err != nil {
		return r.report, err
	}
	r.report.Elapsed = time.Since(r.start)
	r.progress(PhaseDone, true)
	return r.report, nil
}

// DropOld drops the tables the district keeps from its last rebuild or rollback, and returns what they
// were. Nothing kept: ErrNothingKept.
func DropOld(ctx context.Context, instances *fleet.Fleet, tenantID string) (Kept, error) {
	d, err := open(ctx, instances, tenantID, "drop")
	if err != nil {
		return Kept{}, err
	}
	defer d.close(ctx)
	var kept *Kept
	err = pgx.BeginFunc(ctx, d.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", tenancy.DistrictLockKey(d.tenant.ID)); err != nil {
			return fmt.Errorf("locking district %s: %w", d.tenant.ID, err)
		}
		if kept, err = readKept(ctx, tx, d.retired); err != nil || kept == nil {
			return err
		}
		if _, err := tx.Exec(ctx, "DROP SCHEMA "+pgx.Identifier{d.retired}.Sanitize()+" CASCADE"); err != nil {
			return fmt.Errorf("dropping %s: %w", d.retired, err)
		}
		return nil
	})
	if err != nil {
		return Kept{}, err
	}
	if kept == nil {
		return Kept{}, fmt.Errorf("district %s: %w", d.tenant.ID, ErrNothingKept)
	}
	return *kept, nil
}

// KeptTables returns what the district keeps from its last rebuild or rollback (nil: nothing).
func KeptTables(ctx context.Context, instances *fleet.Fleet, tenantID string) (*Kept, error) {
	pool, _, err := instances.DistrictPool(ctx, tenantID)
	if err != nil {
		return nil, err
	}
	retired, err := tenancy.RetiredSchemaName(tenantID)
	if err != nil {
		return nil, err
	}
	return readKept(ctx, pool, retired)
}

// district is what Run, Rollback and DropOld work on: the tenant, its instance and schema names, and the
// session lock that keeps two of them off the same district.
type district struct {
	control  *pgxpool.Pool // the control schema's
	tenant   tenants.Tenant
	pool     *pgxpool.Pool
	instance string
	schema   string // the live schema
	shadow   string // where a rebuild assembles the new tables
	retired  string // where replaced tables are kept
	action   string
	start    time.Time
	lock     *pgxpool.Conn
}

// defaults fills the unset fields and checks the rest.
func (cfg *Config) defaults() error {
	if cfg.BatchRecords <= 0 {
		cfg.BatchRecords = DefaultBatchRecords
	}
	if cfg.SwitchLag <= 0 {
		cfg.SwitchLag = DefaultSwitchLag
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Group == "" {
		return errors.New("rebuild: the live sink's group is required")
	}
	return nil
}

// open finds the district and takes its rebuild lock (ErrBusy when taken).
func open(ctx context.Context, instances *fleet.Fleet, tenantID, action string) (*district, error) {
	d := &district{control: instances.Control(), action: action, start: time.Now()}
	var err error
	if d.tenant, err = tenants.New(instances).Tenant(ctx, tenantID); err != nil {
		return nil, err
	}
	if d.tenant.DeletedAt != nil {
		return nil, fmt.Errorf("tenant %s is deleted: %w", d.tenant.ID, tenancy.ErrNotFound)
	}
	if d.pool, d.instance, err = instances.DistrictPool(ctx, d.tenant.ID); err != nil {
		return nil, err
	}
	d.schema, _ = tenancy.SchemaName(d.tenant.ID)
	d.shadow, _ = tenancy.ShadowSchemaName(d.tenant.ID)
	d.retired, _ = tenancy.RetiredSchemaName(d.tenant.ID)
	if d.lock, err = d.pool.Acquire(ctx); err != nil {
		return nil, fmt.Errorf("acquiring connection: %w", err)
	}
	var locked bool
	if err := d.lock.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", jobLockKey(d.tenant.ID)).Scan(&locked); err != nil || !locked {
		d.lock.Release()
		if err != nil {
			return nil, fmt.Errorf("locking the rebuild of district %s: %w", d.tenant.ID, err)
		}
		return nil, fmt.Errorf("district %s: %w", d.tenant.ID, ErrBusy)
	}
	return d, nil
}

// close releases the rebuild lock; should the unlock fail, closing the connection ends the session and
// the lock with it.
func (d *district) close(ctx context.Context) {
	if _, err := d.lock.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", jobLockKey(d.tenant.ID)); err != nil {
		_ = d.lock.Conn().Close(context.WithoutCancel(ctx)) // the session ends either way, and its lock with it
	}
	d.lock.Release()
}

// jobLockKey is the session advisory lock that one rebuild, rollback or drop of a district holds
// throughout (distinct from tenancy.DistrictLockKey, which the sink's writes share).
func jobLockKey(tenantID string) int64 {
	h := fnv.New64a()
	h.Write([]byte("edtech-analytics/rebuild/" + tenantID)) // writes to a hash never fail
	return int64(h.Sum64())
}

func (d *district) report() Report {
	return Report{ID: d.start.UTC().Format("20060102T150405Z"), Action: d.action, TenantID: d.tenant.ID,
		Instance: d.instance, Schema: d.schema}
}

func (d *district) newRun(cfg Config, cl *kgo.Client, codec *records.Codec, topic string, report Report, opts []Option) (*run, error) {
	applier, err := pgstore.NewApplier()
	if err != nil {
		return nil, err
	}
	r := &run{cfg: cfg, pool: d.pool, live: d.pool, tenant: d.tenant.ID, topic: topic, codec: codec, applier: applier,
		cl: cl, start: d.start, schema: d.schema, shadow: d.shadow, retired: d.retired, target: d.shadow,
		report: report, seen: map[string]int64{}, outcomes: map[string]*TypeCount{}}
	for _, o := range opts {
		o(&r.opts)
	}
	r.key = []byte(d.tenant.ID)
	r.prefix = []byte(d.tenant.ID + "/")
	return r, nil
}

// hotShards returns the district's number of sub-keys (0 when it is not hot).
func hotShards(ctx context.Context, store *ingest.Store, tenantID string) (int, error) {
	all, err := store.Settings(ctx)
	if err != nil {
		return 0, err
	}
	for _, s := range all {
		if s.TenantID == tenantID {
			return s.HotShards, nil
		}
	}
	return 0, nil
}

// querier is what pgxpool.Pool and pgx.Tx share for reads.
type querier interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
	QueryRow(context.Context, string, ...any) pgx.Row
}

// readKept reads the description of the kept tables in the retired schema (nil when there are none).
func readKept(ctx context.Context, q querier, retired string) (*Kept, error) {
	var exists bool
	if err := q.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", pgx.Identifier{retired, "kept"}.Sanitize()).Scan(&exists); err != nil {
		return nil, fmt.Errorf("looking for kept tables: %w", err)
	}
	if !exists {
		return nil, nil
	}
	k := &Kept{Schema: retired}
	if err := q.QueryRow(ctx, "SELECT id, action, at FROM "+pgx.Identifier{retired, "kept"}.Sanitize()).Scan(&k.ID, &k.Action, &k.At); err != nil {
		return nil, fmt.Errorf("reading %s.kept: %w", retired, err)
	}
	k.At = k.At.UTC()
	return k, nil
}

func keptError(k *Kept) error {
	return fmt.Errorf("%w: %s holds the tables replaced by %s %s at %s; roll back (--rollback) or drop them (--drop-old) first",
		ErrOldTablesKept, k.Schema, k.Action, k.ID, k.At.Format(time.RFC3339))
}
