// Package pgstore keeps each district's current state in PostgreSQL, in its own schema district_<id> on
// the instance the district is placed on, from the enriched topic: learning-event state (activity,
// attendance, latest results, submissions) and the OneRoster entities. It implements kafkax.Store: the
// consumed offsets live in each instance's control.consumer_offsets and are written in the same
// transaction as the state, so every record changes the state exactly once.
package pgstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"slices"
	"strings"
	"sync"

	"github.com/edtech-analytics/platform/libs/kafkax"
	"github.com/edtech-analytics/platform/libs/pgutil"
	"github.com/edtech-analytics/platform/libs/records"
	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/edtech-analytics/platform/libs/tenancy/fleet"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
	"golang.org/x/sync/errgroup"
)

// Reasons a record is skipped (the reason attribute of sink_records_skipped).
const (
	SkipUndecodable   = "undecodable"    // not a decodable EnrichedEvent
	SkipInvalid       = "invalid"        // a tenant id, student id, event id or payload that breaks the rules
	SkipUnknownTenant = "unknown_tenant" // tenant not in control.tenants, or deleted
	SkipUnsupported   = "unsupported"    // a type this sink does not know
	SkipDeadLettered  = "dead_lettered"  // a stand-in for a record refused before and dead-lettered
	SkipErased        = "erased"         // its person's data key was shredded: the person was erased
	SkipOtherStore    = "other_store"    // a marker for another store (a ClickHouse rebuild's)
)

// refusals are the skip reasons that refuse a record, with the dead-letter reason each is sent under: the
// consumer dead-letters the record, and the sink skips its stand-in. Records of unknown or deleted
// districts are only skipped: a deleted district's data must not live on in the dead-letter topic.
var refusals = map[string]string{
	SkipUndecodable: records.ReasonUndecodable,
	SkipInvalid:     records.ReasonInvalidField,
	SkipUnsupported: records.ReasonOther,
}

// maxLinks caps the links from a sink.write span to the consume spans of its records.
const maxLinks = 32

// Connect opens a pool for the sink: pgutil's defaults, with statements sent unprepared (pgx's exec
// mode) unless the URL says otherwise. The sink's statements name district tables, so a fleet of
// districts churns pgx's statement cache (prepare and deallocate round trips, a plan per statement held
// by every connection); unprepared, writes over 1,500 districts ran 4 to 5 times faster.
func Connect(ctx context.Context, url string) (*pgxpool.Pool, error) {
	return pgutil.Connect(ctx, withExecMode(url))
}

func withExecMode(url string) string {
	const param = "default_query_exec_mode"
	switch {
	case strings.Contains(url, param):
		return url
	case strings.HasPrefix(url, "postgres://") || strings.HasPrefix(url, "postgresql://"):
		if strings.Contains(url, "?") {
			return url + "&" + param + "=exec"
		}
		return url + "?" + param + "=exec"
	default: // keyword/value DSN
		return url + " " + param + "=exec"
	}
}

// Defaults of Deps' tuning fields.
const (
	DefaultIdleAdvance       = 10_000
	DefaultMaxDistrictsPerTx = 200
)

// Deps are what a Store needs. Tracer and Meter may be nil.
type Deps struct {
	Fleet *fleet.Fleet
	Codec *records.Codec
	// Keys open the identifying fields the enricher sealed; nil only where no record carries any.
	Keys   Keys
	Log    *slog.Logger
	Tracer trace.TracerProvider
	Meter  metric.MeterProvider
	// IdleAdvance is how far an instance's stored offset of a partition may fall behind the records
	// written before a write moves it although none of its records are for that instance
	// (DefaultIdleAdvance). Consumers resume at the lowest offset over the instances, so this bounds what
	// a restart rereads.
	IdleAdvance int64
	// MaxDistrictsPerTx bounds the districts one transaction writes (DefaultMaxDistrictsPerTx): each
	// takes a lock per table and index it touches, and PostgreSQL's lock table is sized by
	// max_locks_per_transaction. A batch spanning more districts is written as several transactions,
	// each a contiguous run of offsets.
	MaxDistrictsPerTx int
}

// Store writes enriched events into the district schemas, each on the instance its district is placed
// on. It keeps the consumed offsets per instance, in the instance's control.consumer_offsets, updated in
// the transaction that writes the state: a partition's records are written to each instance that holds
// some of their districts, one transaction per instance, and each instance skips what it already holds.
// A consumer resumes a partition at the lowest offset any instance stored for it.
//
// It is safe for concurrent use by the writers of different partitions, and two Stores writing the same
// partition (a consumer that lost it and the one that got it) never apply a record twice: the
// partition's offset row is locked for the transaction on each instance.
type Store struct {
	consumer    string
	fleet       *fleet.Fleet
	codec       *records.Codec
	keys        Keys
	applier     *Applier
	log         *slog.Logger
	tracer      trace.Tracer
	applied     metric.Int64Counter
	skipped     metric.Int64Counter
	idleAdvance int64
	maxDist     int

	mu      sync.Mutex
	ensured map[string]bool            // tenants whose district schema is known to be migrated
	known   map[int32]map[string]int64 // partition -> instance -> stored next offset, as last seen
}

// New returns a Store that records offsets under consumer (the consumer group's name).
func New(consumer string, deps Deps) (*Store, error) {
	if consumer == "" || deps.Fleet == nil || deps.Codec == nil || deps.Log == nil {
		return nil, errors.New("pgstore: consumer, fleet, codec and log are required")
	}
	tp, mp := deps.Tracer, deps.Meter
	if tp == nil {
		tp = tracenoop.NewTracerProvider()
	}
	if mp == nil {
		mp = metricnoop.NewMeterProvider()
	}
	m := mp.Meter("sink")
	applied, err := m.Int64Counter("sink_records_applied", metric.WithDescription("enriched records applied to district state"))
	if err != nil {
		return nil, fmt.Errorf("creating metric: %w", err)
	}
	skipped, err := m.Int64Counter("sink_records_skipped", metric.WithDescription("enriched records consumed without changing state, by reason"))
	if err != nil {
		return nil, fmt.Errorf("creating metric: %w", err)
	}
	applier, err := NewApplier()
	if err != nil {
		return nil, err
	}
	s := &Store{
		consumer: consumer, fleet: deps.Fleet, codec: deps.Codec, keys: deps.Keys,
		applier: applier, log: deps.Log, tracer: tp.Tracer("sink"), applied: applied, skipped: skipped,
		idleAdvance: deps.IdleAdvance, maxDist: deps.MaxDistrictsPerTx,
		ensured: map[string]bool{}, known: map[int32]map[string]int64{},
	}
	if s.idleAdvance <= 0 {
		s.idleAdvance = DefaultIdleAdvance
	}
	if s.maxDist <= 0 {
		s.maxDist = DefaultMaxDistrictsPerTx
	}
	return s, nil
}

// NextOffsets returns, for each given partition of topic that some instance holds offsets of, the lowest
// next offset over the instances that do. Every registered instance must answer.
func (s *Store) NextOffsets(ctx context.Context, topic string, partitions []int32) (map[int32]int64, error) {
	instances, err := s.fleet.Instances(ctx)
	if err != nil {
		return nil, err
	}
	stored := map[int32]map[string]int64{}
	for _, in := range instances {
		pool, err := s.fleet.Pool(ctx, in.Name)
		if err != nil {
			return nil, err
		}
		rows, err := pool.Query(ctx, `SELECT partition, next_offset FROM control.consumer_offsets
			WHERE consumer = $1 AND topic = $2 AND partition = ANY($3)`, s.consumer, topic, partitions)
		if err != nil {
			return nil, fmt.Errorf("reading consumer offsets on instance %s: %w", in.Name, err)
		}
		var p int32
		var next int64
		if _, err := pgx.ForEachRow(rows, []any{&p, &next}, func() error {
			if stored[p] == nil {
				stored[p] = map[string]int64{}
			}
			stored[p][in.Name] = next
			return nil
		}); err != nil {
			return nil, fmt.Errorf("reading consumer offsets on instance %s: %w", in.Name, err)
		}
	}
	out := map[int32]int64{}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range partitions {
		if len(stored[p]) == 0 {
			delete(s.known, p)
			continue
		}
		s.known[p] = stored[p]
		out[p] = slices.Min(slices.Collect(maps.Values(stored[p])))
	}
	return out, nil
}

// Write applies the records of one partition and moves the partition's stored offsets past them: on each
// instance that holds some of their districts, in one transaction with the state (several when the
// batch spans more than MaxDistrictsPerTx districts, each a contiguous run of offsets). Records below an
// instance's stored offset were applied there before (by this or another consumer) and are dropped; the
// offset row stays locked until commit, so a concurrent writer waits and then drops them. Each
// transaction holds the shared advisory lock (tenancy.DistrictLockKey) of every district it writes.
func (s *Store) Write(ctx context.Context, topic string, partition int32, recs []*kgo.Record) (err error) {
	if len(recs) == 0 {
		return nil
	}
	ctx, span := s.tracer.Start(ctx, "sink.write", trace.WithLinks(links(recs)...), trace.WithAttributes(
		attribute.String("messaging.destination.name", topic), attribute.Int("messaging.destination.partition.id", int(partition)),
		attribute.Int("messaging.batch.message_count", len(recs))))
	defer func() {
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}()

	batch, err := Decode(ctx, s.codec, s.keys, s.log, recs)
	if err != nil {
		return err
	}
	floor := s.storedFloor(partition)
	for _, d := range batch {
		if reason, ok := refusals[d.Skip]; ok && d.Offset >= floor {
			return kafkax.Poison(d.Offset, reason, fmt.Errorf("the sink cannot apply it: %s", d.Skip))
		}
	}
	// A district moved while the batch was written (ErrPlacementChanged) is placed anew and the batch
	// written again at once: what the instances committed is skipped by their offsets.
	for attempt := 1; ; attempt++ {
		err := s.writeBatch(ctx, topic, partition, recs, batch)
		if !errors.Is(err, ErrPlacementChanged) || attempt == placementAttempts {
			return err
		}
		s.log.InfoContext(ctx, "a district moved during a write, writing the batch again", "topic", topic, "partition", partition, "err", err)
	}
}

// placementAttempts is how many times Write writes a batch whose districts keep moving before it
// returns ErrPlacementChanged to the consumer (which retries after its backoff).
const placementAttempts = 3

// writeBatch places the decoded batch's districts and writes it, chunk by chunk.
func (s *Store) writeBatch(ctx context.Context, topic string, partition int32, recs []*kgo.Record, batch []Record) error {
	placed, err := s.placeTenants(ctx, batch)
	if err != nil {
		return err
	}
	start, end := recs[0].Offset, recs[len(recs)-1].Offset+1
	if err := s.ensureOffsetRows(ctx, topic, partition, start, placed, batch); err != nil {
		return err
	}
	chunks := s.chunks(batch)
	// A stand-in for a dead-lettered record moves every instance's offset past it at once, so that a
	// restart does not read, and dead-letter, the record again.
	standIns := slices.ContainsFunc(batch, func(d Record) bool { return d.Skip == SkipDeadLettered })
	for i, chunk := range chunks {
		chunkEnd := end
		if i+1 < len(chunks) {
			chunkEnd = chunks[i+1][0].Offset
		}
		last := i+1 == len(chunks)
		if err := s.writeChunk(ctx, topic, partition, chunkEnd, chunk, placed, last, last && standIns); err != nil {
			s.forgetSchemas(batch) // a schema dropped under us (district deleted) is re-checked next time
			err = fmt.Errorf("writing %d records of %s/%d: %w", len(recs), topic, partition, err)
			if refusedContent(err) {
				return kafkax.Poison(-1, records.ReasonStoreRefused, err)
			}
			return err
		}
	}
	return nil
}

// storedFloor is the lowest offset of the partition that an instance this store wrote to may still lack
// (0 when it has not written the partition yet): a record below it was handled before, refused ones
// included, and is not refused again.
func (s *Store) storedFloor(partition int32) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.known[partition]) == 0 {
		return 0
	}
	floor := int64(math.MaxInt64)
	for _, next := range s.known[partition] {
		floor = min(floor, next)
	}
	return floor
}

// chunks splits a batch into contiguous runs of records with at most maxDist districts each.
func (s *Store) chunks(batch []Record) [][]Record {
	var out [][]Record
	seen := map[string]bool{}
	from := 0
	for i, d := range batch {
		if d.Skip != "" || seen[d.Event.TenantID] {
			continue
		}
		if len(seen) == s.maxDist {
			out = append(out, batch[from:i])
			from = i
			clear(seen)
		}
		seen[d.Event.TenantID] = true
	}
	return append(out, batch[from:])
}

// writeChunk writes a contiguous run of a partition's records, ending before end, to every instance that
// holds some of them, concurrently, one transaction each. With last, it also moves the offsets of
// instances that lag far behind (IdleAdvance), or every instance with moveAll, or of main when no
// instance holds offsets of the partition yet, so that the lowest stored offset keeps up. An instance
// that fails does not stop the others: their work is kept and the failed one retried.
func (s *Store) writeChunk(ctx context.Context, topic string, partition int32, end int64, chunk []Record,
	placed map[string]string, last, moveAll bool) error {
	groups := map[string][]Record{}
	inChunk := map[string]string{} // tenant -> instance, of every district the chunk has records of
	for _, d := range chunk {
		if d.Skip == "" {
			in := placed[d.Event.TenantID]
			groups[in] = append(groups[in], d)
			inChunk[d.Event.TenantID] = in
		}
	}
	targets := maps.Clone(groups)
	if last {
		s.mu.Lock()
		for in, next := range s.known[partition] {
			if end-next >= s.idleAdvance || (moveAll && next < end) {
				targets[in] = groups[in]
			}
		}
		if len(s.known[partition]) == 0 && len(targets) == 0 {
			targets[fleet.MainInstance] = nil
		}
		s.mu.Unlock()
	}
	if len(targets) == 0 {
		return nil
	}
	var (
		g       errgroup.Group
		mu      sync.Mutex
		errs    []error
		lowest  = end
		applied int64
	)
	for in, recs := range targets {
		g.Go(func() error {
			prev, n, err := s.writeInstance(ctx, in, topic, partition, end, recs, inChunk)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("instance %s: %w", in, err))
				return nil
			}
			lowest, applied = min(lowest, prev), applied+n
			return nil
		})
	}
	_ = g.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	s.report(ctx, topic, partition, chunk, lowest, applied)
	return nil
}

// writeInstance applies recs (all of districts on instance) in one transaction on the instance and moves
// its stored offset of the partition to end. inChunk is the instance every district with records in the
// chunk (not only those in recs) was placed on when the batch began. It returns the offset stored before
// and how many records it applied.
//
// The transaction takes the shared lock of every district in inChunk, then reads their placements again:
// a district moved meanwhile (ctl tenant move switches the placement under the district's exclusive lock
// on both instances) fails the write with ErrPlacementChanged, and the retry places it anew. Without the
// check, a writer that placed a district before the switch would write it to its old instance, or move
// this instance's offset past records of it that it routed elsewhere. Records of a district below its
// offset floor on this instance (control.district_offsets, written by a move) are already in the state
// the move copied, and are dropped.
func (s *Store) writeInstance(ctx context.Context, instance, topic string, partition int32, end int64, recs []Record,
	inChunk map[string]string) (int64, int64, error) {
	pool, err := s.fleet.Pool(ctx, instance)
	if err != nil {
		return 0, 0, err
	}
	var prev, applied int64
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		next, err := lockOffset(ctx, tx, s.consumer, topic, partition, end, len(recs) > 0)
		if err != nil {
			return err
		}
		prev, applied = next, 0
		if next >= end {
			return nil // another writer got here first
		}
		if len(inChunk) > 0 {
			keys := make([]int64, 0, len(inChunk))
			for t := range inChunk {
				keys = append(keys, tenancy.DistrictLockKey(t))
			}
			slices.Sort(keys)
			// A statement of its own, before the batch. Queued first in the batch, it was seen (in the
			// server's deadlock reports) waiting for a rebuild's exclusive lock while the transaction
			// already held a lock on a table of the district, which the rebuild then needed to swap its
			// tables in: a deadlock that could fail the rebuild.
			if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock_shared(k) FROM unnest($1::bigint[]) AS k", keys); err != nil {
				return fmt.Errorf("locking districts: %w", err)
			}
			if err := s.checkPlacements(ctx, tx, instance, inChunk); err != nil {
				return err
			}
		}
		i := 0
		for i < len(recs) && recs[i].Offset < next {
			i++
		}
		fresh, err := s.aboveFloors(ctx, tx, topic, partition, recs[i:])
		if err != nil {
			return err
		}
		b := &pgx.Batch{}
		if len(fresh) > 0 {
			groups, tenants := byTenant(fresh)
			work := make([]Work, len(tenants))
			for i, t := range tenants {
				schema, _ := tenancy.SchemaName(t) // validated in Decode
				work[i] = Work{Schema: schema, Records: groups[t]}
			}
			if err := s.applier.Queue(b, work); err != nil {
				return err
			}
			applied = int64(len(fresh))
		}
		b.Queue(`UPDATE control.consumer_offsets SET next_offset = $4, updated_at = now()
			WHERE consumer = $1 AND topic = $2 AND partition = $3`, s.consumer, topic, partition, end)
		return tx.SendBatch(ctx, b).Close()
	})
	if errors.Is(err, errOffsetRowMissing) {
		s.mu.Lock()
		delete(s.known[partition], instance)
		s.mu.Unlock()
	}
	if err != nil {
		return 0, 0, err
	}
	s.mu.Lock()
	if s.known[partition] == nil {
		s.known[partition] = map[string]int64{}
	}
	s.known[partition][instance] = max(s.known[partition][instance], end)
	s.mu.Unlock()
	return prev, applied, nil
}

// ErrPlacementChanged: a district of the batch was moved to another instance while the batch was being
// written; the write is retried with the new placement.
var ErrPlacementChanged = errors.New("district placement changed during the write")

// checkPlacements reads the placements of the districts in inChunk, under their shared locks, and fails
// with ErrPlacementChanged when one differs from what the batch was routed by. On the control instance
// the read is part of tx; elsewhere it is a query of its own on the control pool, which the main
// instance's transactions never wait for while holding a connection of another pool.
func (s *Store) checkPlacements(ctx context.Context, tx pgx.Tx, instance string, inChunk map[string]string) error {
	ids := slices.Collect(maps.Keys(inChunk))
	var now map[string]string
	var err error
	if instance == fleet.MainInstance {
		now, err = fleet.PlacementsIn(ctx, tx, ids)
	} else {
		now, err = s.fleet.PlacementsOf(ctx, ids)
	}
	if err != nil {
		return fmt.Errorf("checking placements: %w", err)
	}
	for id, was := range inChunk {
		if now[id] != was {
			return fmt.Errorf("district %s is now on instance %q, not %s: %w", id, now[id], was, ErrPlacementChanged)
		}
	}
	return nil
}

// aboveFloors drops the records below their district's offset floor on the transaction's instance
// (control.district_offsets, left there by a move: the copied state holds them).
func (s *Store) aboveFloors(ctx context.Context, tx pgx.Tx, topic string, partition int32, recs []Record) ([]Record, error) {
	if len(recs) == 0 {
		return recs, nil
	}
	_, tenants := byTenant(recs)
	rows, err := tx.Query(ctx, `SELECT tenant_id, next_offset FROM control.district_offsets
		WHERE consumer = $1 AND topic = $2 AND partition = $3 AND tenant_id = ANY($4)`, s.consumer, topic, partition, tenants)
	if err != nil {
		return nil, fmt.Errorf("reading district offsets: %w", err)
	}
	floors := map[string]int64{}
	var id string
	var next int64
	if _, err := pgx.ForEachRow(rows, []any{&id, &next}, func() error { floors[id] = next; return nil }); err != nil {
		return nil, fmt.Errorf("reading district offsets: %w", err)
	}
	if len(floors) == 0 {
		return recs, nil
	}
	return slices.DeleteFunc(slices.Clone(recs), func(d Record) bool { return d.Offset < floors[d.Event.TenantID] }), nil
}

// lockOffset returns the partition's next offset on the transaction's instance and locks its row until
// the transaction ends. An instance about to receive records has a row (ensureOffsetRows); one without
// records that has none gets one at end, which skips nothing.
func lockOffset(ctx context.Context, tx pgx.Tx, consumer, topic string, partition int32, end int64, hasRecords bool) (int64, error) {
	var next int64
	err := tx.QueryRow(ctx, `SELECT next_offset FROM control.consumer_offsets
		WHERE consumer = $1 AND topic = $2 AND partition = $3 FOR UPDATE`, consumer, topic, partition).Scan(&next)
	if errors.Is(err, pgx.ErrNoRows) && !hasRecords {
		_, err = tx.Exec(ctx, `INSERT INTO control.consumer_offsets (consumer, topic, partition, next_offset)
			VALUES ($1, $2, $3, $4)`, consumer, topic, partition, end)
		return end, err
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, errOffsetRowMissing
	}
	if err != nil {
		return 0, fmt.Errorf("locking consumer offset: %w", err)
	}
	return next, nil
}

// errOffsetRowMissing: an offset row vanished between ensureOffsetRows and the write; the retry makes it
// again.
var errOffsetRowMissing = errors.New("consumer offset row missing")

// ensureOffsetRows gives every instance that is about to receive records of the partition, and holds no
// offset of it yet, an offset row at the batch's first offset, committed before any state. Without it,
// an instance whose first transaction failed while another instance's committed would be invisible to
// NextOffsets, and its records would be skipped on resume.
func (s *Store) ensureOffsetRows(ctx context.Context, topic string, partition int32, start int64,
	placed map[string]string, batch []Record) error {
	need := map[string]bool{}
	s.mu.Lock()
	for _, d := range batch {
		if d.Skip == "" {
			in := placed[d.Event.TenantID]
			if _, ok := s.known[partition][in]; !ok {
				need[in] = true
			}
		}
	}
	s.mu.Unlock()
	for in := range need {
		pool, err := s.fleet.Pool(ctx, in)
		if err != nil {
			return err
		}
		var next int64
		if err := pool.QueryRow(ctx, `INSERT INTO control.consumer_offsets (consumer, topic, partition, next_offset)
			VALUES ($1, $2, $3, $4) ON CONFLICT (consumer, topic, partition) DO UPDATE SET consumer = EXCLUDED.consumer
			RETURNING next_offset`, s.consumer, topic, partition, start).Scan(&next); err != nil {
			return fmt.Errorf("creating consumer offset on instance %s: %w", in, err)
		}
		s.mu.Lock()
		if s.known[partition] == nil {
			s.known[partition] = map[string]int64{}
		}
		s.known[partition][in] = next
		s.mu.Unlock()
	}
	return nil
}

// placeTenants finds the instance of every tenant in the batch, marks the records of tenants that are
// unknown or deleted, and makes sure the schemas of the others are migrated. It runs before the write
// transactions so that migrations never wait for a pool connection while a transaction holds one.
func (s *Store) placeTenants(ctx context.Context, batch []Record) (map[string]string, error) {
	var ids []string
	seen := map[string]bool{}
	for _, d := range batch {
		if d.Skip == "" && !seen[d.Event.TenantID] {
			seen[d.Event.TenantID] = true
			ids = append(ids, d.Event.TenantID)
		}
	}
	if len(ids) == 0 {
		return map[string]string{}, nil
	}
	placed, err := s.fleet.PlacementsOf(ctx, ids)
	if err != nil {
		return nil, fmt.Errorf("reading tenants: %w", err)
	}
	for id, instance := range placed {
		if err := s.ensureSchema(ctx, id, instance); err != nil {
			return nil, err
		}
	}
	for i := range batch {
		if d := &batch[i]; d.Skip == "" && placed[d.Event.TenantID] == "" {
			d.Skip = SkipUnknownTenant
		}
	}
	return placed, nil
}

// ensureSchema brings the district's schema on its instance up to the template, once per Store (until
// forgotten). A missing schema is tenancy.ErrSchemaMissing: the district was deleted meanwhile.
func (s *Store) ensureSchema(ctx context.Context, tenant, instance string) error {
	s.mu.Lock()
	done := s.ensured[tenant]
	s.mu.Unlock()
	if done {
		return nil
	}
	pool, err := s.fleet.Pool(ctx, instance)
	if err != nil {
		return fmt.Errorf("checking district schema: %w", err)
	}
	if err := tenancy.UpgradeDistrictSchema(ctx, pool, tenant); err != nil {
		return fmt.Errorf("checking district schema: %w", err)
	}
	s.mu.Lock()
	s.ensured[tenant] = true
	s.mu.Unlock()
	return nil
}

func (s *Store) forgetSchemas(batch []Record) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, d := range batch {
		if d.Event != nil {
			delete(s.ensured, d.Event.TenantID)
		}
	}
}

// report counts and logs what a committed chunk did: applied records, and skipped ones at or above
// the lowest offset the instances held before (those not consumed before), one log line per skip reason
// and tenant.
func (s *Store) report(ctx context.Context, topic string, partition int32, chunk []Record, from, applied int64) {
	type key struct{ reason, tenant string }
	skipped := map[key]int64{}
	for _, d := range chunk {
		if d.Skip == "" || d.Offset < from {
			continue
		}
		k := key{reason: d.Skip}
		if d.Event != nil {
			k.tenant = d.Event.TenantID
		}
		skipped[k]++
	}
	s.applied.Add(ctx, applied)
	for k, n := range skipped {
		s.skipped.Add(ctx, n, metric.WithAttributes(attribute.String("reason", k.reason)))
		level := slog.LevelWarn
		if k.reason == SkipDeadLettered { // the consumer logged it when it dead-lettered the record
			level = slog.LevelDebug
		}
		s.log.Log(ctx, level, "skipped records", "reason", k.reason, "tenant_id", k.tenant, "records", n,
			"topic", topic, "partition", partition)
	}
}

// links points a write span at the consume spans (kotel, continuing the producers' traces) of up to
// maxLinks of its records.
func links(recs []*kgo.Record) []trace.Link {
	var out []trace.Link
	for _, r := range recs {
		if len(out) == maxLinks || r.Context == nil {
			break
		}
		if sc := trace.SpanContextFromContext(r.Context); sc.IsValid() {
			out = append(out, trace.Link{SpanContext: sc})
		}
	}
	return out
}

// refusedContent tells whether PostgreSQL refused a value of the batch itself (SQLSTATE class 22, data
// exception, such as a NUL byte in text; class 23, integrity constraint violation): a retry of the same
// records would be refused again.
func refusedContent(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (strings.HasPrefix(pgErr.Code, "22") || strings.HasPrefix(pgErr.Code, "23"))
}
