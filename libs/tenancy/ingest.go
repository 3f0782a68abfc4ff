package tenancy

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// MaxHotShards bounds a hot district's number of sub-keys.
const MaxHotShards = 1024

// RateLimit bounds the events a district may send through one gateway instance: EventsPerSecond on
// average, with bursts of up to Burst events.
type RateLimit struct {
	EventsPerSecond int `json:"events_per_second"`
	Burst           int `json:"burst"`
}

// IngestSettings are what the gateway needs to know of a district besides its keys.
type IngestSettings struct {
	TenantID string `json:"tenant_id"`
	// RateLimit is the district's own limit; nil means the gateway's configured default.
	RateLimit *RateLimit `json:"rate_limit,omitempty"`
	// HotShards is 0 for a normal district. A hot district's records are keyed tenant_id/shard, with
	// shard in [0, HotShards) chosen by student, so they spread over partitions.
	HotShards int `json:"hot_shards"`
}

const ingestColumns = "id, rate_limit_eps, rate_limit_burst, hot_shards"

func scanIngest(row pgx.Row) (IngestSettings, error) {
	var (
		s          IngestSettings
		eps, burst *int
	)
	if err := row.Scan(&s.TenantID, &eps, &burst, &s.HotShards); err != nil {
		return IngestSettings{}, err
	}
	if eps != nil && burst != nil {
		s.RateLimit = &RateLimit{EventsPerSecond: *eps, Burst: *burst}
	}
	return s, nil
}

// IngestSettings returns the settings of every district that is not deleted, ordered by id.
func (s *Store) IngestSettings(ctx context.Context) ([]IngestSettings, error) {
	rows, err := s.pool.Query(ctx,
		"SELECT "+ingestColumns+" FROM control.tenants WHERE deleted_at IS NULL ORDER BY id")
	if err != nil {
		return nil, fmt.Errorf("listing ingest settings: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (IngestSettings, error) { return scanIngest(row) })
	if err != nil {
		return nil, fmt.Errorf("listing ingest settings: %w", err)
	}
	return out, nil
}

// SetRateLimit sets a district's rate limit; nil returns it to the gateway's default. Unknown or deleted
// tenant: ErrNotFound; a rate or burst below 1: ErrInvalidArgument.
func (s *Store) SetRateLimit(ctx context.Context, tenantID string, rl *RateLimit) (IngestSettings, error) {
	var eps, burst *int
	if rl != nil {
		if rl.EventsPerSecond < 1 || rl.Burst < 1 {
			return IngestSettings{}, fmt.Errorf("%w: rate limit: events per second and burst must be at least 1",
				ErrInvalidArgument)
		}
		eps, burst = &rl.EventsPerSecond, &rl.Burst
	}
	return s.updateIngest(ctx, tenantID, "rate_limit_eps = $2, rate_limit_burst = $3", eps, burst)
}

// SetHotShards flags a district hot with n sub-keys (0 turns it back into a normal district). A change
// is recorded for the enricher's dedup by a trigger (hot_changed_at, control.dedup_epoch; ADR 0007), so it
// holds for every writer of the column. Unknown or
// deleted tenant: ErrNotFound; n outside [0, MaxHotShards]: ErrInvalidArgument.
func (s *Store) SetHotShards(ctx context.Context, tenantID string, n int) (IngestSettings, error) {
	if n < 0 || n > MaxHotShards {
		return IngestSettings{}, fmt.Errorf("%w: hot shards: must be between 0 and %d", ErrInvalidArgument, MaxHotShards)
	}
	return s.updateIngest(ctx, tenantID, "hot_shards = $2", n)
}

// updateIngest applies set ($1 is the tenant id) to a live tenant and returns its new settings.
func (s *Store) updateIngest(ctx context.Context, tenantID, set string, args ...any) (IngestSettings, error) {
	if err := ValidTenantID(tenantID); err != nil {
		return IngestSettings{}, err
	}
	st, err := scanIngest(s.pool.QueryRow(ctx,
		"UPDATE control.tenants SET "+set+" WHERE id = $1 AND deleted_at IS NULL RETURNING "+ingestColumns,
		append([]any{tenantID}, args...)...))
	if errors.Is(err, pgx.ErrNoRows) {
		return IngestSettings{}, fmt.Errorf("tenant %s: %w", tenantID, ErrNotFound)
	}
	if err != nil {
		return IngestSettings{}, fmt.Errorf("updating ingest settings of tenant %s: %w", tenantID, err)
	}
	return st, nil
}
