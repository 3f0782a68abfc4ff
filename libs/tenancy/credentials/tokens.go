package credentials

import (
	"context"
	"strings"
	"time"
)

// tokenPrefix starts every dashboard token: edt_<id>_<secret>, id and secret as in API keys.
const tokenPrefix = "edt_"

// DashboardToken is a token's record; the secret itself is never stored, only its SHA-256.
type DashboardToken struct {
	ID         string     `json:"id"`
	TenantID   string     `json:"tenant_id,omitempty"` // "" for a platform role
	Role       string     `json:"role"`
	SchoolIDs  []string   `json:"school_ids,omitempty"`  // school_admin: the schools it may read
	TeacherID  string     `json:"teacher_id,omitempty"`  // teacher: the teacher's roster sourced_id
	StudentIDs []string   `json:"student_ids,omitempty"` // parent: its children's roster sourced_ids
	Label      string     `json:"label,omitempty"`
	CreatedAt  time.Time  `json:"created_at"`
	ExpiresAt  *time.Time `json:"expires_at,omitempty"`
	RevokedAt  *time.Time `json:"revoked_at,omitempty"`
	LastUsed   *time.Time `json:"last_used_at,omitempty"`
}

// dashboardTokens is the kind of dashboard tokens.
var dashboardTokens = &kind[DashboardToken]{
	noun: "dashboard token", prefix: tokenPrefix, table: "control.dashboard_tokens",
	columns: "id, coalesce(tenant_id, ''), role, school_ids, coalesce(teacher_id, ''), student_ids, label, created_at, expires_at, revoked_at, last_used_at",
	fields: func(t *DashboardToken) []any {
		return []any{&t.ID, &t.TenantID, &t.Role, &t.SchoolIDs, &t.TeacherID, &t.StudentIDs, &t.Label, &t.CreatedAt, &t.ExpiresAt,
			&t.RevokedAt, &t.LastUsed}
	},
	state: func(t *DashboardToken) (*time.Time, *time.Time, **time.Time) {
		return t.RevokedAt, t.ExpiresAt, &t.LastUsed
	},
}

// CreateDashboardToken issues a token for t.TenantID with t's role and scope (SchoolIDs, TeacherID),
// label and optional expiry; a platform role (RoleBilling) takes no tenant. plaintext
// (edt_<id>_<secret>) is returned only here. Unknown or deleted tenant: tenancy.ErrNotFound; a role
// without its scope, or a scope its role does not take: tenancy.ErrInvalidArgument.
func (s *Store) CreateDashboardToken(ctx context.Context, t DashboardToken) (string, DashboardToken, error) {
	if err := checkScope(&t); err != nil {
		return "", DashboardToken{}, err
	}
	var teacher *string
	if t.TeacherID != "" {
		teacher = &t.TeacherID
	}
	if t.SchoolIDs == nil {
		t.SchoolIDs = []string{}
	}
	if t.StudentIDs == nil {
		t.StudentIDs = []string{}
	}
	return dashboardTokens.issue(ctx, s.pool, t.TenantID, "role, school_ids, teacher_id, student_ids, label, expires_at",
		t.Role, t.SchoolIDs, teacher, t.StudentIDs, t.Label, t.ExpiresAt)
}

// IsDashboardToken reports whether s has the shape of a dashboard token (edt_...), as opposed to an API key.
func IsDashboardToken(s string) bool { return strings.HasPrefix(s, tokenPrefix) }

// LookupDashboardToken authenticates a presented token. Malformed, unknown, wrong, revoked and expired
// tokens, and tokens of a tenant that is not active, all give ErrInvalidKey alike. A successful lookup
// records last_used_at (at most once a minute per token).
func (s *Store) LookupDashboardToken(ctx context.Context, plaintext string) (DashboardToken, error) {
	return dashboardTokens.lookup(ctx, s.pool, plaintext)
}

// RevokeDashboardToken revokes a token by id. Revoking twice keeps the first time. Unknown id:
// tenancy.ErrNotFound.
func (s *Store) RevokeDashboardToken(ctx context.Context, id string) (DashboardToken, error) {
	return dashboardTokens.revoke(ctx, s.pool, id)
}

// PlatformTokens returns the tokens of platform roles (no district), revoked ones included, oldest
// first.
func (s *Store) PlatformTokens(ctx context.Context) ([]DashboardToken, error) {
	return dashboardTokens.list(ctx, s.pool, "", true)
}

// DashboardTokens returns a tenant's tokens, revoked ones included, oldest first. Unknown tenant:
// tenancy.ErrNotFound.
func (s *Store) DashboardTokens(ctx context.Context, tenantID string) ([]DashboardToken, error) {
	return dashboardTokens.list(ctx, s.pool, tenantID, false)
}
