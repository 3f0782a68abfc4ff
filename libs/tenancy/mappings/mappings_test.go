package mappings_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/edtech-analytics/platform/libs/mapping"
	"github.com/edtech-analytics/platform/libs/pgutil/pgtest"
	"github.com/edtech-analytics/platform/libs/tenancy/internal/controltest"
	"github.com/edtech-analytics/platform/libs/tenancy/mappings"
)

const rules = `version: 1
exports:
  - name: students
    match: "students*.csv"
    format: csv
    collection: users
    fields:
      - {target: sourcedId, from: Student_Number, required: true}
      - {target: givenName, from: First_Name, required: true}
      - {target: familyName, from: Last_Name, required: true}
`

// TestVersionsAreStoredOnlyOnceTheyParse: each stored set of rules is the source's next version, the
// newest is current, an older one can be read back, rules that do not parse are refused with their line
// and store nothing, and sources are kept apart.
func TestVersionsAreStoredOnlyOnceTheyParse(t *testing.T) {
	pool, store := controltest.Districts(t, pgtest.New)
	ctx := t.Context()
	if _, err := store.Create(ctx, "d1", "D1"); err != nil {
		t.Fatal(err)
	}
	m := mappings.New(pool)
	if _, _, err := m.Current(ctx, "d1", "sis"); !errors.Is(err, mappings.ErrNoRules) {
		t.Fatalf("before any rules: %v", err)
	}
	v1, err := m.Set(ctx, "d1", "sis", []byte(rules), "alice")
	if err != nil || v1.Version != 1 || !slices.Equal(v1.Exports, []string{"students"}) {
		t.Fatalf("first version %+v: %v", v1, err)
	}
	second := strings.Replace(rules, "students*.csv", "pupils*.csv", 1)
	if v, err := m.Set(ctx, "d1", "sis", []byte(second), "bob"); err != nil || v.Version != 2 {
		t.Fatalf("second version %+v: %v", v, err)
	}
	if _, err := m.Set(ctx, "d1", "sis", []byte("version: 1\nexports:\n  - name: x\n    colection: users\n"), "eve"); !errors.Is(err, mapping.ErrInvalidRules) ||
		!strings.Contains(err.Error(), "line 4") {
		t.Fatalf("broken rules: %v", err)
	}
	r, v, err := m.Current(ctx, "d1", "sis")
	if err != nil || v.Version != 2 || v.CreatedBy != "bob" {
		t.Fatalf("current %+v: %v", v, err)
	}
	if _, ok := r.Match("pupils_2026.csv"); !ok {
		t.Fatal("the current rules do not match the second version's glob")
	}
	if r, v, err := m.At(ctx, "d1", "sis", 1); err != nil || v.Version != 1 || v.Text != rules {
		t.Fatalf("version 1 %+v: %v", v, err)
	} else if _, ok := r.Match("students_2026.csv"); !ok {
		t.Fatal("version 1 does not match its own glob")
	}
	if _, _, err := m.At(ctx, "d1", "sis", 3); !errors.Is(err, mappings.ErrNoRules) {
		t.Fatalf("a version never stored: %v", err)
	}
	if _, err := m.Set(ctx, "d1", "lms", []byte(rules), "alice"); err != nil {
		t.Fatal(err)
	}
	list, err := m.List(ctx, "d1", "")
	if err != nil || len(list) != 3 || list[0].SourceID != "lms" || list[1].Version != 2 || list[2].Version != 1 || list[1].Text != "" {
		t.Fatalf("list %+v: %v", list, err)
	}
	if list, err := m.List(ctx, "d1", "sis"); err != nil || len(list) != 2 {
		t.Fatalf("list of sis %+v: %v", list, err)
	}
}
