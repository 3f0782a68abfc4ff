package records

import (
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/edtech-analytics/platform/schemas"
)

// avrogenDirective is the start of the go:generate line in records.go that writes types_gen.go.
const avrogenDirective = "//go:generate go tool avrogen "

// TestGeneratedTypesAreCurrent runs the go:generate line that writes types_gen.go, with its output sent to
// a temporary file, and fails when the committed file differs: a schema changed without `make generate`.
// The generator is the version go.mod pins, built from the module cache (no network). It also checks that
// the line names every source schema, so a new .avsc cannot be left out of the Go types.
func TestGeneratedTypesAreCurrent(t *testing.T) {
	src, err := os.ReadFile("records.go")
	if err != nil {
		t.Fatal(err)
	}
	var line string
	for l := range strings.Lines(string(src)) {
		if strings.HasPrefix(l, avrogenDirective) {
			line = strings.TrimSpace(l)
		}
	}
	if line == "" {
		t.Fatalf("records.go has no %q line", avrogenDirective)
	}
	args := strings.Fields(strings.TrimPrefix(line, "//go:generate go "))

	sources, err := fs.Glob(schemas.FS, "*.avsc")
	if err != nil {
		t.Fatal(err)
	}
	var named []string
	for _, a := range args {
		if strings.HasSuffix(a, ".avsc") {
			named = append(named, path.Base(a))
		}
	}
	slices.Sort(named)
	if !slices.Equal(named, sources) {
		t.Errorf("the avrogen line in records.go names the schemas\n%v\nbut schemas/ holds\n%v", named, sources)
	}

	i := slices.Index(args, "-o")
	if i < 0 || i+1 >= len(args) {
		t.Fatalf("the avrogen line has no -o FILE: %s", line)
	}
	committed, err := os.ReadFile(args[i+1])
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "types_gen.go")
	args[i+1] = out
	// go test puts its own toolchain first in PATH.
	cmd := exec.CommandContext(t.Context(), "go", args...)
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, msg)
	}
	fresh, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(fresh, committed) {
		t.Errorf("types_gen.go is stale: run `make generate` (or go generate ./libs/records) and commit the result")
	}
}
