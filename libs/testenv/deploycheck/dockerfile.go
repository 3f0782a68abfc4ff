package deploycheck

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

// LoadDockerfile parses services/Dockerfile under root with buildkit's parser into its build stages of
// typed instructions.
func LoadDockerfile(root string) ([]instructions.Stage, error) {
	src, err := os.ReadFile(filepath.Join(root, "services", "Dockerfile"))
	if err != nil {
		return nil, fmt.Errorf("reading Dockerfile: %w", err)
	}
	ast, err := parser.Parse(strings.NewReader(string(src)))
	if err != nil {
		return nil, fmt.Errorf("parsing Dockerfile: %w", err)
	}
	stages, _, err := instructions.Parse(ast.AST, nil)
	if err != nil {
		return nil, fmt.Errorf("parsing Dockerfile: %w", err)
	}
	return stages, nil
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

// DockerfileChecks returns the checks of services/Dockerfile, the one recipe of every service's image: a
// static build of ./services/${SERVICE} in the workspace, run by a distroless image as a non-root user.
func DockerfileChecks() []Check[[]instructions.Stage] {
	stages := func(check func(build, run instructions.Stage) []string) func(Contract, []instructions.Stage) []string {
		return func(_ Contract, stages []instructions.Stage) []string {
			if len(stages) < 2 {
				return []string{"not a multi-stage build"}
			}
			return check(stages[0], stages[len(stages)-1])
		}
	}
	return []Check[[]instructions.Stage]{
		{"builder stage", stages(func(b, _ instructions.Stage) (out []string) {
			var words []string // what the stage runs, and the environment it sets
			for _, r := range find[*instructions.RunCommand](b) {
				words = append(words, r.CmdLine...)
			}
			for _, e := range find[*instructions.EnvCommand](b) {
				for _, kv := range e.Env {
					words = append(words, kv.String())
				}
			}
			script := strings.Join(words, " ")
			arg := slices.ContainsFunc(find[*instructions.ArgCommand](b), func(a *instructions.ArgCommand) bool { return a.Args[0].Key == "SERVICE" })
			work := slices.ContainsFunc(find[*instructions.CopyCommand](b), func(c *instructions.CopyCommand) bool {
				return slices.Contains(c.SourcePaths, ".") || slices.Contains(c.SourcePaths, "go.work")
			})
			out = when(out, b.BaseName != "golang:1.26-bookworm", "builder image is %q, want golang:1.26-bookworm", b.BaseName)
			out = when(out, !arg, "builder stage does not declare ARG SERVICE")
			out = when(out, !strings.Contains(script, "go build") || !strings.Contains(script, "./services/${SERVICE}"), "builder stage does not go build ./services/${SERVICE}")
			out = when(out, !work, "builder stage does not copy go.work (the workspace resolves the local modules)")
			return when(out, !strings.Contains(script, "CGO_ENABLED=0"), "builder stage does not set CGO_ENABLED=0 (a cgo binary does not run on distroless/static)")
		})},
		{"runtime stage", stages(func(b, r instructions.Stage) (out []string) {
			for _, e := range slices.Concat(find[*instructions.ExposeCommand](b), find[*instructions.ExposeCommand](r)) {
				out = append(out, fmt.Sprintf("line %d: EXPOSE %s; ports differ per service and belong to compose and k8s", e.Location()[0].Start.Line, strings.Join(e.Ports, " ")))
			}
			out = when(out, r.BaseName != "gcr.io/distroless/static-debian12:nonroot", "runtime image is %q, want gcr.io/distroless/static-debian12:nonroot", r.BaseName)
			for _, u := range find[*instructions.UserCommand](r) {
				user, _, _ := strings.Cut(u.User, ":")
				out = when(out, user == "root" || user == "0", "line %d: runtime stage switches to root", u.Location()[0].Start.Line)
			}
			out = when(out, len(find[*instructions.RunCommand](r)) > 0, "runtime stage has RUN instructions; distroless has no shell")
			eps := find[*instructions.EntrypointCommand](r)
			if len(eps) == 0 || eps[len(eps)-1].PrependShell {
				return append(out, "runtime stage has no ENTRYPOINT in exec form; the shell form needs a shell, which distroless has not")
			}
			copied := slices.ContainsFunc(find[*instructions.CopyCommand](r), func(c *instructions.CopyCommand) bool {
				return c.From != "" && c.DestPath == eps[len(eps)-1].CmdLine[0]
			})
			return when(out, !copied, "ENTRYPOINT %s is not copied from the builder stage", eps[len(eps)-1].CmdLine[0])
		})},
	}
}
