// Package deploycheck checks the deployment files (docker-compose.yml, k8s/, services/Dockerfile) against
// what the services really read and the rules every deployment keeps. The files are loaded with the tools
// that deploy them (compose-go, kustomize's krusty into k8s.io/api types, buildkit's Dockerfile parser),
// which reject what is malformed; the checks here are the platform's own: each service's variables,
// ports, probes, resources and jobs. Each check returns readable problems naming the file and the fault.
package deploycheck

import (
	"cmp"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/edtech-analytics/platform/libs/conf"
	"golang.org/x/mod/modfile"
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
	// NotDeployed lists the directories under services/ that are not long-running services.
	NotDeployed []string
	// Migrate is the service whose binary the migrate jobs run with MigrateArgs; MigrateEnv what it reads.
	Migrate     string
	MigrateArgs []string
	MigrateEnv  []conf.Var
	// MinGraceSeconds is the least termination grace period a service needs to drain.
	MinGraceSeconds map[string]int
	// Namespace is the Kubernetes namespace of every object.
	Namespace string
}

// NewContract returns the platform's contract for services that read what services says, and a migrate
// job that reads migrate.
func NewContract(services map[string][]conf.Var, migrate []conf.Var) Contract {
	return Contract{
		Services: services,
		Required: []string{"KAFKA_BROKERS", "KAFKA_TOPIC_PREFIX", "SCHEMA_REGISTRY_URL", "LOG_LEVEL", "ADMIN_ADDR", "HTTP_ADDR",
			"DATABASE_URL", "CLICKHOUSE_ADDR", "CLICKHOUSE_DATABASE", "CLICKHOUSE_USER", "CLICKHOUSE_PASSWORD"},
		HTTPPorts: map[string]int{"gateway": 8080, "query": 8081}, AdminPort: 9090,
		NotDeployed: []string{"ctl", "devstack"}, Migrate: "ctl", MigrateArgs: []string{"migrate"}, MigrateEnv: migrate,
		MinGraceSeconds: map[string]int{"gateway": 30}, Namespace: "edtech",
	}
}

// Needs returns the required variables of those a process reads.
func (c Contract) Needs(reads []conf.Var) []string {
	return slices.DeleteFunc(slices.Clone(c.Required), func(key string) bool { return !c.Reads(reads, key) })
}

// Reads reports whether a process reading reads reads key. OTEL_* variables are read by the
// OpenTelemetry SDK in every process (libs/obs).
func (c Contract) Reads(reads []conf.Var, key string) bool {
	return strings.HasPrefix(key, "OTEL_") || slices.ContainsFunc(reads, func(v conf.Var) bool { return v.Env == key })
}

// IsSecret reports whether a service binds a variable of that name as a secret (conf.SecretVar).
func (c Contract) IsSecret(key string) bool {
	for _, vars := range c.Services {
		if slices.ContainsFunc(slices.Concat(vars, c.MigrateEnv), func(v conf.Var) bool { return v.Env == key && v.Secret }) {
			return true
		}
	}
	return false
}

// Repo is a checkout to check: its root directory and the contract its files must honour.
type Repo struct {
	Root     string
	Contract Contract
}

// ServiceModules returns the directories under services/ that hold a Go module, sorted.
func (r Repo) ServiceModules() (names []string, err error) {
	entries, err := os.ReadDir(filepath.Join(r.Root, "services"))
	if err != nil {
		return nil, fmt.Errorf("listing services: %w", err)
	}
	for _, e := range entries {
		if e.IsDir() && r.exists(filepath.Join("services", e.Name(), "go.mod")) {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

// WorkspaceUses returns the directories go.work uses, cleaned ("services/gateway").
func (r Repo) WorkspaceUses() ([]string, error) {
	src, err := os.ReadFile(filepath.Join(r.Root, "go.work"))
	if err != nil {
		return nil, fmt.Errorf("reading go.work: %w", err)
	}
	work, err := modfile.ParseWork("go.work", src, nil)
	if err != nil {
		return nil, fmt.Errorf("parsing go.work: %w", err)
	}
	var uses []string
	for _, u := range work.Use {
		uses = append(uses, filepath.ToSlash(filepath.Clean(u.Path)))
	}
	return uses, nil
}

// exists reports whether a path relative to the root exists.
func (r Repo) exists(rel string) bool {
	_, err := os.Stat(filepath.Join(r.Root, rel))
	return err == nil
}

// when appends a problem to out when cond holds.
func when(out []string, cond bool, format string, args ...any) []string {
	if cond {
		return append(out, fmt.Sprintf(format, args...))
	}
	return out
}

func sortedKeys[K cmp.Ordered, V any](m map[K]V) []K {
	keys := make([]K, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// ImageProblem returns why an image reference is not pinned, or "" when it is: it needs a tag other than
// latest, or a digest.
func ImageProblem(ref string) string {
	name := ref[strings.LastIndex(ref, "/")+1:]
	_, tag, ok := strings.Cut(name, ":")
	switch {
	case ref == "":
		return "no image"
	case strings.Contains(ref, "@sha256:"):
		return ""
	case !ok || tag == "":
		return fmt.Sprintf("image %q has no tag", ref)
	case tag == "latest":
		return fmt.Sprintf("image %q uses the latest tag", ref)
	case strings.Contains(tag, "$"):
		return fmt.Sprintf("image %q takes its tag from a variable", ref)
	}
	return ""
}
