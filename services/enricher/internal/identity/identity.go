// Package identity maps a district's SIS ids to stable internal student ids. The mapping lives in the
// district's schema in PostgreSQL (students, student_identities) and is cached in memory; the unique key
// on (source_id, sis_id) makes two racing enricher instances agree on one id.
package identity

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"

	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Resolver resolves and creates internal ids.
type Resolver struct {
	pool *pgxpool.Pool

	mu    sync.RWMutex
	cache map[cacheKey]string
	max   int
}

type cacheKey struct{ tenant, source, sis string }

// New returns a resolver caching up to maxCached mappings.
func New(pool *pgxpool.Pool, maxCached int) *Resolver {
	return &Resolver{pool: pool, cache: map[cacheKey]string{}, max: maxCached}
}

// Resolve returns the internal id of (tenant, source, sis id), creating the student on first sight. An
// event for a student the roster has not delivered yet still gets its stable id; the roster links to it.
func (r *Resolver) Resolve(ctx context.Context, tenantID, sourceID, sisID string) (string, error) {
	k := cacheKey{tenantID, sourceID, sisID}
	r.mu.RLock()
	id, ok := r.cache[k]
	r.mu.RUnlock()
	if ok {
		return id, nil
	}
	schema, err := tenancy.SchemaName(tenantID)
	if err != nil {
		return "", err
	}
	id, err = r.lookupOrCreate(ctx, schema, sourceID, sisID)
	if err != nil {
		return "", fmt.Errorf("resolving student of tenant %s: %w", tenantID, err)
	}
	r.mu.Lock()
	if len(r.cache) >= r.max {
		clear(r.cache) // simple bound; a hot working set refills quickly
	}
	r.cache[k] = id
	r.mu.Unlock()
	return id, nil
}

func (r *Resolver) lookupOrCreate(ctx context.Context, schema, sourceID, sisID string) (string, error) {
	identities := pgx.Identifier{schema, "student_identities"}.Sanitize()
	students := pgx.Identifier{schema, "students"}.Sanitize()
	var id string
	err := r.pool.QueryRow(ctx, `SELECT internal_id::text FROM `+identities+` WHERE source_id = $1 AND sis_id = $2`, sourceID, sisID).Scan(&id)
	if err == nil {
		return id, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return "", err
	}
	fresh, err := newUUID()
	if err != nil {
		return "", err
	}
	err = pgx.BeginFunc(ctx, r.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO `+students+` (internal_id) VALUES ($1)`, fresh); err != nil {
			return err
		}
		err := tx.QueryRow(ctx, `INSERT INTO `+identities+` (source_id, sis_id, internal_id) VALUES ($1, $2, $3)
			ON CONFLICT (source_id, sis_id) DO NOTHING RETURNING internal_id::text`, sourceID, sisID, fresh).Scan(&id)
		if errors.Is(err, pgx.ErrNoRows) {
			return errRaced
		}
		return err
	})
	if errors.Is(err, errRaced) {
		// Another instance created the mapping first; our student row was rolled back. Use theirs.
		err = r.pool.QueryRow(ctx, `SELECT internal_id::text FROM `+identities+` WHERE source_id = $1 AND sis_id = $2`, sourceID, sisID).Scan(&id)
	}
	return id, err
}

var errRaced = errors.New("identity created concurrently")

// newUUID returns a random (version 4) UUID.
func newUUID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16]), nil
}
