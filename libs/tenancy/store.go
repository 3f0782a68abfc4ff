package tenancy

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// districtMigrations is the embedded directory of the district schema template.
const districtMigrations = "migrations/district"

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

// Store reads and writes the control schema, and creates district schemas on the instances the
// districts are placed on. Run Migrate first.
type Store struct {
	pool  *pgxpool.Pool
	fleet *Fleet
}

// NewStore returns a Store over the control database pool. Instances other than main are reached through
// the environment variables they name (os.Getenv); Close releases those connections.
func NewStore(pool *pgxpool.Pool) *Store {
	return NewFleetStore(NewFleet(pool, os.Getenv))
}

// NewFleetStore returns a Store over a fleet, whose control pool holds the control schema.
func NewFleetStore(f *Fleet) *Store {
	return &Store{pool: f.Control(), fleet: f}
}

const tenantColumns = "id, name, status, pseudonym_key, created_at, deleted_at"

func scanTenant(row pgx.Row) (Tenant, error) {
	var t Tenant
	err := row.Scan(&t.ID, &t.Name, &t.Status, &t.PseudonymKey, &t.CreatedAt, &t.DeletedAt)
	return t, err
}

// CreateTenant registers a district on the default instance; see CreateTenantOn.
func (s *Store) CreateTenant(ctx context.Context, id, name string) (Tenant, error) {
	return s.CreateTenantOn(ctx, id, name, "")
}

// CreateTenantOn registers a district with a fresh pseudonym key and places it on instance (the default
// instance when empty), after creating its schema there and applying the district template. A tenant row
// therefore always has a migrated schema; if the template fails, no tenant is recorded and the call can
// be retried. The tenant and its placement are recorded together. It returns ErrTenantExists when id is
// taken, ErrNotFound for an unknown instance and ErrInvalidArgument for a bad id or name.
func (s *Store) CreateTenantOn(ctx context.Context, id, name, instance string) (Tenant, error) {
	if err := ValidTenantID(id); err != nil {
		return Tenant{}, err
	}
	name = strings.TrimSpace(name)
	if name == "" || len(name) > 200 {
		return Tenant{}, fmt.Errorf("%w: tenant name: must be 1-200 characters", ErrInvalidArgument)
	}
	if _, err := s.Tenant(ctx, id); err == nil {
		return Tenant{}, fmt.Errorf("tenant %s: %w", id, ErrTenantExists)
	} else if !errors.Is(err, ErrNotFound) {
		return Tenant{}, err
	}
	instance, err := s.resolveInstance(ctx, instance)
	if err != nil {
		return Tenant{}, err
	}
	pool, err := s.fleet.Pool(ctx, instance)
	if err != nil {
		return Tenant{}, err
	}
	schema, _ := SchemaName(id) // validated above
	if err := ensureSchema(ctx, pool, schema); err != nil {
		return Tenant{}, fmt.Errorf("migrating district schema of tenant %s: %w", id, err)
	}
	key := make([]byte, pseudonymKeySize)
	if _, err := rand.Read(key); err != nil {
		return Tenant{}, fmt.Errorf("generating pseudonym key: %w", err)
	}
	var t Tenant
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var err error
		t, err = scanTenant(tx.QueryRow(ctx,
			"INSERT INTO control.tenants (id, name, pseudonym_key) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING RETURNING "+
				tenantColumns, id, name, key))
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, "INSERT INTO control.placements (tenant_id, instance) VALUES ($1, $2)", id, instance)
		return err
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return Tenant{}, fmt.Errorf("tenant %s: %w", id, ErrTenantExists) // lost a race with another creator
	}
	if err != nil {
		return Tenant{}, fmt.Errorf("inserting tenant %s: %w", id, err)
	}
	return t, nil
}

// resolveInstance returns instance when it is registered, or the default instance when it is empty.
func (s *Store) resolveInstance(ctx context.Context, instance string) (string, error) {
	if instance == "" {
		err := s.pool.QueryRow(ctx, "SELECT coalesce((SELECT name FROM control.instances WHERE is_default), $1)",
			MainInstance).Scan(&instance)
		if err != nil {
			return "", fmt.Errorf("reading default instance: %w", err)
		}
		return instance, nil
	}
	if err := ValidInstanceName(instance); err != nil {
		return "", err
	}
	var ok bool
	if err := s.pool.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM control.instances WHERE name = $1)", instance).Scan(&ok); err != nil {
		return "", fmt.Errorf("reading instance %s: %w", instance, err)
	}
	if !ok {
		return "", fmt.Errorf("instance %s: %w", instance, ErrNotFound)
	}
	return instance, nil
}

// Tenant returns one tenant, deleted or not, or ErrNotFound.
func (s *Store) Tenant(ctx context.Context, id string) (Tenant, error) {
	t, err := scanTenant(s.pool.QueryRow(ctx, "SELECT "+tenantColumns+" FROM control.tenants WHERE id = $1", id))
	if errors.Is(err, pgx.ErrNoRows) {
		return Tenant{}, fmt.Errorf("tenant %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return Tenant{}, fmt.Errorf("reading tenant %s: %w", id, err)
	}
	return t, nil
}

// Tenants returns every tenant that is not deleted, ordered by id.
func (s *Store) Tenants(ctx context.Context) ([]Tenant, error) {
	rows, err := s.pool.Query(ctx,
		"SELECT "+tenantColumns+" FROM control.tenants WHERE deleted_at IS NULL ORDER BY id")
	if err != nil {
		return nil, fmt.Errorf("listing tenants: %w", err)
	}
	tenants, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Tenant, error) { return scanTenant(row) })
	if err != nil {
		return nil, fmt.Errorf("listing tenants: %w", err)
	}
	return tenants, nil
}

// EnsureDistrictSchema creates the district's schema on its instance if needed and applies the template
// migrations it lacks. It is idempotent and cheap when the schema is current (two queries), so services
// may call it on first sight of a tenant. It does not require the tenant row to exist (a tenant without
// one is on MainInstance).
func (s *Store) EnsureDistrictSchema(ctx context.Context, tenantID string) error {
	schema, err := SchemaName(tenantID)
	if err != nil {
		return err
	}
	pool, _, err := s.DistrictPool(ctx, tenantID)
	if err != nil {
		return err
	}
	if err := ensureSchema(ctx, pool, schema); err != nil {
		return fmt.Errorf("migrating district schema of tenant %s: %w", tenantID, err)
	}
	return nil
}

// ensureSchema creates schema on pool if needed and applies the district template migrations it lacks.
func ensureSchema(ctx context.Context, pool *pgxpool.Pool, schema string) error {
	pending, err := pendingMigrations(ctx, pool, schema, districtMigrations)
	if err != nil || !pending {
		return err
	}
	return migrateSchema(ctx, pool, schema, districtMigrations)
}
