// Package timezones keeps each district's time zone, an IANA name in control.tenants: the days and weeks
// of the district's product analytics begin at midnight there. A district has UTC until one is set.
package timezones

import (
	"context"
	"errors"
	"fmt"
	"time"
	// The zone database is embedded, so that every service loads the names Check accepted, whatever
	// the machine it runs on holds.
	_ "time/tzdata"

	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Default is a district's time zone until one is set.
const Default = "UTC"

// Zone is a district's time zone.
type Zone struct {
	TenantID string `json:"tenant_id"`
	TimeZone string `json:"time_zone"`
}

// Check reports whether name is a time zone of the IANA database (time.LoadLocation), such as
// America/Chicago or UTC; "" and "Local" are refused: they name no zone of their own.
func Check(name string) error {
	if name == "" || name == "Local" {
		return fmt.Errorf("%w: time zone: must be an IANA name such as America/Chicago", tenancy.ErrInvalidArgument)
	}
	if _, err := time.LoadLocation(name); err != nil {
		return fmt.Errorf("%w: time zone %q: not in the IANA time zone database (such as America/Chicago)", tenancy.ErrInvalidArgument, name)
	}
	return nil
}

// Store reads and writes the districts' time zones. Run tenancy.Migrate first.
type Store struct {
	pool *pgxpool.Pool
}

// New returns a Store over the control database pool.
func New(pool *pgxpool.Pool) *Store { return &Store{pool: pool} }

// TimeZone returns a district's time zone, deleted or not. Unknown tenant: tenancy.ErrNotFound.
func (s *Store) TimeZone(ctx context.Context, tenantID string) (string, error) {
	var name string
	err := s.pool.QueryRow(ctx, "SELECT time_zone FROM control.tenants WHERE id = $1", tenantID).Scan(&name)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", fmt.Errorf("tenant %s: %w", tenantID, tenancy.ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("reading the time zone of tenant %s: %w", tenantID, err)
	}
	return name, nil
}

// Location returns a district's time zone, loaded. Unknown tenant: tenancy.ErrNotFound; a stored name
// that does not load is an error too (never UTC in its place).
func (s *Store) Location(ctx context.Context, tenantID string) (*time.Location, error) {
	name, err := s.TimeZone(ctx, tenantID)
	if err != nil {
		return nil, err
	}
	if name == "" {
		return time.UTC, nil
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, fmt.Errorf("loading the time zone %q of tenant %s: %w", name, tenantID, err)
	}
	return loc, nil
}

// Zones returns the time zone of every district that is not deleted, ordered by id.
func (s *Store) Zones(ctx context.Context) ([]Zone, error) {
	rows, err := s.pool.Query(ctx, "SELECT id, time_zone FROM control.tenants WHERE deleted_at IS NULL ORDER BY id")
	if err != nil {
		return nil, fmt.Errorf("listing time zones: %w", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[Zone])
	if err != nil {
		return nil, fmt.Errorf("listing time zones: %w", err)
	}
	return out, nil
}

// Set sets a district's time zone. A name Check refuses: tenancy.ErrInvalidArgument; unknown or deleted
// tenant: tenancy.ErrNotFound.
func (s *Store) Set(ctx context.Context, tenantID, name string) (Zone, error) {
	if err := tenancy.ValidTenantID(tenantID); err != nil {
		return Zone{}, err
	}
	if err := Check(name); err != nil {
		return Zone{}, err
	}
	z := Zone{TenantID: tenantID}
	err := s.pool.QueryRow(ctx, "UPDATE control.tenants SET time_zone = $2 WHERE id = $1 AND deleted_at IS NULL RETURNING time_zone",
		tenantID, name).Scan(&z.TimeZone)
	if errors.Is(err, pgx.ErrNoRows) {
		return Zone{}, fmt.Errorf("tenant %s: %w", tenantID, tenancy.ErrNotFound)
	}
	if err != nil {
		return Zone{}, fmt.Errorf("setting the time zone of tenant %s: %w", tenantID, err)
	}
	return z, nil
}
