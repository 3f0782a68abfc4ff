// Package deploycheck validates the deployment files (docker-compose.yml, k8s/, services/Dockerfile)
// against the services' contract: which services run, the environment each needs, the ports they serve,
// and the rules every deployment keeps (pinned images, loopback-only ports, probes, no inline secrets).
// No Docker engine or cluster is needed: the files are parsed and checked. Each check returns the problems
// it found as readable strings, so tests can run every check on the real files and on broken snippets.
package deploycheck

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Contract is what the deployment files must agree with.
type Contract struct {
	// Services maps each long-running service (a directory under services/) to the env vars it needs.
	Services map[string][]string
	// HTTPPorts maps the services with a public HTTP listener to its port (HTTP_ADDR).
	HTTPPorts map[string]int
	// AdminPort serves GET /healthz, /readyz and /metrics in every long-running service (ADMIN_ADDR).
	AdminPort int
	// NotDeployed lists the directories under services/ that are not long-running services.
	NotDeployed []string
	// Migrate is the service whose binary the migrate jobs run, MigrateArgs its arguments and MigrateEnv
	// the env vars it needs.
	Migrate     string
	MigrateArgs []string
	MigrateEnv  []string
	// MinGraceSeconds is the least termination grace period a service needs to drain.
	MinGraceSeconds map[string]int
	// SecretMarkers: an env var whose name contains one of these must come from a Secret.
	SecretMarkers []string
	// Namespace is the Kubernetes namespace of every object.
	Namespace string
}

// DefaultContract returns the platform's service contract.
func DefaultContract() Contract {
	common := []string{"KAFKA_BROKERS", "KAFKA_TOPIC_PREFIX", "SCHEMA_REGISTRY_URL", "LOG_LEVEL", "ADMIN_ADDR"}
	clickhouse := []string{"CLICKHOUSE_ADDR", "CLICKHOUSE_DATABASE", "CLICKHOUSE_USER", "CLICKHOUSE_PASSWORD"}
	with := func(lists ...[]string) []string { return slices.Concat(lists...) }
	return Contract{
		Services: map[string][]string{
			"gateway":    with(common, []string{"HTTP_ADDR", "DATABASE_URL"}),
			"enricher":   with(common, []string{"DATABASE_URL"}),
			"aggregator": with(common, clickhouse),
			"sink":       with(common, []string{"DATABASE_URL"}),
			"query":      with(common, []string{"HTTP_ADDR", "DATABASE_URL"}, clickhouse),
		},
		HTTPPorts:       map[string]int{"gateway": 8080, "query": 8081},
		AdminPort:       9090,
		NotDeployed:     []string{"ctl", "devstack"},
		Migrate:         "ctl",
		MigrateArgs:     []string{"migrate"},
		MigrateEnv:      with([]string{"DATABASE_URL"}, clickhouse),
		MinGraceSeconds: map[string]int{"gateway": 30},
		SecretMarkers:   []string{"PASSWORD", "SECRET", "TOKEN", "DATABASE_URL"},
		Namespace:       "edtech",
	}
}

// Repo is a checkout to check: its root directory and the contract its files must honour.
type Repo struct {
	Root     string
	Contract Contract
}

// ServiceNames returns the long-running services, sorted.
func (c Contract) ServiceNames() []string {
	names := make([]string, 0, len(c.Services))
	for name := range c.Services {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// IsSecretName reports whether an env var of this name holds a secret.
func (c Contract) IsSecretName(name string) bool {
	upper := strings.ToUpper(name)
	return slices.ContainsFunc(c.SecretMarkers, func(m string) bool { return strings.Contains(upper, m) })
}

// ServiceModules returns the directories under services/ that hold a Go module, sorted.
func (r Repo) ServiceModules() ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(r.Root, "services"))
	if err != nil {
		return nil, fmt.Errorf("listing services: %w", err)
	}
	var names []string
	for _, e := range entries {
		if e.IsDir() && r.exists(filepath.Join("services", e.Name(), "go.mod")) {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

// WorkspaceUses returns the directories listed in go.work's use directives, cleaned ("services/gateway").
func (r Repo) WorkspaceUses() ([]string, error) {
	src, err := os.ReadFile(filepath.Join(r.Root, "go.work"))
	if err != nil {
		return nil, fmt.Errorf("reading go.work: %w", err)
	}
	var uses []string
	inBlock := false
	for _, line := range strings.Split(string(src), "\n") {
		line = strings.TrimSpace(line)
		if i := strings.Index(line, "//"); i >= 0 {
			line = strings.TrimSpace(line[:i])
		}
		switch {
		case line == "use (":
			inBlock = true
		case inBlock && line == ")":
			inBlock = false
		case inBlock && line != "":
			uses = append(uses, filepath.ToSlash(filepath.Clean(line)))
		case strings.HasPrefix(line, "use "):
			uses = append(uses, filepath.ToSlash(filepath.Clean(strings.TrimSpace(strings.TrimPrefix(line, "use ")))))
		}
	}
	return uses, nil
}

// exists reports whether a path relative to the root exists.
func (r Repo) exists(rel string) bool {
	_, err := os.Stat(filepath.Join(r.Root, rel))
	return err == nil
}
