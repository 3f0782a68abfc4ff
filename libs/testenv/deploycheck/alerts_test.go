package deploycheck

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestAlertRulesWatchMetricsTheServicesExport: every alert rule is complete (expr, for, severity,
// summary), its expression parses, every metric it reads is one the platform exports (registered by its
// code under the name Prometheus's exporter derives, or by a library it uses: see registeredMetric), and
// every lag or stall gauge the code registers is read by some rule.
func TestAlertRulesWatchMetricsTheServicesExport(t *testing.T) {
	kind, groups := prometheusRule(t)
	if kind != "PrometheusRule" || len(groups) == 0 {
		t.Fatalf("alerts.yaml: kind %q with %d groups", kind, len(groups))
	}
	code := goSources(t, repoRoot)
	exprs := ""
	for _, g := range groups {
		for _, r := range g.Rules {
			exprs += r.Expr + "\n"
		}
	}
	// Every lag or stall gauge the code registers is watched by some rule.
	for _, m := range regexp.MustCompile(`"([a-z]+(?:_[a-z]+)*_(?:lag_[a-z]+|stalled_seconds))"`).FindAllStringSubmatch(code, -1) {
		if !regexp.MustCompile(`\b` + m[1] + `\b`).MatchString(exprs) {
			t.Errorf("%s is registered, but no alert rule reads it", m[1])
		}
	}
	for _, g := range groups {
		for _, r := range g.Rules {
			if r.Alert == "" || r.Expr == "" || r.For == "" || r.Labels["severity"] == "" || r.Annotations["summary"] == "" {
				t.Errorf("rule %q of %s is incomplete", r.Alert, g.Name)
			}
			metrics, err := exprMetrics(r.Expr)
			if err != nil {
				t.Errorf("rule %s: %v", r.Alert, err)
			}
			for _, m := range metrics {
				if !registeredMetric(code, m) {
					t.Errorf("rule %s reads %s, which no service registers", r.Alert, m)
				}
			}
		}
	}
}

// goSources concatenates the non-test Go sources of the services and libs.
func goSources(t *testing.T, root string) string {
	t.Helper()
	var b strings.Builder
	for _, dir := range []string{"services", "libs"} {
		err := filepath.WalkDir(filepath.Join(root, dir), func(path string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			src, err := os.ReadFile(path)
			b.Write(src)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return b.String()
}
