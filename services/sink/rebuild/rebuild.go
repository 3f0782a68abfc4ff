// Package rebuild rebuilds one district's sink state from a replay of the enriched topic: the district's
// records are applied from the earliest offset into a shadow schema built from the district template,
// the shadow catches up with the live sink, is compared with the live schema table by table (row counts
// and checksums), and its tables replace the live ones in one transaction. Live ingestion goes on
// meanwhile; only the last catch-up and the swap hold the district's exclusive lock, which the sink's
// writes of that district wait for.
//
// Only the sink's tables (pgstore.Tables) are rebuilt and swapped: the rest of the district schema (the
// enricher's tables, the migration record) is not derived from the enriched topic and stays as it is.
package rebuild

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/edtech-analytics/platform/libs/kafkax"
	"github.com/edtech-analytics/platform/libs/records"
	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/edtech-analytics/platform/services/sink/internal/pgstore"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// ErrHistoryTruncated: the topic no longer starts at offset 0 in a partition the district uses, so a
// replay would miss records retention deleted.
var ErrHistoryTruncated = errors.New("topic history truncated")

// Defaults of Config.
const (
	DefaultBatchRecords = 50_000
	DefaultSwitchLag    = 5_000
)

// Config says what to rebuild and how.
type Config struct {
	TenantID string
	// Group is the live sink's consumer group: the shadow catches up to the offsets the sink stored
	// under it on the district's instance.
	Group string
	Kafka kafkax.Config
	// AllPartitions scans every partition instead of the one the district's key hashes to. A hot
	// district (records keyed tenant/shard) is always scanned in full.
	AllPartitions bool
	// DryRun builds, catches up and compares, then drops the shadow instead of swapping it in.
	DryRun bool
	// AllowTruncatedHistory rebuilds even when retention removed the start of a scanned partition.
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
}

// Phases of a rebuild, in order.
const (
	PhaseReplay  = "replay"  // applying the district's records into the shadow
	PhaseCatchUp = "catchup" // under the district's lock: the last records up to the live sink
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
	Table          string `json:"table"`
	LiveRows       int64  `json:"live_rows"`
	ShadowRows     int64  `json:"shadow_rows"`
	LiveChecksum   string `json:"live_checksum"`
	ShadowChecksum string `json:"shadow_checksum"`
	Equal          bool   `json:"equal"`
}

// Report is what a rebuild did.
type Report struct {
	TenantID   string            `json:"tenant_id"`
	Instance   string            `json:"instance"`
	Schema     string            `json:"schema"`
	Partitions []int32           `json:"partitions"`
	Scanned    int64             `json:"scanned"`
	Applied    int64             `json:"applied"`
	Tables     []TableComparison `json:"tables"`
	Equal      bool              `json:"equal"`   // every table matched the live one
	Swapped    bool              `json:"swapped"` // the shadow replaced the live tables
	Elapsed    time.Duration     `json:"elapsed"`
}

// Run rebuilds cfg.TenantID's sink state. The fleet reaches the district's instance; codec decodes the
// enriched records.
func Run(ctx context.Context, fleet *tenancy.Fleet, codec *records.Codec, cfg Config) (Report, error) {
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
		return Report{}, errors.New("rebuild: the live sink's group is required")
	}
	store := tenancy.NewFleetStore(fleet)
	t, err := store.Tenant(ctx, cfg.TenantID)
	if err != nil {
		return Report{}, err
	}
	if t.DeletedAt != nil {
		return Report{}, fmt.Errorf("tenant %s is deleted: %w", t.ID, tenancy.ErrNotFound)
	}
	pool, instance, err := store.DistrictPool(ctx, t.ID)
	if err != nil {
		return Report{}, err
	}
	// The shadow gets the whole template; the live schema must have it too for the tables to match.
	if err := store.UpgradeDistrictSchema(ctx, t.ID); err != nil {
		return Report{}, err
	}
	hot, err := hotShards(ctx, store, t.ID)
	if err != nil {
		return Report{}, err
	}

	cl, err := kafkax.NewClient(cfg.Kafka, kafkax.Deps{Log: cfg.Log}, "",
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.FetchMaxBytes(64<<20), kgo.FetchMaxPartitionBytes(32<<20))
	if err != nil {
		return Report{}, err
	}
	defer cl.Close()
	topic := cfg.Kafka.Topics().Enriched
	parts, starts, err := partitions(ctx, cl.Client, topic, t.ID, hot > 0 || cfg.AllPartitions)
	if err != nil {
		return Report{}, err
	}
	for _, p := range parts {
		if starts[p] > 0 && !cfg.AllowTruncatedHistory {
			return Report{}, fmt.Errorf("%w: %s partition %d starts at offset %d", ErrHistoryTruncated, topic, p, starts[p])
		}
	}
	schema, _ := tenancy.SchemaName(t.ID)
	r := &run{cfg: cfg, pool: pool, tenant: t.ID, topic: topic, codec: codec, applier: pgstore.NewApplier(),
		cl: cl.Client, start: time.Now(), schema: schema,
		report: Report{TenantID: t.ID, Instance: instance, Schema: schema, Partitions: parts}}
	r.key = []byte(t.ID)
	r.prefix = []byte(t.ID + "/")
	if err := r.prepare(ctx, parts, starts); err != nil {
		return r.report, err
	}
	if err := r.replay(ctx); err != nil {
		return r.report, err
	}
	if err := r.finish(ctx); err != nil {
		return r.report, err
	}
	r.report.Elapsed = time.Since(r.start)
	r.progress(PhaseDone, true)
	return r.report, nil
}

// hotShards returns the district's number of sub-keys (0 when it is not hot).
func hotShards(ctx context.Context, store *tenancy.Store, tenantID string) (int, error) {
	all, err := store.IngestSettings(ctx)
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

// partitions returns the partitions to scan and where each starts: every partition when all is set,
// otherwise the one Kafka's default partitioner (murmur2 of the key) sends the district's id to.
func partitions(ctx context.Context, cl *kgo.Client, topic, tenantID string, all bool) ([]int32, map[int32]int64, error) {
	adm := kadm.NewClient(cl)
	listed, err := adm.ListStartOffsets(ctx, topic)
	if err != nil {
		return nil, nil, fmt.Errorf("listing start offsets of %s: %w", topic, err)
	}
	if err := listed.Error(); err != nil {
		return nil, nil, fmt.Errorf("listing start offsets of %s: %w", topic, err)
	}
	starts := map[int32]int64{}
	listed.Each(func(o kadm.ListedOffset) { starts[o.Partition] = o.Offset })
	if len(starts) == 0 {
		return nil, nil, fmt.Errorf("topic %s has no partitions", topic)
	}
	var parts []int32
	if all {
		for p := range starts {
			parts = append(parts, p)
		}
		slices.Sort(parts)
	} else {
		parts = []int32{KeyPartition(tenantID, len(starts))}
	}
	return parts, starts, nil
}

// KeyPartition is the partition Kafka's default partitioner sends key to among n: murmur2 of the key,
// high bit masked, modulo n.
func KeyPartition(key string, n int) int32 {
	return int32(murmur2([]byte(key))&0x7fffffff) % int32(n)
}

// murmur2 is Kafka's key hash (org.apache.kafka.common.utils.Utils.murmur2).
func murmur2(b []byte) uint32 {
	const (
		seed = 0x9747b28c
		m    = 0x5bd1e995
		r    = 24
	)
	h := uint32(seed) ^ uint32(len(b))
	for len(b) >= 4 {
		k := uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
		k *= m
		k ^= k >> r
		k *= m
		h = h*m ^ k
		b = b[4:]
	}
	switch len(b) {
	case 3:
		h ^= uint32(b[2]) << 16
		fallthrough
	case 2:
		h ^= uint32(b[1]) << 8
		fallthrough
	case 1:
		h ^= uint32(b[0])
		h *= m
	}
	h ^= h >> 13
	h *= m
	h ^= h >> 15
	return h
}

// part is the replay state of one partition.
type part struct {
	start   int64         // where the topic starts
	next    int64         // offset the shadow has applied up to (exclusive)
	fetched int64         // offset after the last record fetched
	pending []*kgo.Record // the district's fetched records at or above next
	paused  bool
}

// run is one rebuild in progress.
type run struct {
	cfg         Config
	pool        *pgxpool.Pool
	tenant      string
	key, prefix []byte
	topic       string
	codec       *records.Codec
	applier     *pgstore.Applier
	cl          *kgo.Client
	schema      string // the live district schema
	shadow      string
	start       time.Time
	parts       map[int32]*part
	caps        map[int32]int64 // the live sink's stored offsets, as last read
	report      Report
	lastReport  time.Time
}

// prepare drops what an earlier rebuild left, builds the shadow schema from the template with a table
// of its own replay offsets, and starts consuming the partitions from the beginning.
func (r *run) prepare(ctx context.Context, parts []int32, starts map[int32]int64) error {
	shadow, _ := tenancy.ShadowSchemaName(r.tenant)
	retired, _ := tenancy.RetiredSchemaName(r.tenant)
	for _, s := range []string{shadow, retired} {
		if _, err := r.pool.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{s}.Sanitize()+" CASCADE"); err != nil {
			return fmt.Errorf("dropping leftover schema %s: %w", s, err)
		}
	}
	var err error
	if r.shadow, err = tenancy.EnsureShadowSchema(ctx, r.pool, r.tenant); err != nil {
		return err
	}
	if _, err := r.pool.Exec(ctx, "CREATE TABLE "+r.replayOffsets()+" (partition int PRIMARY KEY, next_offset bigint NOT NULL)"); err != nil {
		return fmt.Errorf("creating replay offsets: %w", err)
	}
	r.parts = map[int32]*part{}
	consume := map[int32]kgo.Offset{}
	for _, p := range parts {
		r.parts[p] = &part{start: starts[p], next: starts[p], fetched: starts[p]}
		consume[p] = kgo.NewOffset().At(starts[p])
		if _, err := r.pool.Exec(ctx, "INSERT INTO "+r.replayOffsets()+" VALUES ($1, $2)", p, starts[p]); err != nil {
			return fmt.Errorf("recording replay offsets: %w", err)
		}
	}
	r.cl.AddConsumePartitions(map[string]map[int32]kgo.Offset{r.topic: consume})
	return nil
}

func (r *run) replayOffsets() string { return pgx.Identifier{r.shadow, "replay_offsets"}.Sanitize() }

// replay applies the district's records into the shadow, in transactions of its own, until it is
// within SwitchLag records of the live sink.
func (r *run) replay(ctx context.Context) error {
	if err := r.readCaps(ctx, r.pool); err != nil {
		return err
	}
	for {
		if r.lag() <= r.cfg.SwitchLag && r.inHand() {
			return nil
		}
		if err := r.poll(ctx); err != nil {
			return err
		}
		if r.due() || r.inHand() {
			err := pgx.BeginFunc(ctx, r.pool, func(tx pgx.Tx) error { return r.apply(ctx, tx) })
			if err != nil {
				return err
			}
			if err := r.readCaps(ctx, r.pool); err != nil {
				return err
			}
		}
		r.progress(PhaseReplay, false)
	}
}

// finish takes the district's exclusive lock, applies the last records up to where the live sink
// stands, compares the shadow with the live tables, and swaps them, all in one transaction; then drops
// the shadow and the replaced tables.
func (r *run) finish(ctx context.Context) error {
	retired, _ := tenancy.RetiredSchemaName(r.tenant)
	err := pgx.BeginFunc(ctx, r.pool, func(tx pgx.Tx) error {
		r.progress(PhaseCatchUp, true)
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", tenancy.DistrictLockKey(r.tenant)); err != nil {
			return fmt.Errorf("locking district %s: %w", r.tenant, err)
		}
		// From here on the live sink cannot commit a record of the district, so its stored offsets
		// mark exactly what it has applied.
		if err := r.readCaps(ctx, tx); err != nil {
			return err
		}
		for r.lag() > 0 {
			if !r.inHand() {
				if err := r.poll(ctx); err != nil {
					return err
				}
				continue
			}
			if err := r.apply(ctx, tx); err != nil {
				return err
			}
		}
		r.progress(PhaseCompare, true)
		if err := r.compare(ctx, tx); err != nil {
			return err
		}
		if r.cfg.DryRun {
			return errDryRun
		}
		r.progress(PhaseSwap, true)
		if err := r.swap(ctx, tx, retired); err != nil {
			return err
		}
		r.report.Swapped = true
		return nil
	})
	if err != nil && !errors.Is(err, errDryRun) {
		return err
	}
	for _, s := range []string{r.shadow, retired} {
		if _, err := r.pool.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{s}.Sanitize()+" CASCADE"); err != nil {
			return fmt.Errorf("dropping schema %s: %w", s, err)
		}
	}
	return nil
}

// errDryRun rolls back the final transaction of a dry run.
var errDryRun = errors.New("dry run")

// readCaps reads the live sink's stored offsets of the partitions on the district's instance. A
// partition without one has nothing of the district applied yet.
func (r *run) readCaps(ctx context.Context, q interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}) error {
	ids := make([]int32, 0, len(r.parts))
	for p := range r.parts {
		ids = append(ids, p)
	}
	rows, err := q.Query(ctx, `SELECT partition, next_offset FROM control.consumer_offsets
		WHERE consumer = $1 AND topic = $2 AND partition = ANY($3)`, r.cfg.Group, r.topic, ids)
	if err != nil {
		return fmt.Errorf("reading the live sink's offsets: %w", err)
	}
	caps := map[int32]int64{}
	var p int32
	var next int64
	if _, err := pgx.ForEachRow(rows, []any{&p, &next}, func() error { caps[p] = next; return nil }); err != nil {
		return fmt.Errorf("reading the live sink's offsets: %w", err)
	}
	for p, st := range r.parts {
		caps[p] = max(caps[p], st.next) // the live sink may not have reached where the topic starts
	}
	r.caps = caps
	r.resume()
	return nil
}

// lag is how many records the shadow is behind the live sink, over the partitions.
func (r *run) lag() int64 {
	var n int64
	for p, st := range r.parts {
		n += r.caps[p] - st.next
	}
	return n
}

// inHand reports whether every record below the caps has been fetched.
func (r *run) inHand() bool {
	for p, st := range r.parts {
		if st.fetched < r.caps[p] {
			return false
		}
	}
	return true
}

// due reports whether enough of the district's records are waiting to make a transaction worth it.
func (r *run) due() bool {
	var n int
	for p, st := range r.parts {
		for _, rec := range st.pending {
			if rec.Offset < r.caps[p] {
				n++
			}
		}
	}
	return n >= r.cfg.BatchRecords
}

// poll fetches once, keeping the district's records (by key) and counting the rest as scanned. A
// partition read up to the live sink's offset is paused until the sink moves on.
func (r *run) poll(ctx context.Context) error {
	pctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	fetches := r.cl.PollRecords(pctx, 50_000)
	cancel()
	if err := ctx.Err(); err != nil {
		return err
	}
	var errs []error
	fetches.EachError(func(_ string, p int32, err error) {
		if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
			errs = append(errs, fmt.Errorf("fetching partition %d: %w", p, err))
		}
	})
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	fetches.EachPartition(func(fp kgo.FetchTopicPartition) {
		st := r.parts[fp.Partition]
		if st == nil {
			return
		}
		for _, rec := range fp.Records {
			if rec.Offset < st.fetched {
				continue
			}
			st.fetched = rec.Offset + 1
			r.report.Scanned++
			if bytes.Equal(rec.Key, r.key) || bytes.HasPrefix(rec.Key, r.prefix) {
				st.pending = append(st.pending, rec)
			}
		}
	})
	r.resume()
	return nil
}

// resume pauses partitions read up to the caps and resumes those the caps moved past.
func (r *run) resume() {
	var pause, resume []int32
	for p, st := range r.parts {
		switch ahead := st.fetched >= r.caps[p]; {
		case ahead && !st.paused:
			pause, st.paused = append(pause, p), true
		case !ahead && st.paused:
			resume, st.paused = append(resume, p), false
		}
	}
	if len(pause) > 0 {
		r.cl.PauseFetchPartitions(map[string][]int32{r.topic: pause})
	}
	if len(resume) > 0 {
		r.cl.ResumeFetchPartitions(map[string][]int32{r.topic: resume})
	}
}

// apply writes, in tx, the district's records fetched below the caps into the shadow, and moves each
// partition's replay offset to the caps or to what was fetched, whichever is lower.
func (r *run) apply(ctx context.Context, tx pgx.Tx) error {
	b := &pgx.Batch{}
	ps := make([]int32, 0, len(r.parts))
	for p := range r.parts {
		ps = append(ps, p)
	}
	slices.Sort(ps)
	type move struct {
		st        *part
		next      int64
		remaining []*kgo.Record
	}
	var moves []move
	for _, p := range ps {
		st := r.parts[p]
		upTo := min(st.fetched, r.caps[p])
		if upTo <= st.next {
			continue
		}
		i := 0
		for i < len(st.pending) && st.pending[i].Offset < upTo {
			i++
		}
		if i > 0 {
			decoded, err := pgstore.Decode(r.codec, r.cfg.Log, st.pending[:i])
			if err != nil {
				return err
			}
			mine := decoded[:0]
			for _, d := range decoded {
				if d.Skip == "" && d.Event.TenantID == r.tenant {
					mine = append(mine, d)
				}
			}
			if err := r.applier.Queue(b, []pgstore.Work{{Schema: r.shadow, Records: mine}}); err != nil {
				return err
			}
			r.report.Applied += int64(len(mine))
		}
		b.Queue("UPDATE "+r.replayOffsets()+" SET next_offset = $2 WHERE partition = $1", p, upTo)
		moves = append(moves, move{st, upTo, st.pending[i:]})
	}
	if b.Len() == 0 {
		return nil
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("applying records to %s: %w", r.shadow, err)
	}
	for _, m := range moves {
		m.st.next, m.st.pending = m.next, m.remaining
	}
	return nil
}

// compare fills the report with row counts and order-independent checksums (sum of 64-bit hashes of
// each row's text) of every sink table, live and shadow.
func (r *run) compare(ctx context.Context, tx pgx.Tx) error {
	r.report.Equal = true
	for _, table := range pgstore.Tables() {
		c := TableComparison{Table: table}
		for _, side := range []struct {
			schema   string
			rows     *int64
			checksum *string
		}{{r.schema, &c.LiveRows, &c.LiveChecksum}, {r.shadow, &c.ShadowRows, &c.ShadowChecksum}} {
			err := tx.QueryRow(ctx, "SELECT count(*), coalesce(sum(hashtextextended(t::text, 0)), 0)::text FROM "+
				pgx.Identifier{side.schema, table}.Sanitize()+" t").Scan(side.rows, side.checksum)
			if err != nil {
				return fmt.Errorf("comparing %s: %w", table, err)
			}
		}
		c.Equal = c.LiveRows == c.ShadowRows && c.LiveChecksum == c.ShadowChecksum
		r.report.Equal = r.report.Equal && c.Equal
		r.report.Tables = append(r.report.Tables, c)
	}
	return nil
}

// swap moves the live sink tables out to the retired schema and the shadow's in, in tx.
func (r *run) swap(ctx context.Context, tx pgx.Tx, retired string) error {
	if _, err := tx.Exec(ctx, "CREATE SCHEMA "+pgx.Identifier{retired}.Sanitize()); err != nil {
		return fmt.Errorf("creating %s: %w", retired, err)
	}
	for _, table := range pgstore.Tables() {
		for _, move := range [][2]string{{r.schema, retired}, {r.shadow, r.schema}} {
			q := "ALTER TABLE " + pgx.Identifier{move[0], table}.Sanitize() + " SET SCHEMA " + pgx.Identifier{move[1]}.Sanitize()
			if _, err := tx.Exec(ctx, q); err != nil {
				return fmt.Errorf("swapping %s: %w", table, err)
			}
		}
	}
	return nil
}

// progress reports to cfg.Progress: always when force, otherwise at most once a second.
func (r *run) progress(phase string, force bool) {
	if r.cfg.Progress == nil || (!force && time.Since(r.lastReport) < time.Second) {
		return
	}
	r.lastReport = time.Now()
	var target int64
	for p, st := range r.parts {
		target += r.caps[p] - st.start
	}
	r.cfg.Progress(Progress{Phase: phase, Scanned: r.report.Scanned, Target: target, Applied: r.report.Applied,
		Elapsed: time.Since(r.start)})
}
