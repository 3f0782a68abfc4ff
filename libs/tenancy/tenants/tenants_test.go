package tenants_test

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/edtech-analytics/platform/libs/pgutil/pgtest"
	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/edtech-analytics/platform/libs/tenancy/credentials"
	"github.com/edtech-analytics/platform/libs/tenancy/internal/controltest"
	"github.com/edtech-analytics/platform/libs/tenancy/tenants"
)

func TestCreate(t *testing.T) {
	pool, store := controltest.Districts(t, pgtest.New)
	ctx := t.Context()

	created, err := store.Create(ctx, "springfield", "Springfield Public Schools")
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if created.ID != "springfield" || created.Name != "Springfield Public Schools" ||
		created.Status != tenancy.StatusActive || len(created.PseudonymKey) != 32 || created.CreatedAt.IsZero() ||
		created.DeletedAt != nil {
		t.Errorf("created tenant = %+v", created)
	}
	if got := controltest.Tables(t, pool, "district_springfield"); !slices.Equal(got, controltest.DistrictTables) {
		t.Errorf("district tables = %v, want %v", got, controltest.DistrictTables)
	}

	got, err := store.Tenant(ctx, "springfield")
	if err != nil || !bytes.Equal(got.PseudonymKey, created.PseudonymKey) || got.Name != created.Name {
		t.Errorf("Tenant = %+v, %v; want the created tenant", got, err)
	}
	if _, err := store.Create(ctx, "springfield", "Again"); !errors.Is(err, tenants.ErrExists) {
		t.Errorf("second Create: %v, want ErrExists", err)
	}
	if _, err := store.Tenant(ctx, "shelbyville"); !errors.Is(err, tenancy.ErrNotFound) {
		t.Errorf("Tenant(unknown): %v, want ErrNotFound", err)
	}

	other, err := store.Create(ctx, "shelbyville", "Shelbyville")
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
	pool, store := controltest.Districts(t, pgtest.New)
	ctx := t.Context()
	if _, err := store.Create(ctx, "d1", "District One"); err != nil {
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
	pool, store := controltest.Districts(t, pgtest.New)
	ctx := t.Context()
	for range 2 {
		if err := store.EnsureDistrictSchema(ctx, "d2"); err != nil {
			t.Fatalf("EnsureDistrictSchema: %v", err)
		}
	}
	if got := controltest.Tables(t, pool, "district_d2"); !slices.Equal(got, controltest.DistrictTables) {
		t.Errorf("district tables = %v", got)
	}
	// A schema whose version table is gone is brought back up rather than trusted.
	if _, err := pool.Exec(ctx, "DROP SCHEMA district_d2 CASCADE"); err != nil {
		t.Fatal(err)
	}
	if err := store.EnsureDistrictSchema(ctx, "d2"); err != nil {
		t.Fatalf("EnsureDistrictSchema after drop: %v", err)
	}
	if got := controltest.Tables(t, pool, "district_d2"); !slices.Equal(got, controltest.DistrictTables) {
		t.Errorf("district tables after drop = %v", got)
	}
}

func TestCreateRefusesInvalidIDs(t *testing.T) {
	pool, store := controltest.Districts(t, pgtest.New)
	for _, id := range []string{"../x", "A", "a;drop", strings.Repeat("x", 49), "", `x"; DROP SCHEMA control; --`} {
		_, err := store.Create(t.Context(), id, "Name")
		if !errors.Is(err, tenancy.ErrInvalidArgument) || !strings.Contains(err.Error(), "tenant id") {
			t.Errorf("Create(%q) = %v, want ErrInvalidArgument naming the tenant id", id, err)
		}
	}
	if _, err := store.Create(t.Context(), "ok", " "); !errors.Is(err, tenancy.ErrInvalidArgument) {
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

// TestDelete: deletion marks the tenant deleted, revokes its keys and drops its schema on its own
// instance; it can be repeated, and other districts are untouched.
func TestDelete(t *testing.T) {
	f, control, east := controltest.TwoInstances(t, pgtest.New)
	store, keys := tenants.New(f), credentials.New(control)
	ctx := t.Context()
	for _, id := range []string{"gone", "kept"} {
		if _, err := store.CreateOn(ctx, id, id, "east"); err != nil {
			t.Fatal(err)
		}
	}
	key, _, err := keys.CreateAPIKey(ctx, "gone", "sis", []string{credentials.VerbEventsWrite})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := keys.CreateAPIKey(ctx, "gone", "lms", []string{credentials.VerbEventsWrite}); err != nil {
		t.Fatal(err)
	}
	shadow, err := tenancy.EnsureShadowSchema(ctx, east, "gone") // an abandoned rebuild
	if err != nil {
		t.Fatal(err)
	}

	d, err := store.Delete(ctx, "gone")
	if err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if d != (tenants.Deletion{TenantID: "gone", Instance: "east", Schema: "district_gone", KeysRevoked: 2, SchemaDropped: true}) {
		t.Errorf("deletion = %+v", d)
	}
	if controltest.SchemaExists(t, east, "district_gone") || controltest.SchemaExists(t, east, shadow) {
		t.Error("schemas of the deleted district remain")
	}
	if !controltest.SchemaExists(t, east, "district_kept") {
		t.Error("another district's schema was dropped")
	}
	if _, err := keys.LookupAPIKey(ctx, key); !errors.Is(err, credentials.ErrInvalidKey) {
		t.Errorf("key of a deleted tenant: %v", err)
	}
	tn, err := store.Tenant(ctx, "gone")
	if err != nil || tn.Status != tenancy.StatusDeleted || tn.DeletedAt == nil {
		t.Errorf("deleted tenant = %+v, %v", tn, err)
	}
	if list, _ := store.Tenants(ctx); len(list) != 1 || list[0].ID != "kept" {
		t.Errorf("Tenants after delete = %+v", list)
	}

	again, err := store.Delete(ctx, "gone")
	if err != nil || again.SchemaDropped || again.KeysRevoked != 0 {
		t.Errorf("second Delete = %+v, %v", again, err)
	}
	// A service that saw the tenant alive a moment ago cannot bring the schema back.
	if err := store.UpgradeDistrictSchema(ctx, "gone"); !errors.Is(err, tenancy.ErrSchemaMissing) {
		t.Errorf("UpgradeDistrictSchema of a dropped schema = %v, want ErrSchemaMissing", err)
	}
	if controltest.SchemaExists(t, east, "district_gone") || controltest.SchemaExists(t, control, "district_gone") {
		t.Error("UpgradeDistrictSchema recreated a dropped schema")
	}
	if _, err := store.Delete(ctx, "never"); !errors.Is(err, tenancy.ErrNotFound) {
		t.Errorf("Delete(unknown) = %v", err)
	}
}
