// Package statements keeps the xAPI statements a district's sources sent, in the district's schema
// (xapi_statements): each id with a hash of its content, so the gateway answers a statement sent again
// with the same id by its content (the same: accepted again, nothing new; other: 409 Conflict), and the
// statement sealed under its actor's data key, for reading it back.
package statements

import (
	"context"
	"errors"
	"fmt"
	"time"

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

// Statement is a statement to record: its content's hash and the statement sealed.
type Statement struct {
	Hash   []byte
	Sealed string
}

// Record stores statements by id, stored at the given time; an id already stored keeps what it has.
func (s *Store) Record(ctx context.Context, tenantID, sourceID string, stored time.Time, statements map[string]Statement) error {
	if len(statements) == 0 {
		return nil
	}
	pool, table, err := s.pool(ctx, tenantID)
	if err != nil {
		return err
	}
	ids := make([]string, 0, len(statements))
	hs := make([][]byte, 0, len(statements))
	sealed := make([]string, 0, len(statements))
	for id, st := range statements {
		ids, hs, sealed = append(ids, id), append(hs, st.Hash), append(sealed, st.Sealed)
	}
	if _, err := pool.Exec(ctx, `INSERT INTO `+table+` (statement_id, hash, statement, stored, source_id)
		SELECT i, h, st, $4, $5 FROM unnest($1::uuid[], $2::bytea[], $3::text[]) AS t(i, h, st) ON CONFLICT (statement_id) DO NOTHING`,
		ids, hs, sealed, stored, sourceID); err != nil {
		return fmt.Errorf("recording xAPI statements: %w", err)
	}
	return nil
}

// Get returns a statement as sealed and when it was stored; ErrNotFound when the district has none by
// that id.
func (s *Store) Get(ctx context.Context, tenantID, id string) (string, time.Time, error) {
	pool, table, err := s.pool(ctx, tenantID)
	if err != nil {
		return "", time.Time{}, err
	}
	var sealed string
	var stored time.Time
	err = pool.QueryRow(ctx, `SELECT statement, stored FROM `+table+` WHERE statement_id = $1::uuid`, id).Scan(&sealed, &stored)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", time.Time{}, ErrNotFound
	}
	if err != nil {
		return "", time.Time{}, fmt.Errorf("reading xAPI statement %s: %w", id, err)
	}
	return sealed, stored, nil
}

// ErrNotFound: the district has no statement by that id.
var ErrNotFound = errors.New("no such statement")
