package credentials_test

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/edtech-analytics/platform/libs/pgutil/pgtest"
	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/edtech-analytics/platform/libs/tenancy/credentials"
	"github.com/edtech-analytics/platform/libs/tenancy/internal/controltest"
)

// TestDashboardTokens proves a token round-trips with its role and scope, that scopes must fit roles,
// and that revoked, expired, wrong, malformed and deleted-tenant tokens are all refused alike.
func TestDashboardTokens(t *testing.T) {
	pool, districts := controltest.Districts(t, pgtest.New)
	store := credentials.New(pool)
	ctx := t.Context()
	for _, id := range []string{"d1", "d2"} {
		if _, err := districts.Create(ctx, id, "District "+id); err != nil {
			t.Fatal(err)
		}
	}
	invalid := []credentials.DashboardToken{
		{TenantID: "d1", Role: "principal"},
		{TenantID: "d1", Role: credentials.RoleSchoolAdmin},
		{TenantID: "d1", Role: credentials.RoleDistrictAdmin, SchoolIDs: []string{"s1"}},
		{TenantID: "d1", Role: credentials.RoleTeacher},
		{TenantID: "d1", Role: credentials.RoleSchoolAdmin, SchoolIDs: []string{"s1"}, TeacherID: "t1"},
		{TenantID: "d1", Role: credentials.RoleParent},
		{TenantID: "d1", Role: credentials.RoleParent, StudentIDs: []string{" ", ""}},
		{TenantID: "d1", Role: credentials.RoleTeacher, TeacherID: "t1", StudentIDs: []string{"S-1"}},
	}
	for _, tok := range invalid {
		if _, _, err := store.CreateDashboardToken(ctx, tok); !errors.Is(err, tenancy.ErrInvalidArgument) {
			t.Errorf("CreateDashboardToken(%+v) = %v, want ErrInvalidArgument", tok, err)
		}
	}
	if _, _, err := store.CreateDashboardToken(ctx, credentials.DashboardToken{TenantID: "d9", Role: credentials.RoleDistrictAdmin}); !errors.Is(err, tenancy.ErrNotFound) {
		t.Errorf("token of an unknown tenant: %v", err)
	}

	plain, tok, err := store.CreateDashboardToken(ctx, credentials.DashboardToken{TenantID: "d1", Role: credentials.RoleSchoolAdmin,
		SchoolIDs: []string{"s1", " s2 ", "s1"}, Label: "principal of s1 and s2"})
	if err != nil {
		t.Fatal(err)
	}
	if !credentials.IsDashboardToken(plain) || !slices.Equal(tok.SchoolIDs, []string{"s1", "s2"}) {
		t.Fatalf("created %q with schools %v", plain, tok.SchoolIDs)
	}
	got, err := store.LookupDashboardToken(ctx, plain)
	if err != nil || got.ID != tok.ID || got.TenantID != "d1" || got.Role != credentials.RoleSchoolAdmin || !slices.Equal(got.SchoolIDs, []string{"s1", "s2"}) || got.LastUsed == nil {
		t.Fatalf("LookupDashboardToken = %+v, %v", got, err)
	}
	teacher, _, err := store.CreateDashboardToken(ctx, credentials.DashboardToken{TenantID: "d2", Role: credentials.RoleTeacher, TeacherID: "T-7"})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := store.LookupDashboardToken(ctx, teacher); err != nil || got.TeacherID != "T-7" || got.TenantID != "d2" {
		t.Fatalf("teacher token = %+v, %v", got, err)
	}
	parent, _, err := store.CreateDashboardToken(ctx, credentials.DashboardToken{TenantID: "d1", Role: credentials.RoleParent,
		StudentIDs: []string{"S-1", " S-2", "S-1"}})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := store.LookupDashboardToken(ctx, parent); err != nil || got.Role != credentials.RoleParent || !slices.Equal(got.StudentIDs, []string{"S-1", "S-2"}) {
		t.Fatalf("parent token = %+v, %v", got, err)
	}
	past := time.Now().Add(-time.Minute)
	expired, _, err := store.CreateDashboardToken(ctx, credentials.DashboardToken{TenantID: "d1", Role: credentials.RoleDistrictAdmin, ExpiresAt: &past})
	if err != nil {
		t.Fatal(err)
	}
	revoked, rtok, err := store.CreateDashboardToken(ctx, credentials.DashboardToken{TenantID: "d1", Role: credentials.RoleDistrictAdmin})
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
		if _, err := store.LookupDashboardToken(ctx, p); !errors.Is(err, credentials.ErrInvalidKey) {
			t.Errorf("%s token: err = %v, want ErrInvalidKey", name, err)
		}
	}
	list, err := store.DashboardTokens(ctx, "d1")
	if err != nil || len(list) != 4 || list[3].RevokedAt == nil {
		t.Fatalf("DashboardTokens(d1) = %d tokens, %v", len(list), err)
	}
	if _, err := store.RevokeDashboardToken(ctx, "nosuchtoken1"); !errors.Is(err, tenancy.ErrNotFound) {
		t.Fatalf("revoking an unknown token: %v", err)
	}
}

// TestPlatformTokens: a billing token belongs to no district: it is created without one (and refused with
// one, as a district role is refused without one), looks up with its role and no tenant, is listed
// apart from every district's tokens, and is refused once revoked.
func TestPlatformTokens(t *testing.T) {
	pool, districts := controltest.Districts(t, pgtest.New)
	store := credentials.New(pool)
	ctx := t.Context()
	if _, err := districts.Create(ctx, "d1", "District 1"); err != nil {
		t.Fatal(err)
	}
	for _, tok := range []credentials.DashboardToken{
		{TenantID: "d1", Role: credentials.RoleBilling},
		{Role: credentials.RoleDistrictAdmin},
		{Role: credentials.RoleBilling, SchoolIDs: []string{"s1"}},
		{Role: credentials.RoleBilling, TeacherID: "t1"},
	} {
		if _, _, err := store.CreateDashboardToken(ctx, tok); !errors.Is(err, tenancy.ErrInvalidArgument) {
			t.Errorf("CreateDashboardToken(%+v) = %v, want ErrInvalidArgument", tok, err)
		}
	}
	plain, tok, err := store.CreateDashboardToken(ctx, credentials.DashboardToken{Role: credentials.RoleBilling, Label: "billing system"})
	if err != nil {
		t.Fatal(err)
	}
	if tok.TenantID != "" || tok.Role != credentials.RoleBilling {
		t.Fatalf("created %+v", tok)
	}
	got, err := store.LookupDashboardToken(ctx, plain)
	if err != nil || got.ID != tok.ID || got.TenantID != "" || got.Role != credentials.RoleBilling {
		t.Fatalf("LookupDashboardToken = %+v, %v", got, err)
	}
	if _, _, err := store.CreateDashboardToken(ctx, credentials.DashboardToken{TenantID: "d1", Role: credentials.RoleDistrictAdmin}); err != nil {
		t.Fatal(err)
	}
	platform, err := store.PlatformTokens(ctx)
	if err != nil || len(platform) != 1 || platform[0].ID != tok.ID {
		t.Fatalf("PlatformTokens = %+v, %v", platform, err)
	}
	if list, err := store.DashboardTokens(ctx, "d1"); err != nil || len(list) != 1 || list[0].Role != credentials.RoleDistrictAdmin {
		t.Fatalf("DashboardTokens(d1) = %+v, %v", list, err)
	}
	if _, err := store.DashboardTokens(ctx, ""); !errors.Is(err, tenancy.ErrNotFound) {
		t.Fatalf("DashboardTokens(\"\") = %v, want ErrNotFound", err)
	}
	if _, err := store.RevokeDashboardToken(ctx, tok.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := store.LookupDashboardToken(ctx, plain); !errors.Is(err, credentials.ErrInvalidKey) {
		t.Fatalf("revoked billing token: %v", err)
	}
}
