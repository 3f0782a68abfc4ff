package deploycheck

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
	"sigs.k8s.io/yaml"
)

// Compose is a Compose file as compose-go loads it, and whether it keeps the obsolete version key.
type Compose struct {
	*types.Project
	Version bool
}

// LoadCompose loads a Compose file the way `docker compose` does: schema, interpolation with an empty
// environment (every ${VAR:-default} takes its default), normalization and the consistency checks.
func LoadCompose(path string) (*Compose, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading compose file: %w", err)
	}
	return ParseCompose(filepath.Dir(path), filepath.Base(path), src, true)
}

// ParseCompose loads src as the Compose file name in dir. consistent false skips the checks that need a
// whole project (each service has an image or a build; references resolve), so snippets load.
func ParseCompose(dir, name string, src []byte, consistent bool) (*Compose, error) {
	var raw map[string]any
	if err := yaml.Unmarshal(src, &raw); err != nil {
		return nil, fmt.Errorf("parsing %s: %w", name, err)
	}
	details := types.ConfigDetails{WorkingDir: dir, Environment: types.Mapping{},
		ConfigFiles: []types.ConfigFile{{Filename: filepath.Join(dir, name), Content: src}}}
	p, err := loader.LoadWithContext(context.Background(), details, func(o *loader.Options) {
		o.SetProjectName("deploycheck", false)
		o.SkipConsistencyCheck = !consistent
	})
	if err != nil {
		return nil, fmt.Errorf("loading %s: %w", name, err)
	}
	_, version := raw["version"]
	return &Compose{Project: p, Version: version}, nil
}

// env returns a service's value of key and whether it is set to something non-empty.
func env(s types.ServiceConfig, key string) (string, bool) {
	if v := s.Environment[key]; v != nil {
		return *v, *v != ""
	}
	return "", false
}

// ComposeCheck is one named check of a Compose file.
type ComposeCheck struct {
	Name  string
	Check func(r Repo, c *Compose) []string
}

// ComposeChecks returns every check of the Compose file on top of compose-go's own.
func ComposeChecks() []ComposeCheck {
	return []ComposeCheck{
		{"no version key", func(_ Repo, c *Compose) (out []string) {
			return when(out, c.Version, "top-level version key is obsolete in the Compose spec: remove it")
		}},
		{"long-running services present", checkComposeServices},
		{"images pinned", func(_ Repo, c *Compose) (out []string) {
			for _, name := range sortedKeys(c.Services) {
				if s := c.Services[name]; s.Build == nil || s.Image != "" {
					out = when(out, ImageProblem(s.Image) != "", "%s: %s", name, ImageProblem(s.Image))
				}
			}
			return out
		}},
		{"ports on loopback", checkComposePorts},
		{"published ports are served", checkComposeServedPorts},
		{"env complete", checkComposeEnv},
		{"addresses name dependencies", checkComposeAddresses},
		{"kafka kraft listeners", checkComposeKafka},
		{"credentials match stores", checkComposeCredentials},
		{"depends_on valid", checkComposeDependsOn},
		{"jobs gate services", checkComposeJobs},
		{"build targets exist", checkComposeBuilds},
		{"healthchecks runnable", func(_ Repo, c *Compose) (out []string) {
			for _, name := range sortedKeys(c.Services) {
				s := c.Services[name]
				_, built := builtService(s)
				out = when(out, built && s.HealthCheck != nil && !s.HealthCheck.Disable, "%s: distroless image has no shell or curl for a healthcheck; probe the admin port instead", name)
				out = when(out, s.HealthCheck != nil && len(s.HealthCheck.Test) > 0 && !slices.Contains([]string{"CMD", "CMD-SHELL", "NONE"}, s.HealthCheck.Test[0]), "%s: healthcheck test must start with CMD or CMD-SHELL", name)
			}
			return out
		}},
		{"infrastructure images", checkComposeInfra},
		{"mounts exist", func(r Repo, c *Compose) (out []string) {
			for _, name := range sortedKeys(c.Services) {
				for _, m := range c.Services[name].Volumes {
					rel, _ := filepath.Rel(c.WorkingDir, m.Source)
					out = when(out, m.Type == "bind" && !r.exists(rel), "%s: bind mount source ./%s does not exist", name, rel)
				}
			}
			return out
		}},
	}
}

// builtService returns the SERVICE build arg of a service built from services/Dockerfile.
func builtService(s types.ServiceConfig) (string, bool) {
	if s.Build == nil || s.Build.Dockerfile != "services/Dockerfile" || s.Build.Args["SERVICE"] == nil {
		return "", false
	}
	return *s.Build.Args["SERVICE"], true
}

func isMigrateJob(k Contract, s types.ServiceConfig) bool {
	name, ok := builtService(s)
	return ok && name == k.Migrate && slices.Equal(s.Command, k.MigrateArgs)
}

func isTopicsJob(words []string) bool {
	return slices.ContainsFunc(words, func(w string) bool { return strings.HasSuffix(w, "create-topics.sh") })
}

func checkComposeServices(r Repo, c *Compose) (out []string) {
	modules, err := r.ServiceModules()
	if err != nil {
		return []string{err.Error()}
	}
	for _, m := range modules {
		_, ok := r.Contract.Services[m]
		out = when(out, !ok && !slices.Contains(r.Contract.NotDeployed, m), "services/%s is neither a long-running service nor listed as not deployed", m)
	}
	for _, name := range sortedKeys(r.Contract.Services) {
		s, ok := c.Services[name]
		out = when(out, !ok, "long-running service %s is missing", name)
		built, isBuilt := builtService(s)
		out = when(out, ok && (!isBuilt || built != name), "%s is not built from services/Dockerfile with SERVICE=%s", name, name)
	}
	migrate := slices.ContainsFunc(sortedKeys(c.Services), func(n string) bool { return isMigrateJob(r.Contract, c.Services[n]) })
	return when(out, !migrate, "no migrate job running %s %s", r.Contract.Migrate, strings.Join(r.Contract.MigrateArgs, " "))
}

func checkComposePorts(_ Repo, c *Compose) (out []string) {
	seen := map[string]string{}
	for _, name := range sortedKeys(c.Services) {
		for _, p := range c.Services[name].Ports {
			raw := strings.TrimPrefix(fmt.Sprintf("%s:%s:%d", p.HostIP, p.Published, p.Target), ":")
			out = when(out, p.HostIP != "127.0.0.1", "%s: port %q is not bound to 127.0.0.1", name, raw)
			other, dup := seen[p.Published]
			out = when(out, dup && p.Published != "", "%s: host port %s is also published by %s", name, p.Published, other)
			seen[p.Published] = name
		}
	}
	return out
}

// listenPort returns the port of a listen address such as ":8080".
func listenPort(addr string) string { return addr[strings.LastIndexByte(addr, ':')+1:] }

func checkComposeServedPorts(r Repo, c *Compose) (out []string) {
	for _, name := range sortedKeys(r.Contract.Services) {
		s, ok := c.Services[name]
		if !ok {
			continue
		}
		httpAddr, _ := env(s, "HTTP_ADDR")
		admin, _ := env(s, "ADMIN_ADDR")
		out = when(out, listenPort(admin) != fmt.Sprint(r.Contract.AdminPort), "%s: ADMIN_ADDR %q is not on port %d", name, admin, r.Contract.AdminPort)
		want, ok := r.Contract.HTTPPorts[name]
		out = when(out, ok && listenPort(httpAddr) != fmt.Sprint(want), "%s: HTTP_ADDR %q is not on port %d", name, httpAddr, want)
		for _, p := range s.Ports {
			served := slices.ContainsFunc([]string{httpAddr, admin}, func(a string) bool { return a != "" && listenPort(a) == fmt.Sprint(p.Target) })
			out = when(out, !served, "%s: publishes container port %d, which the service does not listen on", name, p.Target)
		}
	}
	return out
}

// checkComposeEnv: each service and the migrate job set every variable the contract requires of what
// they read, and set nothing they do not read.
func checkComposeEnv(r Repo, c *Compose) (out []string) {
	for _, name := range sortedKeys(c.Services) {
		s := c.Services[name]
		reads, ok := r.Contract.Services[name]
		if isMigrateJob(r.Contract, s) {
			reads, ok = r.Contract.MigrateEnv, true
		}
		if !ok {
			continue
		}
		for _, key := range r.Contract.Needs(reads) {
			_, set := env(s, key)
			out = when(out, !set, "%s: env %s is not set", name, key)
		}
		for _, key := range sortedKeys(s.Environment) {
			out = when(out, !r.Contract.Reads(reads, key), "%s: env %s is set, but %s does not read it", name, key, name)
		}
	}
	return out
}

// addressHosts returns the host names an address-valued env var points at.
func addressHosts(key, value string) (hosts []string) {
	for _, addr := range strings.Split(value, ",") {
		if u, err := url.Parse(strings.TrimSpace(addr)); err == nil && u.Host != "" {
			hosts = append(hosts, u.Hostname())
		} else if host, _, _ := strings.Cut(strings.TrimSpace(addr), ":"); host != "" {
			hosts = append(hosts, host)
		}
	}
	return hosts
}

func checkComposeAddresses(_ Repo, c *Compose) (out []string) {
	for _, name := range sortedKeys(c.Services) {
		s := c.Services[name]
		for _, key := range []string{"KAFKA_BROKERS", "CLICKHOUSE_ADDR", "DATABASE_URL", "SCHEMA_REGISTRY_URL", "OTEL_EXPORTER_OTLP_ENDPOINT"} {
			value, _ := env(s, key)
			for _, host := range addressHosts(key, value) {
				_, known := c.Services[host]
				_, dep := s.DependsOn[host]
				out = when(out, !known, "%s: %s points at %q, which is not a service", name, key, host)
				out = when(out, known && !dep, "%s: uses %s (%s) but does not depend on it", name, host, key)
			}
		}
	}
	return out
}

func checkComposeKafka(_ Repo, c *Compose) (out []string) {
	kafka, ok := c.Services["kafka"]
	if !ok {
		return []string{"no kafka service"}
	}
	roles, _ := env(kafka, "KAFKA_PROCESS_ROLES")
	out = when(out, !strings.Contains(roles, "controller") || !strings.Contains(roles, "broker"), "kafka: KAFKA_PROCESS_ROLES %q is not a KRaft broker+controller", roles)
	_, zk := env(kafka, "KAFKA_ZOOKEEPER_CONNECT")
	out = when(out, zk, "kafka: ZooKeeper is configured; use KRaft")
	_, voters := env(kafka, "KAFKA_CONTROLLER_QUORUM_VOTERS")
	out = when(out, !voters, "kafka: KAFKA_CONTROLLER_QUORUM_VOTERS is not set")
	for _, key := range []string{"KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"} {
		v, _ := env(kafka, key)
		out = when(out, v != "1", "kafka: %s must be 1 on a single node (got %q)", key, v)
	}
	advertised, fromHost := map[string]bool{}, false
	adv, _ := env(kafka, "KAFKA_ADVERTISED_LISTENERS")
	for _, l := range strings.Split(adv, ",") {
		if _, addr, ok := strings.Cut(strings.TrimSpace(l), "://"); ok {
			advertised[addr] = true
			host, port, _ := strings.Cut(addr, ":")
			fromHost = fromHost || ((host == "127.0.0.1" || host == "localhost") &&
				slices.ContainsFunc(kafka.Ports, func(p types.ServicePortConfig) bool { return p.Published == port }))
		}
	}
	out = when(out, !fromHost, "kafka: no advertised listener on 127.0.0.1 matches a published port (host clients cannot connect)")
	for _, name := range sortedKeys(c.Services) {
		if brokers, ok := env(c.Services[name], "KAFKA_BROKERS"); ok {
			for _, b := range strings.Split(brokers, ",") {
				out = when(out, !advertised[strings.TrimSpace(b)], "%s: broker %q is not one of kafka's advertised listeners", name, strings.TrimSpace(b))
			}
		}
	}
	return out
}

func checkComposeCredentials(_ Repo, c *Compose) (out []string) {
	pg, hasPG := c.Services["postgres"]
	ch, hasCH := c.Services["clickhouse"]
	for _, name := range sortedKeys(c.Services) {
		s := c.Services[name]
		if raw, ok := env(s, "DATABASE_URL"); ok && hasPG {
			u, _ := url.Parse(raw)
			password, _ := u.User.Password()
			for _, f := range [][3]string{{"user", u.User.Username(), "POSTGRES_USER"}, {"password", password, "POSTGRES_PASSWORD"}, {"database", strings.TrimPrefix(u.Path, "/"), "POSTGRES_DB"}} {
				want, _ := env(pg, f[2])
				out = when(out, f[1] != want, "%s: DATABASE_URL %s does not match postgres %s", name, f[0], f[2])
			}
		}
		if _, ok := env(s, "CLICKHOUSE_ADDR"); ok && hasCH {
			for _, f := range [][2]string{{"CLICKHOUSE_USER", "CLICKHOUSE_USER"}, {"CLICKHOUSE_PASSWORD", "CLICKHOUSE_PASSWORD"}, {"CLICKHOUSE_DATABASE", "CLICKHOUSE_DB"}} {
				got, _ := env(s, f[0])
				want, _ := env(ch, f[1])
				out = when(out, got != want, "%s: %s does not match clickhouse %s", name, f[0], f[1])
			}
		}
	}
	return out
}

// checkComposeDependsOn: compose-go rejects unknown services and conditions; this checks that a
// condition can be met.
func checkComposeDependsOn(_ Repo, c *Compose) (out []string) {
	for _, name := range sortedKeys(c.Services) {
		for _, dep := range sortedKeys(c.Services[name].DependsOn) {
			t, cond := c.Services[dep], c.Services[name].DependsOn[dep].Condition
			noCheck := t.HealthCheck == nil || t.HealthCheck.Disable || len(t.HealthCheck.Test) == 0
			out = when(out, cond == types.ServiceConditionHealthy && noCheck, "%s: waits for %s to be healthy, but %s has no healthcheck", name, dep, dep)
			out = when(out, cond == types.ServiceConditionCompletedSuccessfully && t.Restart != "" && t.Restart != "no", "%s: waits for %s to complete, but %s restarts (%s)", name, dep, dep, t.Restart)
		}
	}
	return out
}

func checkComposeJobs(r Repo, c *Compose) (out []string) {
	var jobs []string
	for _, name := range sortedKeys(c.Services) {
		if s := c.Services[name]; isMigrateJob(r.Contract, s) || isTopicsJob(slices.Concat(s.Entrypoint, s.Command)) {
			jobs = append(jobs, name)
		}
	}
	topics := slices.ContainsFunc(jobs, func(n string) bool {
		return isTopicsJob(slices.Concat(c.Services[n].Entrypoint, c.Services[n].Command))
	})
	out = when(out, !topics, "no topics job running create-topics.sh")
	for _, name := range sortedKeys(r.Contract.Services) {
		for _, job := range jobs {
			s, ok := c.Services[name]
			out = when(out, ok && s.DependsOn[job].Condition != types.ServiceConditionCompletedSuccessfully, "%s: does not wait for job %s to complete successfully", name, job)
		}
	}
	return out
}

func checkComposeBuilds(r Repo, c *Compose) (out []string) {
	uses, err := r.WorkspaceUses()
	if err != nil {
		return []string{err.Error()}
	}
	for _, name := range sortedKeys(c.Services) {
		b := c.Services[name].Build
		if b == nil {
			continue
		}
		if b.Dockerfile != "services/Dockerfile" || filepath.Clean(b.Context) != filepath.Clean(c.WorkingDir) {
			out = append(out, fmt.Sprintf("%s: build must use context . and dockerfile services/Dockerfile", name))
			continue
		}
		svc, _ := builtService(c.Services[name])
		dir := "services/" + svc
		out = when(out, svc == "", "%s: build has no SERVICE arg", name)
		out = when(out, svc != "" && !r.exists(dir+"/go.mod"), "%s: SERVICE=%s but %s is not a Go module", name, svc, dir)
		out = when(out, svc != "" && !slices.Contains(uses, dir), "%s: SERVICE=%s but go.work does not use ./%s", name, svc, dir)
	}
	return out
}

// imageVersion splits "repo:1.2.3-x" into repo and the numeric version fields of its tag.
func imageVersion(ref string) (string, []int) {
	i := strings.LastIndexByte(ref, ':')
	if i < 0 || strings.Contains(ref[i:], "/") {
		return ref, nil
	}
	var nums []int
	for _, f := range strings.Split(strings.SplitN(ref[i+1:], "-", 2)[0], ".") {
		var n int
		if _, err := fmt.Sscanf(f, "%d", &n); err != nil {
			break
		}
		nums = append(nums, n)
	}
	return ref[:i], nums
}

func checkComposeInfra(_ Repo, c *Compose) (out []string) {
	infra := map[string]struct {
		repo     string
		min, max []int // inclusive bounds on the leading version fields; nil: any
		volume   bool
	}{
		"kafka":           {repo: "apache/kafka", min: []int{3, 9}, volume: true},
		"schema-registry": {repo: "confluentinc/cp-schema-registry"},
		"postgres":        {repo: "postgres", min: []int{15}, max: []int{15}, volume: true},
		"clickhouse":      {repo: "clickhouse/clickhouse-server", min: []int{24}, max: []int{24}, volume: true},
	}
	for _, name := range sortedKeys(infra) {
		w := infra[name]
		s, ok := c.Services[name]
		if !ok {
			out = append(out, fmt.Sprintf("no %s service", name))
			continue
		}
		repo, v := imageVersion(s.Image)
		out = when(out, repo != w.repo, "%s: image %q is not %s", name, s.Image, w.repo)
		out = when(out, w.min != nil && (len(v) < len(w.min) || slices.Compare(v[:len(w.min)], w.min) < 0), "%s: image %q is older than %v", name, s.Image, w.min)
		out = when(out, w.max != nil && (len(v) < len(w.max) || slices.Compare(v[:len(w.max)], w.max) > 0), "%s: image %q is newer than %v", name, s.Image, w.max)
		out = when(out, s.HealthCheck == nil || len(s.HealthCheck.Test) == 0, "%s: no healthcheck", name)
		named := slices.ContainsFunc(s.Volumes, func(m types.ServiceVolumeConfig) bool { return m.Type == "volume" && m.Source != "" })
		out = when(out, w.volume && !named, "%s: data is not kept in a named volume", name)
	}
	pg, ok := c.Services["postgres"]
	return when(out, ok && pg.HealthCheck != nil && !slices.Contains(pg.HealthCheck.Test, "pg_isready"), "postgres: healthcheck does not use pg_isready")
}
