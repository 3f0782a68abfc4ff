package deploycheck

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/edtech-analytics/platform/"

// pkg is what go list says of one of the workspace's packages.
type pkg struct {
	ImportPath string
	Imports    []string
	Deps       []string
}

// workspacePackages lists every package of the workspace's modules, with its imports and dependencies.
func workspacePackages(t *testing.T) map[string]pkg {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), "go", "list", "-deps=false", "-json=ImportPath,Imports,Deps", module+"...")
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	pkgs := map[string]pkg{}
	dec := json.NewDecoder(&out)
	for {
		var p pkg
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		pkgs[strings.TrimPrefix(p.ImportPath, module)] = p
	}
	if len(pkgs) < 40 {
		t.Fatalf("go list found %d packages: the pattern no longer covers the workspace", len(pkgs))
	}
	return pkgs
}

// testTooling are the packages that exist for tests and local runs only.
var testTooling = []string{"libs/testenv/devenv", "libs/testenv/kafkatest", "libs/testenv/sampledata", "libs/testenv/loadgen", "libs/chutil/chtest", "libs/conf/conftest", "libs/pgutil/pgtest", "libs/keyring/keyringtest",
	"libs/testenv/deploycheck", "github.com/twmb/franz-go/pkg/kfake"}

func isTooling(path string) bool {
	return slices.ContainsFunc(testTooling, func(p string) bool {
		return strings.TrimPrefix(path, module) == p || strings.HasPrefix(strings.TrimPrefix(path, module), p+"/")
	})
}

// TestPackagesFollowTheArchitecture checks the dependency rules of docs/architecture.md on the workspace's
// non-test code.
func TestPackagesFollowTheArchitecture(t *testing.T) {
	pkgs := workspacePackages(t)
	for name, p := range pkgs {
		for _, imp := range p.Imports {
			dep := strings.TrimPrefix(imp, module)
			if dep == imp {
				continue // outside the platform
			}
			switch {
			case strings.HasPrefix(name, "libs/") && strings.HasPrefix(dep, "services/"):
				t.Errorf("%s imports %s: libs never import services", name, dep)
			case strings.HasPrefix(name, "services/") && strings.HasPrefix(dep, "services/") && !mayImportService(name, dep):
				t.Errorf("%s imports %s: a service imports another only as the dev stack does, or ctl a store's rebuild", name, dep)
			case strings.HasPrefix(name, "libs/") && !isTooling(name) && isTooling(imp):
				t.Errorf("%s imports the test tooling %s", name, dep)
			}
		}
	}
	// A service's runtime (its main package and app) links no test tooling.
	for name, p := range pkgs {
		if !isServiceRuntime(name) {
			continue
		}
		for _, d := range p.Deps {
			if isTooling(d) {
				t.Errorf("%s links the test tooling %s", name, strings.TrimPrefix(d, module))
			}
		}
	}
	// The process skeleton links neither Kafka nor Avro: a service that uses neither does not carry them.
	svc, ok := pkgs["libs/svc"]
	if !ok {
		t.Fatal("libs/svc not found")
	}
	if !slices.Contains(svc.Deps, "log/slog") {
		t.Fatalf("go list gave libs/svc no dependencies: %v", svc.Deps)
	}
	for _, d := range svc.Deps {
		if strings.HasPrefix(d, "github.com/twmb/franz-go") || strings.HasPrefix(d, "github.com/hamba/avro") {
			t.Errorf("libs/svc depends on %s", d)
		}
	}
}

// service is the service directory of a package under services/.
func service(name string) string {
	parts := strings.Split(name, "/")
	if len(parts) < 2 {
		return ""
	}
	return parts[1]
}

// mayImportService tells whether the service package name may import dep, a package of a service: its
// own, or any for the dev stack, or a store's rebuild (the sink's, the aggregator's) for ctl.
func mayImportService(name, dep string) bool {
	return service(name) == service(dep) || service(name) == "devstack" || (service(name) == "ctl" && (dep == "services/sink/rebuild" || dep == "services/aggregator/rebuild"))
}

// isServiceRuntime tells whether name is a service's main package or its app package (the dev stack is
// tooling).
func isServiceRuntime(name string) bool {
	parts := strings.Split(name, "/")
	if parts[0] != "services" || service(name) == "devstack" {
		return false
	}
	return len(parts) == 2 || (len(parts) == 3 && parts[2] == "app")
}
