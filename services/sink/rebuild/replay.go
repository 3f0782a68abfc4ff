package rebuild

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/edtech-analytics/platform/libs/kafkax"
	"github.com/edtech-analytics/platform/libs/records"
	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/edtech-analytics/platform/libs/tenancy/tenants"
	"github.com/edtech-analytics/platform/services/sink/internal/pgstore"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

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

// History is where a partition the rebuild needs starts, when retention removed records of the district
// from it.
type History struct {
	Partition int32 `json:"partition"`
	Start     int64 `json:"start"` // the earliest offset still there
	// FirstRecordAt is the timestamp of the earliest record still there (nil: none is left).
	FirstRecordAt *time.Time `json:"first_record_at,omitempty"`
}

// checkHistory returns the partitions among parts whose start retention moved past records that may be
// the district's: those that start above 0 with a first record stamped after the district was created
// (less ClockSkew). When the first record still there is older than the district, what retention removed
// before it is older still, and not the district's.
func checkHistory(ctx context.Context, adm *kadm.Client, topic string, parts []int32, starts map[int32]int64, created time.Time) ([]History, error) {
	var need []int32
	for _, p := range parts {
		if starts[p] > 0 {
			need = append(need, p)
		}
	}
	if len(need) == 0 {
		return nil, nil
	}
	list := func(ms int64) (kadm.ListedOffsets, error) {
		listed, err := adm.ListOffsetsAfterMilli(ctx, ms, topic)
		if err == nil {
			err = listed.Error()
		}
		if err != nil {
			return nil, fmt.Errorf("listing offsets of %s by time: %w", topic, err)
		}
		return listed, nil
	}
	since, err := list(created.Add(-ClockSkew).UnixMilli())
	if err != nil {
		return nil, err
	}
	first, err := list(0)
	if err != nil {
		return nil, err
	}
	var out []History
	for _, p := range need {
		// since is the first record still there stamped at or after the district's creation (less
		// ClockSkew); if it is not the first record still there, the one before it is older.
		if s, ok := since.Lookup(topic, p); ok && starts[p] < s.Offset {
			continue
		}
		h := History{Partition: p, Start: starts[p]}
		if f, ok := first.Lookup(topic, p); ok && f.Timestamp >= 0 {
			at := time.UnixMilli(f.Timestamp).UTC()
			h.FirstRecordAt = &at
		}
		out = append(out, h)
	}
	return out, nil
}

func historyError(topic string, t tenants.Tenant, truncated []History) error {
	parts := make([]string, 0, len(truncated))
	for _, h := range truncated {
		first := "no record is left"
		if h.FirstRecordAt != nil {
			first = "its earliest record is from " + h.FirstRecordAt.Format(time.RFC3339)
		}
		parts = append(parts, fmt.Sprintf("%s partition %d starts at offset %d (%s)", topic, h.Partition, h.Start, first))
	}
	return fmt.Errorf("%w: %s; records of district %s (created %s) before that are gone. Rebuild from what is left with --allow-truncated-history, or restore the history from the archive",
		ErrHistoryTruncated, strings.Join(parts, "; "), t.ID, t.CreatedAt.UTC().Format(time.RFC3339))
}

// KeyPartition is the partition the platform's producers send key to among n (kafkax.KeyPartition).
func KeyPartition(key string, n int) int32 { return kafkax.KeyPartition([]byte(key), n) }

// part is the replay state of one partition.
type part struct {
	start   int64            // where the replay started
	next    int64            // offset the target has applied up to (exclusive)
	fetched int64            // offset after the last record fetched
	pending []pgstore.Record // the district's fetched records at or above next, decoded
	paused  bool
}

// run is one rebuild or rollback in progress.
type run struct {
	cfg         Config
	opts        options
	pool        *pgxpool.Pool // where the target is
	live        *pgxpool.Pool // where the live sink's offsets are read (pool, but for a move)
	tenant      string
	key, prefix []byte
	topic       string
	codec       *records.Codec
	applier     *pgstore.Applier
	cl          *kgo.Client
	arch        *fromArchive // while the replay reads the archive; nil when it reads only the topic
	schema      string       // the live district schema
	shadow      string       // where a rebuild assembles the new tables
	retired     string       // where replaced tables are kept
	target      string       // where records are applied: the shadow (rebuild) or the kept tables (rollback)
	start       time.Time
	parts       map[int32]*part
	caps        map[int32]int64 // the live sink's stored offsets, as last read
	report      Report
	lastReport  time.Time
	// For the verification: the district's records fetched, by type, and what became of those applied.
	seen       map[string]int64
	outcomes   map[string]*TypeCount
	baseEvents int64 // learning events the target counted before the replay (student_activity)
	// Erasure markers delete what was applied of their student: its learning events are counted per
	// student until its marker, and then as erased.
	byStudent map[string]int64
	erased    int64
}

// countErasure keeps the per-student count of learning events applied, and moves a student's to the
// erased count at its erasure marker.
func (r *run) countErasure(ev *records.EnrichedEvent) {
	switch {
	case ev.Type == records.TypeStudentErased:
		r.erased += r.byStudent[ev.Actor.InternalID]
		delete(r.byStudent, ev.Actor.InternalID)
	case !records.IsRosterType(ev.Type):
		if r.byStudent == nil {
			r.byStudent = map[string]int64{}
		}
		r.byStudent[ev.Actor.InternalID]++
	}
}

// prepareShadow drops what an earlier rebuild left, builds the shadow schema from the template with a
// table of its own replay offsets, and starts consuming the partitions from where they start.
func (r *run) prepareShadow(ctx context.Context, parts []int32, starts map[int32]int64) error {
	if _, err := r.pool.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{r.shadow}.Sanitize()+" CASCADE"); err != nil {
		return fmt.Errorf("dropping leftover schema %s: %w", r.shadow, err)
	}
	if _, err := tenancy.EnsureShadowSchema(ctx, r.pool, r.tenant); err != nil {
		return err
	}
	if _, err := r.pool.Exec(ctx, "CREATE TABLE "+r.replayOffsets()+" (partition int PRIMARY KEY, next_offset bigint NOT NULL)"); err != nil {
		return fmt.Errorf("creating replay offsets: %w", err)
	}
	for _, p := range parts {
		if _, err := r.pool.Exec(ctx, "INSERT INTO "+r.replayOffsets()+" VALUES ($1, $2)", p, starts[p]); err != nil {
			return fmt.Errorf("recording replay offsets: %w", err)
		}
	}
	r.consume(parts, starts)
	return nil
}

// prepareKept starts consuming the partitions from where the kept tables stand.
func (r *run) prepareKept(ctx context.Context, parts []int32, from map[int32]int64) error {
	var err error
	if r.baseEvents, err = r.events(ctx, r.pool, r.target); err != nil {
		return err
	}
	r.consume(parts, from)
	return nil
}

func (r *run) consume(parts []int32, from map[int32]int64) {
	r.parts = map[int32]*part{}
	consume := map[int32]kgo.Offset{}
	for _, p := range parts {
		r.parts[p] = &part{start: from[p], next: from[p], fetched: from[p]}
		if !r.archived(p) { // an archived partition is fetched from the topic once its files are read
			consume[p] = kgo.NewOffset().At(from[p])
		}
	}
	r.cl.AddConsumePartitions(map[string]map[int32]kgo.Offset{r.topic: consume})
}

func (r *run) replayOffsets() string { return pgx.Identifier{r.target, "replay_offsets"}.Sanitize() }

// storedOffsets reads the target's replay offsets: the partitions it was built from and where it stands.
func (r *run) storedOffsets(ctx context.Context, q querier) ([]int32, map[int32]int64, error) {
	rows, err := q.Query(ctx, "SELECT partition, next_offset FROM "+r.replayOffsets()+" ORDER BY partition")
	if err != nil {
		return nil, nil, fmt.Errorf("reading the replay offsets of %s: %w", r.target, err)
	}
	var parts []int32
	offsets := map[int32]int64{}
	var p int32
	var next int64
	if _, err := pgx.ForEachRow(rows, []any{&p, &next}, func() error {
		parts = append(parts, p)
		offsets[p] = next
		return nil
	}); err != nil {
		return nil, nil, fmt.Errorf("reading the replay offsets of %s: %w", r.target, err)
	}
	return parts, offsets, nil
}

// events sums the learning events schema's student_activity counts.
func (r *run) events(ctx context.Context, q querier, schema string) (int64, error) {
	var n int64
	err := q.QueryRow(ctx, "SELECT coalesce(sum(event_count), 0)::bigint FROM "+pgx.Identifier{schema, "student_activity"}.Sanitize()).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("counting events in %s: %w", schema, err)
	}
	return n, nil
}

// replay applies the district's records into the target, in transactions of its own, until it is
// within SwitchLag records of the live sink.
func (r *run) replay(ctx context.Context) error {
	if err := r.readCaps(ctx, r.live); err != nil {
		return err
	}
	for {
		if r.lag() <= r.cfg.SwitchLag && r.inHand() {
			return nil
		}
		if err := r.fetch(ctx); err != nil {
			return err
		}
		if r.due() || r.inHand() {
			err := pgx.BeginFunc(ctx, r.pool, func(tx pgx.Tx) error { return r.apply(ctx, tx) })
			if err != nil {
				return err
			}
			if err := r.readCaps(ctx, r.live); err != nil {
				return err
			}
		}
		r.progress(PhaseReplay, false)
	}
}

// catchUp takes the district's exclusive lock in tx and applies the last records up to where the live
// sink stands. From then on, until tx ends, the live sink cannot commit a record of the district.
func (r *run) catchUp(ctx context.Context, tx pgx.Tx) error {
	r.progress(PhaseCatchUp, true)
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", tenancy.DistrictLockKey(r.tenant)); err != nil {
		return fmt.Errorf("locking district %s: %w", r.tenant, err)
	}
	// Under the lock the live sink's stored offsets mark exactly what it has applied.
	if err := r.readCaps(ctx, tx); err != nil {
		return err
	}
	return r.applyToCaps(ctx, tx)
}

// applyToCaps fetches and applies, in tx, the district's records up to the caps.
func (r *run) applyToCaps(ctx context.Context, tx pgx.Tx) error {
	for r.lag() > 0 {
		if !r.inHand() {
			if err := r.fetch(ctx); err != nil {
				return err
			}
			continue
		}
		if err := r.apply(ctx, tx); err != nil {
			return err
		}
	}
	return nil
}

// finishRebuild catches up under the district's lock, verifies the shadow against the log, compares it
// with the live tables and swaps them, all in one transaction; then drops the shadow schema. A shadow
// that fails the verification is left for inspection (the next rebuild drops it).
func (r *run) finishRebuild(ctx context.Context) error {
	err := pgx.BeginFunc(ctx, r.pool, func(tx pgx.Tx) error {
		if err := r.catchUp(ctx, tx); err != nil {
			return err
		}
		r.progress(PhaseVerify, true)
		if err := r.verify(ctx, tx); err != nil {
			return err
		}
		r.progress(PhaseCompare, true)
		if err := r.compare(ctx, tx); err != nil {
			return err
		}
		switch {
		case r.cfg.DryRun:
			return errDryRun
		case !r.report.Equal && !r.cfg.AcceptDiff:
			return r.notAccepted()
		}
		r.progress(PhaseSwap, true)
		if r.report.Equal {
			return r.swapEqual(ctx, tx)
		}
		return r.swapKeep(ctx, tx)
	})
	if errors.Is(err, ErrVerification) {
		return fmt.Errorf("%w (the shadow is left in schema %s)", err, r.shadow)
	}
	if err != nil && !errors.Is(err, errDryRun) && !errors.Is(err, ErrDiffNotAccepted) {
		return err
	}
	if _, derr := r.pool.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{r.shadow}.Sanitize()+" CASCADE"); derr != nil {
		return errors.Join(ignoreDryRun(err), fmt.Errorf("dropping schema %s: %w", r.shadow, derr))
	}
	return ignoreDryRun(err)
}

// finishRollback catches the kept tables up under the district's lock, verifies what it applied to
// them, compares them with the live tables (what the rollback changes), and swaps the two sets.
func (r *run) finishRollback(ctx context.Context) error {
	err := pgx.BeginFunc(ctx, r.pool, func(tx pgx.Tx) error {
		if err := r.catchUp(ctx, tx); err != nil {
			return err
		}
		r.progress(PhaseVerify, true)
		if err := r.verify(ctx, tx); err != nil {
			return err
		}
		r.progress(PhaseCompare, true)
		if err := r.compare(ctx, tx); err != nil {
			return err
		}
		if r.cfg.DryRun {
			return errDryRun
		}
		r.progress(PhaseSwap, true)
		scratch := "swap_" + r.tenant
		if err := createSchema(ctx, tx, scratch); err != nil {
			return err
		}
		for _, mv := range [][2]string{{r.schema, scratch}, {r.retired, r.schema}, {scratch, r.retired}} {
			if err := moveTables(ctx, tx, mv[0], mv[1]); err != nil {
				return err
			}
		}
		if _, err := tx.Exec(ctx, "DROP SCHEMA "+pgx.Identifier{scratch}.Sanitize()); err != nil {
			return fmt.Errorf("dropping %s: %w", scratch, err)
		}
		kept := Kept{Schema: r.retired, ID: r.report.ID, Action: "rollback", At: time.Now().UTC().Truncate(time.Microsecond)}
		if _, err := tx.Exec(ctx, "UPDATE "+pgx.Identifier{r.retired, "kept"}.Sanitize()+" SET id = $1, action = $2, at = $3",
			kept.ID, kept.Action, kept.At); err != nil {
			return fmt.Errorf("recording the kept tables: %w", err)
		}
		r.report.Swapped, r.report.Kept = true, &kept
		return nil
	})
	return ignoreDryRun(err)
}

// notAccepted is the error of a different shadow without AcceptDiff, naming the tables that differ.
func (r *run) notAccepted() error {
	var differ []string
	for _, t := range r.report.Tables {
		if !t.Equal {
			differ = append(differ, t.Table)
		}
	}
	return fmt.Errorf("%w: %s differ", ErrDiffNotAccepted, strings.Join(differ, ", "))
}

// swapEqual replaces the live tables with the shadow's, identical to them, and drops the replaced ones.
func (r *run) swapEqual(ctx context.Context, tx pgx.Tx) error {
	scratch := "swap_" + r.tenant
	if err := createSchema(ctx, tx, scratch); err != nil {
		return err
	}
	if err := moveTables(ctx, tx, r.schema, scratch); err != nil {
		return err
	}
	if err := moveTables(ctx, tx, r.shadow, r.schema); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, "DROP SCHEMA "+pgx.Identifier{scratch}.Sanitize()+" CASCADE"); err != nil {
		return fmt.Errorf("dropping %s: %w", scratch, err)
	}
	r.report.Swapped = true
	return nil
}

// swapKeep moves the live tables to the retired schema, where they are kept with the offsets they stand
// at (the shadow's, which caught up to the same) and a description, and the shadow's tables in.
func (r *run) swapKeep(ctx context.Context, tx pgx.Tx) error {
	if kept, err := readKept(ctx, tx, r.retired); err != nil {
		return err
	} else if kept != nil {
		return keptError(kept)
	}
	if err := createSchema(ctx, tx, r.retired); err != nil {
		return err
	}
	if err := moveTables(ctx, tx, r.schema, r.retired); err != nil {
		return err
	}
	if err := moveTables(ctx, tx, r.shadow, r.schema); err != nil {
		return err
	}
	kept := Kept{Schema: r.retired, ID: r.report.ID, Action: "rebuild", At: time.Now().UTC().Truncate(time.Microsecond)}
	for _, q := range []string{
		"ALTER TABLE " + r.replayOffsets() + " SET SCHEMA " + pgx.Identifier{r.retired}.Sanitize(),
		"CREATE TABLE " + pgx.Identifier{r.retired, "kept"}.Sanitize() + " (id text NOT NULL, action text NOT NULL, at timestamptz NOT NULL)",
	} {
		if _, err := tx.Exec(ctx, q); err != nil {
			return fmt.Errorf("keeping the replaced tables: %w", err)
		}
	}
	if _, err := tx.Exec(ctx, "INSERT INTO "+pgx.Identifier{r.retired, "kept"}.Sanitize()+" VALUES ($1, $2, $3)",
		kept.ID, kept.Action, kept.At); err != nil {
		return fmt.Errorf("keeping the replaced tables: %w", err)
	}
	r.report.Swapped, r.report.Kept = true, &kept
	return nil
}

func createSchema(ctx context.Context, tx pgx.Tx, name string) error {
	if _, err := tx.Exec(ctx, "CREATE SCHEMA "+pgx.Identifier{name}.Sanitize()); err != nil {
		return fmt.Errorf("creating %s: %w", name, err)
	}
	return nil
}

// moveTables moves the sink's tables from one schema to another, in tx.
func moveTables(ctx context.Context, tx pgx.Tx, from, to string) error {
	for _, table := range pgstore.Tables() {
		q := "ALTER TABLE " + pgx.Identifier{from, table}.Sanitize() + " SET SCHEMA " + pgx.Identifier{to}.Sanitize()
		if _, err := tx.Exec(ctx, q); err != nil {
			return fmt.Errorf("moving %s from %s to %s: %w", table, from, to, err)
		}
	}
	return nil
}

// errDryRun rolls back the final transaction of a dry run.
var errDryRun = errors.New("dry run")

func ignoreDryRun(err error) error {
	if errors.Is(err, errDryRun) {
		return nil
	}
	return err
}

// readCaps reads the live sink's stored offsets of the partitions on the district's instance. A
// partition without one has nothing of the district applied yet.
func (r *run) readCaps(ctx context.Context, q querier) error {
	ids := make([]int32, 0, len(r.parts))
	for p := range r.parts {
		ids = append(ids, p)
	}
	caps, err := appliedOffsets(ctx, q, r.cfg.Group, r.topic, r.tenant, ids)
	if err != nil {
		return err
	}
	for p, st := range r.parts {
		caps[p] = max(caps[p], st.next) // the live sink may not have reached where the topic starts
	}
	r.caps = caps
	r.resume()
	return nil
}

// appliedOffsets reads, through q (on an instance), the offset of each of the partitions below which the
// instance's sink holds every record of the district: its stored offset, or the district's floor there
// when that is higher (a district moved to the instance holds the records below the floor, which the
// sink skips; ADR 0028). Absent: neither is stored.
func appliedOffsets(ctx context.Context, q querier, group, topic, tenant string, parts []int32) (map[int32]int64, error) {
	rows, err := q.Query(ctx, `SELECT partition, max(next_offset) FROM (
			SELECT partition, next_offset FROM control.consumer_offsets
			WHERE consumer = $1 AND topic = $2 AND partition = ANY($3)
			UNION ALL
			SELECT partition, next_offset FROM control.district_offsets
			WHERE consumer = $1 AND topic = $2 AND partition = ANY($3) AND tenant_id = $4) o
		GROUP BY partition`, group, topic, parts, tenant)
	if err != nil {
		return nil, fmt.Errorf("reading the live sink's offsets: %w", err)
	}
	out := map[int32]int64{}
	var p int32
	var next int64
	if _, err := pgx.ForEachRow(rows, []any{&p, &next}, func() error { out[p] = next; return nil }); err != nil {
		return nil, fmt.Errorf("reading the live sink's offsets: %w", err)
	}
	return out, nil
}

// lag is how many records the target is behind the live sink, over the partitions.
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

// fetch reads the next records: from the archive while the replay reads it, from the topic after.
func (r *run) fetch(ctx context.Context) error {
	if r.arch != nil {
		return r.pollArchive(ctx)
	}
	return r.poll(ctx)
}

// poll fetches once, keeping and decoding the district's records (by key) and counting the rest as
// scanned. A partition read up to the live sink's offset is paused until the sink moves on.
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
	var err error
	fetches.EachPartition(func(fp kgo.FetchTopicPartition) {
		st := r.parts[fp.Partition]
		if st == nil || err != nil {
			return
		}
		var mine []*kgo.Record
		for _, rec := range fp.Records {
			if rec.Offset < st.fetched {
				continue
			}
			st.fetched = rec.Offset + 1
			if rec.Attrs.IsControl() { // a transaction marker the reader keeps: read past, not a record
				continue
			}
			r.report.Scanned++
			if bytes.Equal(rec.Key, r.key) || bytes.HasPrefix(rec.Key, r.prefix) {
				mine = append(mine, rec)
			}
		}
		var decoded []pgstore.Record
		if decoded, err = pgstore.Decode(ctx, r.codec, r.cfg.Keys, r.cfg.Log, mine); err != nil {
			return
		}
		for _, d := range decoded {
			r.seen[recordType(d)]++
		}
		st.pending = append(st.pending, decoded...)
	})
	if err != nil {
		return err
	}
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

// apply writes, in tx, the district's records fetched below the caps into the target, and moves each
// partition's replay offset to the caps or to what was fetched, whichever is lower. Each record is
// counted as applied, or skipped with its reason.
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
		remaining []pgstore.Record
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
			mine := make([]pgstore.Record, 0, i)
			for _, d := range st.pending[:i] {
				if r.opts.drop != nil && r.opts.drop(d.Offset, d.Event) {
					continue
				}
				c := r.outcome(recordType(d))
				switch {
				case d.Skip != "":
					c.skip(d.Skip)
				case d.Event.TenantID != r.tenant:
					c.skip(SkipOtherDistrict)
				default:
					c.Applied++
					mine = append(mine, d)
					r.countErasure(d.Event)
				}
			}
			if err := r.applier.Queue(b, []pgstore.Work{{Schema: r.target, Records: mine}}); err != nil {
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
		return fmt.Errorf("applying records to %s: %w", r.target, err)
	}
	for _, m := range moves {
		m.st.next, m.st.pending = m.next, m.remaining
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
