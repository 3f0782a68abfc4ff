package deploycheck

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
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
