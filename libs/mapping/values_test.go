package mapping

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// TestValuesWriteTheRecord: an export asked WithValues hands every row its record as values that write
// exactly the row's Record, and the Records are those of the export without values; an export not
// asked hands none.
func TestValuesWriteTheRecord(t *testing.T) {
	shapes, err := filepath.Glob("examples/*/rules.yaml")
	if err != nil || len(shapes) == 0 {
		t.Fatalf("examples: %v %v", shapes, err)
	}
	files, err := filepath.Glob("examples/*/*")
	if err != nil {
		t.Fatal(err)
	}
	broken, err := filepath.Glob("testdata/broken/*/*")
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, broken...)
	checked, nested := 0, 0
	for _, file := range files {
		shape := filepath.Base(filepath.Dir(file))
		if filepath.Base(file) == "rules.yaml" {
			continue
		}
		rules := mustParseFile(t, filepath.Join("examples", shape, "rules.yaml"))
		for _, name := range rules.Exports() {
			exp, _ := rules.Export(name)
			if !exp.Matches(file) {
				continue
			}
			exp = exp.WithModified(exampleModified)
			plain := mapFile(t, exp, file)
			i := 0
			fh, err := os.Open(file)
			if err != nil {
				t.Fatal(err)
			}
			defer fh.Close() //nolint:errcheck // read only
			err = exp.WithValues().Map(filepath.Base(file), fh, func(row Row) error {
				if i >= len(plain) {
					t.Fatalf("%s: more rows with values than without", file)
				}
				if plain[i].Values != nil {
					t.Fatalf("%s:%d: values without WithValues", file, row.Line)
				}
				if !bytes.Equal(plain[i].Record, row.Record) {
					t.Errorf("%s:%d: record %s, with values %s", file, row.Line, plain[i].Record, row.Record)
				}
				i++
				if row.Record == nil {
					if row.Values != nil {
						t.Errorf("%s:%d: a rejected row has values", file, row.Line)
					}
					return nil
				}
				if got := AppendJSON(nil, row.Values); !bytes.Equal(got, row.Record) {
					t.Errorf("%s:%d: values write\n%s\nrecord\n%s", file, row.Line, got, row.Record)
				}
				for _, v := range row.Values {
					if v.Kind == ValueObjects || v.Kind == ValueMetadata {
						nested++
					}
				}
				checked++
				return nil
			})
			if err != nil || i != len(plain) {
				t.Fatalf("%s: %v after %d of %d rows", file, err, i, len(plain))
			}
		}
	}
	if checked < 50 || nested < 20 {
		t.Fatalf("checked %d records (%d objects or metadata): the examples should give more", checked, nested)
	}
}

func mustParseFile(t *testing.T, path string) *Rules {
	t.Helper()
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	rules, err := Parse(src, Limits{})
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return rules
}
