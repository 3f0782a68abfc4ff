package tenancy

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// districtMigrations is the embedded directory of the district schema template.
const districtMigrations = "migrations/district"

// DistrictLockKey is the PostgreSQL advisory lock key of a district, taken on the district's instance:
// shared (pg_advisory_xact_lock_shared) by every transaction that writes the district's state, exclusive
// by whatever replaces or drops that state as a whole (rebuild's swap, tenant deletion).
func DistrictLockKey(tenantID string) int64 {
	h := fnv.New64a()
	h.Write([]byte("edtech-analytics/district/" + tenantID)) // writes to a hash never fail
	return int64(h.Sum64())
}

// ApplyDistrictTemplate creates schema on pool (a district's instance) if needed and applies the district
// template migrations it lacks. It is idempotent and cheap when the schema is current (two queries).
// schema must be a validated name (SchemaName, ShadowSchemaName).
func ApplyDistrictTemplate(ctx context.Context, pool *pgxpool.Pool, schema string) error {
	pending, err := pendingMigrations(ctx, pool, schema, districtMigrations)
	if err != nil || !pending {
		return err
	}
	return migrateSchema(ctx, pool, schema, districtMigrations)
}

// EnsureShadowSchema creates the district's shadow schema on pool (the district's instance) with the
// district template applied, keeping what an interrupted rebuild left there. It returns the schema name.
func EnsureShadowSchema(ctx context.Context, pool *pgxpool.Pool, tenantID string) (string, error) {
	schema, err := ShadowSchemaName(tenantID)
	if err != nil {
		return "", err
	}
	if err := ApplyDistrictTemplate(ctx, pool, schema); err != nil {
		return "", fmt.Errorf("building shadow schema of tenant %s: %w", tenantID, err)
	}
	return schema, nil
}

// UpgradeDistrictSchema applies the template migrations that the district's existing schema on pool (its
// instance) lacks. Unlike ApplyDistrictTemplate it never creates the schema: when it is missing (the
// district was deleted, or never created) it returns ErrSchemaMissing. It holds the district's shared
// lock meanwhile, so it cannot bring back a schema that DropDistrictSchemas is dropping. Cheap when the
// schema is current (two queries).
func UpgradeDistrictSchema(ctx context.Context, pool *pgxpool.Pool, tenantID string) (err error) {
	schema, err := SchemaName(tenantID)
	if err != nil {
		return err
	}
	if pending, err := pendingMigrations(ctx, pool, schema, districtMigrations); err != nil || !pending {
		return err
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("acquiring connection: %w", err)
	}
	defer conn.Release()
	key := DistrictLockKey(tenantID)
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock_shared($1)", key); err != nil {
		return fmt.Errorf("locking district %s: %w", tenantID, err)
	}
	defer func() {
		if _, uerr := conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock_shared($1)", key); uerr != nil {
			// A session lock must not outlive this call: closing the connection ends the session. Only if
			// that fails too is the lock's release in doubt, and reported.
			if cerr := conn.Conn().PgConn().Close(context.WithoutCancel(ctx)); cerr != nil {
				err = errors.Join(err, fmt.Errorf("unlocking district %s: %w; closing the connection: %w", tenantID, uerr, cerr))
			}
		}
	}()
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)", schema).Scan(&exists); err != nil {
		return fmt.Errorf("checking schema %s: %w", schema, err)
	}
	if !exists {
		return fmt.Errorf("tenant %s: %w", tenantID, ErrSchemaMissing)
	}
	if err := migrateSchema(ctx, pool, schema, districtMigrations); err != nil {
		return fmt.Errorf("migrating district schema of tenant %s: %w", tenantID, err)
	}
	return nil
}

// DropDistrictSchemas drops the district's schema on pool (its instance), and any rebuild or move
// leftovers (shadow, retired, moving and moved schemas), under the district's exclusive lock. existed tells whether the
// district's schema was there to drop.
func DropDistrictSchemas(ctx context.Context, pool *pgxpool.Pool, tenantID string) (existed bool, err error) {
	schema, err := SchemaName(tenantID)
	if err != nil {
		return false, err
	}
	shadow, _ := ShadowSchemaName(tenantID)
	retired, _ := RetiredSchemaName(tenantID)
	moving, _ := MovingSchemaName(tenantID)
	moved, _ := MovedSchemaName(tenantID)
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", DistrictLockKey(tenantID)); err != nil {
			return err
		}
		if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)", schema).Scan(&existed); err != nil {
			return err
		}
		for _, name := range []string{schema, shadow, retired, moving, moved} {
			if _, err := tx.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{name}.Sanitize()+" CASCADE"); err != nil {
				return err
			}
		}
		return nil
	})
	return existed, err
}

// StaleDistricts returns those of tenantIDs whose schema on pool is missing or lacks a template
// migration. It costs two queries per 500 districts, so a fleet-wide migration skips up-to-date schemas
// cheaply.
func StaleDistricts(ctx context.Context, pool *pgxpool.Pool, tenantIDs []string) ([]string, error) {
	schemas := make([]string, 0, len(tenantIDs))
	for _, id := range tenantIDs {
		schema, err := SchemaName(id)
		if err != nil {
			return nil, err
		}
		schemas = append(schemas, schema)
	}
	current, err := currentSchemas(ctx, pool, schemas, districtMigrations)
	if err != nil {
		return nil, err
	}
	var stale []string
	for i, id := range tenantIDs {
		if !current[schemas[i]] {
			stale = append(stale, id)
		}
	}
	return stale, nil
}
