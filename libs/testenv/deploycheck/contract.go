// Package deploycheck checks the deployment files (docker-compose.yml, k8s/, the operator overlays of
// k8s-overlays/, services/Dockerfile) against what the services really read. The files are loaded with the
// tools that deploy them (compose-go, kustomize's krusty into k8s.io/api types with unknown fields refused,
// buildkit's Dockerfile parser), and the operators' custom objects are validated against their pinned
// CRDs (testdata/crds) with the API server's own code (CRDs.Validate), which reject what is malformed; the
// checks here are only the platform's own: each service's variables, ports, probes, resources, image and
// jobs, and the topics, Kafka users, scaling and scraping the operators are given. A check returns
// readable problems naming the file and the fault.
package deploycheck

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/edtech-analytics/platform/libs/conf"
)

// Contract is what the deployment files must agree with.
type Contract struct {
	// Services maps each long-running service (a directory under services/) to the environment it reads:
	// libs/conf's record of its flag registration (conf.Vars).
	Services map[string][]conf.Var
	// Required names the variables a deployment must set, not leave to defaults, for a service that reads them.
	Required []string
	// HTTPPorts maps the services with a public HTTP listener to its port (HTTP_ADDR).
	HTTPPorts map[string]int
	// AdminPort serves GET /healthz, /readyz and /metrics in every long-running service (ADMIN_ADDR).
	AdminPort int
	// NotDeployed lists the directories under services/ that are not deployed as long-running services:
	// tools.
	NotDeployed []string
	// Migrate is the service whose binary the migrate jobs run with MigrateArgs; MigrateEnv what it reads.
	Migrate     string
	MigrateArgs []string
	MigrateEnv  []conf.Var
	// MinGraceSeconds is the least termination grace period a service needs to drain.
	MinGraceSeconds map[string]int
	// InstanceURLs are the variables holding the URLs of the fleet's further PostgreSQL instances (ctl instance
	// add --url-env), which the deployment files set; processes that reach districts through
	// libs/tenancy/fleet (InstanceURLReaders, the migrate job among them) read them with os.Getenv. Secrets.
	InstanceURLs       []string
	InstanceURLReaders []string
	// KafkaClients is what each workload does with Kafka, which its Kafka user (components/strimzi) must
	// allow and no more, and which KEDA's lag triggers must name.
	KafkaClients []KafkaClient
}

// KafkaClient is what the workloads connecting as one Kafka user do: the topics they write and read,
// their consumer groups (and the topic each consumes), the prefix of their transactional ids, and
// whether they create the platform's topics when missing (stream.WaitKafka). Topic names carry the
// default prefix (KAFKA_TOPIC_PREFIX).
type KafkaClient struct {
	User                  string
	Workloads             []string
	Writes, Reads         []string
	Groups                map[string]string // consumer group -> the topic it consumes
	TransactionalIDPrefix string
	CreatesTopics         bool
}

// NewContract returns the platform's contract for services that read what services says, and a migrate
// job that reads migrate.
func NewContract(services map[string][]conf.Var, migrate []conf.Var) Contract {
	return Contract{
		Services: services,
		Required: []string{"KAFKA_BROKERS", "KAFKA_TOPIC_PREFIX", "SCHEMA_REGISTRY_URL", "LOG_LEVEL", "ADMIN_ADDR", "HTTP_ADDR",
			"DATABASE_URL", "CLICKHOUSE_ADDR", "CLICKHOUSE_DATABASE", "CLICKHOUSE_USER", "CLICKHOUSE_PASSWORD", "MASTER_KEYS", "ARCHIVE_URL"},
		HTTPPorts: map[string]int{"gateway": 8080, "query": 8081}, AdminPort: 9090,
		NotDeployed: []string{"ctl", "devstack"}, Migrate: "ctl", MigrateArgs: []string{"migrate"}, MigrateEnv: migrate,
		MinGraceSeconds: map[string]int{"gateway": 30},
	}
}

// Reads reports whether a process reading reads reads key. OTEL_* variables are read by the
// OpenTelemetry SDK in every process (libs/obs).
func (c Contract) Reads(reads []conf.Var, key string) bool {
	return strings.HasPrefix(key, "OTEL_") || slices.ContainsFunc(reads, func(v conf.Var) bool { return v.Env == key })
}

// IsSecret reports whether a service binds a variable of that name as a secret (conf.SecretVar).
func (c Contract) IsSecret(key string) bool {
	if slices.Contains(c.InstanceURLs, key) {
		return true
	}
	vars := slices.Concat(slices.Concat(slices.Collect(maps.Values(c.Services))...), c.MigrateEnv)
	return slices.ContainsFunc(vars, func(v conf.Var) bool { return v.Env == key && v.Secret })
}

// isMigrate reports whether a process running the program binary with args is the migrate job.
func (c Contract) isMigrate(binary string, args []string) bool {
	return binary == c.Migrate && slices.Equal(args, c.MigrateArgs)
}

// process returns what a deployed process reads, when the contract knows: the migrate job's variables,
// or those of the service called name.
func (c Contract) process(name, binary string, args []string) ([]conf.Var, bool) {
	vars, ok := c.Services[name]
	if c.isMigrate(binary, args) {
		vars, ok = c.MigrateEnv, true
	}
	if ok && (slices.Contains(c.InstanceURLReaders, name) || c.isMigrate(binary, args)) {
		for _, env := range c.InstanceURLs {
			vars = append(slices.Clip(vars), conf.Var{Env: env, Secret: true})
		}
	}
	return vars, ok
}

// envProblems is the one check of a process's environment, whichever file sets it: the process called
// name (where, in the file) reading reads is given every variable the contract requires of what it reads
// (have: those given a value), and the variables set explicitly (set) are all ones it reads.
func (c Contract) envProblems(where, name string, reads []conf.Var, have map[string]bool, set []string) (out []string) {
	for _, key := range c.Required {
		out = when(out, c.Reads(reads, key) && !have[key], "%s: env %s is not set", where, key)
	}
	for _, key := range set {
		out = when(out, !c.Reads(reads, key), "%s: env %s is set, but %s does not read it", where, key, name)
	}
	return out
}

// Check is one named check of a deployment file loaded as F.
type Check[F any] struct {
	Name  string
	Check func(k Contract, file F) []string
}

// when appends a problem to out when cond holds.
func when(out []string, cond bool, format string, args ...any) []string {
	if cond {
		return append(out, fmt.Sprintf(format, args...))
	}
	return out
}

// isTopicsJob reports whether a command line runs the generated create-topics.sh.
func isTopicsJob(words []string) bool {
	return slices.ContainsFunc(words, func(w string) bool { return strings.HasSuffix(w, "create-topics.sh") })
}
