package jobs_test

import (
	"testing"

	"github.com/edtech-analytics/platform/libs/pgutil/pgtest"
	"github.com/edtech-analytics/platform/libs/tenancy/internal/controltest"
	"github.com/edtech-analytics/platform/libs/tenancy/jobs"
)

// TestGenerationRisesWhenAJobStepFinishesOrIsBumped proves that a district's data generation starts at
// 0, rises once per finished step, once per finished job (not when Finish repeats) and per
// BumpGeneration, that another district's stays where it was, and that the total is their sum.
func TestGenerationRisesWhenAJobStepFinishesOrIsBumped(t *testing.T) {
	pool, _ := controltest.Districts(t, pgtest.New)
	ctx, store := t.Context(), jobs.New(pool)
	gen := func(tenant string) int64 {
		t.Helper()
		g, err := store.Generation(ctx, tenant)
		if err != nil {
			t.Fatal(err)
		}
		return g
	}
	if g := gen("d1"); g != 0 {
		t.Fatalf("generation before any job = %d, want 0", g)
	}
	job, _, err := store.Start(ctx, jobs.Request{Kind: jobs.KindEraseStudent, TenantID: "d1", Subject: "s", By: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if err := store.BeginStep(ctx, job.ID, 1, "clickhouse", "clickhouse", 3); err != nil {
		t.Fatal(err)
	}
	if g := gen("d1"); g != 0 {
		t.Errorf("generation while the step runs = %d, want 0", g)
	}
	if err := store.FinishStep(ctx, job.ID, 1, 0, ""); err != nil {
		t.Fatal(err)
	}
	if g := gen("d1"); g != 1 {
		t.Errorf("generation after the step finished = %d, want 1", g)
	}
	if err := store.Finish(ctx, job.ID, jobs.StatusDone, ""); err != nil {
		t.Fatal(err)
	}
	if g := gen("d1"); g != 2 {
		t.Errorf("generation after the job finished = %d, want 2", g)
	}
	if err := store.Finish(ctx, job.ID, jobs.StatusFailed, "again"); err != nil {
		t.Fatal(err)
	}
	if g := gen("d1"); g != 2 {
		t.Errorf("generation after finishing a finished job again = %d, want 2", g)
	}
	if err := store.BumpGeneration(ctx, "d1"); err != nil {
		t.Fatal(err)
	}
	if g := gen("d1"); g != 3 {
		t.Errorf("generation after a bump = %d, want 3", g)
	}
	if g := gen("d2"); g != 0 {
		t.Errorf("another district's generation = %d, want 0", g)
	}
	if err := store.BumpGeneration(ctx, "d2"); err != nil {
		t.Fatal(err)
	}
	if total, err := store.TotalGeneration(ctx); err != nil || total != 4 {
		t.Errorf("total generation = %d (%v), want d1's 3 and d2's 1", total, err)
	}
}
