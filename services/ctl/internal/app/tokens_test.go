package app

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/edtech-analytics/platform/libs/tenancy/audit"
	"github.com/edtech-analytics/platform/libs/tenancy/credentials"
)

// TestTokenCommandsAndAuditVerify issues, lists and revokes dashboard tokens through ctl, checks that
// the store resolves what was printed with its role and scope, that a bad scope is a usage-level error
// naming the flag, that each action lands in the audit log, and that ctl audit verify passes on the
// intact log, passes with its own head, and fails once the log was tampered with.
func TestTokenCommandsAndAuditVerify(t *testing.T) {
	pool, url := migratedDB(t)
	store := credentials.New(pool)
	mustCtl(t, url, "tenant", "create", "--id", "d1", "--name", "District 1")

	var created struct {
		Token string `json:"token"`
		credentials.DashboardToken
	}
	out := mustCtl(t, url, "token", "create", "--tenant", "d1", "--role", "school_admin", "--school", "s1,s2", "--label", "principal", "--output", "json")
	if err := json.Unmarshal([]byte(out), &created); err != nil {
		t.Fatalf("token create printed %q: %v", out, err)
	}
	tok, err := store.LookupDashboardToken(t.Context(), created.Token)
	if err != nil || tok.Role != credentials.RoleSchoolAdmin || strings.Join(tok.SchoolIDs, ",") != "s1,s2" || tok.Label != "principal" {
		t.Fatalf("the printed token resolves to %+v, %v", tok, err)
	}
	out = mustCtl(t, url, "token", "create", "--tenant", "d1", "--role", "teacher", "--teacher", "T-1", "--ttl", "24h")
	if !strings.Contains(out, "teacher T-1") || !strings.Contains(out, "edt_") {
		t.Fatalf("token create printed %q", out)
	}
	if _, _, err := ctl(t, url, "token", "create", "--tenant", "d1", "--role", "teacher"); err == nil || !strings.Contains(err.Error(), "--role") {
		t.Fatalf("a teacher token without --teacher: err = %v", err)
	}
	out = mustCtl(t, url, "token", "create", "--tenant", "d1", "--role", "parent", "--student", "S-1,S-2")
	if !strings.Contains(out, "parent of S-1,S-2") || !strings.Contains(out, "edt_") {
		t.Fatalf("token create printed %q", out)
	}
	for _, args := range [][]string{{"--role", "parent"}, {"--role", "teacher", "--teacher", "T-1", "--student", "S-1"}} {
		if _, _, err := ctl(t, url, append([]string{"token", "create", "--tenant", "d1"}, args...)...); err == nil || !strings.Contains(err.Error(), "--student") {
			t.Fatalf("token create %v: err = %v, want one naming --student", args, err)
		}
	}
	out = mustCtl(t, url, "token", "list", "--tenant", "d1")
	if !strings.Contains(out, created.ID) || !strings.Contains(out, "school_admin of s1,s2") || !strings.Contains(out, "teacher T-1") ||
		!strings.Contains(out, "parent of S-1,S-2") {
		t.Fatalf("token list printed %q", out)
	}
	mustCtl(t, url, "token", "revoke", "--id", created.ID)
	if _, err := store.LookupDashboardToken(t.Context(), created.Token); !errors.Is(err, credentials.ErrInvalidKey) {
		t.Fatalf("a revoked token still resolves: %v", err)
	}

	var verified struct {
		OK      bool   `json:"ok"`
		Entries int64  `json:"entries"`
		Head    string `json:"head"`
	}
	out = mustCtl(t, url, "audit", "verify", "--output", "json")
	if err := json.Unmarshal([]byte(out), &verified); err != nil || !verified.OK || verified.Entries != 5 {
		t.Fatalf("audit verify printed %q (%v): want 5 entries (the district, three tokens, one revocation)", out, err)
	}
	entries, err := audit.New(pool, nil).Entries(t.Context(), 1, 10)
	if err != nil || entries[0].Action != "tenant.create" || entries[1].Action != "token.create" || entries[4].Action != "token.revoke" ||
		entries[4].Actor != "ctl" {
		t.Fatalf("audit entries = %+v, %v", entries, err)
	}
	mustCtl(t, url, "audit", "verify", "--head", verified.Head)
	if _, _, err := ctl(t, url, "audit", "verify", "--head", "nonsense"); !errors.Is(err, ErrUsage) {
		t.Fatalf("audit verify --head nonsense: err = %v, want a usage error", err)
	}
	for _, s := range []string{"ALTER TABLE control.audit_log DISABLE TRIGGER USER",
		"UPDATE control.audit_log SET tenant_id = 'd2' WHERE seq = 3", "ALTER TABLE control.audit_log ENABLE TRIGGER USER"} {
		if _, err := pool.Exec(t.Context(), s); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := ctl(t, url, "audit", "verify"); !errors.Is(err, audit.ErrTampered) || !strings.Contains(err.Error(), "entry 3") {
		t.Fatalf("audit verify of a tampered log: err = %v", err)
	}
}

// TestBillingToken: 'token create --role billing' issues a platform token without a district (and refuses
// one with a district, as a district role is refused without one); 'token list --platform' lists it and
// no district's tokens.
func TestBillingToken(t *testing.T) {
	pool, url := migratedDB(t)
	mustCtl(t, url, "tenant", "create", "--id", "d1", "--name", "District 1")
	mustCtl(t, url, "token", "create", "--tenant", "d1", "--role", "district_admin")
	var created struct {
		Token    string `json:"token"`
		ID       string `json:"id"`
		TenantID string `json:"tenant_id"`
		Role     string `json:"role"`
	}
	out := mustCtl(t, url, "token", "create", "--role", "billing", "--label", "billing system", "--output", "json")
	if err := json.Unmarshal([]byte(out), &created); err != nil || created.Role != "billing" || created.TenantID != "" {
		t.Fatalf("token create printed %q: %v", out, err)
	}
	if tok, err := credentials.New(pool).LookupDashboardToken(t.Context(), created.Token); err != nil || tok.Role != credentials.RoleBilling {
		t.Fatalf("the billing token resolves to %+v, %v", tok, err)
	}
	if out := mustCtl(t, url, "token", "create", "--role", "billing"); !strings.Contains(out, "for the platform (billing)") {
		t.Errorf("token create printed %q", out)
	}
	if _, _, err := ctl(t, url, "token", "create", "--role", "billing", "--tenant", "d1"); !errors.Is(err, ErrUsage) || !strings.Contains(err.Error(), "--tenant") {
		t.Errorf("a billing token of a district: %v", err)
	}
	if _, _, err := ctl(t, url, "token", "create", "--role", "district_admin"); !errors.Is(err, ErrUsage) || !strings.Contains(err.Error(), "--tenant") {
		t.Errorf("a district token without a district: %v", err)
	}
	out = mustCtl(t, url, "token", "list", "--platform")
	if !strings.Contains(out, created.ID) || strings.Count(out, "billing") != 3 || strings.Contains(out, "district_admin") {
		t.Errorf("token list --platform printed %q", out)
	}
	if out := mustCtl(t, url, "token", "list", "--tenant", "d1"); strings.Contains(out, created.ID) || !strings.Contains(out, "district_admin") {
		t.Errorf("token list --tenant d1 printed %q", out)
	}
	if _, _, err := ctl(t, url, "token", "list"); !errors.Is(err, ErrUsage) {
		t.Errorf("token list without --tenant or --platform: %v", err)
	}
}
