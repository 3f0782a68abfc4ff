// Package quality keeps the counts of personal data the enricher found in districts' free text: per day,
// source, field and kind, in each district's quality_pii_daily (district migration 00005), which the
// quality report reads (libs/tenancy/rosters, check "pii").
package quality

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Count is how many records of a district's source held personal data of one kind in one free-text field
// on one day (UTC).
type Count struct {
	Day                         time.Time
	Tenant, Source, Field, Kind string
	Records                     int64
}

// Pools finds the pool of the instance a district's schema lives on (fleet.DistrictPools).
type Pools interface {
	Pool(ctx context.Context, tenantID string) (*pgxpool.Pool, error)
}

// Store adds counts to the districts' tables. It is safe for concurrent use.
type Store struct {
	pools    Pools
	upgraded sync.Map // tenant -> true once its schema is known to hold the table
}

// New returns a store over the districts' schemas wherever pools places them.
func New(pools Pools) *Store { return &Store{pools: pools} }

// ErrGone marks counts of districts whose schema is gone (deleted or unknown districts): they cannot be
// stored, and retrying will not help.
var ErrGone = errors.New("district schema is gone")

// Add adds counts to the districts' quality_pii_daily, one statement per district. The first time it
// writes a district it brings the district's schema up to date (cheap when it is). It returns the counts
// it could not store with the errors; counts of districts whose schema is gone are dropped with an error
// wrapping ErrGone.
func (s *Store) Add(ctx context.Context, counts []Count) (failed []Count, err error) {
	// One row per key and statement: ON CONFLICT cannot update a row twice.
	type key struct{ day, tenant, source, field, kind string }
	sum := map[key]int{}
	byTenant := map[string][]Count{}
	for _, c := range counts {
		k := key{c.Day.UTC().Format(time.DateOnly), c.Tenant, c.Source, c.Field, c.Kind}
		if i, ok := sum[k]; ok {
			byTenant[c.Tenant][i].Records += c.Records
			continue
		}
		sum[k] = len(byTenant[c.Tenant])
		byTenant[c.Tenant] = append(byTenant[c.Tenant], c)
	}
	var errs []error
	for _, tenant := range slices.Sorted(maps.Keys(byTenant)) {
		cs := byTenant[tenant]
		if err := s.add(ctx, tenant, cs); err != nil {
			if !errors.Is(err, ErrGone) {
				failed = append(failed, cs...)
			}
			errs = append(errs, fmt.Errorf("storing pii counts of district %s: %w", tenant, err))
		}
	}
	return failed, errors.Join(errs...)
}

func (s *Store) add(ctx context.Context, tenant string, cs []Count) error {
	schema, err := tenancy.SchemaName(tenant)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrGone, err)
	}
	pool, err := s.pools.Pool(ctx, tenant)
	if errors.Is(err, tenancy.ErrNotFound) {
		return fmt.Errorf("%w: %w", ErrGone, err)
	}
	if err != nil {
		return err
	}
	if _, ok := s.upgraded.Load(tenant); !ok {
		if err := tenancy.UpgradeDistrictSchema(ctx, pool, tenant); err != nil {
			if errors.Is(err, tenancy.ErrSchemaMissing) {
				return fmt.Errorf("%w: %w", ErrGone, err)
			}
			return err
		}
		s.upgraded.Store(tenant, true)
	}
	days, sources, fields, kinds := make([]string, len(cs)), make([]string, len(cs)), make([]string, len(cs)), make([]string, len(cs))
	records := make([]int64, len(cs))
	for i, c := range cs {
		days[i], sources[i], fields[i], kinds[i], records[i] = c.Day.UTC().Format(time.DateOnly), c.Source, c.Field, c.Kind, c.Records
	}
	table := pgx.Identifier{schema, "quality_pii_daily"}.Sanitize()
	_, err = pool.Exec(ctx, `INSERT INTO `+table+` AS q (day, source_id, field, kind, records)
		SELECT * FROM unnest($1::date[], $2::text[], $3::text[], $4::text[], $5::bigint[])
		ON CONFLICT (day, source_id, field, kind) DO UPDATE SET records = q.records + EXCLUDED.records`,
		days, sources, fields, kinds, records)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && (pgErr.Code == "42P01" || pgErr.Code == "3F000") {
		// Undefined table or schema: the schema was dropped (or rebuilt) since it was checked; the next
		// attempt checks it again.
		s.upgraded.Delete(tenant)
	}
	return err
}
