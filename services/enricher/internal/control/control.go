// Package control applies the commands of the control topic. Erasures (erase_district, erase_student)
// it applies itself and keeps as the set of erased districts and students: durable in PostgreSQL
// (control.erasures), loaded before the enricher processes anything, so every record of an erased
// district or student is suppressed, also when raw is replayed, since the set outlives every offset.
// Every other command (policy_updated, tenant_deleted, ...) it passes on once its batch committed, so
// that caches drop what the command changed.
//
// Commands are applied at least once and idempotently: each batch of commands and the control topic
// offsets after it commit in one PostgreSQL transaction (control.consumer_offsets), and every instance
// reads all partitions of the control topic.
package control

import (
	"context"
	"errors"
	"fmt"
	"github.com/cenkalti/backoff/v5"
	"log/slog"
	"sync"
	"time"

	"github.com/edtech-analytics/platform/libs/kafkax"
	"github.com/edtech-analytics/platform/libs/records"
	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/edtech-analytics/platform/libs/tenancy/tenants"
	"github.com/edtech-analytics/platform/services/enricher/internal/identity"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Registry is the set of erased districts and students. It is safe for concurrent use.
type Registry struct {
	mu        sync.RWMutex
	districts map[string]bool
	students  map[string]map[string]bool // tenant -> internal id
}

// Load reads the registry from control.erasures.
func Load(ctx context.Context, pool *pgxpool.Pool) (*Registry, error) {
	r := &Registry{districts: map[string]bool{}, students: map[string]map[string]bool{}}
	rows, err := pool.Query(ctx, "SELECT tenant_id, kind, coalesce(internal_id::text, '') FROM control.erasures")
	if err != nil {
		return nil, fmt.Errorf("loading erasures: %w", err)
	}
	var tenant, kind, id string
	_, err = pgx.ForEachRow(rows, []any{&tenant, &kind, &id}, func() error {
		r.add(tenant, id)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("loading erasures: %w", err)
	}
	return r, nil
}

// add records an erasure: a student when internalID is set, else the district.
func (r *Registry) add(tenant, internalID string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if internalID == "" {
		r.districts[tenant] = true
		return
	}
	if r.students[tenant] == nil {
		r.students[tenant] = map[string]bool{}
	}
	r.students[tenant][internalID] = true
}

// District reports whether the district was erased.
func (r *Registry) District(tenant string) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.districts[tenant]
}

// Student reports whether the student (or its district) was erased.
func (r *Registry) Student(tenant, internalID string) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.districts[tenant] || r.students[tenant][internalID]
}

// Tenants gives a district (with its schema in place).
type Tenants interface {
	Tenant(ctx context.Context, id string) (tenants.Tenant, error)
}

// Identities resolves SIS ids and erases a student's identifiers.
type Identities interface {
	Resolve(ctx context.Context, t tenants.Tenant, source, sis string) (identity.Identity, error)
	Erase(ctx context.Context, tx pgx.Tx, t tenants.Tenant, internalID string) error
}

// Context erases a student's roster context.
type Context interface {
	Erase(ctx context.Context, tx pgx.Tx, tenant, internalID string) error
}

// ConsumerName keys the control topic offsets in control.consumer_offsets.
const ConsumerName = "enricher-control"

// Consumer applies the control topic.
type Consumer struct {
	Pool *pgxpool.Pool // the control schema's
	// Pools finds the instance of a district's schema; nil means every district lives with the control
	// schema.
	Pools identity.Pools
	// Topic is the control topic; Reader reads it (a kafkax.NewReader client, used by this consumer alone).
	Topic      string
	Reader     *kgo.Client
	Log        *slog.Logger
	Codec      *records.Codec
	Registry   *Registry
	Tenants    Tenants
	Identities Identities
	Context    Context
	// OnCommand is told of every other command (policy_updated, tenant_deleted, ...) after its batch
	// committed, so caches can drop what it changed. Optional.
	OnCommand func(records.ControlCommand)
	// Backoff between attempts at a batch that failed (default 1s).
	Backoff time.Duration
}

// Run applies commands until ctx is done. caughtUp is called once, when every partition has been read
// up to the end it had when Run started: the enricher processes nothing before that.
func (c *Consumer) Run(ctx context.Context, caughtUp func()) error {
	topic := c.Topic
	ends, err := kafkax.EndOffsets(ctx, c.Reader, topic)
	if err != nil {
		return err
	}
	stored, err := c.storedOffsets(ctx, topic)
	if err != nil {
		return err
	}
	start := map[int32]kgo.Offset{}
	behind := map[int32]int64{} // partition -> end offset still to reach
	for p, end := range ends {
		next := stored[p]
		start[p] = kgo.NewOffset().At(next)
		if end > next {
			behind[p] = end
		}
	}
	// The reader keeps transaction markers: a marker may be a partition's last offset, and seeing it
	// tells the end is reached.
	cl := c.Reader
	cl.AddConsumePartitions(map[string]map[int32]kgo.Offset{topic: start})
	log := c.Log.With("topic", topic)
	if len(behind) == 0 {
		caughtUp()
	}
	for {
		fetches := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil
		}
		fetches.EachError(func(_ string, p int32, err error) {
			log.Warn("fetching control commands", "partition", p, "err", err)
		})
		var applyErr error
		fetches.EachPartition(func(ft kgo.FetchTopicPartition) {
			if len(ft.Records) == 0 || applyErr != nil {
				return
			}
			applyErr = c.applyWithRetry(ctx, log, ft.Partition, ft.Records)
			last := ft.Records[len(ft.Records)-1].Offset
			if end, ok := behind[ft.Partition]; ok && last+1 >= end {
				delete(behind, ft.Partition)
				if len(behind) == 0 {
					caughtUp()
				}
			}
		})
		if applyErr != nil {
			return applyErr
		}
	}
}

// storedOffsets returns the next offset to read per partition (0 for partitions never read).
func (c *Consumer) storedOffsets(ctx context.Context, topic string) (map[int32]int64, error) {
	rows, err := c.Pool.Query(ctx, `SELECT partition, next_offset FROM control.consumer_offsets
		WHERE consumer = $1 AND topic = $2`, ConsumerName, topic)
	if err != nil {
		return nil, fmt.Errorf("reading control topic offsets: %w", err)
	}
	out := map[int32]int64{}
	var p int32
	var next int64
	_, err = pgx.ForEachRow(rows, []any{&p, &next}, func() error {
		out[p] = next
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading control topic offsets: %w", err)
	}
	return out, nil
}

// applyWithRetry applies one partition's batch, retrying transient failures until ctx is done.
func (c *Consumer) applyWithRetry(ctx context.Context, log *slog.Logger, partition int32, recs []*kgo.Record) error {
	wait := c.Backoff
	if wait <= 0 {
		wait = time.Second
	}
	_, _ = backoff.Retry(ctx, func() (struct{}, error) { // it ends only with success or ctx
		err := c.apply(ctx, log, partition, recs)
		if err != nil && ctx.Err() == nil {
			log.Warn("applying control commands; retrying", "partition", partition, "err", err)
		}
		return struct{}{}, err
	}, backoff.WithBackOff(backoff.NewConstantBackOff(wait)), backoff.WithMaxElapsedTime(0))
	return nil
}

// erased is an erasure to add to the registry once its transaction committed.
type erased struct{ tenant, internalID string }

func (c *Consumer) apply(ctx context.Context, log *slog.Logger, partition int32, recs []*kgo.Record) error {
	var (
		done   []erased
		others []records.ControlCommand
	)
	err := pgx.BeginFunc(ctx, c.Pool, func(tx pgx.Tx) error {
		done, others = done[:0], others[:0]
		for _, rec := range recs {
			if rec.Attrs.IsControl() {
				continue
			}
			var cmd records.ControlCommand
			if err := c.Codec.Decode(rec.Value, &cmd); err != nil {
				if errors.Is(err, records.ErrBadFrame) || errors.Is(err, records.ErrUnknownSchema) {
					log.Warn("skipping undecodable control command", "partition", partition, "offset", rec.Offset, "err", err)
					continue
				}
				return err
			}
			switch cmd.Type {
			case records.CommandEraseDistrict:
				if err := record(ctx, tx, cmd, ""); err != nil {
					return err
				}
				done = append(done, erased{cmd.TenantID, ""})
			case records.CommandEraseStudent:
				id, err := c.eraseStudent(ctx, tx, log, cmd)
				if err != nil || id == "" {
					return err
				}
				done = append(done, erased{cmd.TenantID, id})
			default:
				others = append(others, cmd)
			}
		}
		_, err := tx.Exec(ctx, `INSERT INTO control.consumer_offsets (consumer, topic, partition, next_offset)
			VALUES ($1, $2, $3, $4) ON CONFLICT (consumer, topic, partition) DO UPDATE
			SET next_offset = GREATEST(control.consumer_offsets.next_offset, EXCLUDED.next_offset), updated_at = now()`,
			ConsumerName, recs[0].Topic, partition, recs[len(recs)-1].Offset+1)
		return err
	})
	if err != nil {
		return fmt.Errorf("applying control commands: %w", err)
	}
	for _, e := range done {
		c.Registry.add(e.tenant, e.internalID)
		log.Info("erasure applied", "tenant_id", e.tenant, "student", e.internalID != "")
	}
	if c.OnCommand != nil {
		for _, cmd := range others {
			c.OnCommand(cmd)
		}
	}
	return nil
}

// eraseStudent erases the student a command names, by internal id or by (source, SIS id), and returns
// its internal id ("" when the command names nobody the district knows).
func (c *Consumer) eraseStudent(ctx context.Context, tx pgx.Tx, log *slog.Logger, cmd records.ControlCommand) (string, error) {
	t, err := c.Tenants.Tenant(ctx, cmd.TenantID)
	if errors.Is(err, tenancy.ErrNotFound) {
		log.Warn("erase of a student of an unknown district ignored", "tenant_id", cmd.TenantID, "command_id", cmd.CommandID)
		return "", nil
	}
	if err != nil {
		return "", err
	}
	var id string
	switch {
	case cmd.StudentInternalID != nil:
		id = *cmd.StudentInternalID
	case cmd.SourceID != nil && cmd.SISID != nil:
		// Resolving an unseen SIS id creates its identity, so the student's future records are suppressed.
		ident, err := c.Identities.Resolve(ctx, t, *cmd.SourceID, *cmd.SISID)
		if err != nil {
			return "", err
		}
		id = ident.InternalID
	default:
		log.Warn("erase_student command names no student", "tenant_id", cmd.TenantID, "command_id", cmd.CommandID)
		return "", nil
	}
	err = c.inDistrict(ctx, tx, cmd.TenantID, func(dtx pgx.Tx) error {
		if err := c.Identities.Erase(ctx, dtx, t, id); err != nil {
			return err
		}
		return c.Context.Erase(ctx, dtx, cmd.TenantID, id)
	})
	if err != nil {
		return "", err
	}
	return id, record(ctx, tx, cmd, id)
}

// inDistrict runs fn in tx when the district lives with the control schema, so the erasure commits with
// its record in the registry; otherwise in a transaction of its own on the district's instance, committed
// first. Erasing is idempotent, so if the control transaction then fails, its retry erases again
// harmlessly.
func (c *Consumer) inDistrict(ctx context.Context, tx pgx.Tx, tenantID string, fn func(pgx.Tx) error) error {
	if c.Pools == nil {
		return fn(tx)
	}
	pool, err := c.Pools.Pool(ctx, tenantID)
	if err != nil {
		return err
	}
	if pool == c.Pool {
		return fn(tx)
	}
	return pgx.BeginFunc(ctx, pool, fn)
}

func record(ctx context.Context, tx pgx.Tx, cmd records.ControlCommand, internalID string) error {
	kind, id := "district", any(nil)
	if internalID != "" {
		kind, id = "student", internalID
	}
	_, err := tx.Exec(ctx, `INSERT INTO control.erasures (command_id, tenant_id, kind, internal_id, issued_at, issued_by)
		VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (command_id) DO NOTHING`,
		cmd.CommandID, cmd.TenantID, kind, id, cmd.IssuedAt, cmd.IssuedBy)
	if err != nil {
		return fmt.Errorf("recording erasure: %w", err)
	}
	return nil
}
