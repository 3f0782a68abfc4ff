package deploycheck

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// repoRoot is the repository checkout this module lives in.
const repoRoot = "../../.."

// fakeRepo builds a repository skeleton: go.work using ./services/<name> for each used service, and a
// go.mod in every services/<name> of dirs.
func fakeRepo(t *testing.T, used []string, dirs ...string) Repo {
	t.Helper()
	root := t.TempDir()
	work := "go 1.26\n\nuse (\n"
	for _, name := range used {
		work += "\t./services/" + name + "\n"
	}
	write(t, root, "go.work", work+")\n")
	for _, name := range slices.Concat(used, dirs) {
		write(t, root, filepath.Join("services", name, "go.mod"), "module x/"+name+"\n")
	}
	write(t, root, "k8s/create-topics.sh", "#!/bin/sh\n")
	return Repo{Root: root, Contract: platformContract()}
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
	c, err := LoadCompose(filepath.Join(repoRoot, "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	r := Repo{Root: repoRoot, Contract: platformContract()}
	for _, check := range ComposeChecks() {
		t.Run(check.Name, func(t *testing.T) {
			for _, p := range check.Check(r, c) {
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
		strict                  bool // compose-go itself refuses the file
	}{
		{check: "no version key", name: "version present", yaml: "version: '3.9'\nservices: {}", want: "version key is obsolete"},

		{check: "long-running services present", name: "service missing", yaml: "services:\n  gateway: {" + gateway + "}", want: "long-running service aggregator is missing"},
		{check: "long-running services present", name: "built from the wrong service", yaml: "services:\n  gateway: {" + builtYAML("query") + "}", want: "gateway is not built from services/Dockerfile with SERVICE=gateway"},
		{check: "long-running services present", name: "unclassified service directory", yaml: "services: {}", extraDirs: []string{"billing"}, want: "services/billing is neither"},
		{check: "long-running services present", name: "no migrate job", yaml: "services:\n  migrate: {" + builtYAML("ctl") + ", command: [seed]}", want: "no migrate job running ctl migrate"},

		{check: "images pinned", name: "no tag", yaml: "services:\n  postgres: {image: postgres}", want: `image "postgres" has no tag`},
		{check: "images pinned", name: "latest", yaml: "services:\n  kafka: {image: 'apache/kafka:latest'}", want: "uses the latest tag"},
		{check: "images pinned", name: "registry port is not a tag", yaml: "services:\n  x: {image: 'registry:5000/team/app'}", want: "has no tag"},

		{check: "ports on loopback", name: "all interfaces", yaml: "services:\n  gateway: {ports: ['8080:8080']}", want: `port "8080:8080" is not bound to 127.0.0.1`},
		{check: "ports on loopback", name: "container port only", yaml: "services:\n  gateway: {ports: ['8080']}", want: "not bound to 127.0.0.1"},
		{check: "ports on loopback", name: "long syntax", yaml: "services:\n  gateway: {ports: [{target: 8080, published: 8080, host_ip: 0.0.0.0}]}", want: "not bound to 127.0.0.1"},
		{check: "ports on loopback", name: "duplicate host port", yaml: "services:\n  a: {ports: ['127.0.0.1:8080:8080']}\n  b: {ports: ['127.0.0.1:8080:9090']}", want: "host port 8080 is also published by a"},

		{check: "published ports are served", name: "port the service does not serve", yaml: "services:\n  gateway:\n    environment: {HTTP_ADDR: ':8080', ADMIN_ADDR: ':9090'}\n    ports: ['127.0.0.1:8081:8081']", want: "publishes container port 8081"},
		{check: "published ports are served", name: "wrong HTTP port", yaml: "services:\n  query:\n    environment: {HTTP_ADDR: ':8080', ADMIN_ADDR: ':9090'}", want: `query: HTTP_ADDR ":8080" is not on port 8081`},
		{check: "published ports are served", name: "wrong admin port", yaml: "services:\n  sink:\n    environment: {ADMIN_ADDR: ':9091'}", want: `sink: ADMIN_ADDR ":9091" is not on port 9090`},

		{check: "env complete", name: "missing", yaml: "services:\n  gateway:\n    environment: {KAFKA_BROKERS: kafka:9092}", want: "gateway: env DATABASE_URL is not set"},
		{check: "env complete", name: "empty", yaml: "services:\n  aggregator:\n    environment: [CLICKHOUSE_ADDR=]", want: "aggregator: env CLICKHOUSE_ADDR is not set"},
		{check: "env complete", name: "unset variable", yaml: "services:\n  sink:\n    environment: {DATABASE_URL: '${DATABASE_URL}'}", want: "sink: env DATABASE_URL is not set"},
		{check: "env complete", name: "migrate job", yaml: "services:\n  migrate: {" + builtYAML("ctl") + ", command: [migrate], environment: {CLICKHOUSE_ADDR: x}}", want: "migrate: env DATABASE_URL is not set"},
		{check: "env complete", name: "variable the service does not read", yaml: "services:\n  sink:\n    environment: {KAFKA_BROKER: 'kafka:9092'}", want: "sink: env KAFKA_BROKER is set, but sink does not read it"},
		{check: "env complete", name: "variable the migrate job does not read", yaml: "services:\n  migrate: {" + builtYAML("ctl") + ", command: [migrate], environment: {CLICKHOUSE_ADDR: x}}", want: "migrate: env CLICKHOUSE_ADDR is set, but migrate does not read it"},

		{check: "addresses name dependencies", name: "unknown host", yaml: "services:\n  gateway:\n    environment: {DATABASE_URL: 'postgres://u:p@db:5432/x'}", want: `DATABASE_URL points at "db", which is not a service`},
		{check: "addresses name dependencies", name: "no depends_on", yaml: "services:\n  postgres: {image: 'postgres:15'}\n  sink:\n    environment: {DATABASE_URL: 'postgres://u:p@postgres:5432/x'}", want: "sink: uses postgres (DATABASE_URL) but does not depend on it"},
		{check: "addresses name dependencies", name: "broker host", yaml: "services:\n  query:\n    environment: {KAFKA_BROKERS: 'kafka:19092,broker2:19092'}", want: `"broker2", which is not a service`},

		{check: "kafka kraft listeners", name: "no kafka", yaml: "services: {}", want: "no kafka service"},
		{check: "kafka kraft listeners", name: "zookeeper mode", yaml: "services:\n  kafka:\n    environment: {KAFKA_ZOOKEEPER_CONNECT: 'zk:2181', KAFKA_PROCESS_ROLES: broker}", want: "is not a KRaft broker+controller"},
		{check: "kafka kraft listeners", name: "transaction log replication", yaml: "services:\n  kafka:\n    environment: {KAFKA_PROCESS_ROLES: 'broker,controller', KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR: 3}", want: "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR must be 1"},
		{check: "kafka kraft listeners", name: "broker not advertised", yaml: "services:\n  kafka:\n    environment: {KAFKA_ADVERTISED_LISTENERS: 'INTERNAL://kafka:19092'}\n  gateway:\n    environment: {KAFKA_BROKERS: 'kafka:9092'}", want: `gateway: broker "kafka:9092" is not one of kafka's advertised listeners`},
		{check: "kafka kraft listeners", name: "host listener not published", yaml: "services:\n  kafka:\n    environment: {KAFKA_ADVERTISED_LISTENERS: 'EXTERNAL://127.0.0.1:9092'}\n    ports: ['127.0.0.1:29092:9092']", want: "host clients cannot connect"},

		{check: "credentials match stores", name: "postgres password", yaml: "services:\n  postgres:\n    environment: {POSTGRES_USER: u, POSTGRES_PASSWORD: '${PG:-a}', POSTGRES_DB: d}\n  sink:\n    environment: {DATABASE_URL: 'postgres://u:b@postgres:5432/d'}", want: "sink: DATABASE_URL password does not match postgres POSTGRES_PASSWORD"},
		{check: "credentials match stores", name: "clickhouse database", yaml: "services:\n  clickhouse:\n    environment: {CLICKHOUSE_DB: edtech, CLICKHOUSE_USER: u, CLICKHOUSE_PASSWORD: p}\n  aggregator:\n    environment: {CLICKHOUSE_ADDR: 'clickhouse:9000', CLICKHOUSE_DATABASE: other, CLICKHOUSE_USER: u, CLICKHOUSE_PASSWORD: p}", want: "aggregator: CLICKHOUSE_DATABASE does not match clickhouse CLICKHOUSE_DB"},

		{check: "depends_on valid", name: "unknown target", strict: true, yaml: "services:\n  gateway: {image: 'x:1', depends_on: [kafak]}", want: `service "gateway" depends on undefined service "kafak"`},
		{check: "depends_on valid", name: "healthy without healthcheck", yaml: "services:\n  kafka: {image: 'apache/kafka:3.9.1'}\n  gateway:\n    depends_on: {kafka: {condition: service_healthy}}", want: "waits for kafka to be healthy, but kafka has no healthcheck"},
		{check: "depends_on valid", name: "completion of a restarting service", yaml: "services:\n  migrate: {restart: always}\n  gateway:\n    depends_on: {migrate: {condition: service_completed_successfully}}", want: "but migrate restarts (always)"},
		{check: "depends_on valid", name: "unknown condition", strict: true, yaml: "services:\n  kafka: {image: 'x:1'}\n  gateway:\n    image: 'x:1'\n    depends_on: {kafka: {condition: service_ready}}", want: "services.gateway.depends_on.kafka.condition value must be one of"},

		{check: "jobs gate services", name: "no topics job", yaml: "services: {}", want: "no topics job running create-topics.sh"},
		{check: "jobs gate services", name: "service starts before migrate", yaml: "services:\n  migrate: {" + builtYAML("ctl") + ", command: [migrate]}\n  topics: {entrypoint: [/bin/sh, /scripts/create-topics.sh]}\n  gateway:\n    depends_on: {topics: {condition: service_completed_successfully}, migrate: {condition: service_started}}", want: "gateway: does not wait for job migrate to complete successfully"},

		{check: "build targets exist", name: "no such service", yaml: "services:\n  billing: {" + builtYAML("billing") + "}", want: "SERVICE=billing but services/billing is not a Go module"},
		{check: "build targets exist", name: "not in go.work", yaml: "services:\n  billing: {" + builtYAML("billing") + "}", extraDirs: []string{"billing"}, want: "go.work does not use ./services/billing"},
		{check: "build targets exist", name: "no SERVICE arg", yaml: "services:\n  gateway: {build: {context: ., dockerfile: services/Dockerfile}}", want: "gateway: build has no SERVICE arg"},
		{check: "build targets exist", name: "wrong context", yaml: "services:\n  gateway: {build: {context: services/gateway, dockerfile: services/Dockerfile, args: {SERVICE: gateway}}}", want: "build must use context ."},

		{check: "healthchecks runnable", name: "curl in distroless", yaml: "services:\n  gateway:\n    " + gateway + "\n    healthcheck: {test: [CMD, curl, -f, 'http://localhost:9090/readyz']}", want: "gateway: distroless image has no shell or curl"},
		{check: "healthchecks runnable", name: "bad test form", yaml: "services:\n  postgres:\n    healthcheck: {test: [pg_isready]}", want: "must start with CMD or CMD-SHELL"},

		{check: "infrastructure images", name: "old clickhouse", yaml: "services:\n  clickhouse: {image: 'clickhouse/clickhouse-server:23.8'}", want: `clickhouse: image "clickhouse/clickhouse-server:23.8" is older than [24]`},
		{check: "infrastructure images", name: "postgres 16", yaml: "services:\n  postgres: {image: 'postgres:16'}", want: "is newer than [15]"},
		{check: "infrastructure images", name: "old kafka", yaml: "services:\n  kafka: {image: 'apache/kafka:3.7.0'}", want: "is older than [3 9]"},
		{check: "infrastructure images", name: "other kafka image", yaml: "services:\n  kafka: {image: 'bitnami/kafka:3.9.0'}", want: "is not apache/kafka"},
		{check: "infrastructure images", name: "postgres without volume", yaml: "services:\n  postgres: {image: 'postgres:15'}", want: "postgres: data is not kept in a named volume"},
		{check: "infrastructure images", name: "postgres healthcheck", yaml: "services:\n  postgres:\n    healthcheck: {test: [CMD, 'true']}", want: "does not use pg_isready"},

		{check: "mounts exist", name: "missing bind source", yaml: "services:\n  topics: {volumes: ['./k8s/topics.sh:/scripts/create-topics.sh:ro']}", want: "bind mount source ./k8s/topics.sh does not exist"},
		{check: "mounts exist", name: "undeclared volume", strict: true, yaml: "services:\n  postgres: {image: 'postgres:15', volumes: ['pgdata:/var/lib/postgresql/data']}", want: "undefined volume pgdata"},
	}
	index := newCheckIndex(ComposeChecks(), func(c ComposeCheck) string { return c.Name })
	for _, tc := range tests {
		t.Run(tc.check+"/"+tc.name, func(t *testing.T) {
			check := index.get(t, tc.check)
			r := fakeRepo(t, []string{"gateway", "ctl"}, tc.extraDirs...)
			c, err := ParseCompose(r.Root, "docker-compose.yml", []byte(tc.yaml), tc.strict)
			if tc.strict {
				if err == nil || !strings.Contains(err.Error(), "docker-compose.yml") || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("loading: %v, want an error naming docker-compose.yml and containing %q", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			problems := check.Check(r, c)
			requireProblem(t, problems, tc.want)
		})
	}
	index.requireCovered(t)
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
		c, err := ParseCompose(t.TempDir(), "c.yml", []byte("services:\n  x:\n    environment: {V: '"+tc.in+"'}"), false)
		if err != nil {
			t.Fatal(err)
		}
		if got := *c.Services["x"].Environment["V"]; got != tc.want {
			t.Errorf("%q interpolated to %q, want %q", tc.in, got, tc.want)
		}
	}
	if _, err := ParseCompose(t.TempDir(), "c.yml", []byte("services:\n  x:\n    environment: {V: '${PW:?required}'}"), false); err == nil || !strings.Contains(err.Error(), "required") {
		t.Errorf("a required variable that is not set loaded: %v", err)
	}
}

func TestImageProblem(t *testing.T) {
	tests := []struct {
		ref    string
		pinned bool
	}{
		{"postgres:15", true},
		{"clickhouse/clickhouse-server:24.8", true},
		{"registry:5000/team/app:1.2.3", true},
		{"app@sha256:0123abcd", true},
		{"postgres", false},
		{"registry:5000/team/app", false},
		{"apache/kafka:latest", false},
		{"app:${TAG}", false},
		{"", false},
	}
	for _, tc := range tests {
		if got := ImageProblem(tc.ref) == ""; got != tc.pinned {
			t.Errorf("ImageProblem(%q) = %q, want pinned=%v", tc.ref, ImageProblem(tc.ref), tc.pinned)
		}
	}
}
