package auth

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Enrollee is a rostered student and the day it was enrolled.
type Enrollee struct {
	StudentID string    // internal id
	Enrolled  time.Time // the earliest begin_date of its active student enrollments in the scope (a date, UTC midnight)
}

// EnrollmentScope narrows StudentEnrollments to the enrollments of one school or one class (both empty:
// the district).
type EnrollmentScope struct {
	School string
	Class  string
}

// StudentEnrollments returns the district's students, with an internal id, whose enrollment day (the
// earliest begin_date of their active student enrollments in scope) lies in [from, to]. Enrollments
// without a begin_date are not counted. Answers are not cached: they serve a range, not a scope check.
func (r *Resolver) StudentEnrollments(ctx context.Context, tenantID string, scope EnrollmentScope, from, to time.Time) ([]Enrollee, error) {
	pool, schema, err := r.district(ctx, tenantID)
	if err != nil {
		return nil, err
	}
	rows, err := pool.Query(ctx, `SELECT u.internal_id::text, min(e.begin_date)
		FROM `+schema+`.roster_enrollments e JOIN `+schema+`.roster_users u ON u.sourced_id = e.user_sourced_id
		WHERE e.role = 'student' AND e.status = 'active' AND e.begin_date IS NOT NULL AND u.internal_id IS NOT NULL
		  AND ($1 = '' OR e.school_sourced_id = $1) AND ($2 = '' OR e.class_sourced_id = $2)
		GROUP BY u.internal_id
		HAVING min(e.begin_date) BETWEEN $3::date AND $4::date`,
		scope.School, scope.Class, from.Format(time.DateOnly), to.Format(time.DateOnly))
	if err != nil {
		return nil, fmt.Errorf("reading the enrollments of %s: %w", tenantID, err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Enrollee, error) {
		var e Enrollee
		err := row.Scan(&e.StudentID, &e.Enrolled)
		return e, err
	})
	if err != nil {
		return nil, fmt.Errorf("reading the enrollments of %s: %w", tenantID, err)
	}
	return out, nil
}
