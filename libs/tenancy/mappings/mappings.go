// Package mappings stores districts' mapping rules (the format is libs/mapping's): per district and
// source, numbered versions of a YAML document, the newest current. A version is stored only once it
// parses, so the current rules of a source always compile.
package mappings

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/edtech-analytics/platform/libs/mapping"
	"github.com/edtech-analytics/platform/libs/tenancy"
)

// ErrNoRules: the source has no mapping rules.
var ErrNoRules = errors.New("no mapping rules")

// Version is one stored version of a source's rules.
type Version struct {
	TenantID  string    `json:"tenant_id"`
	SourceID  string    `json:"source_id"`
	Version   int       `json:"version"`
	Exports   []string  `json:"exports"`
	CreatedAt time.Time `json:"created_at"`
	CreatedBy string    `json:"created_by"`
	Text      string    `json:"rules,omitempty"`
}

// Store reads and writes mapping rules in the control schema.
type Store struct{ pool *pgxpool.Pool }

// New returns a Store over the control database.
func New(pool *pgxpool.Pool) *Store { return &Store{pool: pool} }

// Set stores text as the source's next version, once it parses.
func (s *Store) Set(ctx context.Context, tenantID, sourceID string, text []byte, by string) (Version, error) {
	if err := tenancy.ValidTenantID(tenantID); err != nil {
		return Version{}, err
	}
	if sourceID == "" {
		return Version{}, fmt.Errorf("%w: a source is required", tenancy.ErrInvalidArgument)
	}
	rules, err := mapping.Parse(text, mapping.Limits{})
	if err != nil {
		return Version{}, err
	}
	v := Version{TenantID: tenantID, SourceID: sourceID, Exports: rules.Exports(), CreatedBy: by, Text: string(text)}
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// One writer per source at a time: the next version is the highest plus one.
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(hashtext('mapping_rules/' || $1 || '/' || $2))", tenantID, sourceID); err != nil {
			return err
		}
		return tx.QueryRow(ctx, `INSERT INTO control.mapping_rules (tenant_id, source_id, version, rules, exports, created_by)
			SELECT $1, $2, coalesce(max(version), 0) + 1, $3, $4, $5 FROM control.mapping_rules WHERE tenant_id = $1 AND source_id = $2
			RETURNING version, created_at`, tenantID, sourceID, v.Text, v.Exports, by).Scan(&v.Version, &v.CreatedAt)
	})
	if err != nil {
		return Version{}, fmt.Errorf("storing mapping rules of %s/%s: %w", tenantID, sourceID, err)
	}
	return v, nil
}

// Current returns the source's newest rules, parsed, and their version. ErrNoRules when it has none.
func (s *Store) Current(ctx context.Context, tenantID, sourceID string) (*mapping.Rules, Version, error) {
	return s.At(ctx, tenantID, sourceID, 0)
}

// At returns a version of the source's rules (0: the newest), parsed.
func (s *Store) At(ctx context.Context, tenantID, sourceID string, version int) (*mapping.Rules, Version, error) {
	v := Version{TenantID: tenantID, SourceID: sourceID}
	err := s.pool.QueryRow(ctx, `SELECT version, rules, exports, created_at, created_by FROM control.mapping_rules
		WHERE tenant_id = $1 AND source_id = $2 AND ($3 = 0 OR version = $3) ORDER BY version DESC LIMIT 1`, tenantID, sourceID, version).
		Scan(&v.Version, &v.Text, &v.Exports, &v.CreatedAt, &v.CreatedBy)
	if errors.Is(err, pgx.ErrNoRows) {
		if version != 0 {
			return nil, v, fmt.Errorf("%w: version %d for source %s of district %s", ErrNoRules, version, sourceID, tenantID)
		}
		return nil, v, fmt.Errorf("%w for source %s of district %s ('ctl mapping apply' stores them)", ErrNoRules, sourceID, tenantID)
	}
	if err != nil {
		return nil, v, err
	}
	rules, err := mapping.Parse([]byte(v.Text), mapping.Limits{})
	if err != nil { // stored only once parsed: a newer parser refusing old rules
		return nil, v, fmt.Errorf("mapping rules version %d of %s/%s: %w", v.Version, tenantID, sourceID, err)
	}
	return rules, v, nil
}

// List returns the versions of a district's rules (every source when sourceID is empty), newest first,
// without their text.
func (s *Store) List(ctx context.Context, tenantID, sourceID string) ([]Version, error) {
	rows, err := s.pool.Query(ctx, `SELECT tenant_id, source_id, version, exports, created_at, created_by FROM control.mapping_rules
		WHERE tenant_id = $1 AND ($2 = '' OR source_id = $2) ORDER BY source_id, version DESC`, tenantID, sourceID)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Version, error) {
		var v Version
		err := r.Scan(&v.TenantID, &v.SourceID, &v.Version, &v.Exports, &v.CreatedAt, &v.CreatedBy)
		return v, err
	})
}
