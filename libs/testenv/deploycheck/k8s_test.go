package deploycheck

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestK8sManifests(t *testing.T) {
	m, err := LoadManifests(filepath.Join(repoRoot, "k8s"))
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Objects) < 15 {
		t.Fatalf("parsed %d objects; the multi-document files were not read", len(m.Objects))
	}
	k := platformContract()
	for _, check := range K8sChecks() {
		t.Run(check.Name, func(t *testing.T) {
			for _, p := range check.Check(k, m) {
				t.Error(p)
			}
		})
	}
}

// podYAML is a pod template whose container is given by fields (indented for a container list item).
func podYAML(labels, container string) string {
	return fmt.Sprintf(`
  template:
    metadata:
      labels: %s
    spec:
      containers:
        - name: app
%s`, labels, container)
}

// deploymentYAML is a Deployment named name selecting app=name.
func deploymentYAML(name, container string) string {
	return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: %s, namespace: edtech}
spec:
  selector: {matchLabels: {app: %s}}%s`, name, name, podYAML("{app: "+name+"}", container))
}

func TestK8sChecksCatchBrokenFiles(t *testing.T) {
	const kust = "kustomization.yaml"
	okProbes := `          ports: [{name: admin, containerPort: 9090}]
          readinessProbe: {httpGet: {path: /readyz, port: admin}}
          livenessProbe: {httpGet: {path: /healthz, port: 9090}}
`
	tests := []struct {
		check, name string
		files       map[string]string
		want        string
		build       bool // kustomize or the API types refuse the files
	}{
		{check: "build", name: "no name", build: true, files: map[string]string{"a.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {namespace: edtech}"}, want: "missing metadata.name"},
		{check: "build", name: "second document without kind", build: true, files: map[string]string{"a.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\napiVersion: v1\nmetadata: {name: b}"}, want: "a.yaml"},
		{check: "build", name: "unknown field", build: true, files: map[string]string{"d.yaml": deploymentYAML("sink", "          imagePullPolicy: Always\n          readinessProbes: {}\n")}, want: `decoding Deployment sink (d.yaml): json: unknown field "readinessProbes"`},

		{check: "build", name: "missing resource", build: true, files: map[string]string{kust: "resources: [gone.yaml]"}, want: "gone.yaml"},
		{check: "build", name: "generator file missing", build: true, files: map[string]string{kust: "configMapGenerator: [{name: scripts, files: [run.sh]}]"}, want: "run.sh"},

		{check: "deployments present", name: "missing deployment and companions", files: map[string]string{kust: "resources: [g.yaml]", "g.yaml": deploymentYAML("gateway", "          image: x:1\n")}, want: "no Deployment enricher"},
		{check: "deployments present", name: "no service", files: map[string]string{kust: "resources: [g.yaml]", "g.yaml": deploymentYAML("query", "          image: x:1\n")}, want: "Deployment query has no Service on port 8081"},
		{check: "deployments present", name: "deployment not applied", files: map[string]string{kust: "resources: []", "g.yaml": deploymentYAML("sink", "          image: x:1\n")}, want: "no Deployment sink"},

		{check: "probes", name: "readiness on healthz", files: map[string]string{"d.yaml": deploymentYAML("sink", `          ports: [{name: admin, containerPort: 9090}]
          readinessProbe: {httpGet: {path: /healthz, port: admin}}
          livenessProbe: {httpGet: {path: /healthz, port: admin}}
`)}, want: `readinessProbe path "/healthz", want /readyz`},
		{check: "probes", name: "probe on the http port", files: map[string]string{"d.yaml": deploymentYAML("gateway", `          ports: [{name: http, containerPort: 8080}, {name: admin, containerPort: 9090}]
          readinessProbe: {httpGet: {path: /readyz, port: http}}
          livenessProbe: {httpGet: {path: /healthz, port: admin}}
`)}, want: `readinessProbe port "http" is not the admin port 9090`},
		{check: "probes", name: "no liveness", files: map[string]string{"d.yaml": deploymentYAML("sink", "          readinessProbe: {httpGet: {path: /readyz, port: 9090}}\n")}, want: "no HTTP livenessProbe"},
		{check: "probes", name: "exec probe", files: map[string]string{"d.yaml": deploymentYAML("sink", "          readinessProbe: {exec: {command: [/bin/true]}}\n")}, want: "no HTTP readinessProbe"},

		{check: "resources", name: "no limits", files: map[string]string{"d.yaml": deploymentYAML("sink", "          resources: {requests: {cpu: 100m, memory: 64Mi}}\n")}, want: "container app: no cpu limit"},
		{check: "resources", name: "job without requests", files: map[string]string{"j.yaml": "apiVersion: batch/v1\nkind: Job\nmetadata: {name: j}\nspec:" + podYAML("{}", "          resources: {limits: {cpu: 1, memory: 64Mi}}\n")}, want: "Job j (j.yaml) container app: no memory request"},

		{check: "env complete", name: "inline database url", files: map[string]string{"d.yaml": deploymentYAML("sink", "          env: [{name: DATABASE_URL, value: 'postgres://u:pw@db/x'}]\n")}, want: "env DATABASE_URL has an inline value"},
		{check: "env complete", name: "password from configmap", files: map[string]string{"d.yaml": deploymentYAML("aggregator", "          env: [{name: CLICKHOUSE_PASSWORD, valueFrom: {configMapKeyRef: {name: c, key: p}}}]\n")}, want: "env CLICKHOUSE_PASSWORD comes from a ConfigMap"},
		{check: "env complete", name: "configmap holds a password", files: map[string]string{"c.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {CLICKHOUSE_PASSWORD: hunter2}"}, want: "holds CLICKHOUSE_PASSWORD; secrets belong in a Secret"},

		{check: "env complete", name: "missing var", files: map[string]string{
			"c.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: shared}\ndata: {KAFKA_BROKERS: k, KAFKA_TOPIC_PREFIX: p, SCHEMA_REGISTRY_URL: s, LOG_LEVEL: info, ADMIN_ADDR: ':9090'}",
			"d.yaml": deploymentYAML("gateway", "          envFrom: [{configMapRef: {name: shared}}]\n          env: [{name: HTTP_ADDR, value: ':8080'}]\n"),
		}, want: "container app: env DATABASE_URL is not set"},
		{check: "env complete", name: "unknown configmap", files: map[string]string{"d.yaml": deploymentYAML("sink", "          envFrom: [{configMapRef: {name: nope}}]\n")}, want: "envFrom ConfigMap nope, which no manifest defines"},
		{check: "env complete", name: "migrate job without its database", files: map[string]string{"j.yaml": "apiVersion: batch/v1\nkind: Job\nmetadata: {name: migrate}\nspec:" + podYAML("{}", "          image: ghcr.io/x/ctl:1\n          args: [migrate]\n")}, want: "env DATABASE_URL is not set"},
		{check: "env complete", name: "variable the migrate job does not read", files: map[string]string{"j.yaml": "apiVersion: batch/v1\nkind: Job\nmetadata: {name: migrate}\nspec:" + podYAML("{}", "          image: ghcr.io/x/ctl:1\n          args: [migrate]\n          env: [{name: CLICKHOUSE_PASSWORD, valueFrom: {secretKeyRef: {name: s, key: p}}}]\n")}, want: "Job migrate (j.yaml) container app: env CLICKHOUSE_PASSWORD is set, but migrate does not read it"},
		{check: "env complete", name: "variable the service does not read", files: map[string]string{"d.yaml": deploymentYAML("sink", "          env: [{name: CLICKHOUSE_ADDR, value: 'ch:9000'}]\n")}, want: "Deployment sink (d.yaml) container app: env CLICKHOUSE_ADDR is set, but sink does not read it"},
		{check: "env complete", name: "configmap key nobody reads", files: map[string]string{
			"c.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: shared}\ndata: {KAFKA_BROKERS: k, KAFKA_BROKER: k}",
			"d.yaml": deploymentYAML("sink", "          envFrom: [{configMapRef: {name: shared}}]\n"),
		}, want: "ConfigMap shared: key KAFKA_BROKER is read by no service that loads it"},

		{check: "deployments present", name: "gateway too short", files: map[string]string{kust: "resources: [d.yaml]", "d.yaml": strings.Replace(deploymentYAML("gateway", okProbes), "    spec:\n", "    spec:\n      terminationGracePeriodSeconds: 10\n", 1)}, want: "terminationGracePeriodSeconds 10 is below 30"},
		{check: "deployments present", name: "unset", files: map[string]string{kust: "resources: [d.yaml]", "d.yaml": deploymentYAML("sink", okProbes)}, want: "terminationGracePeriodSeconds is not set"},

		{check: "jobs", name: "no jobs", files: map[string]string{}, want: "no Job runs ctl migrate"},
		{check: "jobs", name: "no topics job", files: map[string]string{kust: "resources: [j.yaml]", "j.yaml": "apiVersion: batch/v1\nkind: Job\nmetadata: {name: migrate}\nspec:\n  backoffLimit: 3" + podYAML("{}", "          image: ghcr.io/x/ctl:1\n          args: [migrate]\n")}, want: "no Job runs create-topics.sh"},
	}
	index := newCheckIndex(K8sChecks(), func(c Check[*Manifests]) string { return c.Name })
	for _, tc := range tests {
		t.Run(tc.check+"/"+tc.name, func(t *testing.T) {
			if _, ok := tc.files[kust]; !ok {
				names := make([]string, 0, len(tc.files))
				for name := range tc.files {
					if !strings.Contains(name, ".example.") {
						names = append(names, name)
					}
				}
				tc.files[kust] = "namespace: edtech\nresources: [" + strings.Join(names, ", ") + "]"
			}
			m, err := loadManifests(t, tc.files)
			if tc.build {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("building: %v, want an error containing %q", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			requireProblem(t, index.get(t, tc.check).Check(platformContract(), m), tc.want)
		})
	}
	index.requireCovered(t)
}

// loadManifests writes files into a directory and loads it.
func loadManifests(t *testing.T, files map[string]string) (*Manifests, error) {
	t.Helper()
	dir := t.TempDir()
	for name, src := range files {
		write(t, dir, name, src)
	}
	return LoadManifests(dir)
}

func TestParseManifestsRejectsInvalidYAML(t *testing.T) {
	if _, err := loadManifests(t, map[string]string{"kustomization.yaml": "resources: [bad.yaml]", "bad.yaml": "kind: [unclosed"}); err == nil || !strings.Contains(err.Error(), "bad.yaml") {
		t.Fatalf("invalid YAML: %v, want an error naming bad.yaml", err)
	}
	m, err := loadManifests(t, map[string]string{"kustomization.yaml": "resources: [two.yaml]", "two.yaml": "---\n# only a comment\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n"})
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Objects) != 1 || len(all[*corev1.ConfigMap](m)) != 1 {
		t.Fatalf("objects %v, want the one ConfigMap (empty documents skipped)", m.Objects)
	}
}
