package tenancy_test

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/edtech-analytics/platform/libs/tenancy"
)

// TestDashboardTokens proves a token round-trips with its role and scope, that scopes must fit roles,
// and that revoked, expired, wrong, malformed and deleted-tenant tokens are all refused alike.
func TestDashboardTokens(t *testing.T) {
	store, pool := migrated(t)
	ctx := t.Context()
	for _, id := range []string{"d1", "d2"} {
		if _, err := store.CreateTenant(ctx, id, "District "+id); err != nil {
			t.Fatal(err)
		}
	}
	invalid := []tenancy.DashboardToken{
		{TenantID: "d1", Role: "principal"},
		{TenantID: "d1", Role: tenancy.RoleSchoolAdmin},
		{TenantID: "d1", Role: tenancy.RoleDistrictAdmin, SchoolIDs: []string{"s1"}},
		{TenantID: "d1", Role: tenancy.RoleTeacher},
		{TenantID: "d1", Role: tenancy.RoleSchoolAdmin, SchoolIDs: []string{"s1"}, TeacherID: "t1"},
	}
	for _, tok := range invalid {
		if _, _, err := store.CreateDashboardToken(ctx, tok); !errors.Is(err, tenancy.ErrInvalidArgument) {
			t.Errorf("CreateDashboardToken(%+v) = %v, want ErrInvalidArgument", tok, err)
		}
	}
	if _, _, err := store.CreateDashboardToken(ctx, tenancy.DashboardToken{TenantID: "d9", Role: tenancy.RoleDistrictAdmin}); !errors.Is(err, tenancy.ErrNotFound) {
		t.Errorf("token of an unknown tenant: %v", err)
	}

	plain, tok, err := store.CreateDashboardToken(ctx, tenancy.DashboardToken{TenantID: "d1", Role: tenancy.RoleSchoolAdmin,
		SchoolIDs: []string{"s1", " s2 ", "s1"}, Label: "principal of s1 and s2"})
	if err != nil {
		t.Fatal(err)
	}
	if !tenancy.IsDashboardToken(plain) || !slices.Equal(tok.SchoolIDs, []string{"s1", "s2"}) {
		t.Fatalf("created %q with schools %v", plain, tok.SchoolIDs)
	}
	got, err := store.LookupDashboardToken(ctx, plain)
	if err != nil || got.ID != tok.ID || got.TenantID != "d1" || got.Role != tenancy.RoleSchoolAdmin || !slices.Equal(got.SchoolIDs, []string{"s1", "s2"}) || got.LastUsed == nil {
		t.Fatalf("LookupDashboardToken = %+v, %v", got, err)
	}
	teacher, _, err := store.CreateDashboardToken(ctx, tenancy.DashboardToken{TenantID: "d2", Role: tenancy.RoleTeacher, TeacherID: "T-7"})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := store.LookupDashboardToken(ctx, teacher); err != nil || got.TeacherID != "T-7" || got.TenantID != "d2" {
		t.Fatalf("teacher token = %+v, %v", got, err)
	}
	past := time.Now().Add(-time.Minute)
	expired, _, err := store.CreateDashboardToken(ctx, tenancy.DashboardToken{TenantID: "d1", Role: tenancy.RoleDistrictAdmin, ExpiresAt: &past})
	if err != nil {
		t.Fatal(err)
	}
	revoked, rtok, err := store.CreateDashboardToken(ctx, tenancy.DashboardToken{TenantID: "d1", Role: tenancy.RoleDistrictAdmin})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.RevokeDashboardToken(ctx, rtok.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, "UPDATE control.tenants SET deleted_at = now() WHERE id = 'd2'"); err != nil {
		t.Fatal(err)
	}
	for name, p := range map[string]string{
		"expired": expired, "revoked": revoked, "deleted tenant": teacher, "wrong secret": plain[:len(plain)-1] + "a",
		"malformed": "edt_short", "an api key shape": "eak_" + plain[4:], "empty": "",
	} {
		if name == "wrong secret" && plain[len(plain)-1] == 'a' {
			p = plain[:len(plain)-1] + "b"
		}
		if _, err := store.LookupDashboardToken(ctx, p); !errors.Is(err, tenancy.ErrInvalidKey) {
			t.Errorf("%s token: err = %v, want ErrInvalidKey", name, err)
		}
	}
	list, err := store.DashboardTokens(ctx, "d1")
	if err != nil || len(list) != 3 || list[2].RevokedAt == nil {
		t.Fatalf("DashboardTokens(d1) = %d tokens, %v", len(list), err)
	}
	if _, err := store.RevokeDashboardToken(ctx, "nosuchtoken1"); !errors.Is(err, tenancy.ErrNotFound) {
		t.Fatalf("revoking an unknown token: %v", err)
	}
}
