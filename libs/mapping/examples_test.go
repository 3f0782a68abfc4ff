package mapping

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata")

// exampleModified is the dateLastModified the examples' records carry.
var exampleModified = time.Date(2026, 9, 1, 6, 0, 0, 0, time.UTC)

type goldenFinding struct {
	Kind    string `json:"kind"`
	Column  string `json:"column"`
	Target  string `json:"target"`
	Message string `json:"message"`
}

type goldenRow struct {
	Line     int             `json:"line"`
	Record   json.RawMessage `json:"record"`
	Findings []goldenFinding `json:"findings,omitempty"`
}

// TestExamples maps every sample export under examples/ with its shape's rules: each must map without
// a single row error, and the records must match the golden files (go test -update rewrites them).
func TestExamples(t *testing.T) {
	shapes, err := filepath.Glob("examples/*/rules.yaml")
	if err != nil || len(shapes) == 0 {
		t.Fatalf("examples: %v %v", shapes, err)
	}
	for _, rulesFile := range shapes {
		dir := filepath.Dir(rulesFile)
		shape := filepath.Base(dir)
		src, err := os.ReadFile(rulesFile)
		if err != nil {
			t.Fatal(err)
		}
		rules, err := Parse(src, Limits{})
		if err != nil {
			t.Fatalf("%s: %v", rulesFile, err)
		}
		files, err := filepath.Glob(filepath.Join(dir, "*"))
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range rules.Exports() {
			exp, _ := rules.Export(name)
			exp = exp.WithModified(exampleModified)
			t.Run(shape+"/"+name, func(t *testing.T) {
				var matched []string
				for _, f := range files {
					if exp.Matches(f) {
						matched = append(matched, f)
					}
				}
				if len(matched) != 1 {
					t.Fatalf("export %s matches %v, want one sample file", name, matched)
				}
				var rows []goldenRow
				for _, row := range mapFile(t, exp, matched[0]) {
					if len(row.Errors) > 0 {
						t.Errorf("%s: unexpected errors: %v", matched[0], row.Errors)
						continue
					}
					g := goldenRow{Line: row.Line, Record: row.Record}
					for _, f := range row.Findings {
						g.Findings = append(g.Findings, goldenFinding{f.Kind, f.Column, f.Target, f.Message})
					}
					rows = append(rows, g)
				}
				if len(rows) < 10 {
					t.Errorf("%s: %d rows, want at least 10", matched[0], len(rows))
				}
				got, err := json.MarshalIndent(rows, "", "  ")
				if err != nil {
					t.Fatal(err)
				}
				checkGolden(t, filepath.Join("testdata", shape+"."+name+".golden.json"), append(got, '\n'))
			})
		}
	}
}

func mapFile(t *testing.T, exp *Export, file string) []Row {
	t.Helper()
	fh, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close() //nolint:errcheck // read only
	var rows []Row
	if err := exp.Map(filepath.Base(file), fh, func(r Row) error {
		rows = append(rows, r)
		return nil
	}); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return rows
}

func checkGolden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the output (go test -update rewrites it):\n%s", path, got)
	}
}

type goldenError struct {
	Column  string `json:"column"`
	Index   int    `json:"columnIndex,omitempty"`
	Target  string `json:"target,omitempty"`
	Message string `json:"message"`
}

type brokenRow struct {
	Line     int             `json:"line"`
	Record   json.RawMessage `json:"record,omitempty"`
	Errors   []goldenError   `json:"errors,omitempty"`
	Findings []goldenFinding `json:"findings,omitempty"`
	Raw      string          `json:"raw"`
}

// TestBrokenExamples maps deliberately broken samples (testdata/broken/<shape>/) with their shape's rules:
// the golden files show the errors each row gets, and the rows around broken ones still map.
func TestBrokenExamples(t *testing.T) {
	files, err := filepath.Glob("testdata/broken/*/*")
	if err != nil || len(files) == 0 {
		t.Fatalf("broken samples: %v %v", files, err)
	}
	for _, file := range files {
		shape := filepath.Base(filepath.Dir(file))
		t.Run(shape+"/"+filepath.Base(file), func(t *testing.T) {
			src, err := os.ReadFile(filepath.Join("examples", shape, "rules.yaml"))
			if err != nil {
				t.Fatal(err)
			}
			rules, err := Parse(src, Limits{})
			if err != nil {
				t.Fatal(err)
			}
			exp, ok := rules.Match(file)
			if !ok {
				t.Fatalf("no export matches %s", file)
			}
			var rows []brokenRow
			bad := 0
			for _, row := range mapFile(t, exp.WithModified(exampleModified), file) {
				br := brokenRow{Line: row.Line, Record: row.Record, Raw: string(row.Raw)}
				for _, e := range row.Errors {
					br.Errors = append(br.Errors, goldenError{e.Column, e.ColumnIndex, e.Target, e.Message})
				}
				for _, f := range row.Findings {
					br.Findings = append(br.Findings, goldenFinding{f.Kind, f.Column, f.Target, f.Message})
				}
				if len(row.Errors) > 0 {
					bad++
				}
				rows = append(rows, br)
			}
			if bad == 0 || bad == len(rows) {
				t.Errorf("%d of %d rows have errors: a broken sample needs both", bad, len(rows))
			}
			got, err := json.MarshalIndent(rows, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			name := strings.TrimSuffix(filepath.Base(file), filepath.Ext(file))
			checkGolden(t, filepath.Join("testdata", "broken."+shape+"."+name+".golden.json"), append(got, '\n'))
		})
	}
}
