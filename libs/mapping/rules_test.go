package mapping

import (
	"errors"
	"strings"
	"testing"
)

// usersRules wraps field rules (YAML, indented for a fields list) in a one-export document; the first
// field rule is on line 7.
func usersRules(format, fields string) string {
	return "version: 1\nexports:\n  - name: s\n    format: " + format + "\n    collection: users\n    fields:\n" + fields
}

func TestParseErrors(t *testing.T) {
	const id = "      - {target: sourcedId, from: id}\n"
	tests := []struct {
		name string
		src  string
		want []string // substrings of the error
	}{
		{"empty document", "", []string{"the document is empty"}},
		{"yaml syntax", "version: 1\nexports: [\n", []string{"line 2", "did not find expected node content"}},
		{"unknown top-level key", "version: 1\nexport: []\n", []string{"line 2", "export", "is not a key of the rules document"}},
		{"unknown export key", "version: 1\nexports:\n  - name: s\n    formt: csv\n", []string{"line 4", "formt", "an export"}},
		{"unknown field key", usersRules("csv", id+"      - target: givenName\n        fromm: First\n"), []string{"line 9", "fromm", "a field rule"}},
		{"wrong type", usersRules("csv", id+"      - {target: givenName, from: First, required: maybe}\n"), []string{"line 8", "maybe"}},
		{"version", "version: 2\nexports:\n  - {name: s, format: csv, collection: users, fields: [{target: sourcedId, from: id}]}\n", []string{"version must be 1"}},
		{"no exports", "version: 1\n", []string{"defines no export"}},
		{"unknown collection", "version: 1\nexports:\n  - name: s\n    format: csv\n    collection: pupils\n    fields: [{target: sourcedId, from: id}]\n",
			[]string{"line 5", `export "s"`, `collection "pupils" is not one of orgs`}},
		{"unknown target", usersRules("csv", id+"      - {target: birthDate, from: DOB}\n"),
			[]string{"line 8", `export "s", field 2 (birthDate)`, `users has no field "birthDate" (demographics has)`}},
		{"from and const", usersRules("csv", id+"      - target: givenName\n        from: First\n        const: Ann\n"),
			[]string{"line 10", "field 2 (givenName)", "from and const cannot both be set"}},
		{"no source", usersRules("csv", id+"      - target: givenName\n"), []string{"line 8", "give the value's source"}},
		{"bad date layout", usersRules("csv", id+"      - target: roles[0].beginDate\n        from: Start\n        date: MM/DD/YYY\n"),
			[]string{"line 10", "field 2 (roles[0].beginDate)", `"YYY" is not one of`}},
		{"date layout without day", usersRules("csv", id+"      - {target: \"roles[0].beginDate\", from: Start, date: MM/YYYY}\n"), []string{"needs a year, a month and a day"}},
		{"date layout ambiguous", usersRules("csv", id+"      - {target: \"roles[0].beginDate\", from: Start, date: MDYYYY}\n"), []string{"need a separator"}},
		{"date on a boolean", usersRules("csv", id+"      - {target: enabledUser, from: On, date: YYYY-MM-DD}\n"), []string{"date does not apply to enabledUser"}},
		{"bad JSON path", usersRules("json", "      - {target: sourcedId, from: id}\n"), []string{"line 7", `JSON path "id" must start with $`}},
		{"unclosed JSON path", usersRules("json", "      - {target: sourcedId, from: \"$.ids[0\"}\n"), []string{"unclosed ["}},
		{"JSON path of the whole record", usersRules("json", "      - {target: sourcedId, from: $}\n"), []string{"names the whole record"}},
		{"bad records path", "version: 1\nexports:\n  - name: s\n    format: json\n    records: students\n    collection: users\n    fields: [{target: sourcedId, from: $.id}]\n",
			[]string{"line 5", "records:", "must start with $"}},
		{"duplicated target", usersRules("csv", id+"      - {target: givenName, from: First}\n      - {target: givenName, from: Preferred}\n"),
			[]string{"line 9", "field 3 (givenName)", "field 2 already writes givenName"}},
		{"duplicated reference spelled two ways", "version: 1\nexports:\n  - name: e\n    format: csv\n    collection: enrollments\n    fields:\n" +
			id + "      - {target: school, from: School}\n      - {target: school.sourcedId, from: Building}\n",
			[]string{"line 9", "already writes school.sourcedId"}},
		{"no sourcedId", usersRules("csv", "      - {target: givenName, from: First}\n"), []string{"line 3", "no field rule writes sourcedId"}},
		{"split without index", usersRules("csv", id+"      - {target: givenName, from: Name, split: {sep: \",\"}}\n"), []string{"index is required"}},
		{"split without sep", usersRules("csv", id+"      - {target: givenName, from: Name, split: {index: 0}}\n"), []string{"sep is required"}},
		{"unmapped without map", usersRules("csv", id+"      - {target: givenName, from: Name, unmapped: keep}\n"), []string{"unmapped needs a map"}},
		{"unmapped default without default", usersRules("csv", id+"      - {target: role, from: R, map: {T: teacher}, unmapped: default}\n"), []string{"unmapped: default needs a default"}},
		{"unmapped value", usersRules("csv", id+"      - {target: role, from: R, map: {T: teacher}, unmapped: ignore}\n"), []string{"unmapped must be"}},
		{"bad case", usersRules("csv", id+"      - {target: givenName, from: Name, case: camel}\n"), []string{"case must be upper, lower or title"}},
		{"const not a boolean", usersRules("csv", id+"      - {target: enabledUser, const: \"yes\"}\n"), []string{"line 8", `const "yes" is not true or false`}},
		{"map value not a boolean", usersRules("csv", id+"      - {target: enabledUser, from: On, map: {Y: \"yes\"}}\n"), []string{`map value for "Y" "yes" is not true or false`}},
		{"default not a date", usersRules("csv", id+"      - {target: \"roles[0].beginDate\", from: Start, default: 09/01/2026}\n"), []string{"is not a date such as 2026-09-01"}},
		{"const with a transform", usersRules("csv", id+"      - {target: role, const: teacher, case: upper}\n"), []string{"case does not apply to a const"}},
		{"sep without concat", usersRules("csv", id+"      - {target: givenName, from: Name, sep: \" \"}\n"), []string{"sep is for concat"}},
		{"concat of literals only", usersRules("csv", id+"      - {target: givenName, concat: [\"a\", 'b']}\n"), []string{"only literals"}},
		{"bad role index", usersRules("csv", id+"      - {target: \"roles[x].role\", const: student}\n"), []string{"write roles[N].<field>"}},
		{"unknown role field", usersRules("csv", id+"      - {target: \"roles[0].grade\", const: student}\n"), []string{"field one of roleType, role, org"}},
		{"metadata without key", usersRules("csv", id+"      - {target: metadata, from: X}\n"), []string{"metadata.<key>"}},
		{"list without brackets", usersRules("csv", id+"      - {target: grades, from: G}\n"), []string{"write grades[]"}},
		{"records on CSV", "version: 1\nexports:\n  - name: s\n    format: csv\n    records: $.x\n    collection: users\n    fields: [{target: sourcedId, from: id}]\n",
			[]string{"line 5", "records is for JSON exports"}},
		{"bad format", "version: 1\nexports:\n  - name: s\n    format: xml\n    collection: users\n    fields: [{target: sourcedId, from: id}]\n", []string{"line 4", "format must be csv or json"}},
		{"bad glob", "version: 1\nexports:\n  - name: s\n    match: \"[\"\n    format: csv\n    collection: users\n    fields: [{target: sourcedId, from: id}]\n", []string{"line 4", "not a valid glob"}},
		{"bad delimiter", "version: 1\nexports:\n  - name: s\n    format: csv\n    delimiter: \"ab\"\n    collection: users\n    fields: [{target: sourcedId, from: id}]\n", []string{"line 5", "delimiter must be one character"}},
		{"duplicate export", "version: 1\nexports:\n  - {name: s, format: csv, collection: users, fields: [{target: sourcedId, from: id}]}\n  - {name: s, format: csv, collection: orgs, fields: [{target: sourcedId, from: id}]}\n",
			[]string{"line 4", "another export has this name"}},
		{"duplicate map key", usersRules("csv", id+"      - {target: role, from: R, map: {T: teacher, T: aide}}\n"), []string{"line 8", "already defined"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.src), Limits{})
			if !errors.Is(err, ErrInvalidRules) {
				t.Fatalf("Parse: %v, want an error wrapping ErrInvalidRules", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

// TestParseReportsEveryProblem checks that one Parse reports all broken rules, not the first only.
func TestParseReportsEveryProblem(t *testing.T) {
	src := usersRules("csv", "      - {target: sourcedId, from: id}\n      - {target: nickname, from: N}\n      - {target: givenName, from: A, const: B}\n")
	_, err := Parse([]byte(src), Limits{})
	if err == nil || !strings.Contains(err.Error(), "line 8") || !strings.Contains(err.Error(), "line 9") {
		t.Fatalf("Parse: %v, want errors on lines 8 and 9", err)
	}
}

func TestParseAcceptsYAMLScalars(t *testing.T) {
	// Unquoted YAML booleans and numbers are read as their text.
	src := usersRules("csv", "      - {target: sourcedId, from: id}\n      - {target: enabledUser, const: true}\n"+
		"      - {target: \"grades[]\", from: G, map: {1: \"01\", K: KG}}\n")
	rules, err := Parse([]byte(src), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	exp, _ := rules.Export("s")
	rows := mapCSV(t, exp, "id,G\nu1,1\n")
	if got, want := string(rows[0].Record), `{"sourcedId":"u1","status":"active","enabledUser":true,"grades":["01"]}`; got != want {
		t.Errorf("record %s, want %s", got, want)
	}
}

func TestExportLookup(t *testing.T) {
	src := "version: 1\nexports:\n" +
		"  - {name: a, match: \"Students*.CSV\", format: csv, collection: users, fields: [{target: sourcedId, from: id}]}\n" +
		"  - {name: b, match: \"*.json\", format: json, collection: users, fields: [{target: sourcedId, from: $.id}]}\n" +
		"  - {name: c, format: csv, collection: orgs, fields: [{target: sourcedId, from: id}]}\n"
	rules, err := Parse([]byte(src), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ file, want string }{
		{"students_2026.csv", "a"}, {"uploads/STUDENTS.csv", "a"}, {`C:\drop\students-x.csv`, "a"},
		{"sections.json", "b"}, {"orgs.csv", ""},
	} {
		got := ""
		if e, ok := rules.Match(tt.file); ok {
			got = e.Name()
		}
		if got != tt.want {
			t.Errorf("Match(%q) = %q, want %q", tt.file, got, tt.want)
		}
	}
	if e, ok := rules.Export("c"); !ok || e.Collection() != "orgs" || e.Format() != "csv" {
		t.Errorf("Export(c) = %v %v", e, ok)
	}
	if _, ok := rules.Export("d"); ok {
		t.Error("Export(d) found")
	}
	b, _ := rules.Export("b")
	if err := b.MapCSV("x.csv", strings.NewReader("id\n1\n"), func(Row) error { return nil }); !errors.Is(err, ErrWrongFormat) {
		t.Errorf("MapCSV on a JSON export: %v", err)
	}
}
