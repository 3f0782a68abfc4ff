// Package auth turns a bearer credential into a Principal (district, role and scope) and answers the
// roster questions that scopes need (a teacher's classes, a class's school, a student's enrollments),
// caching every answer for a short TTL so that a dashboard's burst of requests costs PostgreSQL little.
//
// Two credentials are accepted: dashboard tokens (edt_..., issued by `ctl token create` with a role and a
// scope) and, for compatibility, API keys holding dashboards:read, which act as district admins of their
// district. A token of a platform role (billing) resolves to a principal of no district; the API serves it
// what spans districts for the vendor (usage) and no dashboard.
package auth

import (
	"context"
	"errors"
	"fmt"
	"github.com/edtech-analytics/platform/libs/ttlcache"
	"slices"
	"time"

	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/edtech-analytics/platform/libs/tenancy/credentials"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Errors callers branch on.
var (
	// ErrUnauthenticated: the credential is malformed, unknown, revoked or expired.
	ErrUnauthenticated = errors.New("invalid credential")
	// ErrForbidden: a valid API key without dashboards:read.
	ErrForbidden = errors.New("credential may not read dashboards")
)

// Principal is who a request acts for.
type Principal struct {
	TenantID  string   // "" for a platform role
	Role      string   // credentials.RoleDistrictAdmin, RoleSchoolAdmin, RoleTeacher, or the platform's RoleBilling
	Schools   []string // school_admin: its schools
	TeacherID string   // teacher: its roster sourced_id
	Students  []string // parent: the roster sourced_ids of its children
	Subject   string   // token:<id> or apikey:<id>, for logs and the audit log
}

// Credentials checks bearer credentials (credentials.Store).
type Credentials interface {
	LookupAPIKey(ctx context.Context, plaintext string) (credentials.APIKey, error)
	LookupDashboardToken(ctx context.Context, plaintext string) (credentials.DashboardToken, error)
}

// Districts finds the instance a district's schema lives on (fleet.Fleet).
type Districts interface {
	DistrictPool(ctx context.Context, tenantID string) (*pgxpool.Pool, string, error)
}

// Resolver authenticates credentials and answers scope questions from the districts' rosters.
type Resolver struct {
	creds      Credentials
	districts  Districts
	principals *ttlcache.Cache[string, principalAnswer]
	classes    *ttlcache.Cache[[2]string, []string] // (tenant, teacher) -> classes taught
	schools    *ttlcache.Cache[[2]string, []string] // (tenant, class) -> schools of the class
	enrolled   *ttlcache.Cache[[2]string, []enrollment]
}

type principalAnswer struct {
	p       Principal
	err     error
	expires time.Time // the token's own expiry; zero when it has none
}

// enrollment is one active student enrollment of a student.
type enrollment struct{ class, school string }

// NewResolver caches every answer for ttl: a revoked token stops working within ttl, an expired one at
// its own expiry.
func NewResolver(creds Credentials, districts Districts, ttl time.Duration) *Resolver {
	return &Resolver{creds: creds, districts: districts, principals: ttlcache.New[string, principalAnswer](maxCached, ttl),
		classes: ttlcache.New[[2]string, []string](maxCached, ttl), schools: ttlcache.New[[2]string, []string](maxCached, ttl),
		enrolled: ttlcache.New[[2]string, []enrollment](maxCached, ttl)}
}

// Resolve authenticates a bearer credential. Invalid credentials are cached too, so a flood of bad ones
// does not reach the database; errors of the database are not. A cached token is refused from its own
// expiry on, even within the cache TTL; a revocation takes effect within the TTL.
func (r *Resolver) Resolve(ctx context.Context, credential string) (Principal, error) {
	a, err := r.principals.Get(credential, func() (principalAnswer, error) {
		a, err := r.resolve(ctx, credential)
		if err != nil && !errors.Is(err, ErrUnauthenticated) && !errors.Is(err, ErrForbidden) {
			return a, err
		}
		return a, nil
	})
	if err != nil {
		return Principal{}, err
	}
	if !a.expires.IsZero() && !r.principals.Now().Before(a.expires) {
		return Principal{}, ErrUnauthenticated
	}
	return a.p, a.err
}

func (r *Resolver) resolve(ctx context.Context, credential string) (principalAnswer, error) {
	if !credentials.IsDashboardToken(credential) {
		p, err := r.resolveKey(ctx, credential)
		return principalAnswer{p: p, err: err}, err
	}
	t, err := r.creds.LookupDashboardToken(ctx, credential)
	if errors.Is(err, credentials.ErrInvalidKey) {
		err = ErrUnauthenticated
	}
	if err != nil {
		return principalAnswer{err: err}, err
	}
	a := principalAnswer{p: Principal{TenantID: t.TenantID, Role: t.Role, Schools: t.SchoolIDs, TeacherID: t.TeacherID, Students: t.StudentIDs, Subject: "token:" + t.ID}}
	if t.ExpiresAt != nil {
		a.expires = *t.ExpiresAt
	}
	return a, nil
}

// resolveKey authenticates an API key (API keys do not expire; they are revoked).
func (r *Resolver) resolveKey(ctx context.Context, credential string) (Principal, error) {
	k, err := r.creds.LookupAPIKey(ctx, credential)
	if errors.Is(err, credentials.ErrInvalidKey) {
		return Principal{}, ErrUnauthenticated
	}
	if err != nil {
		return Principal{}, err
	}
	if !k.Allows(credentials.VerbDashboardsRead) {
		return Principal{}, ErrForbidden
	}
	return Principal{TenantID: k.TenantID, Role: credentials.RoleDistrictAdmin, Subject: "apikey:" + k.ID}, nil
}

// TeacherClasses returns the classes the principal teaches (active teacher enrollments in the roster).
func (r *Resolver) TeacherClasses(ctx context.Context, p Principal) ([]string, error) {
	if p.Role != credentials.RoleTeacher {
		return nil, nil
	}
	return r.rosterList(ctx, r.classes, p.TenantID, p.TeacherID,
		"SELECT DISTINCT class_sourced_id FROM %[1]s.roster_enrollments WHERE user_sourced_id = $1 AND role = 'teacher' AND status = 'active'")
}

// ClassSchools returns the schools a class belongs to: its roster class record, and the schools its
// enrollments name.
func (r *Resolver) ClassSchools(ctx context.Context, tenantID, classID string) ([]string, error) {
	return r.rosterList(ctx, r.schools, tenantID, classID, `SELECT school_sourced_id FROM %[1]s.roster_classes WHERE sourced_id = $1 AND status = 'active'
		UNION SELECT school_sourced_id FROM %[1]s.roster_enrollments WHERE class_sourced_id = $1 AND status = 'active'`)
}

// StudentInScope reports whether the student (internal id) has an active student enrollment in one of
// classes or in a class of one of schools.
func (r *Resolver) StudentInScope(ctx context.Context, tenantID, studentID string, classes, schools []string) (bool, error) {
	es, err := r.enrolled.Get([2]string{tenantID, studentID}, func() ([]enrollment, error) {
		pool, schema, err := r.district(ctx, tenantID)
		if err != nil {
			return nil, err
		}
		rows, err := pool.Query(ctx, `SELECT e.class_sourced_id, e.school_sourced_id
			FROM `+schema+`.roster_users u JOIN `+schema+`.roster_enrollments e ON e.user_sourced_id = u.sourced_id
			WHERE u.internal_id = $1::uuid AND e.role = 'student' AND e.status = 'active'`, studentID)
		if err != nil {
			return nil, fmt.Errorf("reading enrollments of a student of %s: %w", tenantID, err)
		}
		es, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (enrollment, error) {
			var e enrollment
			return e, row.Scan(&e.class, &e.school)
		})
		if err != nil {
			return nil, fmt.Errorf("reading enrollments of a student of %s: %w", tenantID, err)
		}
		return es, nil
	})
	if err != nil {
		return false, err
	}
	for _, e := range es {
		if slices.Contains(classes, e.class) || slices.Contains(schools, e.school) {
			return true, nil
		}
	}
	return false, nil
}

// rosterList runs query (one $1 argument, one text column; %[1]s is the district's schema), cached under
// (tenant, arg).
func (r *Resolver) rosterList(ctx context.Context, c *ttlcache.Cache[[2]string, []string], tenantID, arg, query string) ([]string, error) {
	return c.Get([2]string{tenantID, arg}, func() ([]string, error) {
		pool, schema, err := r.district(ctx, tenantID)
		if err != nil {
			return nil, err
		}
		rows, err := pool.Query(ctx, fmt.Sprintf(query, schema), arg)
		if err != nil {
			return nil, fmt.Errorf("reading the roster of %s: %w", tenantID, err)
		}
		out, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return nil, fmt.Errorf("reading the roster of %s: %w", tenantID, err)
		}
		return out, nil
	})
}

// district returns the pool of the district's instance and its quoted schema name.
func (r *Resolver) district(ctx context.Context, tenantID string) (*pgxpool.Pool, string, error) {
	schema, err := tenancy.SchemaName(tenantID)
	if err != nil {
		return nil, "", err
	}
	pool, _, err := r.districts.DistrictPool(ctx, tenantID)
	if err != nil {
		return nil, "", fmt.Errorf("finding the instance of %s: %w", tenantID, err)
	}
	return pool, pgx.Identifier{schema}.Sanitize(), nil
}

// maxCached bounds each of the resolver's caches.
const maxCached = 100_000
