package tenancy

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// StatusDeleted is the status of a deleted tenant.
const StatusDeleted = "deleted"

// DistrictLockKey is the PostgreSQL advisory lock key of a district, taken on the district's instance:
// shared (pg_advisory_xact_lock_shared) by every transaction that writes the district's state, exclusive
// by whatever replaces or drops that state as a whole (rebuild's swap, tenant deletion).
func DistrictLockKey(tenantID string) int64 {
	h := fnv.New64a()
	h.Write([]byte("edtech-analytics/district/" + tenantID)) // writes to a hash never fail
	return int64(h.Sum64())
}

// ShadowSchemaName is the schema a rebuild of the district assembles its state in, rebuild_<id>, and
// RetiredSchemaName the one the replaced tables pass through, retired_<id>. Neither can be a district's
// schema (those start with district_).
func ShadowSchemaName(tenantID string) (string, error) {
	if err := ValidTenantID(tenantID); err != nil {
		return "", err
	}
	return "rebuild_" + tenantID, nil
}

// RetiredSchemaName: see ShadowSchemaName.
func RetiredSchemaName(tenantID string) (string, error) {
	if err := ValidTenantID(tenantID); err != nil {
		return "", err
	}
	return "retired_" + tenantID, nil
}

// EnsureShadowSchema creates the district's shadow schema on pool (the district's instance) with the
// district template applied, keeping what an interrupted rebuild left there. It returns the schema name.
func EnsureShadowSchema(ctx context.Context, pool *pgxpool.Pool, tenantID string) (string, error) {
	schema, err := ShadowSchemaName(tenantID)
	if err != nil {
		return "", err
	}
	if err := ensureSchema(ctx, pool, schema); err != nil {
		return "", fmt.Errorf("building shadow schema of tenant %s: %w", tenantID, err)
	}
	return schema, nil
}

// UpgradeDistrictSchema applies the template migrations that an existing district schema lacks. Unlike
// EnsureDistrictSchema it never creates the schema: when it is missing (the district was deleted, or
// never created) it returns ErrSchemaMissing. It holds the district's shared lock meanwhile, so it cannot
// bring back a schema that DeleteTenant is dropping. Cheap when the schema is current (two queries).
func (s *Store) UpgradeDistrictSchema(ctx context.Context, tenantID string) (err error) {
	schema, err := SchemaName(tenantID)
	if err != nil {
		return err
	}
	pool, _, err := s.DistrictPool(ctx, tenantID)
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

// Deletion is what DeleteTenant did.
type Deletion struct {
	TenantID      string `json:"tenant_id"`
	Instance      string `json:"instance"`
	Schema        string `json:"schema"`
	KeysRevoked   int64  `json:"keys_revoked"`
	SchemaDropped bool   `json:"schema_dropped"`
}

// DeleteTenant deletes a district: the tenant is marked deleted and its API keys revoked (so gateways
// refuse it and consumers skip its records), then its schema, and any rebuild leftovers, are dropped on
// its instance under the district's exclusive lock. It is idempotent: run it again to finish a deletion
// whose drop failed. Unknown tenant: ErrNotFound.
func (s *Store) DeleteTenant(ctx context.Context, tenantID string) (Deletion, error) {
	schema, err := SchemaName(tenantID)
	if err != nil {
		return Deletion{}, err
	}
	d := Deletion{TenantID: tenantID, Schema: schema}
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE control.tenants SET status = $2, deleted_at = coalesce(deleted_at, now())
			WHERE id = $1`, tenantID, StatusDeleted)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("tenant %s: %w", tenantID, ErrNotFound)
		}
		tag, err = tx.Exec(ctx, "UPDATE control.api_keys SET revoked_at = now() WHERE tenant_id = $1 AND revoked_at IS NULL",
			tenantID)
		d.KeysRevoked = tag.RowsAffected()
		return err
	})
	if errors.Is(err, ErrNotFound) {
		return Deletion{}, err
	}
	if err != nil {
		return Deletion{}, fmt.Errorf("marking tenant %s deleted: %w", tenantID, err)
	}
	pool, instance, err := s.DistrictPool(ctx, tenantID)
	if err != nil {
		return d, err
	}
	d.Instance = instance
	shadow, _ := ShadowSchemaName(tenantID)
	retired, _ := RetiredSchemaName(tenantID)
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", DistrictLockKey(tenantID)); err != nil {
			return err
		}
		if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)", schema).Scan(&d.SchemaDropped); err != nil {
			return err
		}
		for _, name := range []string{schema, shadow, retired} {
			if _, err := tx.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{name}.Sanitize()+" CASCADE"); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return d, fmt.Errorf("dropping schema %s on instance %s: %w", schema, instance, err)
	}
	return d, nil
}
