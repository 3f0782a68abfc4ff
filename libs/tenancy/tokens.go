package tenancy

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Roles of dashboard tokens.
const (
	// RoleDistrictAdmin reads everything of its district.
	RoleDistrictAdmin = "district_admin"
	// RoleSchoolAdmin reads its schools, and the classes and students enrolled in them.
	RoleSchoolAdmin = "school_admin"
	// RoleTeacher reads the classes it teaches and the students enrolled in them (from the roster).
	RoleTeacher = "teacher"
)

// Roles lists the roles a dashboard token can carry.
func Roles() []string { return []string{RoleDistrictAdmin, RoleSchoolAdmin, RoleTeacher} }

// tokenPrefix starts every dashboard token: edt_<id>_<secret>, id and secret as in API keys.
const tokenPrefix = "edt_"

// DashboardToken is a token's record; the secret itself is never stored, only its SHA-256.
type DashboardToken struct {
	ID        string     `json:"id"`
	TenantID  string     `json:"tenant_id"`
	Role      string     `json:"role"`
	SchoolIDs []string   `json:"school_ids,omitempty"` // school_admin: the schools it may read
	TeacherID string     `json:"teacher_id,omitempty"` // teacher: the teacher's roster sourced_id
	Label     string     `json:"label,omitempty"`
	CreatedAt time.Time  `json:"created_at"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
	LastUsed  *time.Time `json:"last_used_at,omitempty"`
}

const tokenColumns = "id, tenant_id, role, school_ids, coalesce(teacher_id, ''), label, created_at, expires_at, revoked_at, last_used_at"

func scanToken(row pgx.Row, extra ...any) (DashboardToken, error) {
	var t DashboardToken
	err := row.Scan(append([]any{&t.ID, &t.TenantID, &t.Role, &t.SchoolIDs, &t.TeacherID, &t.Label, &t.CreatedAt,
		&t.ExpiresAt, &t.RevokedAt, &t.LastUsed}, extra...)...)
	return t, err
}

// checkScope validates a token's role against its scope: schools for a school admin only, a teacher id
// for a teacher only.
func checkScope(t *DashboardToken) error {
	if !slices.Contains(Roles(), t.Role) {
		return fmt.Errorf("%w: role %q: want one of %s", ErrInvalidArgument, t.Role, strings.Join(Roles(), ", "))
	}
	var schools []string
	for _, s := range t.SchoolIDs {
		if s = strings.TrimSpace(s); s != "" && !slices.Contains(schools, s) {
			schools = append(schools, s)
		}
	}
	t.SchoolIDs, t.TeacherID = schools, strings.TrimSpace(t.TeacherID)
	switch {
	case (t.Role == RoleSchoolAdmin) != (len(schools) > 0):
		return fmt.Errorf("%w: schools: a %s token needs them, other roles take none", ErrInvalidArgument, RoleSchoolAdmin)
	case (t.Role == RoleTeacher) != (t.TeacherID != ""):
		return fmt.Errorf("%w: teacher: a %s token needs the teacher's sourced id, other roles take none", ErrInvalidArgument, RoleTeacher)
	case len(t.Label) > 200:
		return fmt.Errorf("%w: label: at most 200 characters", ErrInvalidArgument)
	}
	return nil
}

// CreateDashboardToken issues a token for t.TenantID with t's role and scope (SchoolIDs, TeacherID),
// label and optional expiry. plaintext (edt_<id>_<secret>) is returned only here. Unknown or deleted
// tenant: ErrNotFound; a role without its scope, or a scope its role does not take: ErrInvalidArgument.
func (s *Store) CreateDashboardToken(ctx context.Context, t DashboardToken) (string, DashboardToken, error) {
	if err := ValidTenantID(t.TenantID); err != nil {
		return "", DashboardToken{}, err
	}
	if err := checkScope(&t); err != nil {
		return "", DashboardToken{}, err
	}
	c, err := newCredential()
	if err != nil {
		return "", DashboardToken{}, err
	}
	var teacher *string
	if t.TeacherID != "" {
		teacher = &t.TeacherID
	}
	if t.SchoolIDs == nil {
		t.SchoolIDs = []string{}
	}
	out, err := scanToken(s.pool.QueryRow(ctx,
		`INSERT INTO control.dashboard_tokens (id, tenant_id, role, school_ids, teacher_id, label, secret_hash, expires_at)
		 SELECT $1, t.id, $3, $4, $5, $6, $7, $8 FROM control.tenants t WHERE t.id = $2 AND t.deleted_at IS NULL
		 RETURNING `+tokenColumns, c.id, t.TenantID, t.Role, t.SchoolIDs, teacher, t.Label, c.hash(), t.ExpiresAt))
	if errors.Is(err, pgx.ErrNoRows) {
		return "", DashboardToken{}, fmt.Errorf("tenant %s: %w", t.TenantID, ErrNotFound)
	}
	if err != nil {
		return "", DashboardToken{}, fmt.Errorf("inserting dashboard token for tenant %s: %w", t.TenantID, err)
	}
	return c.plaintext(tokenPrefix), out, nil
}

// IsDashboardToken reports whether s has the shape of a dashboard token (edt_...), as opposed to an API key.
func IsDashboardToken(s string) bool { return strings.HasPrefix(s, tokenPrefix) }

// LookupDashboardToken authenticates a presented token. Malformed, unknown, wrong, revoked and expired
// tokens, and tokens of a tenant that is not active, all give ErrInvalidKey alike. A successful lookup
// records last_used_at (at most once a minute per token).
func (s *Store) LookupDashboardToken(ctx context.Context, plaintext string) (DashboardToken, error) {
	c, ok := parseCredential(tokenPrefix, plaintext)
	if !ok {
		return DashboardToken{}, ErrInvalidKey
	}
	var (
		hash   []byte
		active bool
	)
	t, err := scanToken(s.pool.QueryRow(ctx, `SELECT k.id, k.tenant_id, k.role, k.school_ids, coalesce(k.teacher_id, ''), k.label,
		k.created_at, k.expires_at, k.revoked_at, k.last_used_at, k.secret_hash, t.status = $2 AND t.deleted_at IS NULL
		FROM control.dashboard_tokens k JOIN control.tenants t ON t.id = k.tenant_id WHERE k.id = $1`, c.id, StatusActive), &hash, &active)
	if errors.Is(err, pgx.ErrNoRows) {
		return DashboardToken{}, ErrInvalidKey
	}
	if err != nil {
		return DashboardToken{}, fmt.Errorf("reading dashboard token %s: %w", c.id, err)
	}
	if !c.matches(hash) || t.RevokedAt != nil || !active || (t.ExpiresAt != nil && !time.Now().Before(*t.ExpiresAt)) {
		return DashboardToken{}, ErrInvalidKey
	}
	if t.LastUsed, err = s.markUsed(ctx, "control.dashboard_tokens", c.id, t.LastUsed); err != nil {
		return DashboardToken{}, err
	}
	return t, nil
}

// RevokeDashboardToken revokes a token by id. Revoking twice keeps the first time. Unknown id: ErrNotFound.
func (s *Store) RevokeDashboardToken(ctx context.Context, id string) (DashboardToken, error) {
	t, err := scanToken(s.pool.QueryRow(ctx,
		"UPDATE control.dashboard_tokens SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1 RETURNING "+tokenColumns, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return DashboardToken{}, fmt.Errorf("dashboard token %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return DashboardToken{}, fmt.Errorf("revoking dashboard token %s: %w", id, err)
	}
	return t, nil
}

// DashboardTokens returns a tenant's tokens, revoked ones included, oldest first. Unknown tenant: ErrNotFound.
func (s *Store) DashboardTokens(ctx context.Context, tenantID string) ([]DashboardToken, error) {
	if _, err := s.Tenant(ctx, tenantID); err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx,
		"SELECT "+tokenColumns+" FROM control.dashboard_tokens WHERE tenant_id = $1 ORDER BY created_at, id", tenantID)
	if err != nil {
		return nil, fmt.Errorf("listing dashboard tokens of tenant %s: %w", tenantID, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (DashboardToken, error) { return scanToken(r) })
	if err != nil {
		return nil, fmt.Errorf("listing dashboard tokens of tenant %s: %w", tenantID, err)
	}
	return out, nil
}
