package deploycheck

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/types"
)

// repoRoot is the repository checkout this module lives in.
const repoRoot = "../../.."

// fakeRepo builds a repository skeleton with a go.mod in every services/<name> of dirs, and returns its
// root.
func fakeRepo(t *testing.T, dirs ...string) string {
	t.Helper()
	root := t.TempDir()
	for _, name := range dirs {
		write(t, root, filepath.Join("services", name, "go.mod"), "module x/"+name+"\n")
	}
	return root
}

// loadComposeSnippet loads src as the docker-compose.yml of a repository skeleton (see fakeRepo).
func loadComposeSnippet(t *testing.T, src string, consistent bool, dirs ...string) (*types.Project, error) {
	t.Helper()
	root := fakeRepo(t, dirs...)
	write(t, root, "docker-compose.yml", src)
	return LoadCompose(filepath.Join(root, "docker-compose.yml"), consistent)
}

func write(t *testing.T, root, rel, content string) {
	t.Helper()
	path := filepath.Join(root, rel)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestComposeFile(t *testing.T) {
	c, err := LoadCompose(filepath.Join(repoRoot, "docker-compose.yml"), true)
	if err != nil {
		t.Fatal(err)
	}
	for _, check := range ComposeChecks() {
		t.Run(check.Name, func(t *testing.T) {
			for _, p := range check.Check(platformContract(), c) {
				t.Error(p)
			}
		})
	}
}

// builtYAML is a service built from services/Dockerfile.
func builtYAML(service string) string {
	return "build: { context: ., dockerfile: services/Dockerfile, args: { SERVICE: " + service + " } }"
}

func TestComposeChecksCatchBrokenFiles(t *testing.T) {
	gateway := builtYAML("gateway")
	tests := []struct {
		check, name, yaml, want string
		extraDirs               []string
	}{
		{check: "services present", name: "service missing", yaml: "services:\n  gateway: {" + gateway + "}", want: "long-running service aggregator is missing"},
		{check: "services present", name: "built from the wrong service", yaml: "services:\n  gateway: {" + builtYAML("query") + "}", want: "gateway is not built from services/Dockerfile with SERVICE=gateway"},
		{check: "services present", name: "unclassified service directory", yaml: "services: {}", extraDirs: []string{"billing"}, want: "services/billing is neither"},

		{check: "ports", name: "all interfaces", yaml: "services:\n  gateway: {ports: ['8080:8080']}", want: `port "8080:8080" is not bound to 127.0.0.1`},
		{check: "ports", name: "container port only", yaml: "services:\n  gateway: {ports: ['8080']}", want: "not bound to 127.0.0.1"},
		{check: "ports", name: "long syntax", yaml: "services:\n  gateway: {ports: [{target: 8080, published: 8080, host_ip: 0.0.0.0}]}", want: "not bound to 127.0.0.1"},
		{check: "ports", name: "port the service does not serve", yaml: "services:\n  gateway:\n    environment: {HTTP_ADDR: ':8080', ADMIN_ADDR: ':9090'}\n    ports: ['127.0.0.1:8081:8081']", want: "publishes container port 8081"},
		{check: "ports", name: "wrong HTTP port", yaml: "services:\n  query:\n    environment: {HTTP_ADDR: ':8080', ADMIN_ADDR: ':9090'}", want: `query: HTTP_ADDR ":8080" is not on port 8081`},
		{check: "ports", name: "wrong admin port", yaml: "services:\n  sink:\n    environment: {ADMIN_ADDR: ':9091'}", want: `sink: ADMIN_ADDR ":9091" is not on port 9090`},

		{check: "env complete", name: "missing", yaml: "services:\n  gateway:\n    environment: {KAFKA_BROKERS: kafka:9092}", want: "gateway: env DATABASE_URL is not set"},
		{check: "env complete", name: "empty", yaml: "services:\n  aggregator:\n    environment: [CLICKHOUSE_ADDR=]", want: "aggregator: env CLICKHOUSE_ADDR is not set"},
		{check: "env complete", name: "unset variable", yaml: "services:\n  sink:\n    environment: {DATABASE_URL: '${DATABASE_URL}'}", want: "sink: env DATABASE_URL is not set"},
		{check: "env complete", name: "migrate job", yaml: "services:\n  migrate: {" + builtYAML("ctl") + ", command: [migrate], environment: {CLICKHOUSE_ADDR: x}}", want: "migrate: env DATABASE_URL is not set"},
		{check: "env complete", name: "variable the service does not read", yaml: "services:\n  sink:\n    environment: {KAFKA_BROKER: 'kafka:9092'}", want: "sink: env KAFKA_BROKER is set, but sink does not read it"},
		{check: "env complete", name: "variable the migrate job does not read", yaml: "services:\n  migrate: {" + builtYAML("ctl") + ", command: [migrate], environment: {CLICKHOUSE_ADDR: x}}", want: "migrate: env CLICKHOUSE_ADDR is set, but migrate does not read it"},

		{check: "monitoring", name: "no prometheus", yaml: "services: {}", want: "no prometheus service"},
		{check: "monitoring", name: "unpinned image", yaml: "services:\n  grafana: {image: 'grafana/grafana:latest'}", want: `grafana: image "grafana/grafana:latest" is not pinned`},
		{check: "monitoring", name: "mount missing from the repository", yaml: "services:\n  topics: {image: 'x:1', volumes: ['./k8s/create-topics.sh:/scripts/create-topics.sh:ro']}", want: "topics: mounts"},
		{check: "monitoring", name: "prometheus without its configuration", yaml: "services:\n  prometheus: {image: 'prom/prometheus:v3.1.0'}", want: "prometheus: nothing is mounted at /etc/prometheus"},

		{check: "jobs gate services", name: "no migrate job", yaml: "services:\n  migrate: {" + builtYAML("ctl") + ", command: [seed]}", want: "no migrate job running ctl migrate"},
		{check: "jobs gate services", name: "no topics job", yaml: "services: {}", want: "no topics job running create-topics.sh"},
		{check: "jobs gate services", name: "service starts before migrate", yaml: "services:\n  migrate: {" + builtYAML("ctl") + ", command: [migrate]}\n  topics: {entrypoint: [/bin/sh, /scripts/create-topics.sh]}\n  gateway:\n    depends_on: {topics: {condition: service_completed_successfully}, migrate: {condition: service_started}}", want: "gateway: does not wait for job migrate to complete successfully"},
	}
	index := newCheckIndex(ComposeChecks(), func(c Check[*types.Project]) string { return c.Name })
	for _, tc := range tests {
		t.Run(tc.check+"/"+tc.name, func(t *testing.T) {
			check := index.get(t, tc.check)
			c, err := loadComposeSnippet(t, tc.yaml, false, slices.Concat([]string{"gateway", "ctl"}, tc.extraDirs)...)
			if err != nil {
				t.Fatal(err)
			}
			requireProblem(t, check.Check(platformContract(), c), tc.want)
		})
	}
	index.requireCovered(t)
}

// TestComposeGoRefusesBrokenFiles: what compose-go itself refuses is left to it, and the error names the
// file.
func TestComposeGoRefusesBrokenFiles(t *testing.T) {
	for _, tc := range []struct{ name, yaml, want string }{
		{name: "unknown target", yaml: "services:\n  gateway: {image: 'x:1', depends_on: [kafak]}", want: `service "gateway" depends on undefined service "kafak"`},
		{name: "unknown condition", yaml: "services:\n  kafka: {image: 'x:1'}\n  gateway:\n    image: 'x:1'\n    depends_on: {kafka: {condition: service_ready}}", want: "services.gateway.depends_on.kafka.condition value must be one of"},
		{name: "undeclared volume", yaml: "services:\n  postgres: {image: 'postgres:15', volumes: ['pgdata:/var/lib/postgresql/data']}", want: "undefined volume pgdata"},
		{name: "healthcheck test form", yaml: "services:\n  postgres:\n    image: 'postgres:15'\n    healthcheck: {test: [pg_isready]}", want: `healthcheck.test must start either by "CMD", "CMD-SHELL" or "NONE"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadComposeSnippet(t, tc.yaml, true)
			if err == nil || !strings.Contains(err.Error(), "docker-compose.yml") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("loading: %v, want an error naming docker-compose.yml and containing %q", err, tc.want)
			}
		})
	}
}

// TestInterpolate: compose-go interpolates as if no variable were set: defaults apply, $$ escapes, and a
// required variable stops the load.
func TestInterpolate(t *testing.T) {
	tests := []struct{ in, want string }{
		{"plain", "plain"},
		{"${PW:-dev-secret}", "dev-secret"},
		{"${PW-x}", "x"},
		{"a${UNSET}b", "ab"},
		{"$UNSET/x", "/x"},
		{"$$HOME", "$HOME"},
		{"${PW:+set}", ""},
		{"postgres://u:${PW:-p}@h:5432/d", "postgres://u:p@h:5432/d"},
	}
	for _, tc := range tests {
		c, err := loadComposeSnippet(t, "services:\n  x:\n    environment: {V: '"+tc.in+"'}", false)
		if err != nil {
			t.Fatal(err)
		}
		if got := *c.Services["x"].Environment["V"]; got != tc.want {
			t.Errorf("%q interpolated to %q, want %q", tc.in, got, tc.want)
		}
	}
	if _, err := loadComposeSnippet(t, "services:\n  x:\n    environment: {V: '${PW:?required}'}", false); err == nil || !strings.Contains(err.Error(), "required") {
		t.Errorf("a required variable that is not set loaded: %v", err)
	}
}
