package tenancy_test

import (
	"bytes"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// TestConcernsStayApart checks the control plane's rule in docs/architecture.md: each concern's package
// imports the shared root package and no other concern, except tenants, which places a district through
// fleet and revokes a deleted district's keys through credentials, and webhooks, which sends out the
// finished jobs that jobs records.
func TestConcernsStayApart(t *testing.T) {
	const root = "github.com/edtech-analytics/platform/libs/tenancy"
	allowed := map[string][]string{"tenants": {"fleet", "credentials"}, "webhooks": {"jobs"}}
	cmd := exec.CommandContext(t.Context(), "go", "list", "-f", `{{.ImportPath}} {{join .Imports " "}}`, root+"/...")
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	var concerns []string
	for line := range strings.Lines(out.String()) {
		fields := strings.Fields(line)
		name, ok := strings.CutPrefix(fields[0], root+"/")
		if !ok || strings.HasPrefix(name, "internal/") {
			continue // the root, or test support
		}
		concerns = append(concerns, name)
		for _, imp := range fields[1:] {
			if dep, ok := strings.CutPrefix(imp, root+"/"); ok && !slices.Contains(allowed[name], dep) {
				t.Errorf("libs/tenancy/%s imports libs/tenancy/%s: a concern imports only the root package", name, dep)
			}
		}
	}
	slices.Sort(concerns)
	if want := []string{"audit", "connectors", "credentials", "fleet", "ingest", "jobs", "mappings", "privacy", "rosters", "statements", "tenants", "timezones", "webhooks"}; !slices.Equal(concerns, want) {
		t.Errorf("concerns = %v, want %v (update this test and docs/architecture.md together)", concerns, want)
	}
}
