package app

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edtech-analytics/platform/libs/tenancy/privacy"
)

func TestPolicyGetAndSet(t *testing.T) {
	_, url := migratedDB(t)
	mustCtl(t, url, "tenant", "create", "--id", "d1", "--name", "D1")

	out := mustCtl(t, url, "policy", "get", "--tenant", "d1")
	if !strings.Contains(out, "policy version 0 (the default ferpa template; never set); personal data found in free text: mask") ||
		!strings.Contains(out, `"template": "ferpa"`) || !strings.Contains(out, `"free_text": {`) {
		t.Errorf("default policy = %q", out)
	}
	out = mustCtl(t, url, "policy", "set", "--tenant", "d1", "--template", "coppa", "--by", "alice")
	if !strings.Contains(out, "policy version 1 (coppa)") || !strings.Contains(out, "by alice") {
		t.Errorf("policy set printed %q", out)
	}
	if got := getPolicy(t, url, "d1"); got.Version != 1 || got.Template != privacy.TemplateCOPPA || got.Under13["actor.sis_id"] != privacy.ActionPseudonymise {
		t.Fatalf("policy get json = %+v", got)
	}

	// A custom policy from a file, starting from a template.
	var custom privacy.Policy
	if err := json.Unmarshal([]byte(mustCtl(t, url, "policy", "get", "--template", "dpdp")), &custom); err != nil || custom.Consent == nil {
		t.Fatalf("dpdp template = %+v, %v", custom, err)
	}
	custom.Template, custom.Consent.MetadataKey = privacy.TemplateCustom, "guardian_consent"
	custom.Fields["attendance.reason"] = privacy.ActionReject
	custom.FreeText = &privacy.FreeText{Action: privacy.ActionFlag}
	dir := t.TempDir()
	file := filepath.Join(dir, "policy.json")
	writeJSONFile(t, file, custom)
	if out := mustCtl(t, url, "policy", "set", "--tenant", "d1", "--file", file); !strings.Contains(out, "personal data found in free text: flag\n") {
		t.Errorf("policy set printed %q", out)
	}
	if got := getPolicy(t, url, "d1"); got.Version != 2 || got.Template != privacy.TemplateCustom || got.Consent.MetadataKey != "guardian_consent" ||
		got.Fields["attendance.reason"] != privacy.ActionReject || got.FreeTextAction() != privacy.ActionFlag {
		t.Fatalf("custom policy = %+v", got)
	}

	// An invalid document is refused and stores nothing.
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte(`{"template":"custom","fields":{"actor.sis_id":"shred"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ctl(t, url, "policy", "set", "--tenant", "d1", "--file", bad); err == nil ||
		!strings.Contains(err.Error(), `actor.sis_id: unknown action "shred"`) {
		t.Errorf("invalid policy: %v", err)
	}
	if got := getPolicy(t, url, "d1"); got.Version != 2 {
		t.Errorf("version after a refused set = %d", got.Version)
	}

	tests := []struct {
		args    []string
		usage   bool
		mention string
	}{
		{[]string{"policy", "set", "--tenant", "d1"}, true, "exactly one of --template and --file"},
		{[]string{"policy", "set", "--tenant", "d1", "--template", "coppa", "--file", file}, true, "exactly one"},
		{[]string{"policy", "set", "--tenant", "d1", "--template", "hipaa"}, true, "hipaa"},
		{[]string{"policy", "set", "--tenant", "d1", "--file", filepath.Join(dir, "missing.json")}, true, "--file"},
		{[]string{"policy", "get"}, true, "exactly one of --tenant and --template"},
		{[]string{"policy", "get", "--tenant", "nope"}, false, "not found"},
		{[]string{"policy", "set", "--tenant", "nope", "--template", "ferpa"}, false, "not found"},
	}
	for _, tt := range tests {
		_, _, err := ctl(t, url, tt.args...)
		if err == nil || errors.Is(err, ErrUsage) != tt.usage || !strings.Contains(err.Error(), tt.mention) {
			t.Errorf("ctl %s = %v, want usage=%v mentioning %q", strings.Join(tt.args, " "), err, tt.usage, tt.mention)
		}
	}
}

func getPolicy(t *testing.T, url, tenant string) privacy.Policy {
	t.Helper()
	var p privacy.Policy
	if err := json.Unmarshal([]byte(mustCtl(t, url, "policy", "get", "--tenant", tenant, "--output", "json")), &p); err != nil {
		t.Fatal(err)
	}
	return p
}

func writeJSONFile(t *testing.T, path string, v any) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
