package deploycheck

import (
	"slices"
	"strings"
	"testing"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
)

func TestDockerfile(t *testing.T) {
	d, err := LoadDockerfile(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	for _, check := range DockerfileChecks() {
		t.Run(check.Name, func(t *testing.T) {
			for _, p := range check.Check(platformContract(), d) {
				t.Error(p)
			}
		})
	}
}

// goodDockerfile passes every check; the broken cases each change one thing.
const goodDockerfile = `# syntax=docker/dockerfile:1
FROM golang:1.26-bookworm AS build
ARG SERVICE
WORKDIR /src
ENV CGO_ENABLED=0
COPY . .
RUN --mount=type=cache,target=/root/.cache/go-build \
    go build -o /out/service ./services/${SERVICE}

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/service /usr/local/bin/service
ENTRYPOINT ["/usr/local/bin/service"]
`

// loadDockerfile loads src as services/Dockerfile of a repository skeleton.
func loadDockerfile(t *testing.T, src string) ([]instructions.Stage, error) {
	t.Helper()
	root := t.TempDir()
	write(t, root, "services/Dockerfile", src)
	return LoadDockerfile(root)
}

func mustLoadDockerfile(t *testing.T, src string) []instructions.Stage {
	t.Helper()
	d, err := loadDockerfile(t, src)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestDockerfileChecksCatchBrokenFiles(t *testing.T) {
	tests := []struct {
		check, name, from, to string
		want                  string
	}{
		{check: "builder stage", name: "old go", from: "golang:1.26-bookworm", to: "golang:1.22", want: `builder image is "golang:1.22"`},
		{check: "builder stage", name: "single stage", from: "FROM gcr.io/distroless/static-debian12:nonroot", to: "", want: "not a multi-stage build"},
		{check: "runtime stage", name: "alpine runtime", from: "FROM gcr.io/distroless/static-debian12:nonroot", to: "FROM alpine:3.20", want: `runtime image is "alpine:3.20"`},
		{check: "runtime stage", name: "root user", from: "ENTRYPOINT", to: "USER root\nENTRYPOINT", want: "runtime stage switches to root"},
		{check: "runtime stage", name: "run in distroless", from: "ENTRYPOINT", to: "RUN chmod +x /usr/local/bin/service\nENTRYPOINT", want: "distroless has no shell"},
		{check: "builder stage", name: "no arg", from: "ARG SERVICE\n", to: "", want: "does not declare ARG SERVICE"},
		{check: "builder stage", name: "fixed package", from: "./services/${SERVICE}", to: "./services/gateway", want: "does not go build ./services/${SERVICE}"},
		{check: "builder stage", name: "no workspace", from: "COPY . .", to: "COPY services/gateway .", want: "does not copy go.work"},
		{check: "builder stage", name: "cgo on", from: "ENV CGO_ENABLED=0", to: "ENV CGO_ENABLED=1", want: "CGO_ENABLED=0"},
		{check: "runtime stage", name: "shell form", from: `ENTRYPOINT ["/usr/local/bin/service"]`, to: "ENTRYPOINT /usr/local/bin/service", want: "shell form"},
		{check: "runtime stage", name: "not copied", from: `["/usr/local/bin/service"]`, to: `["/app"]`, want: "ENTRYPOINT /app is not copied"},
		{check: "runtime stage", name: "missing", from: `ENTRYPOINT ["/usr/local/bin/service"]`, to: "", want: "no ENTRYPOINT"},
		{check: "runtime stage", name: "expose", from: "ENTRYPOINT", to: "EXPOSE 8080\nENTRYPOINT", want: "EXPOSE 8080"},
	}
	index := newCheckIndex(DockerfileChecks(), func(c Check[[]instructions.Stage]) string { return c.Name })
	for _, c := range DockerfileChecks() {
		if problems := c.Check(platformContract(), mustLoadDockerfile(t, goodDockerfile)); len(problems) > 0 {
			t.Errorf("%s: good Dockerfile reported %q", c.Name, problems)
		}
	}
	for _, tc := range tests {
		t.Run(tc.check+"/"+tc.name, func(t *testing.T) {
			check := index.get(t, tc.check)
			src := goodDockerfile
			if tc.from != "" {
				if !strings.Contains(src, tc.from) {
					t.Fatalf("good Dockerfile has no %q", tc.from)
				}
				src = strings.Replace(src, tc.from, tc.to, 1)
			}
			requireProblem(t, check.Check(platformContract(), mustLoadDockerfile(t, src)), tc.want)
		})
	}
	index.requireCovered(t)
}

func TestParseDockerfileJoinsContinuations(t *testing.T) {
	d := mustLoadDockerfile(t, goodDockerfile)
	if len(d) != 2 || d[0].Name != "build" {
		t.Fatalf("stages %+v, want build and runtime", d)
	}
	runs := find[*instructions.RunCommand](d[0])
	if len(runs) != 1 || !slices.Contains(runs[0].FlagsUsed, "mount") || !strings.Contains(strings.Join(runs[0].CmdLine, " "), "go build") || runs[0].Location()[0].Start.Line != 7 {
		t.Fatalf("RUN %+v, want one instruction from line 7 with both continuation lines", runs)
	}
}

// TestParseDockerfileRejectsBrokenFiles: buildkit's parser refuses what docker build would.
func TestParseDockerfileRejectsBrokenFiles(t *testing.T) {
	for _, src := range []string{"FROM golang:1.26-bookworm AS\n", "FROM a:1\nCOPY --from\n", "FROM a:1\nFROBNICATE x\n"} {
		if _, err := loadDockerfile(t, src); err == nil {
			t.Errorf("%q parsed without error", src)
		}
	}
}
