package deploycheck

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
)

// LoadCompose loads a Compose file the way `docker compose` does: schema, interpolation with an empty
// environment (every ${VAR:-default} takes its default), normalization and, when consistent, the checks
// that need a whole project (each service has an image or a build; references resolve). Its directory is
// the repository's root.
func LoadCompose(path string, consistent bool) (*types.Project, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading compose file: %w", err)
	}
	details := types.ConfigDetails{WorkingDir: filepath.Dir(path), Environment: types.Mapping{},
		ConfigFiles: []types.ConfigFile{{Filename: path, Content: src}}}
	p, err := loader.LoadWithContext(context.Background(), details, func(o *loader.Options) {
		o.SetProjectName("deploycheck", false)
		o.SkipConsistencyCheck = !consistent
	})
	if err != nil {
		return nil, fmt.Errorf("loading %s: %w", filepath.Base(path), err)
	}
	return p, nil
}

// builtService returns the SERVICE build arg of a service built from services/Dockerfile, or "".
func builtService(s types.ServiceConfig) string {
	if s.Build == nil || s.Build.Dockerfile != "services/Dockerfile" || s.Build.Args["SERVICE"] == nil {
		return ""
	}
	return *s.Build.Args["SERVICE"]
}

// ComposeChecks returns every check of the Compose file on top of compose-go's own.
func ComposeChecks() []Check[*types.Project] {
	return []Check[*types.Project]{
		{"services present", checkComposeServices},
		{"ports", checkComposePorts},
		{"env complete", checkComposeEnv},
		{"jobs gate services", checkComposeJobs},
		{"monitoring", checkComposeMonitoring},
	}
}

// checkComposeServices: every directory under services/ with a Go module is a long-running service or
// listed as not deployed, and every long-running service is built from services/Dockerfile as itself.
func checkComposeServices(k Contract, p *types.Project) (out []string) {
	entries, err := os.ReadDir(filepath.Join(p.WorkingDir, "services"))
	if err != nil {
		return []string{fmt.Sprintf("listing services: %v", err)}
	}
	for _, e := range entries {
		_, err := os.Stat(filepath.Join(p.WorkingDir, "services", e.Name(), "go.mod"))
		_, deployed := k.Services[e.Name()]
		out = when(out, err == nil && !deployed && !slices.Contains(k.NotDeployed, e.Name()), "services/%s is neither a long-running service nor listed as not deployed", e.Name())
	}
	for _, name := range slices.Sorted(maps.Keys(k.Services)) {
		s, ok := p.Services[name]
		out = when(out, !ok, "long-running service %s is missing", name)
		out = when(out, ok && builtService(s) != name, "%s is not built from services/Dockerfile with SERVICE=%s", name, name)
	}
	return out
}

// listenPort returns the port of a listen address such as ":8080".
func listenPort(addr string) string { return addr[strings.LastIndexByte(addr, ':')+1:] }

// checkComposePorts: ports are published on the loopback only; every service listens on the contract's
// ports and publishes only ports it listens on.
func checkComposePorts(k Contract, p *types.Project) (out []string) {
	for _, name := range slices.Sorted(maps.Keys(p.Services)) {
		s, env := p.Services[name], p.Services[name].Environment.ToMapping()
		_, long := k.Services[name]
		want, public := k.HTTPPorts[name]
		out = when(out, long && listenPort(env["ADMIN_ADDR"]) != fmt.Sprint(k.AdminPort), "%s: ADMIN_ADDR %q is not on port %d", name, env["ADMIN_ADDR"], k.AdminPort)
		out = when(out, public && listenPort(env["HTTP_ADDR"]) != fmt.Sprint(want), "%s: HTTP_ADDR %q is not on port %d", name, env["HTTP_ADDR"], want)
		for _, port := range s.Ports {
			raw := strings.TrimPrefix(fmt.Sprintf("%s:%s:%d", port.HostIP, port.Published, port.Target), ":")
			out = when(out, port.HostIP != "127.0.0.1", "%s: port %q is not bound to 127.0.0.1", name, raw)
			served := slices.ContainsFunc([]string{env["HTTP_ADDR"], env["ADMIN_ADDR"]}, func(a string) bool { return a != "" && listenPort(a) == fmt.Sprint(port.Target) })
			out = when(out, long && !served, "%s: publishes container port %d, which the service does not listen on", name, port.Target)
		}
	}
	return out
}

// checkComposeEnv: each service and the migrate job set every variable the contract requires of what
// they read, and set nothing they do not read.
func checkComposeEnv(k Contract, p *types.Project) (out []string) {
	for _, name := range slices.Sorted(maps.Keys(p.Services)) {
		s, have := p.Services[name], map[string]bool{}
		for key, value := range s.Environment.ToMapping() {
			have[key] = value != ""
		}
		if reads, ok := k.process(name, builtService(s), s.Command); ok {
			out = append(out, k.envProblems(name, name, reads, have, slices.Sorted(maps.Keys(s.Environment)))...)
		}
	}
	return out
}

// checkComposeJobs: a migrate job and a topics job run, and every service waits for both to complete.
func checkComposeJobs(k Contract, p *types.Project) (out []string) {
	var migrate, topics []string
	for _, name := range slices.Sorted(maps.Keys(p.Services)) {
		if s := p.Services[name]; k.isMigrate(builtService(s), s.Command) {
			migrate = append(migrate, name)
		} else if isTopicsJob(slices.Concat(s.Entrypoint, s.Command)) {
			topics = append(topics, name)
		}
	}
	out = when(out, len(migrate) == 0, "no migrate job running %s %s", k.Migrate, strings.Join(k.MigrateArgs, " "))
	out = when(out, len(topics) == 0, "no topics job running create-topics.sh")
	for _, name := range slices.Sorted(maps.Keys(k.Services)) {
		for _, job := range slices.Concat(migrate, topics) {
			s, ok := p.Services[name]
			out = when(out, ok && s.DependsOn[job].Condition != types.ServiceConditionCompletedSuccessfully, "%s: does not wait for job %s to complete successfully", name, job)
		}
	}
	return out
}
