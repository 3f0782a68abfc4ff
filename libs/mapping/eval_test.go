package mapping

import (
	"encoding/json"
	"testing"
)

func TestDateLayouts(t *testing.T) {
	tests := []struct{ layout, in, want string }{
		{"MM/DD/YYYY", "03/07/2015", "2015-03-07"},
		{"MM/DD/YYYY", "3/7/2015", ""},
		{"M/D/YYYY", "3/7/2015", "2015-03-07"},
		{"M/D/YYYY", "12/31/2015", "2015-12-31"},
		{"M/D/YY", "9/1/26", "2026-09-01"},
		{"M/D/YY", "9/1/69", "2069-09-01"},
		{"M/D/YY", "9/1/70", "1970-09-01"},
		{"DD.MM.YYYY", "29.02.2024", "2024-02-29"},
		{"DD.MM.YYYY", "29.02.2023", ""},
		{"YYYYMMDD", "20260901", "2026-09-01"},
		{"YYYY-MM-DD", "2026-09-01T00:00:00Z", ""},
		{"YYYY-MM-DD", "2026-13-01", ""},
		{"YYYY-MM-DD", "", ""},
	}
	for _, tt := range tests {
		l, err := parseLayout(tt.layout)
		if err != nil {
			t.Fatalf("%s: %v", tt.layout, err)
		}
		got := ""
		if d, ok := l.parse(tt.in); ok {
			got = d.Format("2006-01-02")
		}
		if got != tt.want {
			t.Errorf("%s %q = %q, want %q", tt.layout, tt.in, got, tt.want)
		}
	}
}

func TestTransforms(t *testing.T) {
	for _, tt := range []struct {
		v, sep string
		i      int
		want   string
		ok     bool
	}{
		{"Lee, Ann", ",", 0, "Lee", true}, {"Lee, Ann", ",", 1, " Ann", true}, {"Lee, Ann", ",", 2, "", false},
		{"a/b/c", "/", -1, "c", true}, {"a/b/c", "/", -3, "a", true}, {"a/b/c", "/", -4, "", false}, {"abc", ",", 0, "abc", true},
	} {
		if got, ok := nthPart(tt.v, tt.sep, tt.i); got != tt.want || ok != tt.ok {
			t.Errorf("nthPart(%q, %q, %d) = %q %v", tt.v, tt.sep, tt.i, got, ok)
		}
	}
	for in, want := range map[string]string{"O'DONNELL": "O'Donnell", "mary-jane van der berg": "Mary-Jane Van Der Berg",
		"ÉLODIE": "Élodie", "3rd st": "3rd St", "": ""} {
		if got := titleCase(in); got != want {
			t.Errorf("titleCase(%q) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[string]string{"1": "1", "1.50": "1.5", "-0.25": "-0.25", "1e3": "1000", "1e21": "1e+21",
		"0x10": "", "1_000": "", "NaN": "", "Inf": "", "": "", "1e999": ""} {
		if got, _ := parseNumber(in); got != want {
			t.Errorf("parseNumber(%q) = %q, want %q", in, got, want)
		}
	}
	for _, s := range []string{"plain", "quote \" back \\ slash", "ctl \x00\x1f\t\r\n", "bad \xff utf8", "é ☃ 𝄞", "\u2028"} {
		var back string
		if err := json.Unmarshal(appendString(nil, s), &back); err != nil {
			t.Errorf("appendString(%q) = %s: %v", s, appendString(nil, s), err)
		}
	}
}

func TestRolesObjects(t *testing.T) {
	src := usersRules("csv", `      - {target: sourcedId, from: id}
      - {target: "roles[1].roleType", const: secondary}
      - {target: "roles[1].role", from: r2}
      - {target: "roles[1].org", from: o2}
      - {target: "roles[0].org.sourcedId", from: o1}
      - {target: "roles[0].role", from: r1}
      - {target: "roles[0].roleType", const: primary}
      - {target: "userIds[0].type", const: state}
      - {target: "userIds[0].identifier", from: sid}
`)
	exp := mustParse(t, src, Limits{})
	rows := mapCSV(t, exp, "id,r1,o1,r2,o2,sid\n1,student,S1,aide,S2,X9\n2,student,S1,,,\n3,student,S1,,S3,\n")
	want := []string{
		`{"sourcedId":"1","status":"active","userIds":[{"type":"state","identifier":"X9"}],"roles":[{"roleType":"primary","role":"student","org":{"sourcedId":"S1"}},{"roleType":"secondary","role":"aide","org":{"sourcedId":"S2"}}]}`,
		`{"sourcedId":"2","status":"active","roles":[{"roleType":"primary","role":"student","org":{"sourcedId":"S1"}}]}`,
		`{"sourcedId":"3","status":"active","roles":[{"roleType":"primary","role":"student","org":{"sourcedId":"S1"}}]}`,
	}
	for i, r := range rows {
		if string(r.Record) != want[i] {
			t.Errorf("row %d:\n%s\nwant\n%s", i, r.Record, want[i])
		}
	}
	if got := summary(rows[2]); got != "4 ok; finding empty r2(4)|roles[1].role; finding empty sid(6)|userIds[0].identifier; finding incomplete (0)|roles[1]" {
		t.Errorf("row 2 findings: %s", got)
	}
}

func TestStatusAndModifiedFallbacks(t *testing.T) {
	src := usersRules("csv", `      - {target: sourcedId, from: id}
      - {target: status, from: st, map: {A: active, D: tobedeleted}}
      - {target: dateLastModified, from: changed, date: YYYY-MM-DD}
`)
	exp := mustParse(t, src, Limits{})
	in := "id,st,changed\n1,D,2026-08-30\n2,,\n"
	want := []string{
		`{"sourcedId":"1","status":"tobedeleted","dateLastModified":"2026-08-30T00:00:00Z"}`,
		`{"sourcedId":"2","status":"active"}`,
	}
	for i, r := range mapCSV(t, exp, in) {
		if string(r.Record) != want[i] {
			t.Errorf("row %d: %s, want %s", i, r.Record, want[i])
		}
	}
	want[1] = `{"sourcedId":"2","status":"active","dateLastModified":"2026-09-01T06:00:00.000Z"}`
	for i, r := range mapCSV(t, exp.WithModified(exampleModified), in) {
		if string(r.Record) != want[i] {
			t.Errorf("with modified, row %d: %s, want %s", i, r.Record, want[i])
		}
	}
}
