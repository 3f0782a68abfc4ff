package mapping

import (
	"fmt"
	"strings"
	"testing"
)

func mustParse(t testing.TB, src string, lim Limits) *Export {
	t.Helper()
	rules, err := Parse([]byte(src), lim)
	if err != nil {
		t.Fatal(err)
	}
	exp, ok := rules.Export(rules.Exports()[0])
	if !ok {
		t.Fatal("no export")
	}
	return exp
}

func mapCSV(t *testing.T, exp *Export, in string) []Row {
	t.Helper()
	rows, err := collect(exp, in)
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

func collect(exp *Export, in string) ([]Row, error) {
	var rows []Row
	err := exp.Map("in", strings.NewReader(in), func(r Row) error {
		rows = append(rows, r)
		return nil
	})
	return rows, err
}

// summary is a row in one line: "<line> ok" or "<line> err <column>(<index>)|<target>|<message>" for
// its first error, then "; finding <kind> <column>|<target>" for each finding.
func summary(r Row) string {
	var b strings.Builder
	if r.Record != nil {
		fmt.Fprintf(&b, "%d ok", r.Line)
	} else {
		e := r.Errors[0]
		fmt.Fprintf(&b, "%d err %s(%d)|%s|%s", r.Line, e.Column, e.ColumnIndex, e.Target, e.Message)
	}
	for _, f := range r.Findings {
		fmt.Fprintf(&b, "; finding %s %s(%d)|%s", f.Kind, f.Column, f.ColumnIndex, f.Target)
	}
	return b.String()
}
