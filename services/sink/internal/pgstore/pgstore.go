// Package pgstore keeps each district's current state in PostgreSQL, in its own schema district_<id>, from
// the enriched topic. It implements kafkax.Store: the consumed offsets live in control.consumer_offsets and
// are written in the same transaction as the state, so every record changes the state exactly once.
package pgstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/edtech-analytics/platform/libs/records"
	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

// Reasons a record is skipped (the reason attribute of sink_records_skipped).
const (
	SkipUndecodable   = "undecodable"    // not a decodable EnrichedEvent
	SkipInvalid       = "invalid"        // a tenant id, student id, event id or payload that breaks the rules
	SkipUnknownTenant = "unknown_tenant" // tenant not in control.tenants, or deleted
	SkipUnsupported   = "unsupported"    // roster records and unknown types: not kept by the sink yet
)

// maxLinks caps the links from a sink.write span to the consume spans of its records.
const maxLinks = 32

// Deps are what a Store needs. Tracer and Meter may be nil.
type Deps struct {
	Pool   *pgxpool.Pool
	Codec  *records.Codec
	Log    *slog.Logger
	Tracer trace.TracerProvider
	Meter  metric.MeterProvider
}

// Store writes enriched events into the district schemas. It is safe for concurrent use by the writers
// of different partitions, and two Stores writing the same partition (a consumer that lost it and the
// one that got it) never apply a record twice: the partition's offset row is locked for the transaction.
type Store struct {
	consumer string
	pool     *pgxpool.Pool
	codec    *records.Codec
	tenants  *tenancy.Store
	log      *slog.Logger
	tracer   trace.Tracer
	applied  metric.Int64Counter
	skipped  metric.Int64Counter

	mu      sync.Mutex
	ensured map[string]bool // tenants whose district schema is known to be migrated
}

// New returns a Store that records offsets under consumer (the consumer group's name).
func New(consumer string, deps Deps) (*Store, error) {
	if consumer == "" || deps.Pool == nil || deps.Codec == nil || deps.Log == nil {
		return nil, errors.New("pgstore: consumer, pool, codec and log are required")
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
	return &Store{
		consumer: consumer, pool: deps.Pool, codec: deps.Codec, tenants: tenancy.NewStore(deps.Pool),
		log: deps.Log, tracer: tp.Tracer("sink"), applied: applied, skipped: skipped, ensured: map[string]bool{},
	}, nil
}

// NextOffsets returns the stored next offset of each given partition of topic that has one.
func (s *Store) NextOffsets(ctx context.Context, topic string, partitions []int32) (map[int32]int64, error) {
	rows, err := s.pool.Query(ctx, `SELECT partition, next_offset FROM control.consumer_offsets
		WHERE consumer = $1 AND topic = $2 AND partition = ANY($3)`, s.consumer, topic, partitions)
	if err != nil {
		return nil, fmt.Errorf("reading consumer offsets: %w", err)
	}
	out := map[int32]int64{}
	var p int32
	var next int64
	if _, err := pgx.ForEachRow(rows, []any{&p, &next}, func() error { out[p] = next; return nil }); err != nil {
		return nil, fmt.Errorf("reading consumer offsets: %w", err)
	}
	return out, nil
}

// decoded is one record after decoding and checks: either it applies (skip == "") or it is skipped.
type decoded struct {
	offset  int64
	skip    string
	ev      *records.EnrichedEvent
	student pgtype.UUID
	eventID pgtype.UUID
}

// Write applies the records of one partition and moves the partition's stored offset past them, in one
// transaction. Records below the stored offset were applied before (by this or another consumer) and
// are dropped; the offset row stays locked until commit, so a concurrent writer waits and then drops them.
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

	batch, err := s.decode(recs)
	if err != nil {
		return err
	}
	if err := s.checkTenants(ctx, batch); err != nil {
		return err
	}
	var fresh []decoded
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		next, err := lockOffset(ctx, tx, s.consumer, topic, partition)
		if err != nil {
			return err
		}
		fresh = batch
		for len(fresh) > 0 && fresh[0].offset < next {
			fresh = fresh[1:]
		}
		if len(fresh) == 0 {
			return nil // another writer got here first
		}
		b := &pgx.Batch{}
		queueState(b, fresh)
		b.Queue(`UPDATE control.consumer_offsets SET next_offset = $4, updated_at = now()
			WHERE consumer = $1 AND topic = $2 AND partition = $3`,
			s.consumer, topic, partition, fresh[len(fresh)-1].offset+1)
		return tx.SendBatch(ctx, b).Close()
	})
	if err != nil {
		s.forgetSchemas(batch) // a schema dropped under us (district erased) is re-checked next time
		return fmt.Errorf("writing %d records of %s/%d: %w", len(recs), topic, partition, err)
	}
	s.report(ctx, topic, partition, fresh)
	return nil
}

// lockOffset returns the partition's next offset, creating its row when missing, and locks the row until
// the transaction ends.
func lockOffset(ctx context.Context, tx pgx.Tx, consumer, topic string, partition int32) (int64, error) {
	b := &pgx.Batch{}
	b.Queue(`INSERT INTO control.consumer_offsets (consumer, topic, partition, next_offset)
		VALUES ($1, $2, $3, 0) ON CONFLICT DO NOTHING`, consumer, topic, partition)
	var next int64
	b.Queue(`SELECT next_offset FROM control.consumer_offsets
		WHERE consumer = $1 AND topic = $2 AND partition = $3 FOR UPDATE`, consumer, topic, partition).
		QueryRow(func(row pgx.Row) error { return row.Scan(&next) })
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return 0, fmt.Errorf("locking consumer offset: %w", err)
	}
	return next, nil
}

// decode decodes every record and marks the ones to skip. Only a transient decoding failure (the schema
// registry unreachable) is an error; records that can never decode are skipped, not retried forever.
func (s *Store) decode(recs []*kgo.Record) ([]decoded, error) {
	out := make([]decoded, len(recs))
	for i, r := range recs {
		d := &out[i]
		d.offset = r.Offset
		ev := &records.EnrichedEvent{}
		if err := s.codec.Decode(r.Value, ev); err != nil {
			if !errors.Is(err, records.ErrBadFrame) && !errors.Is(err, records.ErrUnknownSchema) {
				return nil, fmt.Errorf("decoding record at offset %d: %w", r.Offset, err)
			}
			s.log.Warn("skipping undecodable record", "partition", r.Partition, "offset", r.Offset, "err", err)
			d.skip = SkipUndecodable
			continue
		}
		d.ev = ev
		d.skip = d.check()
	}
	return out, nil
}

// check returns why the record cannot apply, or "" when it can.
func (d *decoded) check() string {
	ev := d.ev
	var payload bool // the payload this sink reads is present
	switch ev.Type {
	case records.TypeAttendance:
		payload = ev.Attendance != nil
	case records.TypeAssessmentResult:
		payload = ev.AssessmentResult != nil
	case records.TypeAssignmentSubmission:
		payload = ev.AssignmentSubmission != nil
	case records.TypeSession, records.TypeContentView:
		payload = true // only counted as activity
	default:
		return SkipUnsupported // roster state comes later
	}
	if !payload || tenancy.ValidTenantID(ev.TenantID) != nil ||
		d.student.Scan(ev.Actor.InternalID) != nil || d.eventID.Scan(ev.EventID) != nil {
		return SkipInvalid
	}
	return ""
}

// checkTenants marks the records of tenants that are unknown or deleted, and makes sure the schemas of
// the others exist and are migrated. It runs before the write transaction so that migrations never wait
// for a pool connection while the transaction holds one.
func (s *Store) checkTenants(ctx context.Context, batch []decoded) error {
	var ids []string
	seen := map[string]bool{}
	for _, d := range batch {
		if d.skip == "" && !seen[d.ev.TenantID] {
			seen[d.ev.TenantID] = true
			ids = append(ids, d.ev.TenantID)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	rows, err := s.pool.Query(ctx, "SELECT id FROM control.tenants WHERE id = ANY($1) AND deleted_at IS NULL", ids)
	if err != nil {
		return fmt.Errorf("reading tenants: %w", err)
	}
	live, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("reading tenants: %w", err)
	}
	clear(seen)
	for _, id := range live {
		seen[id] = true
		if err := s.ensureSchema(ctx, id); err != nil {
			return err
		}
	}
	for i := range batch {
		if d := &batch[i]; d.skip == "" && !seen[d.ev.TenantID] {
			d.skip = SkipUnknownTenant
		}
	}
	return nil
}

func (s *Store) ensureSchema(ctx context.Context, tenant string) error {
	s.mu.Lock()
	done := s.ensured[tenant]
	s.mu.Unlock()
	if done {
		return nil
	}
	if err := s.tenants.EnsureDistrictSchema(ctx, tenant); err != nil {
		return fmt.Errorf("ensuring district schema: %w", err)
	}
	s.mu.Lock()
	s.ensured[tenant] = true
	s.mu.Unlock()
	return nil
}

func (s *Store) forgetSchemas(batch []decoded) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, d := range batch {
		if d.ev != nil {
			delete(s.ensured, d.ev.TenantID)
		}
	}
}

// report counts and logs what a committed write did: one log line per skip reason and tenant.
func (s *Store) report(ctx context.Context, topic string, partition int32, fresh []decoded) {
	type key struct{ reason, tenant string }
	skipped := map[key]int64{}
	var applied int64
	for _, d := range fresh {
		if d.skip == "" {
			applied++
			continue
		}
		k := key{reason: d.skip}
		if d.ev != nil {
			k.tenant = d.ev.TenantID
		}
		skipped[k]++
	}
	s.applied.Add(ctx, applied)
	for k, n := range skipped {
		s.skipped.Add(ctx, n, metric.WithAttributes(attribute.String("reason", k.reason)))
		level := slog.LevelWarn
		if k.reason == SkipUnsupported {
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
