// Package tenants is the lifecycle of districts (tenants): creating one with its schema on the instance it
// is placed on, reading them, keeping their schemas on the current template, and deleting one.
package tenants

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/edtech-analytics/platform/libs/tenancy/credentials"
	"github.com/edtech-analytics/platform/libs/tenancy/fleet"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ErrExists: Create was given an id that is already taken.
var ErrExists = errors.New("tenant already exists")

// pseudonymKeySize is the length of a district's HMAC secret for pseudonyms.
const pseudonymKeySize = 32

// Tenant is a district.
type Tenant struct {
	ID     string `json:"id"`
	Name   string `json:"name"`
	Status string `json:"status"`
	// PseudonymKey is the district's 32-byte HMAC secret for pseudonymising students. Keep it out of logs
	// and output.
	PseudonymKey []byte     `json:"-"`
	CreatedAt    time.Time  `json:"created_at"`
	DeletedAt    *time.Time `json:"deleted_at,omitempty"`
}

// Store reads and writes control.tenants, and creates, upgrades and drops district schemas on the
// instances the districts are placed on. Run tenancy.Migrate first.
type Store struct {
	pool  *pgxpool.Pool
	fleet *fleet.Fleet
}

// New returns a Store over a fleet, whose control pool holds the control schema.
func New(f *fleet.Fleet) *Store {
	return &Store{pool: f.Control(), fleet: f}
}

const columns = "id, name, status, pseudonym_key, created_at, deleted_at"

func scan(row pgx.Row) (Tenant, error) {
	var t Tenant
	err := row.Scan(&t.ID, &t.Name, &t.Status, &t.PseudonymKey, &t.CreatedAt, &t.DeletedAt)
	return t, err
}

// Create registers a district on the default instance; see CreateOn.
func (s *Store) Create(ctx context.Context, id, name string) (Tenant, error) {
	return s.CreateOn(ctx, id, name, "")
}

// CreateOn registers a district with a fresh pseudonym key and places it on instance (the default
// instance when empty), after creating its schema there and applying the district template. A tenant row
// therefore always has a migrated schema; if the template fails, no tenant is recorded and the call can
// be retried. The tenant and its placement are recorded together. It returns ErrExists when id is taken,
// tenancy.ErrNotFound for an unknown instance and tenancy.ErrInvalidArgument for a bad id or name.
func (s *Store) CreateOn(ctx context.Context, id, name, instance string) (Tenant, error) {
	if err := tenancy.ValidTenantID(id); err != nil {
		return Tenant{}, err
	}
	name = strings.TrimSpace(name)
	if name == "" || len(name) > 200 {
		return Tenant{}, fmt.Errorf("%w: tenant name: must be 1-200 characters", tenancy.ErrInvalidArgument)
	}
	if _, err := s.Tenant(ctx, id); err == nil {
		return Tenant{}, fmt.Errorf("tenant %s: %w", id, ErrExists)
	} else if !errors.Is(err, tenancy.ErrNotFound) {
		return Tenant{}, err
	}
	instance, err := s.fleet.Resolve(ctx, instance)
	if err != nil {
		return Tenant{}, err
	}
	pool, err := s.fleet.Pool(ctx, instance)
	if err != nil {
		return Tenant{}, err
	}
	schema, _ := tenancy.SchemaName(id) // validated above
	if err := tenancy.ApplyDistrictTemplate(ctx, pool, schema); err != nil {
		return Tenant{}, fmt.Errorf("migrating district schema of tenant %s: %w", id, err)
	}
	key := make([]byte, pseudonymKeySize)
	if _, err := rand.Read(key); err != nil {
		return Tenant{}, fmt.Errorf("generating pseudonym key: %w", err)
	}
	var t Tenant
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var err error
		t, err = scan(tx.QueryRow(ctx,
			"INSERT INTO control.tenants (id, name, pseudonym_key) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING RETURNING "+
				columns, id, name, key))
		if err != nil {
			return err
		}
		return fleet.Place(ctx, tx, id, instance)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return Tenant{}, fmt.Errorf("tenant %s: %w", id, ErrExists) // lost a race with another creator
	}
	if err != nil {
		return Tenant{}, fmt.Errorf("inserting tenant %s: %w", id, err)
	}
	return t, nil
}

// Tenant returns one tenant, deleted or not, or tenancy.ErrNotFound.
func (s *Store) Tenant(ctx context.Context, id string) (Tenant, error) {
	t, err := scan(s.pool.QueryRow(ctx, "SELECT "+columns+" FROM control.tenants WHERE id = $1", id))
	if errors.Is(err, pgx.ErrNoRows) {
		return Tenant{}, fmt.Errorf("tenant %s: %w", id, tenancy.ErrNotFound)
	}
	if err != nil {
		return Tenant{}, fmt.Errorf("reading tenant %s: %w", id, err)
	}
	return t, nil
}

// Tenants returns every tenant that is not deleted, ordered by id.
func (s *Store) Tenants(ctx context.Context) ([]Tenant, error) {
	rows, err := s.pool.Query(ctx,
		"SELECT "+columns+" FROM control.tenants WHERE deleted_at IS NULL ORDER BY id")
	if err != nil {
		return nil, fmt.Errorf("listing tenants: %w", err)
	}
	tenants, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Tenant, error) { return scan(row) })
	if err != nil {
		return nil, fmt.Errorf("listing tenants: %w", err)
	}
	return tenants, nil
}

// EnsureDistrictSchema creates the district's schema on its instance if needed and applies the template
// migrations it lacks. It is idempotent and cheap when the schema is current (two queries), so services
// may call it on first sight of a tenant. It does not require the tenant row to exist (a tenant without
// one is on fleet.MainInstance).
func (s *Store) EnsureDistrictSchema(ctx context.Context, tenantID string) error {
	schema, err := tenancy.SchemaName(tenantID)
	if err != nil {
		return err
	}
	pool, _, err := s.fleet.DistrictPool(ctx, tenantID)
	if err != nil {
		return err
	}
	if err := tenancy.ApplyDistrictTemplate(ctx, pool, schema); err != nil {
		return fmt.Errorf("migrating district schema of tenant %s: %w", tenantID, err)
	}
	return nil
}

// UpgradeDistrictSchema applies the template migrations that the district's existing schema lacks, on
// its instance; a missing schema is tenancy.ErrSchemaMissing (see tenancy.UpgradeDistrictSchema).
func (s *Store) UpgradeDistrictSchema(ctx context.Context, tenantID string) error {
	if err := tenancy.ValidTenantID(tenantID); err != nil {
		return err
	}
	pool, _, err := s.fleet.DistrictPool(ctx, tenantID)
	if err != nil {
		return err
	}
	return tenancy.UpgradeDistrictSchema(ctx, pool, tenantID)
}

// Deletion is what Delete did.
type Deletion struct {
	TenantID      string `json:"tenant_id"`
	Instance      string `json:"instance"`
	Schema        string `json:"schema"`
	KeysRevoked   int64  `json:"keys_revoked"`
	SchemaDropped bool   `json:"schema_dropped"`
}

// Delete deletes a district: the tenant is marked deleted and its API keys revoked (so gateways refuse it
// and consumers skip its records), then its schema, and any rebuild leftovers, are dropped on its
// instance under the district's exclusive lock. It is idempotent: run it again to finish a deletion whose
// drop failed. Unknown tenant: tenancy.ErrNotFound.
func (s *Store) Delete(ctx context.Context, tenantID string) (Deletion, error) {
	schema, err := tenancy.SchemaName(tenantID)
	if err != nil {
		return Deletion{}, err
	}
	d := Deletion{TenantID: tenantID, Schema: schema}
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE control.tenants SET status = $2, deleted_at = coalesce(deleted_at, now())
			WHERE id = $1`, tenantID, tenancy.StatusDeleted)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("tenant %s: %w", tenantID, tenancy.ErrNotFound)
		}
		d.KeysRevoked, err = credentials.RevokeAPIKeysOf(ctx, tx, tenantID)
		return err
	})
	if errors.Is(err, tenancy.ErrNotFound) {
		return Deletion{}, err
	}
	if err != nil {
		return Deletion{}, fmt.Errorf("marking tenant %s deleted: %w", tenantID, err)
	}
	pool, instance, err := s.fleet.DistrictPool(ctx, tenantID)
	if err != nil {
		return d, err
	}
	d.Instance = instance
	if d.SchemaDropped, err = tenancy.DropDistrictSchemas(ctx, pool, tenantID); err != nil {
		return d, fmt.Errorf("dropping schema %s on instance %s: %w", schema, instance, err)
	}
	return d, nil
}
