package deploycheck

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/patternmatcher/ignorefile"
)

// Dockerfile is a Dockerfile as buildkit parses it: its build stages of typed instructions.
type Dockerfile struct{ Stages []instructions.Stage }

// ParseDockerfile parses a Dockerfile with buildkit's parser.
func ParseDockerfile(src string) (Dockerfile, error) {
	ast, err := parser.Parse(strings.NewReader(src))
	if err != nil {
		return Dockerfile{}, fmt.Errorf("parsing Dockerfile: %w", err)
	}
	stages, _, err := instructions.Parse(ast.AST, nil)
	if err != nil {
		return Dockerfile{}, fmt.Errorf("parsing Dockerfile: %w", err)
	}
	return Dockerfile{Stages: stages}, nil
}

// LoadDockerfile reads services/Dockerfile and the patterns of its ignore file under root.
func LoadDockerfile(root string) (Dockerfile, []string, error) {
	src, err := os.ReadFile(filepath.Join(root, "services", "Dockerfile"))
	if err != nil {
		return Dockerfile{}, nil, fmt.Errorf("reading Dockerfile: %w", err)
	}
	var ignore []string
	if b, err := os.ReadFile(filepath.Join(root, "services", "Dockerfile.dockerignore")); err == nil {
		if ignore, err = ignorefile.ReadAll(bytes.NewReader(b)); err != nil {
			return Dockerfile{}, nil, fmt.Errorf("reading Dockerfile.dockerignore: %w", err)
		}
	}
	d, err := ParseDockerfile(string(src))
	return d, ignore, err
}

// find returns a stage's instructions of type T.
func find[T instructions.Command](s instructions.Stage) (out []T) {
	for _, c := range s.Commands {
		if t, ok := c.(T); ok {
			out = append(out, t)
		}
	}
	return out
}

func line(c instructions.Command) int { return c.Location()[0].Start.Line }

// DockerfileCheck is one named check of services/Dockerfile; ignore holds its ignore file's patterns.
type DockerfileCheck struct {
	Name  string
	Check func(d Dockerfile, ignore []string) []string
}

// DockerfileChecks returns every check of services/Dockerfile.
func DockerfileChecks() []DockerfileCheck {
	stages := func(check func(build, run instructions.Stage) []string) func(Dockerfile, []string) []string {
		return func(d Dockerfile, _ []string) []string {
			if len(d.Stages) < 2 {
				return []string{"not a multi-stage build"}
			}
			return check(d.Stages[0], d.Stages[len(d.Stages)-1])
		}
	}
	return []DockerfileCheck{
		{"builder image", stages(func(b, _ instructions.Stage) []string {
			return when(nil, b.BaseName != "golang:1.26-bookworm", "builder image is %q, want golang:1.26-bookworm", b.BaseName)
		})},
		{"runtime image", stages(func(_, r instructions.Stage) (out []string) {
			out = when(out, r.BaseName != "gcr.io/distroless/static-debian12:nonroot", "runtime image is %q, want gcr.io/distroless/static-debian12:nonroot", r.BaseName)
			for _, u := range find[*instructions.UserCommand](r) {
				user, _, _ := strings.Cut(u.User, ":")
				out = when(out, user == "root" || user == "0", "line %d: runtime stage switches to root", line(u))
			}
			return when(out, len(find[*instructions.RunCommand](r)) > 0, "runtime stage has RUN instructions; distroless has no shell")
		})},
		{"builds SERVICE", stages(func(b, _ instructions.Stage) (out []string) {
			declared := slices.ContainsFunc(find[*instructions.ArgCommand](b), func(a *instructions.ArgCommand) bool {
				return slices.ContainsFunc(a.Args, func(kv instructions.KeyValuePairOptional) bool { return kv.Key == "SERVICE" })
			})
			builds := slices.ContainsFunc(find[*instructions.RunCommand](b), func(r *instructions.RunCommand) bool {
				cmd := strings.Join(r.CmdLine, " ")
				return strings.Contains(cmd, "go build") && (strings.Contains(cmd, "./services/${SERVICE}") || strings.Contains(cmd, "./services/$SERVICE"))
			})
			work := slices.ContainsFunc(find[*instructions.CopyCommand](b), func(c *instructions.CopyCommand) bool {
				return slices.Contains(c.SourcePaths, ".") || slices.Contains(c.SourcePaths, "go.work")
			})
			out = when(out, !declared, "builder stage does not declare ARG SERVICE")
			out = when(out, !builds, "builder stage does not go build ./services/${SERVICE}")
			return when(out, !work, "builder stage does not copy go.work (the workspace resolves the local modules)")
		})},
		{"static binary", stages(func(b, _ instructions.Stage) []string {
			static := slices.ContainsFunc(find[*instructions.EnvCommand](b), func(e *instructions.EnvCommand) bool {
				return slices.ContainsFunc(e.Env, func(kv instructions.KeyValuePair) bool { return kv.Key == "CGO_ENABLED" && kv.Value == "0" })
			}) || slices.ContainsFunc(find[*instructions.RunCommand](b), func(r *instructions.RunCommand) bool { return slices.Contains(r.CmdLine, "CGO_ENABLED=0") })
			return when(nil, !static, "builder stage does not set CGO_ENABLED=0 (a cgo binary does not run on distroless/static)")
		})},
		{"entrypoint is the binary", stages(func(_, r instructions.Stage) []string {
			eps := find[*instructions.EntrypointCommand](r)
			switch {
			case len(eps) == 0:
				return []string{"runtime stage has no ENTRYPOINT"}
			case eps[len(eps)-1].PrependShell:
				return []string{"ENTRYPOINT is in shell form; distroless has no shell (use the exec form)"}
			}
			bin := eps[len(eps)-1].CmdLine[0]
			copied := slices.ContainsFunc(find[*instructions.CopyCommand](r), func(c *instructions.CopyCommand) bool { return c.From != "" && c.DestPath == bin })
			return when(nil, !copied, "ENTRYPOINT %s is not copied from the builder stage", bin)
		})},
		{"exposes nothing", func(d Dockerfile, _ []string) (out []string) {
			for _, st := range d.Stages {
				for _, e := range find[*instructions.ExposeCommand](st) {
					out = append(out, fmt.Sprintf("line %d: EXPOSE %s; ports differ per service and belong to compose and k8s", line(e), strings.Join(e.Ports, " ")))
				}
			}
			return out
		}},
		{"context keeps sources", func(_ Dockerfile, ignore []string) (out []string) {
			for _, p := range ignore {
				p = strings.Trim(p, "/")
				out = when(out, p == "*" || p == "**" || slices.Contains([]string{"go.work", "go.work.sum", "libs", "services", "schemas"}, p), "ignore file excludes %q, which the build needs", p)
			}
			return out
		}},
	}
}
