package mapping

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestHeader(t *testing.T) {
	exp := mustParse(t, csvRules, Limits{})
	for _, tt := range []struct {
		name, in string
		want     []string
		err      string
	}{
		{"plain", header + "1,Ann,Lee,K,,x\n", []string{"id", "first", "last", "grade", "start", "note"}, ""},
		{"BOM and CRLF", "\ufeff" + strings.ReplaceAll(header, "\n", "\r\n") + "1,A,B,K,,x\r\n", []string{"id", "first", "last", "grade", "start", "note"}, ""},
		{"quoted", `"id","first name"` + "\n", []string{"id", "first name"}, ""},
		{"empty", "", nil, "the file is empty"},
		{"broken quote", "\"id,first\n", nil, "reading the header"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := exp.Header("in.csv", strings.NewReader(tt.in))
			if tt.err != "" {
				if !errors.Is(err, ErrInvalidExport) || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil || !slices.Equal(got, tt.want) {
				t.Fatalf("Header = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
	jsonExp := mustParse(t, jsonRules, Limits{})
	if got, err := jsonExp.Header("in.json", strings.NewReader(`[{"id":"1"}]`)); got != nil || err != nil {
		t.Fatalf("Header of a JSON export = %q, %v", got, err)
	}
}
