package rosters_test

import (
	"os"
	"testing"
	"time"

	"github.com/edtech-analytics/platform/libs/pgutil/pgtest"
	"github.com/edtech-analytics/platform/libs/tenancy/fleet"
	"github.com/edtech-analytics/platform/libs/tenancy/internal/controltest"
	"github.com/edtech-analytics/platform/libs/tenancy/rosters"
)

// TestPIIFindings: the enricher's daily counts since the day of since are summed per source, field and
// kind, each a warning of the quality report; older days and zero counts are not findings.
func TestPIIFindings(t *testing.T) {
	pool, districts := controltest.Districts(t, pgtest.New)
	ctx := t.Context()
	for _, id := range []string{"d1", "d2"} {
		if _, err := districts.Create(ctx, id, id); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := pool.Exec(ctx, `INSERT INTO district_d1.quality_pii_daily (day, source_id, field, kind, records) VALUES
		('2026-12-05', 'sis', 'roster_result.comment', 'email', 400),
		('2026-12-06', 'sis', 'roster_result.comment', 'email', 12),
		('2026-12-06', 'lms', 'attendance.reason', 'phone', 3),
		('2026-12-06', 'lms', 'attendance.reason', 'ssn', 0),
		('2026-12-01', 'lms', 'attendance.reason', 'ssn', 9)`); err != nil {
		t.Fatal(err)
	}
	f := fleet.New(pool, os.Getenv)
	t.Cleanup(f.Close)
	store := rosters.New(fleet.NewDistrictPools(f))
	since := time.Date(2026, 12, 5, 23, 59, 0, 0, time.UTC) // the whole day of since counts
	got, err := store.PIIFindings(ctx, "d1", since)
	if err != nil {
		t.Fatal(err)
	}
	want := []rosters.Finding{
		{Check: rosters.CheckPII, Severity: rosters.SeverityWarning, Source: "lms", Subject: "attendance.reason", Value: 3,
			Message: "3 records of attendance.reason from lms held phone numbers"},
		{Check: rosters.CheckPII, Severity: rosters.SeverityWarning, Source: "sis", Subject: "roster_result.comment", Value: 412,
			Message: "412 records of roster_result.comment from sis held email addresses"},
	}
	if len(got) != len(want) {
		t.Fatalf("PIIFindings = %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("finding %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	// The quality report holds them too; a district without counts has none.
	rep, err := store.Quality(ctx, "d1", since)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, f := range rep.Findings {
		if f.Check == rosters.CheckPII {
			n++
		}
	}
	if n != 2 {
		t.Errorf("quality report has %d pii findings, want 2: %+v", n, rep.Findings)
	}
	if none, err := store.PIIFindings(ctx, "d2", since); err != nil || len(none) != 0 {
		t.Errorf("PIIFindings(d2) = %+v, %v", none, err)
	}
}
