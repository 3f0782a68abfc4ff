// Package ingest holds what the gateway applies per district besides its keys: a rate limit of its own
// and whether it is hot (its records spread over sub-keys), kept in control.tenants.
package ingest

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// MaxHotShards bounds a hot district's number of sub-keys.
const MaxHotShards = 1024

// RateLimit bounds the events a district may send through all gateway instances together:
// EventsPerSecond on average, with bursts of up to Burst events.
type RateLimit struct {
	EventsPerSecond int `json:"events_per_second"`
	Burst           int `json:"burst"`
}

// Settings are what the gateway needs to know of a district besides its keys.
type Settings struct {
	TenantID string `json:"tenant_id"`
	// RateLimit is the district's own limit; nil means the gateway's configured default.
	RateLimit *RateLimit `json:"rate_limit,omitempty"`
	// HotShards is 0 for a normal district. A hot district's records are keyed tenant_id/shard, with
	// shard in [0, HotShards) chosen by student, so they spread over partitions.
	HotShards int `json:"hot_shards"`
}

const columns = "id, rate_limit_eps, rate_limit_burst, hot_shards"

func scan(row pgx.Row) (Settings, error) {
	var (
		s          Settings
		eps, burst *int
	)
	if err := row.Scan(&s.TenantID, &eps, &burst, &s.HotShards); err != nil {
		return Settings{}, err
	}
	if eps != nil && burst != nil {
		s.RateLimit = &RateLimit{EventsPerSecond: *eps, Burst: *burst}
	}
	return s, nil
}

// Store reads and writes the districts' ingest settings. Run tenancy.Migrate first.
type Store struct {
	pool *pgxpool.Pool
}

// New returns a Store over the control database pool.
func New(pool *pgxpool.Pool) *Store { return &Store{pool: pool} }

// Settings returns the settings of every district that is not deleted, ordered by id.
func (s *Store) Settings(ctx context.Context) ([]Settings, error) {
	rows, err := s.pool.Query(ctx,
		"SELECT "+columns+" FROM control.tenants WHERE deleted_at IS NULL ORDER BY id")
	if err != nil {
		return nil, fmt.Errorf("listing ingest settings: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Settings, error) { return scan(row) })
	if err != nil {
		return nil, fmt.Errorf("listing ingest settings: %w", err)
	}
	return out, nil
}

// SetRateLimit sets a district's rate limit; nil returns it to the gateway's default. Unknown or deleted
// tenant: tenancy.ErrNotFound; a rate or burst below 1: tenancy.ErrInvalidArgument.
func (s *Store) SetRateLimit(ctx context.Context, tenantID string, rl *RateLimit) (Settings, error) {
	var eps, burst *int
	if rl != nil {
		if rl.EventsPerSecond < 1 || rl.Burst < 1 {
			return Settings{}, fmt.Errorf("%w: rate limit: events per second and burst must be at least 1",
				tenancy.ErrInvalidArgument)
		}
		eps, burst = &rl.EventsPerSecond, &rl.Burst
	}
	return s.update(ctx, tenantID, "rate_limit_eps = $2, rate_limit_burst = $3", eps, burst)
}

// SetHotShards flags a district hot with n sub-keys (0 turns it back into a normal district). A change
// is recorded for the enricher's dedup by a trigger (hot_changed_at, control.dedup_epoch; ADR 0007), so it
// holds for every writer of the column. Unknown or
// deleted tenant: tenancy.ErrNotFound; n outside [0, MaxHotShards]: tenancy.ErrInvalidArgument.
func (s *Store) SetHotShards(ctx context.Context, tenantID string, n int) (Settings, error) {
	if n < 0 || n > MaxHotShards {
		return Settings{}, fmt.Errorf("%w: hot shards: must be between 0 and %d", tenancy.ErrInvalidArgument, MaxHotShards)
	}
	return s.update(ctx, tenantID, "hot_shards = $2", n)
}

// update applies set ($1 is the tenant id) to a live tenant and returns its new settings.
func (s *Store) update(ctx context.Context, tenantID, set string, args ...any) (Settings, error) {
	if err := tenancy.ValidTenantID(tenantID); err != nil {
		return Settings{}, err
	}
	st, err := scan(s.pool.QueryRow(ctx,
		"UPDATE control.tenants SET "+set+" WHERE id = $1 AND deleted_at IS NULL RETURNING "+columns,
		append([]any{tenantID}, args...)...))
	if errors.Is(err, pgx.ErrNoRows) {
		return Settings{}, fmt.Errorf("tenant %s: %w", tenantID, tenancy.ErrNotFound)
	}
	if err != nil {
		return Settings{}, fmt.Errorf("updating ingest settings of tenant %s: %w", tenantID, err)
	}
	return st, nil
}

// Heartbeat records that the gateway instance id is alive now and returns how many instances are: this
// one and every other seen within ttl (by the database's clock, so the instances' clocks need not agree).
// Rows of instances gone for a day are deleted.
func (s *Store) Heartbeat(ctx context.Context, id string, ttl time.Duration) (int, error) {
	var others int
	err := s.pool.QueryRow(ctx, `WITH beat AS (
			INSERT INTO control.gateway_instances (id) VALUES ($1) ON CONFLICT (id) DO UPDATE SET last_seen = now()),
		gone AS (DELETE FROM control.gateway_instances WHERE last_seen < now() - interval '1 day')
		SELECT count(*) FROM control.gateway_instances WHERE id <> $1 AND last_seen > now() - make_interval(secs => $2)`,
		id, ttl.Seconds()).Scan(&others)
	if err != nil {
		return 0, fmt.Errorf("recording gateway instance %s: %w", id, err)
	}
	return others + 1, nil
}

// Leave removes the gateway instance id: the others take its share of the limits at their next refresh.
func (s *Store) Leave(ctx context.Context, id string) error {
	if _, err := s.pool.Exec(ctx, `DELETE FROM control.gateway_instances WHERE id = $1`, id); err != nil {
		return fmt.Errorf("removing gateway instance %s: %w", id, err)
	}
	return nil
}
