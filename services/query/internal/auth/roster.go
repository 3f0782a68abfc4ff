package auth

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// SessionCookie is the cookie the web dashboards (/ui/) keep a signed-in dashboard token in: Secure,
// HttpOnly and SameSite=Strict, so a page's script never reads it and no other site sends it. The API
// takes it where a request has no Authorization header.
const SessionCookie = "edtech_dashboard"

// RosterStudent is a student of a class roster as a teacher sees it: the district's own id and name, and
// the platform's internal id that the student summary takes.
type RosterStudent struct {
	SourcedID  string `json:"sourced_id"`
	InternalID string `json:"internal_id"`
	GivenName  string `json:"given_name"`
	FamilyName string `json:"family_name"`
}

// ClassStudents returns the students with an active student enrollment in the class, by family and
// given name. Students without an internal id yet (no event or roster sync mapped them) are left out:
// nothing of theirs can be in the rollups. Not cached: a class list is read once per page.
func (r *Resolver) ClassStudents(ctx context.Context, tenantID, classID string) ([]RosterStudent, error) {
	pool, schema, err := r.district(ctx, tenantID)
	if err != nil {
		return nil, err
	}
	rows, err := pool.Query(ctx, `SELECT DISTINCT u.sourced_id, u.internal_id::text, u.given_name, u.family_name
		FROM `+schema+`.roster_enrollments e JOIN `+schema+`.roster_users u ON u.sourced_id = e.user_sourced_id
		WHERE e.class_sourced_id = $1 AND e.role = 'student' AND e.status = 'active' AND u.internal_id IS NOT NULL
		ORDER BY u.family_name, u.given_name, u.sourced_id`, classID)
	if err != nil {
		return nil, fmt.Errorf("reading the class list of %s: %w", tenantID, err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (RosterStudent, error) {
		var s RosterStudent
		return s, row.Scan(&s.SourcedID, &s.InternalID, &s.GivenName, &s.FamilyName)
	})
	if err != nil {
		return nil, fmt.Errorf("reading the class list of %s: %w", tenantID, err)
	}
	return out, nil
}

// ParentStudents returns the roster records of a parent's children (p.Students, roster sourced_ids) that
// have an internal id, by name. Not cached: a parent's pages read it once.
func (r *Resolver) ParentStudents(ctx context.Context, p Principal) ([]RosterStudent, error) {
	if len(p.Students) == 0 {
		return []RosterStudent{}, nil
	}
	pool, schema, err := r.district(ctx, p.TenantID)
	if err != nil {
		return nil, err
	}
	rows, err := pool.Query(ctx, `SELECT sourced_id, internal_id::text, given_name, family_name FROM `+schema+`.roster_users
		WHERE sourced_id = ANY($1) AND internal_id IS NOT NULL ORDER BY family_name, given_name, sourced_id`, p.Students)
	if err != nil {
		return nil, fmt.Errorf("reading a parent's children in %s: %w", p.TenantID, err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (RosterStudent, error) {
		var s RosterStudent
		return s, row.Scan(&s.SourcedID, &s.InternalID, &s.GivenName, &s.FamilyName)
	})
	if err != nil {
		return nil, fmt.Errorf("reading a parent's children in %s: %w", p.TenantID, err)
	}
	return out, nil
}
