package deploycheck

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// TestAlertRulesWatchMetricsTheServicesExport: every alert rule is complete (expr, for, severity,
// summary), every metric its expression reads is one the platform's code registers (a counter's _total
// name, as Prometheus exports it, stands for the name registered), and every lag or stall gauge the code
// registers is read by some rule.
func TestAlertRulesWatchMetricsTheServicesExport(t *testing.T) {
	root := repoRoot
	raw, err := os.ReadFile(filepath.Join(root, "k8s", "monitoring", "alerts.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Kind string `yaml:"kind"`
		Spec struct {
			Groups []struct {
				Name  string `yaml:"name"`
				Rules []struct {
					Alert       string            `yaml:"alert"`
					Expr        string            `yaml:"expr"`
					For         string            `yaml:"for"`
					Labels      map[string]string `yaml:"labels"`
					Annotations map[string]string `yaml:"annotations"`
				} `yaml:"rules"`
			} `yaml:"groups"`
		} `yaml:"spec"`
	}
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Kind != "PrometheusRule" || len(doc.Spec.Groups) == 0 {
		t.Fatalf("alerts.yaml: kind %q with %d groups", doc.Kind, len(doc.Spec.Groups))
	}
	code := goSources(t, root)
	exprs := ""
	for _, g := range doc.Spec.Groups {
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
	// A metric name is followed by its labels, a range, a closing parenthesis or a comparison.
	metric := regexp.MustCompile(`\b([a-z][a-z0-9]*(?:_[a-z0-9]+)+)\s*(?:\{|\[|\)|>|<|$)`)
	for _, g := range doc.Spec.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" || r.Expr == "" || r.For == "" || r.Labels["severity"] == "" || r.Annotations["summary"] == "" {
				t.Errorf("rule %q of %s is incomplete", r.Alert, g.Name)
			}
			for _, m := range metric.FindAllStringSubmatch(r.Expr, -1) {
				// Prometheus exports an OpenTelemetry counter registered as "x" as x_total, and a histogram
				// as x_bucket, x_sum and x_count.
				registered := func(name string) bool { return strings.Contains(code, `"`+name+`"`) }
				base := m[1]
				for _, suffix := range []string{"_total", "_bucket", "_sum", "_count"} {
					base = strings.TrimSuffix(base, suffix)
				}
				if !registered(m[1]) && !registered(base) {
					t.Errorf("rule %s reads %s, which no service registers", r.Alert, m[1])
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
