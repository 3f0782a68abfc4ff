package deploycheck

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/promql/parser"
	"gopkg.in/yaml.v3"
)

var update = flag.Bool("update", false, "write the generated files: k8s/monitoring/prometheus/rules.yml, k8s-overlays/components/strimzi/topics.yaml")

const (
	monitoringDir = "k8s/monitoring"
	runbookBase   = "https://github.com/edtech-analytics/platform/blob/main/docs/runbooks/"
)

// alertRule is one rule of k8s/monitoring/alerts.yaml.
type alertRule struct {
	Alert       string            `yaml:"alert"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

// alertGroup is a rule group, as the PrometheusRule's spec and a Prometheus rules file both hold them.
type alertGroup struct {
	Name  string      `yaml:"name"`
	Rules []alertRule `yaml:"rules"`
}

// prometheusRule reads the PrometheusRule of k8s/monitoring/alerts.yaml.
func prometheusRule(t *testing.T) (kind string, groups []alertGroup) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(repoRoot, monitoringDir, "alerts.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Kind string `yaml:"kind"`
		Spec struct {
			Groups []alertGroup `yaml:"groups"`
		} `yaml:"spec"`
	}
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	return doc.Kind, doc.Spec.Groups
}

// exprMetrics parses a PromQL expression with Prometheus's parser and returns the metric names its
// selectors read. Grafana's variables are replaced first: $__rate_interval (and $__interval, $__range) by
// a duration; others only appear in label matchers' strings.
func exprMetrics(expr string) ([]string, error) {
	expr = regexp.MustCompile(`\$__(rate_interval|interval|range)\b`).ReplaceAllString(expr, "5m")
	node, err := parser.NewParser(parser.Options{}).ParseExpr(expr)
	if err != nil {
		return nil, err
	}
	var out []string
	parser.Inspect(node, func(n parser.Node, _ []parser.Node) error {
		if v, ok := n.(*parser.VectorSelector); ok {
			out = append(out, v.Name)
		}
		return nil
	})
	return out, nil
}

// libraryMetrics are exported by libraries the services use, not registered in their code: the name
// Prometheus exports, and what the code must contain for the library to be there.
var libraryMetrics = map[string]string{
	// otelhttp's http.server.request.duration (seconds), by http.route, method and status code.
	"http_server_request_duration_seconds": "otelhttp.NewHandler",
	// Prometheus's own, per scrape target.
	"up": "",
}

// unitSuffixes are the suffixes Prometheus's exporter adds for an OpenTelemetry unit, unless the name ends
// with it already.
var unitSuffixes = map[string]string{"s": "_seconds", "By": "_bytes"}

// registeredMetric reports whether code registers the metric Prometheus exports as name: a counter
// registered as "x" is exported as x_total, a histogram as x_bucket, x_sum and x_count; a unit adds its
// suffix (seconds, bytes) unless the name has it; an OpenTelemetry name's dots become underscores.
func registeredMetric(code, name string) bool {
	base := name
	for _, suffix := range []string{"_total", "_bucket", "_sum", "_count"} {
		base = strings.TrimSuffix(base, suffix)
	}
	for _, n := range []string{name, base} {
		if need, ok := libraryMetrics[n]; ok && strings.Contains(code, need) {
			return true
		}
		for _, registered := range []string{n, strings.TrimSuffix(n, "_bytes"), strings.TrimSuffix(n, "_seconds")} {
			dotted := strings.ReplaceAll(registered, "_", ".")
			for _, r := range []string{registered, dotted} {
				if exported, ok := exportedName(code, r); ok && exported == n {
					return true
				}
			}
		}
	}
	return false
}

// exportedName returns the name Prometheus exports for the metric code registers as name (before the
// counter and histogram suffixes), and whether code registers it: its unit, given in the registration's
// statement (up to its error check), adds a suffix.
func exportedName(code, name string) (string, bool) {
	i := strings.Index(code, `"`+name+`"`)
	if i < 0 {
		return "", false
	}
	exported := strings.ReplaceAll(name, ".", "_")
	stmt := code[i:]
	if end := regexp.MustCompile(`err != nil|if err|\n\s*\n`).FindStringIndex(stmt); end != nil {
		stmt = stmt[:end[0]]
	}
	if m := regexp.MustCompile(`WithUnit\("([^"]+)"\)`).FindStringSubmatch(stmt); m != nil {
		if suffix := unitSuffixes[m[1]]; !strings.HasSuffix(exported, suffix) {
			exported += suffix
		}
	}
	return exported, true
}

func TestExprMetrics(t *testing.T) {
	for _, tc := range []struct {
		expr string
		want []string
	}{
		{`max by (namespace, tenant_id) (roster_held_uploads) > 0`, []string{"roster_held_uploads"}},
		{`histogram_quantile(0.99, sum by (le, http_route) (rate(http_server_request_duration_seconds_bucket{job="query", http_route=~"$route"}[$__rate_interval])))`, []string{"http_server_request_duration_seconds_bucket"}},
		{`sum(rate(a_total[5m])) / (sum(rate(a_total[5m])) + sum(rate(b_total[5m])))`, []string{"a_total", "a_total", "b_total"}},
		{`sum(rate(gateway_events_accepted_total[30m] offset 1w)) > 1`, []string{"gateway_events_accepted_total"}},
		{`time() - max(connector_last_success_timestamp_seconds)`, []string{"connector_last_success_timestamp_seconds"}},
		{`up{job=~"gateway|sink"} == 0 and on(job) sum by (job) (x_total)`, []string{"up", "x_total"}},
	} {
		if got, err := exprMetrics(tc.expr); err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("exprMetrics(%q) = %q, %v, want %q", tc.expr, got, err, tc.want)
		}
	}
	if _, err := exprMetrics(`sum(rate(a_total[5m])`); err == nil {
		t.Error("an unbalanced expression parsed")
	}
	code := `m.Int64Counter("gateway_events_accepted")
	if err != nil {}
	m.Float64Histogram("consumer_record_age_seconds", metric.WithUnit("s"))
	m.Int64Counter("archiver_bytes_written", metric.WithUnit("By"))
	if err != nil {}
	if g, err = m.Int64Gauge("sync_failures"); err != nil {}
	m.Float64Gauge("last_success_timestamp", metric.WithUnit("s"))
	m.Float64Histogram("queue.wait", metric.WithUnit("s"))
	otelhttp.NewHandler(h, "x")`
	for name, want := range map[string]bool{"gateway_events_accepted_total": true, "consumer_record_age_seconds_bucket": true,
		"http_server_request_duration_seconds_count": true, "gateway_events_refused_total": false, "http_client_request_duration_seconds_count": false,
		"archiver_bytes_written_bytes_total": true, "archiver_bytes_written_total": false, "queue_wait_seconds_bucket": true, "queue_wait_bucket": false,
		"sync_failures": true, "last_success_timestamp_seconds": true, "last_success_timestamp": false} {
		if registeredMetric(code, name) != want {
			t.Errorf("registeredMetric(%s) = %v, want %v", name, !want, want)
		}
	}
}

// TestComposeRulesAreThePrometheusRule: the rules file docker-compose.yml's Prometheus evaluates holds the
// same groups as the cluster's PrometheusRule. -update writes it.
func TestComposeRulesAreThePrometheusRule(t *testing.T) {
	_, groups := prometheusRule(t)
	path := filepath.Join(repoRoot, monitoringDir, "prometheus", "rules.yml")
	if *update {
		b, err := yaml.Marshal(map[string]any{"groups": groups})
		if err != nil {
			t.Fatal(err)
		}
		head := "# Written from k8s/monitoring/alerts.yaml (its spec.groups) by `make generate`, which runs\n" +
			"#   go test ./libs/testenv/deploycheck -run TestComposeRulesAreThePrometheusRule -update\n# Do not edit.\n"
		if err := os.WriteFile(path, append([]byte(head), b...), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Groups []alertGroup `yaml:"groups"`
	}
	if err := yaml.Unmarshal(raw, &file); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(file.Groups, groups) {
		t.Errorf("%s differs from the groups of alerts.yaml: run this test with -update", path)
	}
}

// dashboard is the part of a Grafana dashboard the checks read.
type dashboard struct {
	UID           string  `json:"uid"`
	Title         string  `json:"title"`
	SchemaVersion int     `json:"schemaVersion"`
	Panels        []panel `json:"panels"`
}

type panel struct {
	Title      string `json:"title"`
	Type       string `json:"type"`
	Datasource *struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	} `json:"datasource"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // a collapsed row's
}

// TestDashboardsReadMetricsTheServicesExport: every dashboard parses, has a current schema version and a
// unique uid; every panel queries the provisioned Prometheus by its uid; every metric its expressions read
// is one the services export.
func TestDashboardsReadMetricsTheServicesExport(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(repoRoot, monitoringDir, "grafana", "dashboards", "*.json"))
	if err != nil || len(files) < 4 {
		t.Fatalf("dashboards %v, %v: want at least 4", files, err)
	}
	code := goSources(t, repoRoot)
	uids := map[string]string{}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var d dashboard
		if err := json.Unmarshal(raw, &d); err != nil {
			t.Errorf("%s: %v", filepath.Base(f), err)
			continue
		}
		name := filepath.Base(f)
		if d.SchemaVersion < 39 || d.UID == "" || d.Title == "" || len(d.Panels) == 0 {
			t.Errorf("%s: schemaVersion %d, uid %q, title %q, %d panels", name, d.SchemaVersion, d.UID, d.Title, len(d.Panels))
		}
		if other, ok := uids[d.UID]; ok {
			t.Errorf("%s and %s share the uid %q", name, other, d.UID)
		}
		uids[d.UID] = name
		var walk func([]panel)
		walk = func(ps []panel) {
			for _, p := range ps {
				walk(p.Panels)
				if p.Type == "row" || p.Type == "text" {
					continue
				}
				if p.Datasource == nil || p.Datasource.UID != Monitoring.DatasourceUID || p.Datasource.Type != "prometheus" {
					t.Errorf("%s: panel %q does not query the provisioned datasource %s", name, p.Title, Monitoring.DatasourceUID)
				}
				if len(p.Targets) == 0 {
					t.Errorf("%s: panel %q has no query", name, p.Title)
				}
				for _, target := range p.Targets {
					metrics, err := exprMetrics(target.Expr)
					if err != nil {
						t.Errorf("%s: panel %q: %v", name, p.Title, err)
					}
					if err == nil && len(metrics) == 0 {
						t.Errorf("%s: panel %q: %q reads no metric", name, p.Title, target.Expr)
					}
					for _, m := range metrics {
						if !registeredMetric(code, m) {
							t.Errorf("%s: panel %q reads %s, which no service exports", name, p.Title, m)
						}
					}
				}
			}
		}
		walk(d.Panels)
	}
}

// TestEveryAlertHasARunbook: every alert's runbook_url is its runbook, docs/runbooks/<alert>.md, which
// exists and is titled with the alert's name; every runbook named like an alert is one of an alert that
// exists; the index links every runbook.
func TestEveryAlertHasARunbook(t *testing.T) {
	dir := filepath.Join(repoRoot, "docs", "runbooks")
	_, groups := prometheusRule(t)
	alerts := map[string]bool{}
	for _, g := range groups {
		for _, r := range g.Rules {
			alerts[r.Alert] = true
			if want := runbookBase + r.Alert + ".md"; r.Annotations["runbook_url"] != want {
				t.Errorf("%s: runbook_url %q, want %q", r.Alert, r.Annotations["runbook_url"], want)
			}
			raw, err := os.ReadFile(filepath.Join(dir, r.Alert+".md"))
			if err != nil {
				t.Errorf("%s has no runbook: %v", r.Alert, err)
				continue
			}
			if first, _, _ := strings.Cut(string(raw), "\n"); first != "# "+r.Alert {
				t.Errorf("runbook of %s begins %q, want %q", r.Alert, first, "# "+r.Alert)
			}
		}
	}
	index, err := os.ReadFile(filepath.Join(dir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	files, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		name := f.Name()
		if alert, ok := strings.CutSuffix(name, ".md"); ok && strings.HasPrefix(alert, "Edtech") && !alerts[alert] {
			t.Errorf("runbook %s names no alert of alerts.yaml", name)
		}
		if name != "README.md" && !strings.Contains(string(index), "("+name+")") {
			t.Errorf("docs/runbooks/README.md does not link %s", name)
		}
	}
}

// TestComposeMonitoringCatchesBrokenConfig: the monitoring check reads the mounted Prometheus and
// Grafana configuration.
func TestComposeMonitoringCatchesBrokenConfig(t *testing.T) {
	const services = `services:
  gateway: {image: 'x:1'}
  prometheus: {image: 'prom/prometheus:v3.1.0', volumes: ['./mon/prom:/etc/prometheus:ro']}
  grafana: {image: 'grafana/grafana:11.4.0', volumes: ['./mon/prov:/etc/grafana/provisioning:ro']}
`
	for _, tc := range []struct{ name, prom, datasource, provider, want string }{
		{name: "dashboards not mounted", prom: "{}", provider: "providers: [{name: p, options: {path: /var/lib/grafana/dashboards}}]",
			want: `dashboard provider "p" reads /var/lib/grafana/dashboards, where nothing is mounted`},
		{name: "prometheus reads another file", prom: "{}", want: "prometheus: does not run with --config.file=/etc/prometheus/prometheus.yml"},
		{name: "target not a service", prom: "rule_files: [/etc/prometheus/rules.yml]\nscrape_configs: [{job_name: gateway, static_configs: [{targets: ['gatewy:9090']}]}]",
			want: "scrapes gatewy:9090, which is not a compose service"},
		{name: "not the admin port", prom: "rule_files: [/etc/prometheus/rules.yml]\nscrape_configs: [{job_name: gateway, static_configs: [{targets: ['gateway:8080']}]}]",
			want: "not a service's admin port 9090"},
		{name: "service not scraped", prom: "rule_files: [/etc/prometheus/rules.yml]\nscrape_configs: []", want: "does not scrape sink:9090"},
		{name: "job not named after the service", prom: "scrape_configs: [{job_name: edtech, static_configs: [{targets: ['gateway:9090']}]}]", want: `job "edtech" scrapes gateway`},
		{name: "rule file not mounted", prom: "rule_files: [/etc/prometheus/alerts.yml]", want: "rule file /etc/prometheus/alerts.yml is not in the mounted"},
		{name: "no rule file", prom: "scrape_configs: []", want: "prometheus.yml loads no rule file"},
		{name: "datasource elsewhere", prom: "{}", datasource: "datasources: [{uid: edtech-prometheus, type: prometheus, url: 'http://localhost:9090'}]",
			want: "no provisioned prometheus datasource with uid edtech-prometheus"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := fakeRepo(t)
			write(t, root, "docker-compose.yml", services)
			write(t, root, "mon/prom/prometheus.yml", tc.prom)
			write(t, root, "mon/prom/rules.yml", "groups: []")
			write(t, root, "mon/prov/datasources/ds.yaml", tc.datasource)
			if tc.provider != "" {
				write(t, root, "mon/prov/dashboards/p.yaml", tc.provider)
			}
			p, err := LoadCompose(filepath.Join(root, "docker-compose.yml"), false)
			if err != nil {
				t.Fatal(err)
			}
			problems := checkComposeMonitoring(platformContract(), p)
			requireProblem(t, problems, tc.want)
			if tc.provider == "" {
				requireProblem(t, problems, fmt.Sprintf("no dashboard provider in %s", filepath.Join(root, "mon/prov", "dashboards")))
			}
		})
	}
}
