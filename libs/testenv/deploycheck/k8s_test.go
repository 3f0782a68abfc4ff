package deploycheck

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
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
		{check: "namespace", name: "no name", build: true, files: map[string]string{"a.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {namespace: edtech}"}, want: "missing metadata.name"},
		{check: "namespace", name: "second document without kind", build: true, files: map[string]string{"a.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\napiVersion: v1\nmetadata: {name: b}"}, want: "a.yaml"},
		{check: "namespace", name: "unknown field", build: true, files: map[string]string{"d.yaml": deploymentYAML("sink", "          imagePullPolicy: Always\n          readinessProbes: {}\n")}, want: `decoding Deployment sink (d.yaml): json: unknown field "readinessProbes"`},

		{check: "namespace", name: "wrong namespace", files: map[string]string{kust: "resources: [a.yaml]", "a.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: default}"}, want: `ConfigMap a (a.yaml): namespace "default", want "edtech"`},
		{check: "namespace", name: "no namespace object", files: map[string]string{kust: "namespace: edtech\nresources: [a.yaml]", "a.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: edtech}"}, want: "no applied Namespace edtech"},
		{check: "namespace", name: "kustomization namespace", files: map[string]string{kust: "namespace: default"}, want: `kustomization namespace "default"`},

		{check: "kustomization lists every manifest", name: "no kustomization", files: map[string]string{}, want: "no kustomization.yaml"},
		{check: "kustomization lists every manifest", name: "missing resource", build: true, files: map[string]string{kust: "resources: [gone.yaml]"}, want: "gone.yaml"},
		{check: "kustomization lists every manifest", name: "unlisted manifest", files: map[string]string{kust: "resources: []", "extra.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}"}, want: "extra.yaml is not listed"},
		{check: "kustomization lists every manifest", name: "template applied", files: map[string]string{kust: "resources: [secret.example.yaml]", "secret.example.yaml": "apiVersion: v1\nkind: Secret\nmetadata: {name: s}"}, want: "applies the template secret.example.yaml"},
		{check: "kustomization lists every manifest", name: "secret applied", files: map[string]string{kust: "resources: [s.yaml]", "s.yaml": "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\nstringData: {DATABASE_URL: x}"}, want: "a Secret is applied from git"},
		{check: "kustomization lists every manifest", name: "generator file missing", build: true, files: map[string]string{kust: "configMapGenerator: [{name: scripts, files: [run.sh]}]"}, want: "run.sh"},

		{check: "deployments present", name: "missing deployment and companions", files: map[string]string{kust: "resources: [g.yaml]", "g.yaml": deploymentYAML("gateway", "          image: x:1\n")}, want: "no Deployment enricher"},
		{check: "deployments present", name: "no pdb", files: map[string]string{kust: "resources: [g.yaml]", "g.yaml": deploymentYAML("gateway", "          image: x:1\n")}, want: "Deployment gateway has no PodDisruptionBudget"},
		{check: "deployments present", name: "no service", files: map[string]string{kust: "resources: [g.yaml]", "g.yaml": deploymentYAML("query", "          image: x:1\n")}, want: "Deployment query has no Service on port 8081"},
		{check: "deployments present", name: "no autoscaler", files: map[string]string{}, want: "no HorizontalPodAutoscaler for Deployment gateway"},
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

		{check: "security context", name: "root allowed", files: map[string]string{"d.yaml": deploymentYAML("sink", "          securityContext: {readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}, seccompProfile: {type: RuntimeDefault}}\n")}, want: "runAsNonRoot is not true"},
		{check: "security context", name: "container overrides pod to root", files: map[string]string{"d.yaml": deploymentYAML("sink", "          securityContext: {runAsNonRoot: false}\n")}, want: "runAsNonRoot is not true"},
		{check: "security context", name: "writable root", files: map[string]string{"d.yaml": deploymentYAML("sink", "          securityContext: {runAsNonRoot: true, readOnlyRootFilesystem: false}\n")}, want: "readOnlyRootFilesystem is not true"},
		{check: "security context", name: "capabilities kept", files: map[string]string{"d.yaml": deploymentYAML("sink", "          securityContext: {capabilities: {drop: [NET_RAW]}}\n")}, want: "capabilities do not drop ALL"},
		{check: "security context", name: "privilege escalation", files: map[string]string{"d.yaml": deploymentYAML("sink", "          securityContext: {}\n")}, want: "allowPrivilegeEscalation is not false"},
		{check: "security context", name: "uid 0", files: map[string]string{"d.yaml": deploymentYAML("sink", "          securityContext: {runAsNonRoot: true, runAsUser: 0}\n")}, want: "runAsUser is 0"},

		{check: "no inline secrets", name: "inline database url", files: map[string]string{"d.yaml": deploymentYAML("sink", "          env: [{name: DATABASE_URL, value: 'postgres://u:pw@db/x'}]\n")}, want: "env DATABASE_URL has an inline value"},
		{check: "no inline secrets", name: "password from configmap", files: map[string]string{"d.yaml": deploymentYAML("aggregator", "          env: [{name: CLICKHOUSE_PASSWORD, valueFrom: {configMapKeyRef: {name: c, key: p}}}]\n")}, want: "env CLICKHOUSE_PASSWORD comes from a ConfigMap"},
		{check: "no inline secrets", name: "configmap holds a password", files: map[string]string{"c.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {CLICKHOUSE_PASSWORD: hunter2}"}, want: "holds CLICKHOUSE_PASSWORD; secrets belong in a Secret"},

		{check: "env complete", name: "missing var", files: map[string]string{
			"c.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: shared}\ndata: {KAFKA_BROKERS: k, KAFKA_TOPIC_PREFIX: p, SCHEMA_REGISTRY_URL: s, LOG_LEVEL: info, ADMIN_ADDR: ':9090'}",
			"d.yaml": deploymentYAML("gateway", "          envFrom: [{configMapRef: {name: shared}}]\n          env: [{name: HTTP_ADDR, value: ':8080'}]\n"),
		}, want: "container app: env DATABASE_URL is not set"},
		{check: "env complete", name: "unknown secret key", files: map[string]string{
			"s.example.yaml": "apiVersion: v1\nkind: Secret\nmetadata: {name: sec}\nstringData: {DATABASE_URL: x}",
			"d.yaml":         deploymentYAML("sink", "          env: [{name: DATABASE_URL, valueFrom: {secretKeyRef: {name: sec, key: DB_URL}}}]\n"),
		}, want: "reads Secret sec key DB_URL, which no manifest defines"},
		{check: "env complete", name: "unknown configmap", files: map[string]string{"d.yaml": deploymentYAML("sink", "          envFrom: [{configMapRef: {name: nope}}]\n")}, want: "envFrom ConfigMap nope, which no manifest defines"},
		{check: "env complete", name: "migrate job without its database", files: map[string]string{"j.yaml": "apiVersion: batch/v1\nkind: Job\nmetadata: {name: migrate}\nspec:" + podYAML("{}", "          image: ghcr.io/x/ctl:1\n          args: [migrate]\n")}, want: "env DATABASE_URL is not set"},
		{check: "env complete", name: "variable the migrate job does not read", files: map[string]string{"j.yaml": "apiVersion: batch/v1\nkind: Job\nmetadata: {name: migrate}\nspec:" + podYAML("{}", "          image: ghcr.io/x/ctl:1\n          args: [migrate]\n          env: [{name: CLICKHOUSE_PASSWORD, valueFrom: {secretKeyRef: {name: s, key: p}}}]\n")}, want: "Job migrate (j.yaml) container app: env CLICKHOUSE_PASSWORD is set, but migrate does not read it"},
		{check: "env complete", name: "variable the service does not read", files: map[string]string{"d.yaml": deploymentYAML("sink", "          env: [{name: CLICKHOUSE_ADDR, value: 'ch:9000'}]\n")}, want: "Deployment sink (d.yaml) container app: env CLICKHOUSE_ADDR is set, but sink does not read it"},
		{check: "env complete", name: "configmap key nobody reads", files: map[string]string{
			"c.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: shared}\ndata: {KAFKA_BROKERS: k, KAFKA_BROKER: k}",
			"d.yaml": deploymentYAML("sink", "          envFrom: [{configMapRef: {name: shared}}]\n"),
		}, want: "ConfigMap shared: key KAFKA_BROKER is read by no service that loads it"},

		{check: "selectors match pods", name: "deployment selector", files: map[string]string{"d.yaml": "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec:\n  selector: {matchLabels: {app: d}}" + podYAML("{app: other}", "          image: x:1\n")}, want: "does not match its pod labels"},
		{check: "selectors match pods", name: "empty deployment selector", files: map[string]string{"d.yaml": "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec:" + podYAML("{app: d}", "          image: x:1\n")}, want: "does not match its pod labels"},
		{check: "selectors match pods", name: "service selects nothing", files: map[string]string{
			"d.yaml": deploymentYAML("gateway", okProbes),
			"s.yaml": "apiVersion: v1\nkind: Service\nmetadata: {name: gateway}\nspec: {selector: {app: gw}, ports: [{port: 8080}]}",
		}, want: "selector map[app:gw] matches no Deployment's pods"},
		{check: "selectors match pods", name: "service target port", files: map[string]string{
			"d.yaml": deploymentYAML("gateway", okProbes),
			"s.yaml": "apiVersion: v1\nkind: Service\nmetadata: {name: gateway}\nspec: {selector: {app: gateway}, ports: [{port: 8080, targetPort: http}]}",
		}, want: `port 8080 targets "http"`},
		{check: "selectors match pods", name: "pdb selects nothing", files: map[string]string{"p.yaml": "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: p}\nspec: {maxUnavailable: 1, selector: {matchLabels: {app: ghost}}}"}, want: "must match exactly one Deployment's pods"},
		{check: "selectors match pods", name: "hpa target missing", files: map[string]string{"h.yaml": "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: {name: h}\nspec: {scaleTargetRef: {kind: Deployment, name: gatewya}, maxReplicas: 3}"}, want: "scales Deployment gatewya, which is not an applied Deployment"},
		{check: "selectors match pods", name: "replicas fight the hpa", files: map[string]string{
			kust:     "resources: [d.yaml, h.yaml]",
			"d.yaml": strings.Replace(deploymentYAML("gateway", okProbes), "spec:\n", "spec:\n  replicas: 3\n", 1),
			"h.yaml": "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: {name: h}\nspec: {scaleTargetRef: {kind: Deployment, name: gateway}, maxReplicas: 3}",
		}, want: "sets replicas, which fights its HorizontalPodAutoscaler"},

		{check: "images pinned", name: "latest", files: map[string]string{"d.yaml": deploymentYAML("sink", "          image: ghcr.io/edtech-analytics/sink:latest\n")}, want: "uses the latest tag"},
		{check: "images pinned", name: "init container untagged", files: map[string]string{"d.yaml": strings.Replace(deploymentYAML("sink", "          image: x:1\n"), "      containers:", "      initContainers: [{name: init, image: busybox}]\n      containers:", 1)}, want: "container init: image \"busybox\" has no tag"},

		{check: "grace periods", name: "gateway too short", files: map[string]string{kust: "resources: [d.yaml]", "d.yaml": strings.Replace(deploymentYAML("gateway", okProbes), "    spec:\n", "    spec:\n      terminationGracePeriodSeconds: 10\n", 1)}, want: "terminationGracePeriodSeconds 10 is below 30"},
		{check: "grace periods", name: "unset", files: map[string]string{kust: "resources: [d.yaml]", "d.yaml": deploymentYAML("sink", okProbes)}, want: "terminationGracePeriodSeconds is not set"},

		{check: "jobs", name: "no jobs", files: map[string]string{}, want: "no Job runs ctl migrate"},
		{check: "jobs", name: "no topics job", files: map[string]string{kust: "resources: [j.yaml]", "j.yaml": "apiVersion: batch/v1\nkind: Job\nmetadata: {name: migrate}\nspec:\n  backoffLimit: 3" + podYAML("{}", "          image: ghcr.io/x/ctl:1\n          args: [migrate]\n")}, want: "no Job runs create-topics.sh"},
		{check: "jobs", name: "restart policy", files: map[string]string{kust: "resources: [j.yaml]", "j.yaml": "apiVersion: batch/v1\nkind: Job\nmetadata: {name: j}\nspec:" + podYAML("{}", "          image: x:1\n")}, want: `restartPolicy "", want Never or OnFailure`},

		{check: "volumes resolve", name: "missing configmap", files: map[string]string{"j.yaml": "apiVersion: batch/v1\nkind: Job\nmetadata: {name: j}\nspec:" + podYAML("{}", "          image: x:1\n") + "      volumes: [{name: s, configMap: {name: scripts}}]\n"}, want: "mounts ConfigMap scripts, which nothing defines"},
	}
	index := newCheckIndex(K8sChecks(), func(c K8sCheck) string { return c.Name })
	for _, tc := range tests {
		t.Run(tc.check+"/"+tc.name, func(t *testing.T) {
			check := index.get(t, tc.check)
			files := map[string][]byte{}
			for name, src := range tc.files {
				files[name] = []byte(src)
			}
			if _, ok := files[kust]; !ok {
				names := make([]string, 0, len(files))
				for name := range files {
					if !strings.Contains(name, ".example.") {
						names = append(names, name)
					}
				}
				if tc.check != "kustomization lists every manifest" {
					files[kust] = []byte("namespace: edtech\nresources: [" + strings.Join(names, ", ") + "]")
				}
			}
			m, err := ParseManifests(files)
			if tc.build {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("building: %v, want an error containing %q", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			problems := check.Check(platformContract(), m)
			requireProblem(t, problems, tc.want)
		})
	}
	index.requireCovered(t)
}

func TestParseManifestsRejectsInvalidYAML(t *testing.T) {
	if _, err := ParseManifests(map[string][]byte{"kustomization.yaml": []byte("resources: [bad.yaml]"), "bad.yaml": []byte("kind: [unclosed")}); err == nil || !strings.Contains(err.Error(), "bad.yaml") {
		t.Fatalf("invalid YAML: %v, want an error naming bad.yaml", err)
	}
	m, err := ParseManifests(map[string][]byte{"kustomization.yaml": []byte("resources: [two.yaml]"), "two.yaml": []byte("---\n# only a comment\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n")})
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Objects) != 1 || len(m.ConfigMaps) != 1 {
		t.Fatalf("objects %v, want the one ConfigMap (empty documents skipped)", m.Objects)
	}
}
