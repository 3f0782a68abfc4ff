package deploycheck

import (
	"slices"
	"strings"
	"testing"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
)

func TestDockerfile(t *testing.T) {
	d, ignore, err := LoadDockerfile(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	for _, check := range DockerfileChecks() {
		t.Run(check.Name, func(t *testing.T) {
			for _, p := range check.Check(d, ignore) {
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

func TestDockerfileChecksCatchBrokenFiles(t *testing.T) {
	tests := []struct {
		check, name, from, to string
		ignore                []string
		want                  string
	}{
		{check: "builder image", name: "old go", from: "golang:1.26-bookworm", to: "golang:1.22", want: `builder image is "golang:1.22"`},
		{check: "builder image", name: "single stage", from: "FROM gcr.io/distroless/static-debian12:nonroot", to: "", want: "not a multi-stage build"},
		{check: "runtime image", name: "alpine runtime", from: "FROM gcr.io/distroless/static-debian12:nonroot", to: "FROM alpine:3.20", want: `runtime image is "alpine:3.20"`},
		{check: "runtime image", name: "root user", from: "ENTRYPOINT", to: "USER root\nENTRYPOINT", want: "runtime stage switches to root"},
		{check: "runtime image", name: "run in distroless", from: "ENTRYPOINT", to: "RUN chmod +x /usr/local/bin/service\nENTRYPOINT", want: "distroless has no shell"},
		{check: "builds SERVICE", name: "no arg", from: "ARG SERVICE\n", to: "", want: "does not declare ARG SERVICE"},
		{check: "builds SERVICE", name: "fixed package", from: "./services/${SERVICE}", to: "./services/gateway", want: "does not go build ./services/${SERVICE}"},
		{check: "builds SERVICE", name: "no workspace", from: "COPY . .", to: "COPY services/gateway .", want: "does not copy go.work"},
		{check: "static binary", name: "cgo on", from: "ENV CGO_ENABLED=0", to: "ENV CGO_ENABLED=1", want: "CGO_ENABLED=0"},
		{check: "entrypoint is the binary", name: "shell form", from: `ENTRYPOINT ["/usr/local/bin/service"]`, to: "ENTRYPOINT /usr/local/bin/service", want: "shell form"},
		{check: "entrypoint is the binary", name: "not copied", from: `["/usr/local/bin/service"]`, to: `["/app"]`, want: "ENTRYPOINT /app is not copied"},
		{check: "entrypoint is the binary", name: "missing", from: `ENTRYPOINT ["/usr/local/bin/service"]`, to: "", want: "no ENTRYPOINT"},
		{check: "exposes nothing", name: "expose", from: "ENTRYPOINT", to: "EXPOSE 8080\nENTRYPOINT", want: "EXPOSE 8080"},
		{check: "context keeps sources", name: "libs ignored", ignore: []string{".git", "libs/"}, want: `excludes "libs"`},
		{check: "context keeps sources", name: "everything ignored", ignore: []string{"*", "!services"}, want: `excludes "*"`},
	}
	index := newCheckIndex(DockerfileChecks(), func(c DockerfileCheck) string { return c.Name })
	for _, c := range DockerfileChecks() {
		if problems := c.Check(mustParse(t, goodDockerfile), []string{".git", "k8s"}); len(problems) > 0 {
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
			requireProblem(t, check.Check(mustParse(t, src), tc.ignore), tc.want)
		})
	}
	index.requireCovered(t)
}

func mustParse(t *testing.T, src string) Dockerfile {
	t.Helper()
	d, err := ParseDockerfile(src)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestParseDockerfileJoinsContinuations(t *testing.T) {
	d := mustParse(t, goodDockerfile)
	if len(d.Stages) != 2 || d.Stages[0].Name != "build" {
		t.Fatalf("stages %+v, want build and runtime", d.Stages)
	}
	runs := find[*instructions.RunCommand](d.Stages[0])
	if len(runs) != 1 || !slices.Contains(runs[0].FlagsUsed, "mount") || !strings.Contains(strings.Join(runs[0].CmdLine, " "), "go build") || line(runs[0]) != 7 {
		t.Fatalf("RUN %+v, want one instruction from line 7 with both continuation lines", runs)
	}
}

// TestParseDockerfileRejectsBrokenFiles: buildkit's parser refuses what docker build would.
func TestParseDockerfileRejectsBrokenFiles(t *testing.T) {
	for _, src := range []string{"FROM golang:1.26-bookworm AS\n", "FROM a:1\nCOPY --from\n", "FROM a:1\nFROBNICATE x\n"} {
		if _, err := ParseDockerfile(src); err == nil {
			t.Errorf("%q parsed without error", src)
		}
	}
}
