package deploycheck

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/edtech-analytics/platform/libs/kafkax"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

// crds are the pinned CRDs of testdata/crds, loaded once.
var crds = sync.OnceValues(func() (CRDs, error) { return LoadCRDs(filepath.Join("testdata", "crds")) })

func loadCRDs(t *testing.T) CRDs {
	t.Helper()
	c, err := crds()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// overlays are the directories of k8s-overlays/ that build (components/ holds the pieces they compose).
func overlays(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(repoRoot, "k8s-overlays"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() && e.Name() != "components" {
			out = append(out, e.Name())
		}
	}
	if len(out) < 5 {
		t.Fatalf("overlays %v: want strimzi, cloudnative-pg, altinity, keda and all", out)
	}
	return out
}

// TestOverlays: every overlay builds, passes every check of the base and of the operators' objects, and
// each of its custom objects is valid against its operator's CRD as the API server would find it.
func TestOverlays(t *testing.T) {
	c, k := loadCRDs(t), platformContract()
	for _, name := range overlays(t) {
		t.Run(name, func(t *testing.T) {
			m, err := LoadManifests(filepath.Join(repoRoot, "k8s-overlays", name))
			if err != nil {
				t.Fatal(err)
			}
			customs := 0
			for _, o := range m.Objects {
				if c.Has(o.APIVersion, o.Kind) {
					customs++
				}
			}
			if customs == 0 {
				t.Fatal("no custom object: the overlay adds nothing")
			}
			for _, p := range c.CustomObjectProblems(m) {
				t.Error(p)
			}
			for _, check := range slices.Concat(K8sChecks(), OperatorChecks()) {
				for _, p := range check.Check(k, m) {
					t.Errorf("%s: %s", check.Name, p)
				}
			}
		})
	}
}

// TestMonitoringObjectsMatchTheirCRDs: the PrometheusRule and the PodMonitors of k8s/monitoring are valid.
func TestMonitoringObjectsMatchTheirCRDs(t *testing.T) {
	m, err := LoadManifests(filepath.Join(repoRoot, monitoringDir))
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]bool{}
	for _, o := range m.Objects {
		kinds[o.Kind] = true
	}
	if !kinds["PrometheusRule"] || !kinds["PodMonitor"] {
		t.Fatalf("k8s/monitoring builds %v, want a PrometheusRule and PodMonitors", kinds)
	}
	for _, p := range loadCRDs(t).CustomObjectProblems(m) {
		t.Error(p)
	}
}

// TestCRDValidationRejectsBrokenObjects: the validator finds what the API server would refuse, in objects
// of each operator: an unknown field (pruned), a wrong type, a missing required field, a value outside an
// enum, a broken x-kubernetes-validations rule; and accepts the valid object each case breaks.
func TestCRDValidationRejectsBrokenObjects(t *testing.T) {
	c := loadCRDs(t)
	const (
		topic = `{"apiVersion": "kafka.strimzi.io/v1", "kind": "KafkaTopic", "metadata": {"name": "t", "namespace": "edtech"},
			"spec": {"partitions": 3, "replicas": 3, "config": {"retention.ms": 1}}}`
		user = `{"apiVersion": "kafka.strimzi.io/v1", "kind": "KafkaUser", "metadata": {"name": "u", "namespace": "edtech"},
			"spec": {"authentication": {"type": "scram-sha-512"}, "authorization": {"type": "simple", "acls": [
			{"resource": {"type": "topic", "name": "a", "patternType": "literal"}, "operations": ["Read"]}]}}}`
		scaled = `{"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "metadata": {"name": "s", "namespace": "edtech"},
			"spec": {"scaleTargetRef": {"name": "sink"}, "minReplicaCount": 2, "maxReplicaCount": 12, "triggers": [{"type": "kafka", "metadata": {"topic": "a"}}]}}`
		cluster = `{"apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster", "metadata": {"name": "pg", "namespace": "edtech"},
			"spec": {"instances": 3, "storage": {"size": "1Gi"}}}`
		chi = `{"apiVersion": "clickhouse.altinity.com/v1", "kind": "ClickHouseInstallation", "metadata": {"name": "c", "namespace": "edtech"},
			"spec": {"configuration": {"clusters": [{"name": "edtech", "layout": {"shardsCount": 2, "replicasCount": 2}}]}}}`
		monitor = `{"apiVersion": "monitoring.coreos.com/v1", "kind": "PodMonitor", "metadata": {"name": "m", "namespace": "edtech"},
			"spec": {"jobLabel": "app", "selector": {}, "podMetricsEndpoints": [{"port": "admin", "path": "/metrics"}]}}`
	)
	for _, tc := range []struct {
		name, valid, old, new, want string
	}{
		{"unknown field", topic, `"replicas": 3`, `"replicas": 3, "replica": 3`, "spec.replica: unknown field"},
		{"unknown nested field", user, `"operations"`, `"operation": "Read", "operations"`, "spec.authorization.acls[0].operation: unknown field"},
		{"wrong type", topic, `"partitions": 3`, `"partitions": "3"`, "spec.partitions: Invalid value"},
		{"missing required", scaled, `"scaleTargetRef": {"name": "sink"}, `, ``, `spec.scaleTargetRef: Required value`},
		{"enum", user, `"scram-sha-512"`, `"scram-sha-1"`, `spec.authentication.type: Unsupported value: "scram-sha-1"`},
		{"minimum", cluster, `"instances": 3`, `"instances": 0`, "spec.instances: Invalid value: 0"},
		{"x-kubernetes-validations", scaled, `"minReplicaCount": 2`, `"minReplicaCount": 13`, "spec: Invalid value: minReplicaCount must be less than or equal to maxReplicaCount"},
		{"altinity unknown field", chi, `"shardsCount": 2`, `"shardCount": 2`, "spec.configuration.clusters[0].layout.shardCount: unknown field"},
		{"prometheus-operator wrong type", monitor, `"port": "admin"`, `"port": 9090`, "podMetricsEndpoints[0].port: Invalid value"},
		{"namespace", monitor, `, "namespace": "edtech"`, ``, "metadata.namespace: not set"},
		{"no CRD", monitor, `monitoring.coreos.com/v1`, `monitoring.coreos.com/v2`, "no CRD in testdata/crds serves monitoring.coreos.com/v2 PodMonitor"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if p := c.Validate([]byte(tc.valid)); len(p) > 0 {
				t.Fatalf("the valid object: %q", p)
			}
			broken := strings.Replace(tc.valid, tc.old, tc.new, 1)
			if broken == tc.valid {
				t.Fatalf("%q is not in the object", tc.old)
			}
			requireProblem(t, c.Validate([]byte(broken)), tc.want)
		})
	}
}

// exprJobs returns the jobs the selectors of a PromQL expression name: job="x", or job=~"x|y" of plain
// names; Grafana's variables are left out.
func exprJobs(expr string) ([]string, error) {
	expr = regexp.MustCompile(`\$__(rate_interval|interval|range)\b`).ReplaceAllString(expr, "5m")
	node, err := parser.NewParser(parser.Options{}).ParseExpr(expr)
	if err != nil {
		return nil, err
	}
	var out []string
	parser.Inspect(node, func(n parser.Node, _ []parser.Node) error {
		if v, ok := n.(*parser.VectorSelector); ok {
			for _, m := range v.LabelMatchers {
				if m.Name == "job" && !strings.Contains(m.Value, "$") && (m.Type == labels.MatchEqual || m.Type == labels.MatchRegexp) {
					out = append(out, strings.Split(m.Value, "|")...)
				}
			}
		}
		return nil
	})
	return out, nil
}

// selectedJobs are the jobs the alert rules and the dashboards select.
func selectedJobs(t *testing.T) []string {
	t.Helper()
	_, groups := prometheusRule(t)
	var exprs []string
	for _, g := range groups {
		for _, r := range g.Rules {
			exprs = append(exprs, r.Expr)
		}
	}
	files, err := filepath.Glob(filepath.Join(repoRoot, monitoringDir, "grafana", "dashboards", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var d dashboard
		if err := json.Unmarshal(raw, &d); err != nil {
			t.Fatal(err)
		}
		var walk func([]panel)
		walk = func(ps []panel) {
			for _, p := range ps {
				walk(p.Panels)
				for _, target := range p.Targets {
					exprs = append(exprs, target.Expr)
				}
			}
		}
		walk(d.Panels)
	}
	var jobs []string
	for _, e := range exprs {
		j, err := exprJobs(e)
		if err != nil {
			t.Fatalf("%q: %v", e, err)
		}
		jobs = append(jobs, j...)
	}
	return jobs
}

// TestMonitorsScrapeTheJobsAlertsSelect: the PodMonitors of k8s/monitoring scrape every service's admin
// port in a job named after it, and every job the alert rules and the dashboards select, once.
func TestMonitorsScrapeTheJobsAlertsSelect(t *testing.T) {
	jobs := selectedJobs(t)
	for _, want := range []string{"gateway", "query", "sink", "connector"} {
		if !slices.Contains(jobs, want) {
			t.Fatalf("jobs %q selected by the rules and dashboards: %s is missing, the parsing is broken", jobs, want)
		}
	}
	base, err := LoadManifests(filepath.Join(repoRoot, "k8s"))
	if err != nil {
		t.Fatal(err)
	}
	monitoring, err := LoadManifests(filepath.Join(repoRoot, monitoringDir))
	if err != nil {
		t.Fatal(err)
	}
	k := platformContract()
	for _, p := range checkMonitors(k, base, monitoring, jobs) {
		t.Error(p)
	}

	// Broken monitors fail.
	podMonitor := func(spec string) *Manifests {
		m, err := loadManifests(t, map[string]string{"kustomization.yaml": "resources: [m.yaml]",
			"m.yaml": "apiVersion: monitoring.coreos.com/v1\nkind: PodMonitor\nmetadata: {name: m, namespace: edtech}\nspec:\n" + spec})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	const all = "  selector: {matchExpressions: [{key: app.kubernetes.io/name, operator: Exists}]}\n"
	for _, tc := range []struct{ name, spec, want string }{
		{"no job label", all + "  podMetricsEndpoints: [{port: admin}]\n", "no jobLabel"},
		{"other label", "  jobLabel: app.kubernetes.io/component\n" + all + "  podMetricsEndpoints: [{port: admin}]\n", `no PodMonitor scrapes the admin port of a Deployment in job "gateway"`},
		{"not every service", "  jobLabel: app.kubernetes.io/name\n  selector: {matchLabels: {app.kubernetes.io/name: gateway}}\n  podMetricsEndpoints: [{port: admin}]\n", `job "sink"`},
		{"http port", "  jobLabel: app.kubernetes.io/name\n" + all + "  podMetricsEndpoints: [{port: http}]\n", `scrapes port "http" of Deployment gateway, not its admin port 9090`},
		{"path", "  jobLabel: app.kubernetes.io/name\n" + all + "  podMetricsEndpoints: [{port: admin, path: /metricz}]\n", "scrapes /metricz, not /metrics"},
		{"relabelled", "  jobLabel: app.kubernetes.io/name\n" + all + "  podMetricsEndpoints: [{port: admin, relabelings: [{targetLabel: job, replacement: edtech}]}]\n", "relabels job"},
		{"twice", "  jobLabel: app.kubernetes.io/name\n" + all + "  podMetricsEndpoints: [{port: admin}, {port: admin}]\n", `job "sink" is scraped by 2 endpoints`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			requireProblem(t, checkMonitors(k, base, podMonitor(tc.spec), jobs), tc.want)
		})
	}
	requireProblem(t, checkMonitors(k, base, monitoring, []string{"gatewy"}), `job "gatewy"`)
}

// edited returns a copy of m in which edit has changed the object of that kind and name (decoded as
// unstructured JSON); an edit returning nil removes it.
func edited(t *testing.T, m *Manifests, kind, name string, edit func(obj map[string]any) map[string]any) *Manifests {
	t.Helper()
	out, found := &Manifests{}, false
	for _, o := range m.Objects {
		src := o.JSON
		if o.Kind == kind && o.Name == name {
			found = true
			var obj map[string]any
			if err := json.Unmarshal(src, &obj); err != nil {
				t.Fatal(err)
			}
			if obj = edit(obj); obj == nil {
				continue
			}
			var err error
			if src, err = json.Marshal(obj); err != nil {
				t.Fatal(err)
			}
		}
		if err := out.add(o, src); err != nil {
			t.Fatal(err)
		}
	}
	if !found {
		t.Fatalf("no %s %s to edit", kind, name)
	}
	return out
}

// set sets the value at a path of maps and list indexes ("spec", "acls", 0, ...) in obj, and returns obj.
func set(obj map[string]any, value any, path ...any) map[string]any {
	var cur any = obj
	for i, p := range path {
		last := i == len(path)-1
		switch p := p.(type) {
		case string:
			if last {
				cur.(map[string]any)[p] = value
			} else {
				cur = cur.(map[string]any)[p]
			}
		case int:
			if last {
				cur.([]any)[p] = value
			} else {
				cur = cur.([]any)[p]
			}
		}
	}
	return obj
}

// get returns the value at a path of obj.
func get(obj map[string]any, path ...any) any {
	var cur any = obj
	for _, p := range path {
		switch p := p.(type) {
		case string:
			cur = cur.(map[string]any)[p]
		case int:
			cur = cur.([]any)[p]
		}
	}
	return cur
}

// TestOperatorChecksCatchBrokenObjects: each operator check fails on a broken copy of the overlay that
// composes every operator, naming the object and the fault; and when the services change what they do.
func TestOperatorChecksCatchBrokenObjects(t *testing.T) {
	m, err := LoadManifests(filepath.Join(repoRoot, "k8s-overlays", "all"))
	if err != nil {
		t.Fatal(err)
	}
	remove := func(map[string]any) map[string]any { return nil }
	podEnv := []any{"spec", "template", "spec", "containers", 0, "env"}
	envNamed := func(obj map[string]any, name string) int {
		return slices.IndexFunc(get(obj, podEnv...).([]any), func(e any) bool { return e.(map[string]any)["name"] == name })
	}
	sinkGroupRenamed := func(k *Contract) {
		i := slices.IndexFunc(k.KafkaClients, func(c KafkaClient) bool { return c.User == "edtech-sink" })
		k.KafkaClients[i].Groups = map[string]string{"edtech-sink-v2": "edtech.enriched"}
	}
	tests := []struct {
		check, name string
		m           *Manifests
		contract    func(*Contract)
		want        string
	}{
		{check: "kafka topics", name: "topic missing", m: edited(t, m, "KafkaTopic", "edtech.audit-heads", remove), want: "no KafkaTopic declares topic edtech.audit-heads"},
		{check: "kafka topics", name: "partitions", m: edited(t, m, "KafkaTopic", "edtech.raw", func(o map[string]any) map[string]any { return set(o, 6, "spec", "partitions") }),
			want: "KafkaTopic edtech.raw: 6 partitions, the services create 12"},
		{check: "kafka topics", name: "retention of the config map", m: edited(t, m, "ConfigMap", "edtech-config", func(o map[string]any) map[string]any { return set(o, "240h", "data", "KAFKA_RETENTION_RAW") }),
			want: "KafkaTopic edtech.raw: config retention.ms is 2592000000; the services set 864000000"},
		{check: "kafka topics", name: "config the services do not set", m: edited(t, m, "KafkaTopic", "edtech.dlq", func(o map[string]any) map[string]any { return set(o, "delete", "spec", "config", "cleanup.policy") }),
			want: "KafkaTopic edtech.dlq: config cleanup.policy is set"},
		{check: "kafka topics", name: "unused topic", m: edited(t, m, "KafkaTopic", "edtech.dlq", func(o map[string]any) map[string]any { return set(o, "edtech.dead", "spec", "topicName") }),
			want: "declares topic edtech.dead, which the platform does not use"},

		{check: "kafka topics", name: "fewer brokers than replicas", m: edited(t, m, "KafkaNodePool", "broker", func(o map[string]any) map[string]any { return set(o, 2, "spec", "replicas") }),
			want: "the KafkaNodePools have 2 brokers, fewer than the topics' 3 replicas"},

		{check: "kafka users", name: "acl too wide", m: edited(t, m, "KafkaUser", "edtech-gateway", func(o map[string]any) map[string]any {
			return set(o, []any{"Create", "Read", "Describe"}, "spec", "authorization", "acls", 1, "operations")
		}), want: "KafkaUser edtech-gateway: allows topic edtech.enriched literal Read, which gateway does not need"},
		{check: "kafka users", name: "acl missing", m: edited(t, m, "KafkaUser", "edtech-gateway", func(o map[string]any) map[string]any {
			return set(o, []any{"Create", "Describe"}, "spec", "authorization", "acls", 0, "operations")
		}), want: "KafkaUser edtech-gateway: does not allow topic edtech.raw literal Write, which gateway needs"},
		{check: "kafka users", name: "user missing", m: edited(t, m, "KafkaUser", "edtech-sink", remove), want: "no KafkaUser edtech-sink for sink"},
		{check: "kafka users", name: "group renamed in the code", m: m, contract: sinkGroupRenamed, want: "KafkaUser edtech-sink: does not allow group edtech-sink-v2 literal Read"},
		{check: "kafka users", name: "another user's name", m: edited(t, m, "Deployment", "sink", func(o map[string]any) map[string]any {
			return set(o, "edtech-aggregator", append(podEnv, envNamed(o, "KAFKA_SASL_USER"), "value")...)
		}), want: `Deployment sink (../../k8s/sink.yaml) container sink: KAFKA_SASL_USER is "edtech-aggregator", want edtech-sink`},
		{check: "kafka users", name: "ca not mounted", m: edited(t, m, "Deployment", "archiver", func(o map[string]any) map[string]any {
			return set(o, "/etc/ca/ca.crt", append(podEnv, envNamed(o, "KAFKA_TLS_CA_FILE"), "value")...)
		}), want: `container archiver: KAFKA_TLS_CA_FILE "/etc/ca/ca.crt" is not in a mount of Secret edtech-cluster-ca-cert`},
		{check: "kafka users", name: "plain listener", m: edited(t, m, "ConfigMap", "edtech-config", func(o map[string]any) map[string]any {
			return set(o, "edtech-kafka-bootstrap:9092", "data", "KAFKA_BROKERS")
		}),
			want: `KAFKA_BROKERS is "edtech-kafka-bootstrap:9092", not the listener its users authenticate at (edtech-kafka-bootstrap:9093)`},

		{check: "scaled consumers", name: "group typo", m: edited(t, m, "ScaledObject", "sink", func(o map[string]any) map[string]any {
			return set(o, "edtech-sinks", "spec", "triggers", 0, "metadata", "consumerGroup")
		}), want: `ScaledObject sink: consumer group "edtech-sinks" is not one of sink's (edtech-sink)`},
		{check: "scaled consumers", name: "group renamed in the code", m: m, contract: sinkGroupRenamed, want: "ScaledObject sink: no kafka trigger on group edtech-sink-v2 of sink"},
		{check: "scaled consumers", name: "topic", m: edited(t, m, "ScaledObject", "archiver", func(o map[string]any) map[string]any {
			return set(o, "edtech.enriched", "spec", "triggers", 0, "metadata", "topic")
		}), want: `ScaledObject archiver: group edtech-archiver-raw consumes edtech.raw, not "edtech.enriched"`},
		{check: "scaled consumers", name: "more replicas than partitions", m: edited(t, m, "ScaledObject", "enricher", func(o map[string]any) map[string]any { return set(o, 24, "spec", "maxReplicaCount") }),
			want: "ScaledObject enricher: maxReplicaCount 24 exceeds the 12 partitions of edtech.raw"},
		{check: "scaled consumers", name: "default max", m: edited(t, m, "ScaledObject", "enricher", func(o map[string]any) map[string]any {
			delete(o["spec"].(map[string]any), "maxReplicaCount")
			return o
		}), want: "ScaledObject enricher: maxReplicaCount 100 exceeds the 12 partitions"},
		{check: "scaled consumers", name: "replicas kept", m: edited(t, m, "Deployment", "aggregator", func(o map[string]any) map[string]any { return set(o, 2, "spec", "replicas") }),
			want: "Deployment aggregator: sets replicas, which the HorizontalPodAutoscaler of ScaledObject aggregator owns"},
		{check: "scaled consumers", name: "not scaled", m: edited(t, m, "ScaledObject", "archiver", remove), want: "Deployment archiver: consumes in a Kafka group, but no ScaledObject scales it"},
		{check: "scaled consumers", name: "misspelt parameter", m: edited(t, m, "ScaledObject", "sink", func(o map[string]any) map[string]any {
			return set(o, "earliest", "spec", "triggers", 0, "metadata", "offsetResetPolicies")
		}), want: "ScaledObject sink: trigger metadata offsetResetPolicies is not a parameter of KEDA's kafka scaler"},
		{check: "scaled consumers", name: "no trigger authentication", m: edited(t, m, "TriggerAuthentication", "edtech-kafka", remove),
			want: "ScaledObject sink: no TriggerAuthentication edtech-kafka"},
		{check: "scaled consumers", name: "credentials not in the target", m: edited(t, m, "Deployment", "sink", func(o map[string]any) map[string]any {
			env := get(o, podEnv...).([]any)
			return set(o, slices.Delete(env, envNamed(o, "KAFKA_SASL_PASSWORD"), envNamed(o, "KAFKA_SASL_PASSWORD")+1), podEnv...)
		}), want: "ScaledObject sink: TriggerAuthentication edtech-kafka reads KAFKA_SASL_PASSWORD (password) from Deployment sink, whose container does not set it"},
		{check: "scaled consumers", name: "latest", m: edited(t, m, "ScaledObject", "sink", func(o map[string]any) map[string]any {
			return set(o, "latest", "spec", "triggers", 0, "metadata", "offsetResetPolicy")
		}), want: `ScaledObject sink: offsetResetPolicy "latest"`},
		{check: "kafka users", name: "client without user", m: edited(t, m, "KafkaUser", "edtech-archiver", remove), contract: func(k *Contract) {
			k.KafkaClients = slices.DeleteFunc(k.KafkaClients, func(c KafkaClient) bool { return c.User == "edtech-archiver" })
		}, want: "Deployment archiver (../../k8s/archiver.yaml) container archiver: a Kafka client of no KafkaUser"},

		{check: "postgres clusters", name: "not an app secret", m: edited(t, m, "Deployment", "query", func(o map[string]any) map[string]any {
			return set(o, "edtech-secrets", append(podEnv, envNamed(o, "DATABASE_URL"), "valueFrom", "secretKeyRef", "name")...)
		}), want: "container query: DATABASE_URL is not key uri of the app Secret of a Cluster (edtech-main, edtech-pg-2)"},
		{check: "postgres clusters", name: "instance url missing", m: edited(t, m, "Deployment", "enricher", func(o map[string]any) map[string]any {
			env := get(o, podEnv...).([]any)
			return set(o, slices.Delete(env, envNamed(o, "PG2_URL"), envNamed(o, "PG2_URL")+1), podEnv...)
		}), want: "container enricher: PG2_URL is not set"},
		{check: "postgres clusters", name: "two names for one instance", m: edited(t, m, "Deployment", "sink", func(o map[string]any) map[string]any {
			return set(o, "edtech-main-app", append(podEnv, envNamed(o, "PG2_URL"), "valueFrom", "secretKeyRef", "name")...)
		}), want: "PG2_URL is Cluster edtech-main's, elsewhere edtech-pg-2's"},
		{check: "postgres clusters", name: "cluster unused", m: edited(t, m, "Cluster", "edtech-pg-2", func(o map[string]any) map[string]any { return set(o, "edtech-pg-3", "metadata", "name") }),
			want: "Cluster edtech-pg-3: no workload's PostgreSQL URL"},

		{check: "clickhouse installation", name: "address", m: edited(t, m, "ConfigMap", "edtech-config", func(o map[string]any) map[string]any {
			return set(o, "clickhouse.clickhouse.svc:9000", "data", "CLICKHOUSE_ADDR")
		}), want: `container aggregator: CLICKHOUSE_ADDR is "clickhouse.clickhouse.svc:9000", not ClickHouseInstallation edtech's native port clickhouse-edtech:9000`},
		{check: "clickhouse installation", name: "user", m: edited(t, m, "ConfigMap", "edtech-config", func(o map[string]any) map[string]any { return set(o, "default", "data", "CLICKHOUSE_USER") }),
			want: `ClickHouseInstallation edtech: user "default"'s password is not the Secret key edtech-secrets/CLICKHOUSE_PASSWORD`},
		{check: "clickhouse installation", name: "keeper", m: edited(t, m, "ClickHouseKeeperInstallation", "edtech", remove),
			want: "keeper node keeper-edtech:2181 is not a ClickHouseKeeperInstallation's Service"},
	}
	index := newCheckIndex(OperatorChecks(), func(c Check[*Manifests]) string { return c.Name })
	for _, tc := range tests {
		t.Run(tc.check+"/"+tc.name, func(t *testing.T) {
			k := platformContract()
			if tc.contract != nil {
				tc.contract(&k)
			}
			requireProblem(t, index.get(t, tc.check).Check(k, tc.m), tc.want)
		})
	}
	index.requireCovered(t)
}

// TestStrimziTopicsArePlatformTopics: k8s-overlays/components/strimzi/topics.yaml is written from
// kafkax.PlatformTopics and the base's config.yaml (`make generate` runs this test with -update), so the
// topics' settings stay defined in one place; the test fails when the file differs.
func TestStrimziTopicsArePlatformTopics(t *testing.T) {
	base, err := LoadManifests(filepath.Join(repoRoot, "k8s"))
	if err != nil {
		t.Fatal(err)
	}
	cfg, _, problems := kafkaSettings(base)
	if len(problems) > 0 {
		t.Fatal(problems)
	}
	var b strings.Builder
	b.WriteString(`# Code generated from libs/kafkax PlatformTopics and k8s/config.yaml by deploycheck's
#   go test ./libs/testenv/deploycheck -run TestStrimziTopicsArePlatformTopics -update
# (make generate); DO NOT EDIT. The platform's topics, with the prefix, partitions, replication and
# retention of k8s/config.yaml, as the services and k8s/create-topics.sh create them. The Topic Operator
# applies a changed partition count or retention; partitions only grow.
`)
	for i, spec := range kafkax.PlatformTopics(cfg) {
		if i > 0 {
			b.WriteString("---\n")
		}
		fmt.Fprintf(&b, "# %s\napiVersion: kafka.strimzi.io/v1\nkind: KafkaTopic\nmetadata:\n  name: %s\n  labels:\n    strimzi.io/cluster: edtech\n", spec.Why, spec.Name)
		fmt.Fprintf(&b, "spec:\n  topicName: %s\n  partitions: %d\n  replicas: %d\n  config:\n", spec.Name, cfg.Partitions, cfg.ReplicationFactor)
		for _, key := range slices.Sorted(maps.Keys(spec.Configs)) {
			fmt.Fprintf(&b, "    %s: %q\n", key, spec.Configs[key])
		}
	}
	path := filepath.Join(repoRoot, "k8s-overlays", "components", "strimzi", "topics.yaml")
	if *update {
		if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(raw) != b.String() {
		t.Errorf("%s differs from kafkax.PlatformTopics and k8s/config.yaml: run this test with -update", path)
	}
}
