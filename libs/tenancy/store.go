package tenancy

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
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

// Store reads and writes the control schema. Run Migrate first.
type Store struct {
	pool *pgxpool.Pool
}

// NewStore returns a Store over pool.
func NewStore(pool *pgxpool.Pool) *Store {
	return &Store{pool: pool}
}

const tenantColumns = "id, name, status, pseudonym_key, created_at, deleted_at"

func scanTenant(row pgx.Row) (Tenant, error) {
	var t Tenant
	err := row.Scan(&t.ID, &t.Name, &t.Status, &t.PseudonymKey, &t.CreatedAt, &t.DeletedAt)
	return t, err
}

// CreateTenant registers a district with a fresh pseudonym key, after creating its schema and applying
// the district template. A tenant row therefore always has a migrated schema; if the template fails, no
// tenant is recorded and the call can be retried. It returns ErrTenantExists when id is taken and
// ErrInvalidArgument for a bad id or name.
func (s *Store) CreateTenant(ctx context.Context, id, name string) (Tenant, error) {
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
	if err := s.EnsureDistrictSchema(ctx, id); err != nil {
		return Tenant{}, err
	}
	key := make([]byte, pseudonymKeySize)
	if _, err := rand.Read(key); err != nil {
		return Tenant{}, fmt.Errorf("generating pseudonym key: %w", err)
	}
	t, err := scanTenant(s.pool.QueryRow(ctx,
		"INSERT INTO control.tenants (id, name, pseudonym_key) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING RETURNING "+
			tenantColumns, id, name, key))
	if errors.Is(err, pgx.ErrNoRows) {
		return Tenant{}, fmt.Errorf("tenant %s: %w", id, ErrTenantExists) // lost a race with another creator
	}
	if err != nil {
		return Tenant{}, fmt.Errorf("inserting tenant %s: %w", id, err)
	}
	return t, nil
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

// EnsureDistrictSchema creates the district's schema if needed and applies the template migrations it
// lacks. It is idempotent and cheap when the schema is current (one query), so services may call it on
// first sight of a tenant. It does not require the tenant row to exist.
func (s *Store) EnsureDistrictSchema(ctx context.Context, tenantID string) error {
	schema, err := SchemaName(tenantID)
	if err != nil {
		return err
	}
	pending, err := pendingMigrations(ctx, s.pool, schema, districtMigrations)
	if err != nil {
		return err
	}
	if !pending {
		return nil
	}
	if err := migrateSchema(ctx, s.pool, schema, districtMigrations); err != nil {
		return fmt.Errorf("migrating district schema of tenant %s: %w", tenantID, err)
	}
	return nil
}
