package tenancy_test

import (
	"errors"
	"slices"
	"sync"
	"testing"

	"github.com/edtech-analytics/platform/libs/pgutil/pgtest"
	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/edtech-analytics/platform/libs/tenancy/internal/controltest"
)

func TestMigrateIsIdempotent(t *testing.T) {
	pool, store := controltest.Districts(t, pgtest.New)
	if err := tenancy.Migrate(t.Context(), pool); err != nil {
		t.Fatalf("second Migrate: %v", err)
	}
	want := []string{"api_keys", "audit_key", "audit_log", "connector_drops", "connector_sources", "consumer_offsets", "dashboard_tokens", "data_generations", "dedup_backfills", "dedup_claims", "dedup_epoch", "district_keks", "district_keys", "district_moves", "district_offsets", "district_webhooks", "dlq_replays", "erasures", "gateway_instances",
		"goose_db_version", "instances", "mapping_rules", "placements", "policies", "privacy_job_steps", "privacy_jobs", "subject_keys", "tenants",
		"webhook_deliveries"}
	if got := controltest.Tables(t, pool, "control"); !slices.Equal(got, want) {
		t.Errorf("control tables = %v, want %v", got, want)
	}
	if got := controltest.Tables(t, pool, "public"); len(got) != 0 {
		t.Errorf("public schema got tables %v", got)
	}
	var applied int
	if err := pool.QueryRow(t.Context(),
		"SELECT count(*) FROM control.goose_db_version WHERE version_id = 1").Scan(&applied); err != nil {
		t.Fatal(err)
	}
	if applied != 1 {
		t.Errorf("migration 1 recorded %d times", applied)
	}
	if _, err := store.Tenants(t.Context()); err != nil {
		t.Errorf("Tenants after migrate: %v", err)
	}
}

func TestConcurrentMigrationsSerialise(t *testing.T) {
	pool, _ := pgtest.New(t)
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i := range errs {
		wg.Go(func() { errs[i] = tenancy.Migrate(t.Context(), pool) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("concurrent Migrate: %v", err)
	}
	if got := controltest.Tables(t, pool, "control"); len(got) != 29 {
		t.Errorf("control tables = %v", got)
	}
}
