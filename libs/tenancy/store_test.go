package tenancy_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/edtech-analytics/platform/libs/pgutil/pgtest"
	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// migrated returns a store on a fresh database with the control schema in place.
func migrated(t *testing.T) (*tenancy.Store, *pgxpool.Pool) {
	t.Helper()
	pool, _ := pgtest.New(t)
	if err := tenancy.Migrate(t.Context(), pool); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	return tenancy.NewStore(pool), pool
}

func tablesIn(t *testing.T, pool *pgxpool.Pool, schema string) []string {
	t.Helper()
	rows, err := pool.Query(t.Context(),
		"SELECT table_name::text FROM information_schema.tables WHERE table_schema = $1 ORDER BY 1", schema)
	if err != nil {
		t.Fatal(err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return names
}

func TestMigrateIsIdempotent(t *testing.T) {
	store, pool := migrated(t)
	if err := tenancy.Migrate(t.Context(), pool); err != nil {
		t.Fatalf("second Migrate: %v", err)
	}
	want := []string{"api_keys", "audit_log", "consumer_offsets", "dashboard_tokens", "dedup_backfills", "dedup_claims", "dedup_epoch", "district_keks", "district_keys", "dlq_replays", "erasures",
		"goose_db_version", "instances", "placements", "policies", "subject_keys", "tenants"}
	if got := tablesIn(t, pool, "control"); !slices.Equal(got, want) {
		t.Errorf("control tables = %v, want %v", got, want)
	}
	if got := tablesIn(t, pool, "public"); len(got) != 0 {
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
	if got := tablesIn(t, pool, "control"); len(got) != 17 {
		t.Errorf("control tables = %v", got)
	}
}

var districtTables = []string{"assessment_results_latest", "attendance_daily",
	"enricher_classes", "enricher_courses", "enricher_demographics", "enricher_enrollments", "enricher_line_items",
	"enricher_sessions", "enricher_users", "goose_db_version", "roster_academic_sessions", "roster_classes",
	"roster_courses", "roster_deletions", "roster_demographics", "roster_enrollments", "roster_line_items",
	"roster_orgs", "roster_results", "roster_users", "student_activity", "student_identities", "students",
	"submissions"}

func TestCreateTenant(t *testing.T) {
	store, pool := migrated(t)
	ctx := t.Context()

	created, err := store.CreateTenant(ctx, "springfield", "Springfield Public Schools")
	if err != nil {
		t.Fatalf("CreateTenant: %v", err)
	}
	if created.ID != "springfield" || created.Name != "Springfield Public Schools" ||
		created.Status != tenancy.StatusActive || len(created.PseudonymKey) != 32 || created.CreatedAt.IsZero() ||
		created.DeletedAt != nil {
		t.Errorf("created tenant = %+v", created)
	}
	if got := tablesIn(t, pool, "district_springfield"); !slices.Equal(got, districtTables) {
		t.Errorf("district tables = %v, want %v", got, districtTables)
	}

	got, err := store.Tenant(ctx, "springfield")
	if err != nil || !bytes.Equal(got.PseudonymKey, created.PseudonymKey) || got.Name != created.Name {
		t.Errorf("Tenant = %+v, %v; want the created tenant", got, err)
	}
	if _, err := store.CreateTenant(ctx, "springfield", "Again"); !errors.Is(err, tenancy.ErrTenantExists) {
		t.Errorf("second CreateTenant: %v, want ErrTenantExists", err)
	}
	if _, err := store.Tenant(ctx, "shelbyville"); !errors.Is(err, tenancy.ErrNotFound) {
		t.Errorf("Tenant(unknown): %v, want ErrNotFound", err)
	}

	other, err := store.CreateTenant(ctx, "shelbyville", "Shelbyville")
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(other.PseudonymKey, created.PseudonymKey) {
		t.Error("two tenants share a pseudonym key")
	}
	list, err := store.Tenants(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, tn := range list {
		ids = append(ids, tn.ID)
	}
	if !slices.Equal(ids, []string{"shelbyville", "springfield"}) {
		t.Errorf("Tenants = %v", ids)
	}
}

func TestDistrictTemplateWorks(t *testing.T) {
	store, pool := migrated(t)
	ctx := t.Context()
	if _, err := store.CreateTenant(ctx, "d1", "District One"); err != nil {
		t.Fatal(err)
	}
	// The template's foreign key and unique constraints are in force inside the district schema.
	_, err := pool.Exec(ctx, `INSERT INTO district_d1.student_identities (source_id, sis_id, internal_id)
		VALUES ('sis', 's1', '00000000-0000-0000-0000-000000000001')`)
	if err == nil {
		t.Error("identity without a student was accepted")
	}
	_, err = pool.Exec(ctx, `INSERT INTO district_d1.students (internal_id, match_key) VALUES
		('00000000-0000-0000-0000-000000000001', 'k'), ('00000000-0000-0000-0000-000000000002', 'k')`)
	if err == nil {
		t.Error("duplicate match_key was accepted")
	}
}

func TestEnsureDistrictSchemaIsIdempotent(t *testing.T) {
	store, pool := migrated(t)
	ctx := t.Context()
	for range 2 {
		if err := store.EnsureDistrictSchema(ctx, "d2"); err != nil {
			t.Fatalf("EnsureDistrictSchema: %v", err)
		}
	}
	if got := tablesIn(t, pool, "district_d2"); !slices.Equal(got, districtTables) {
		t.Errorf("district tables = %v", got)
	}
	// A schema whose version table is gone is brought back up rather than trusted.
	if _, err := pool.Exec(ctx, "DROP SCHEMA district_d2 CASCADE"); err != nil {
		t.Fatal(err)
	}
	if err := store.EnsureDistrictSchema(ctx, "d2"); err != nil {
		t.Fatalf("EnsureDistrictSchema after drop: %v", err)
	}
	if got := tablesIn(t, pool, "district_d2"); !slices.Equal(got, districtTables) {
		t.Errorf("district tables after drop = %v", got)
	}
}

func TestCreateTenantRefusesInvalidIDs(t *testing.T) {
	store, pool := migrated(t)
	for _, id := range []string{"../x", "A", "a;drop", strings.Repeat("x", 49), "", `x"; DROP SCHEMA control; --`} {
		_, err := store.CreateTenant(t.Context(), id, "Name")
		if !errors.Is(err, tenancy.ErrInvalidArgument) || !strings.Contains(err.Error(), "tenant id") {
			t.Errorf("CreateTenant(%q) = %v, want ErrInvalidArgument naming the tenant id", id, err)
		}
	}
	if _, err := store.CreateTenant(t.Context(), "ok", " "); !errors.Is(err, tenancy.ErrInvalidArgument) {
		t.Errorf("blank name: %v", err)
	}
	var schemas int
	if err := pool.QueryRow(t.Context(),
		"SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'district%'").Scan(&schemas); err != nil {
		t.Fatal(err)
	}
	if schemas != 0 {
		t.Errorf("%d district schemas created for invalid tenants", schemas)
	}
}

func TestAPIKeyRoundTrip(t *testing.T) {
	store, pool := migrated(t)
	ctx := context.Background()
	if _, err := store.CreateTenant(ctx, "springfield", "Springfield"); err != nil {
		t.Fatal(err)
	}

	plaintext, key, err := store.CreateAPIKey(ctx, "springfield", "canvas",
		[]string{tenancy.VerbEventsWrite})
	if err != nil {
		t.Fatalf("CreateAPIKey: %v", err)
	}
	if !strings.HasPrefix(plaintext, "eak_"+key.ID+"_") || len(key.ID) != 12 {
		t.Errorf("plaintext %q does not carry id %q", plaintext, key.ID)
	}
	got, err := store.LookupAPIKey(ctx, plaintext)
	if err != nil {
		t.Fatalf("LookupAPIKey: %v", err)
	}
	if got.ID != key.ID || got.TenantID != "springfield" || got.SourceID != "canvas" || got.LastUsedAt == nil {
		t.Errorf("looked up %+v", got)
	}
	if !got.Allows(tenancy.VerbEventsWrite) || got.Allows(tenancy.VerbRosterWrite) {
		t.Errorf("verbs = %v", got.Verbs)
	}

	// Only the SHA-256 of the secret is stored; the plaintext appears nowhere in the row.
	var row string
	var hash []byte
	if err := pool.QueryRow(ctx, "SELECT k::text, secret_hash FROM control.api_keys k WHERE id = $1",
		key.ID).Scan(&row, &hash); err != nil {
		t.Fatal(err)
	}
	secret := strings.TrimPrefix(plaintext, "eak_"+key.ID+"_")
	if sum := sha256.Sum256([]byte(secret)); !bytes.Equal(hash, sum[:]) {
		t.Error("secret_hash is not SHA-256 of the secret")
	}
	if strings.Contains(row, secret) || strings.Contains(row, plaintext) {
		t.Errorf("stored row %q contains the secret", row)
	}

	list, err := store.APIKeys(ctx, "springfield")
	if err != nil || len(list) != 1 || list[0].ID != key.ID {
		t.Errorf("APIKeys = %+v, %v", list, err)
	}
	if err := store.RevokeAPIKey(ctx, key.ID); err != nil {
		t.Fatalf("RevokeAPIKey: %v", err)
	}
	if _, err := store.LookupAPIKey(ctx, plaintext); !errors.Is(err, tenancy.ErrInvalidKey) {
		t.Errorf("revoked key lookup: %v, want ErrInvalidKey", err)
	}
	if list, _ := store.APIKeys(ctx, "springfield"); len(list) != 1 || list[0].RevokedAt == nil {
		t.Errorf("APIKeys after revoke = %+v", list)
	}
	if err := store.RevokeAPIKey(ctx, "nosuchkey000"); !errors.Is(err, tenancy.ErrNotFound) {
		t.Errorf("revoking unknown key: %v", err)
	}
}

func TestLookupRefusesBadKeys(t *testing.T) {
	store, pool := migrated(t)
	ctx := t.Context()
	if _, err := store.CreateTenant(ctx, "d3", "D3"); err != nil {
		t.Fatal(err)
	}
	plaintext, key, err := store.CreateAPIKey(ctx, "d3", "sis", []string{tenancy.VerbRosterWrite, tenancy.VerbEventsWrite})
	if err != nil {
		t.Fatal(err)
	}
	flip := func(s string) string { // changes the last character, staying in the alphabet
		last := s[len(s)-1]
		repl := byte('a')
		if last == 'a' {
			repl = 'b'
		}
		return s[:len(s)-1] + string(repl)
	}
	otherID := strings.Replace(plaintext, key.ID, "zzzzzzzzzzzz", 1)
	bad := map[string]string{
		"wrong secret": flip(plaintext),
		"unknown id":   otherID,
		"malformed":    "eak_" + key.ID,
		"empty":        "",
		"bearer text":  "Bearer " + plaintext,
	}
	for name, k := range bad {
		if _, err := store.LookupAPIKey(ctx, k); !errors.Is(err, tenancy.ErrInvalidKey) {
			t.Errorf("%s: LookupAPIKey = %v, want ErrInvalidKey", name, err)
		}
	}
	// A key of a tenant that is not active stops working.
	if _, err := pool.Exec(ctx, "UPDATE control.tenants SET status = 'suspended' WHERE id = 'd3'"); err != nil {
		t.Fatal(err)
	}
	if _, err := store.LookupAPIKey(ctx, plaintext); !errors.Is(err, tenancy.ErrInvalidKey) {
		t.Errorf("suspended tenant: LookupAPIKey = %v, want ErrInvalidKey", err)
	}
}

func TestCreateAPIKeyValidates(t *testing.T) {
	store, _ := migrated(t)
	ctx := t.Context()
	if _, err := store.CreateTenant(ctx, "d4", "D4"); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, tenant, source string
		verbs                []string
		is                   error
		mention              string
	}{
		{"unknown tenant", "nope", "sis", []string{tenancy.VerbEventsWrite}, tenancy.ErrNotFound, "nope"},
		{"invalid tenant", "A", "sis", []string{tenancy.VerbEventsWrite}, tenancy.ErrInvalidArgument, "tenant id"},
		{"unknown verb", "d4", "sis", []string{"events:read"}, tenancy.ErrInvalidArgument, `"events:read"`},
		{"no verbs", "d4", "sis", nil, tenancy.ErrInvalidArgument, "verbs"},
		{"bad source", "d4", "a b", []string{tenancy.VerbEventsWrite}, tenancy.ErrInvalidArgument, "source id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := store.CreateAPIKey(ctx, tt.tenant, tt.source, tt.verbs)
			if !errors.Is(err, tt.is) || !strings.Contains(err.Error(), tt.mention) {
				t.Errorf("CreateAPIKey = %v, want %v mentioning %s", err, tt.is, tt.mention)
			}
		})
	}
	if _, err := store.APIKeys(ctx, "nope"); !errors.Is(err, tenancy.ErrNotFound) {
		t.Errorf("APIKeys(unknown) = %v", err)
	}
}
