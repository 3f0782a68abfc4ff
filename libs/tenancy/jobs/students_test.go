package jobs_test

import (
	"context"
	"errors"
	"os"
	"slices"
	"testing"

	"github.com/edtech-analytics/platform/libs/pgutil/pgtest"
	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/edtech-analytics/platform/libs/tenancy/fleet"
	"github.com/edtech-analytics/platform/libs/tenancy/internal/controltest"
	"github.com/edtech-analytics/platform/libs/tenancy/jobs"
)

// TestStudentsFindsBySISIDInAnySource finds a student by a SIS id of either of its two sources, an erased
// one by the hash of its SIS id, lists the SIS ids a student holds in clear, and refuses unknown and
// ambiguous SIS ids.
func TestStudentsFindsBySISIDInAnySource(t *testing.T) {
	pool, districts := controltest.Districts(t, pgtest.New)
	ctx := t.Context()
	if _, err := districts.Create(ctx, "d1", "District 1"); err != nil {
		t.Fatal(err)
	}
	const ada, bo, erased = "00000000-0000-4000-8000-000000000001", "00000000-0000-4000-8000-000000000002", "00000000-0000-4000-8000-000000000003"
	if _, err := pool.Exec(ctx, `INSERT INTO district_d1.students (internal_id) VALUES ($1), ($2), ($3)`, ada, bo, erased); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `INSERT INTO district_d1.student_identities (source_id, sis_id, internal_id) VALUES
		('sis', 'S-1', $1), ('lms', 'L-1', $1), ('lms', 'S-2', $2), ('sis', 'S-2', $1), ('sis', 'erased:S-3', $3)`,
		ada, bo, erased); err != nil {
		t.Fatal(err)
	}
	s := jobs.Students{Pools: fleet.New(pool, os.Getenv), ErasedSIS: func(_ context.Context, _, _, sis string) (string, error) {
		return "erased:" + sis, nil
	}}
	for _, c := range []struct{ source, sis, want string }{
		{"", "S-1", ada}, {"lms", "L-1", ada}, {"", "S-3", erased}, {"lms", "S-2", bo}, {"sis", "S-2", ada},
	} {
		got, err := s.Find(ctx, "d1", c.source, c.sis)
		if err != nil || got != c.want {
			t.Errorf("Find(%q, %q) = %s, %v; want %s", c.source, c.sis, got, err, c.want)
		}
	}
	if _, err := s.Find(ctx, "d1", "", "S-2"); !errors.Is(err, jobs.ErrAmbiguous) {
		t.Errorf("S-2 in two sources of two students: %v, want ErrAmbiguous", err)
	}
	if _, err := s.Find(ctx, "d1", "", "nobody"); !errors.Is(err, tenancy.ErrNotFound) {
		t.Errorf("unknown SIS id: %v, want ErrNotFound", err)
	}
	ids, err := s.SISIDs(ctx, "d1", ada, "S-1")
	if err != nil || !slices.Equal(ids, []string{"L-1", "S-1", "S-2"}) {
		t.Errorf("SISIDs of a student of two sources = %v, %v", ids, err)
	}
	if ids, err := s.SISIDs(ctx, "d1", erased, "S-3"); err != nil || !slices.Equal(ids, []string{"S-3"}) {
		t.Errorf("SISIDs of an erased student = %v, %v; want the one asked for", ids, err)
	}
}
