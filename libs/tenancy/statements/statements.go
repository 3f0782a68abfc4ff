// Package statements keeps the ids of the xAPI statements a district's sources sent, with a hash of
// each one's content, in the district's schema (xapi_statements): the gateway answers a statement sent
// again with the same id by its content (the same: accepted again, nothing new; other: 409 Conflict).
package statements

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/edtech-analytics/platform/libs/tenancy"
)

// Pools finds the PostgreSQL instance of a district (fleet.DistrictPools).
type Pools interface {
	Pool(ctx context.Context, tenantID string) (*pgxpool.Pool, error)
}

// Store reads and records statement ids.
type Store struct{ pools Pools }

// New returns a store over the districts' instances.
func New(pools Pools) *Store { return &Store{pools: pools} }

func (s *Store) pool(ctx context.Context, tenantID string) (*pgxpool.Pool, string, error) {
	schema, err := tenancy.SchemaName(tenantID)
	if err != nil {
		return nil, "", err
	}
	pool, err := s.pools.Pool(ctx, tenantID)
	if err != nil {
		return nil, "", fmt.Errorf("finding the instance of district %s: %w", tenantID, err)
	}
	if err := tenancy.UpgradeDistrictSchema(ctx, pool, tenantID); err != nil {
		return nil, "", fmt.Errorf("upgrading the schema of district %s: %w", tenantID, err)
	}
	return pool, pgx.Identifier{schema, "xapi_statements"}.Sanitize(), nil
}

// Hashes returns the stored hash of each of ids the district has (absent ids are not in the map).
func (s *Store) Hashes(ctx context.Context, tenantID string, ids []string) (map[string][]byte, error) {
	out := map[string][]byte{}
	if len(ids) == 0 {
		return out, nil
	}
	pool, table, err := s.pool(ctx, tenantID)
	if err != nil {
		return nil, err
	}
	rows, err := pool.Query(ctx, `SELECT statement_id::text, hash FROM `+table+` WHERE statement_id = ANY($1::uuid[])`, ids)
	if err != nil {
		return nil, fmt.Errorf("reading xAPI statement ids: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		var h []byte
		if err := rows.Scan(&id, &h); err != nil {
			return nil, err
		}
		out[id] = h
	}
	return out, rows.Err()
}

// Record stores statement ids and hashes; an id already stored keeps its first hash.
func (s *Store) Record(ctx context.Context, tenantID, sourceID string, hashes map[string][]byte) error {
	if len(hashes) == 0 {
		return nil
	}
	pool, table, err := s.pool(ctx, tenantID)
	if err != nil {
		return err
	}
	ids := make([]string, 0, len(hashes))
	hs := make([][]byte, 0, len(hashes))
	for id, h := range hashes {
		ids, hs = append(ids, id), append(hs, h)
	}
	if _, err := pool.Exec(ctx, `INSERT INTO `+table+` (statement_id, hash, source_id)
		SELECT i, h, $3 FROM unnest($1::uuid[], $2::bytea[]) AS t(i, h) ON CONFLICT (statement_id) DO NOTHING`, ids, hs, sourceID); err != nil {
		return fmt.Errorf("recording xAPI statement ids: %w", err)
	}
	return nil
}
