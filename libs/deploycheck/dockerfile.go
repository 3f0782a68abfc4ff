package deploycheck

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Instruction is one Dockerfile instruction with its continuation lines joined.
type Instruction struct {
	Cmd  string // upper case: FROM, ARG, RUN, ...
	Args string
	Line int
}

// Stage is one build stage: its FROM image, optional name and instructions.
type Stage struct {
	Image        string
	Name         string
	Instructions []Instruction
}

// Dockerfile is a parsed Dockerfile.
type Dockerfile struct {
	Global []Instruction // before the first FROM
	Stages []Stage
}

// ParseDockerfile splits a Dockerfile into stages of instructions. Comments and blank lines are dropped;
// lines ending in a backslash continue on the next line.
func ParseDockerfile(src string) Dockerfile {
	var (
		d       Dockerfile
		pending strings.Builder
		start   int
	)
	add := func(text string, line int) {
		cmd, args, _ := strings.Cut(strings.TrimSpace(text), " ")
		in := Instruction{Cmd: strings.ToUpper(cmd), Args: strings.TrimSpace(args), Line: line}
		if in.Cmd == "FROM" {
			f := strings.Fields(in.Args)
			st := Stage{}
			for i := 0; i < len(f); i++ {
				switch {
				case strings.HasPrefix(f[i], "--"):
				case strings.EqualFold(f[i], "AS") && i+1 < len(f):
					st.Name = f[i+1]
					i++
				case st.Image == "":
					st.Image = f[i]
				}
			}
			d.Stages = append(d.Stages, st)
			return
		}
		if len(d.Stages) == 0 {
			d.Global = append(d.Global, in)
			return
		}
		last := &d.Stages[len(d.Stages)-1]
		last.Instructions = append(last.Instructions, in)
	}
	for i, raw := range strings.Split(src, "\n") {
		line := strings.TrimSpace(raw)
		if strings.HasPrefix(line, "#") || (line == "" && pending.Len() == 0) {
			continue
		}
		if pending.Len() == 0 {
			start = i + 1
		}
		if cont, ok := strings.CutSuffix(line, "\\"); ok {
			pending.WriteString(cont + " ")
			continue
		}
		pending.WriteString(line)
		add(pending.String(), start)
		pending.Reset()
	}
	if pending.Len() > 0 {
		add(pending.String(), start)
	}
	return d
}

// Find returns the stage's instructions of one kind.
func (s Stage) Find(cmd string) []Instruction {
	var out []Instruction
	for _, in := range s.Instructions {
		if in.Cmd == cmd {
			out = append(out, in)
		}
	}
	return out
}

// DockerfileCheck is one named check of services/Dockerfile. Ignore holds the lines of its
// .dockerignore file (nil when there is none).
type DockerfileCheck struct {
	Name  string
	Check func(d Dockerfile, ignore []string) []string
}

// DockerfileChecks returns every check of services/Dockerfile.
func DockerfileChecks() []DockerfileCheck {
	return []DockerfileCheck{
		{"builder image", checkDockerBuilder},
		{"runtime image", checkDockerRuntime},
		{"builds SERVICE", checkDockerService},
		{"static binary", checkDockerStatic},
		{"entrypoint is the binary", checkDockerEntrypoint},
		{"exposes nothing", checkDockerExpose},
		{"context keeps sources", checkDockerIgnore},
	}
}

// LoadDockerfile reads services/Dockerfile and its ignore file under root.
func LoadDockerfile(root string) (Dockerfile, []string, error) {
	src, err := os.ReadFile(filepath.Join(root, "services", "Dockerfile"))
	if err != nil {
		return Dockerfile{}, nil, fmt.Errorf("reading Dockerfile: %w", err)
	}
	var ignore []string
	if b, err := os.ReadFile(filepath.Join(root, "services", "Dockerfile.dockerignore")); err == nil {
		ignore = strings.Split(string(b), "\n")
	}
	return ParseDockerfile(string(src)), ignore, nil
}

func checkDockerBuilder(d Dockerfile, _ []string) []string {
	if len(d.Stages) < 2 {
		return []string{"not a multi-stage build"}
	}
	if img := d.Stages[0].Image; img != "golang:1.26-bookworm" {
		return []string{fmt.Sprintf("builder image is %q, want golang:1.26-bookworm", img)}
	}
	return nil
}

func checkDockerRuntime(d Dockerfile, _ []string) []string {
	if len(d.Stages) == 0 {
		return []string{"no FROM"}
	}
	last := d.Stages[len(d.Stages)-1]
	var out []string
	if last.Image != "gcr.io/distroless/static-debian12:nonroot" {
		out = append(out, fmt.Sprintf("runtime image is %q, want gcr.io/distroless/static-debian12:nonroot", last.Image))
	}
	for _, u := range last.Find("USER") {
		if user, _, _ := strings.Cut(u.Args, ":"); user == "root" || user == "0" {
			out = append(out, fmt.Sprintf("line %d: runtime stage switches to root", u.Line))
		}
	}
	if len(last.Find("RUN")) > 0 {
		out = append(out, "runtime stage has RUN instructions; distroless has no shell")
	}
	return out
}

func checkDockerService(d Dockerfile, _ []string) []string {
	if len(d.Stages) == 0 {
		return []string{"no FROM"}
	}
	build := d.Stages[0]
	declared := slices.ContainsFunc(build.Find("ARG"), func(in Instruction) bool {
		name, _, _ := strings.Cut(in.Args, "=")
		return name == "SERVICE"
	})
	var out []string
	if !declared {
		out = append(out, "builder stage does not declare ARG SERVICE")
	}
	builds := slices.ContainsFunc(build.Find("RUN"), func(in Instruction) bool {
		return strings.Contains(in.Args, "go build") &&
			(strings.Contains(in.Args, "./services/${SERVICE}") || strings.Contains(in.Args, "./services/$SERVICE"))
	})
	if !builds {
		out = append(out, "builder stage does not go build ./services/${SERVICE}")
	}
	copiesWork := slices.ContainsFunc(build.Find("COPY"), func(in Instruction) bool {
		return strings.HasPrefix(in.Args, ". ") || strings.Contains(in.Args, "go.work")
	})
	if !copiesWork {
		out = append(out, "builder stage does not copy go.work (the workspace resolves the local modules)")
	}
	return out
}

func checkDockerStatic(d Dockerfile, _ []string) []string {
	if len(d.Stages) == 0 {
		return []string{"no FROM"}
	}
	for _, in := range d.Stages[0].Instructions {
		if (in.Cmd == "ENV" || in.Cmd == "RUN" || in.Cmd == "ARG") && strings.Contains(in.Args, "CGO_ENABLED=0") {
			return nil
		}
	}
	return []string{"builder stage does not set CGO_ENABLED=0 (a cgo binary does not run on distroless/static)"}
}

func checkDockerEntrypoint(d Dockerfile, _ []string) []string {
	if len(d.Stages) == 0 {
		return []string{"no FROM"}
	}
	last := d.Stages[len(d.Stages)-1]
	eps := last.Find("ENTRYPOINT")
	if len(eps) == 0 {
		return []string{"runtime stage has no ENTRYPOINT"}
	}
	ep := eps[len(eps)-1].Args
	if !strings.HasPrefix(ep, "[") {
		return []string{"ENTRYPOINT is in shell form; distroless has no shell (use the exec form)"}
	}
	bin := strings.Trim(strings.TrimSuffix(strings.TrimPrefix(ep, "["), "]"), `" `)
	bin, _, _ = strings.Cut(bin, `"`)
	copied := slices.ContainsFunc(last.Find("COPY"), func(in Instruction) bool {
		f := strings.Fields(in.Args)
		return strings.Contains(in.Args, "--from=") && len(f) > 0 && f[len(f)-1] == bin
	})
	if !copied {
		return []string{fmt.Sprintf("ENTRYPOINT %s is not copied from the builder stage", bin)}
	}
	return nil
}

func checkDockerExpose(d Dockerfile, _ []string) []string {
	var out []string
	for _, st := range d.Stages {
		for _, in := range st.Find("EXPOSE") {
			out = append(out, fmt.Sprintf("line %d: EXPOSE %s; ports differ per service and belong to compose and k8s", in.Line, in.Args))
		}
	}
	return out
}

func checkDockerIgnore(_ Dockerfile, ignore []string) []string {
	var out []string
	needed := []string{"go.work", "go.work.sum", "libs", "services", "schemas"}
	for _, line := range ignore {
		p := strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(line), "/"), "/")
		if p == "*" || p == "**" || slices.Contains(needed, p) {
			out = append(out, fmt.Sprintf("ignore file excludes %q, which the build needs", p))
		}
	}
	return out
}
