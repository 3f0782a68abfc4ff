package mapping

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
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

// TestWantedRows: an export WithWanted hands exactly the rows of the whole mapping whose Index it
// admits, the same in every field, and stops at the same file error; Index counts every row.
func TestWantedRows(t *testing.T) {
	files, err := filepath.Glob("examples/*/*")
	if err != nil {
		t.Fatal(err)
	}
	broken, err := filepath.Glob("testdata/broken/*/*")
	if err != nil {
		t.Fatal(err)
	}
	// A file whose quoted field never closes: an error after its rows.
	unclosed := "Student_Number,First_Name,Last_Name,School_ID\n1,A,B,S\n2,A,B,S\n3,\"C,D,S\n4,E,F,S\n"
	type mapped struct {
		rows []Row
		err  string
	}
	mapAll := func(exp *Export, body []byte) mapped {
		var m mapped
		err := exp.Map("f", bytes.NewReader(body), func(r Row) error {
			m.rows = append(m.rows, r)
			return nil
		})
		m.err = fmt.Sprint(err)
		return m
	}
	wanted, skipped := 0, 0
	for _, file := range append(append(files, broken...), "unclosed/students.csv") {
		shape := filepath.Base(filepath.Dir(file))
		if filepath.Base(file) == "rules.yaml" {
			continue
		}
		body := []byte(unclosed)
		if shape == "unclosed" {
			shape = "sis-a"
		} else if body, err = os.ReadFile(file); err != nil {
			t.Fatal(err)
		}
		rules := mustParseFile(t, filepath.Join("examples", shape, "rules.yaml"))
		for _, name := range rules.Exports() {
			exp, _ := rules.Export(name)
			if !exp.Matches(file) {
				continue
			}
			all := mapAll(exp, body)
			if shape == "sis-a" && body[0] == 'S' && string(body) == unclosed && !strings.Contains(all.err, "never closes") {
				t.Fatalf("the unclosed file maps with %s", all.err)
			}
			for i, r := range all.rows {
				if r.Index != i {
					t.Fatalf("%s: row %d has Index %d", file, i, r.Index)
				}
			}
			for _, k := range []int{1, 3} {
				some := mapAll(exp.WithWanted(func(i int) bool { return i%k == k-1 }), body)
				var want []Row
				for _, r := range all.rows {
					if r.Index%k == k-1 {
						want = append(want, r)
					}
				}
				if !reflect.DeepEqual(some.rows, want) || some.err != all.err {
					t.Fatalf("%s, every %d: got %d rows (%s), want %d (%s)", file, k, len(some.rows), some.err, len(want), all.err)
				}
				wanted += len(want)
				skipped += len(all.rows) - len(want)
			}
		}
	}
	if wanted < 100 || skipped < 50 {
		t.Fatalf("%d rows wanted, %d skipped: the examples should give more", wanted, skipped)
	}
}
