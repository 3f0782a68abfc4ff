package mapping

import (
	"errors"
	"strings"
	"testing"
)

const jsonRules = `version: 1
exports:
  - name: s
    format: json
    records: $.students
    collection: users
    fields:
      - {target: sourcedId, from: $.id, required: true}
      - {target: givenName, from: $.name.first, required: true}
      - {target: familyName, from: $.name.last}
      - {target: "grades[]", from: $.grades, map: {"K": KG, "1": "01"}}
      - {target: enabledUser, from: $.active, default: "true"}
      - {target: metadata.score, from: $.score}
`

func doc(elems ...string) string { return `{"students":[` + strings.Join(elems, ",") + `]}` }

func TestMapJSONBadInput(t *testing.T) {
	const ann = `{"id":"1","name":{"first":"Ann","last":"Lee"}}`
	tests := []struct {
		name    string
		in      string
		lim     Limits
		want    []string
		wantErr []string
	}{
		{name: "clean", in: doc(ann, `{"id":2,"name":{"first":"Bo","last":null},"grades":["K","1"],"active":false,"score":9.5}`),
			want: []string{"0 ok", "1 ok; finding empty $.name.last(0)|familyName"}},
		{name: "BOM and other keys first", in: "\ufeff" + `{"meta":{"a":[1,{"b":2}],"c":"d"},"count":1,"students":[` + ann + `],"after":{"x":[]}}`,
			want: []string{"0 ok"}},
		{name: "document is the array", in: `[` + ann + `]`, want: nil, wantErr: []string{"$ is not an object"}},
		{name: "records not an array", in: `{"students":{"id":"1"}}`, wantErr: []string{"invalid export file", "in: $.students is not an array of records"}},
		{name: "no records key", in: `{"pupils":[]}`, wantErr: []string{"no key $.students in the document"}},
		{name: "empty document", in: ``, wantErr: []string{"unexpected end of the document"}},
		{name: "element not an object", in: doc(ann, `1`, `"x"`, `null`, `[]`, ann),
			want: []string{"0 ok", "1 err $(0)||the element is not a JSON object", "2 err $(0)||the element is not a JSON object",
				"3 err $(0)||the element is not a JSON object", "4 err $(0)||the element is not a JSON object", "5 ok"}},
		{name: "invalid UTF-8 in a value read", in: doc(`{"id":"1","name":{"first":"A`+"\xff"+`n"}}`, ann),
			want: []string{"0 err $.name.first(0)|givenName|the value is not valid UTF-8", "1 ok"}},
		{name: "invalid UTF-8 in a value not read", in: doc(`{"id":"1","name":{"first":"Ann"},"note":"` + "\xff" + `"}`), want: []string{"0 ok"}},
		{name: "value above MaxFieldBytes", lim: Limits{MaxFieldBytes: 8}, in: doc(`{"id":"1","name":{"first":"Annabelle-Marie"}}`, ann),
			want: []string{"0 err $.name.first(0)|givenName|the value is 17 bytes, more than 8", "1 ok"}},
		{name: "element above MaxRowBytes", lim: Limits{MaxRowBytes: 64}, in: doc(ann, `{"id":"2","name":{"first":"Bo"},"note":"`+strings.Repeat("y", 100)+`"}`, ann),
			want: []string{"0 ok", "1 err $(0)||the element is 142 bytes, more than 64", "2 ok"}},
		{name: "element far above MaxRowBytes", lim: Limits{MaxRowBytes: 64}, in: doc(ann, `{"id":"2","note":"`+strings.Repeat("y", 300_000)+`"}`, ann),
			want: []string{"0 ok"}, wantErr: []string{"in$.students[1]: a value longer than 64 bytes", "the rest of the file could not be read"}},
		{name: "syntax error", in: doc(ann, `{"id":"2",}`, ann),
			want: []string{"0 ok"}, wantErr: []string{"in$.students[1]: invalid JSON at byte", "the rest of the file could not be read"}},
		{name: "truncated", in: doc(ann, ann)[:60], want: []string{"0 ok"}, wantErr: []string{"unexpected end of the document"}},
		{name: "data after the document", in: doc(ann) + `]`, want: []string{"0 ok"}, wantErr: []string{"after $.students"}},
		{name: "object where a value is expected", in: doc(`{"id":"1","name":{"first":{"given":"Ann"}}}`),
			want: []string{"0 err $.name.first(0)|givenName|the value is an object"}},
		{name: "array for a single value", in: doc(`{"id":["1"],"name":{"first":"Ann"}}`),
			want: []string{"0 err $.id(0)|sourcedId|the value is an array: only a list target"}},
		{name: "nested array in a list", in: doc(`{"id":"1","name":{"first":"Ann"},"grades":[["K"]]}`),
			want: []string{"0 err $.grades(0)|grades[]|the value is an array"}},
		{name: "not a boolean", in: doc(`{"id":"1","name":{"first":"Ann"},"active":"yes"}`),
			want: []string{`0 err $.active(0)|enabledUser|value "yes" is not true or false`}},
		{name: "required key missing", in: doc(`{"id":"1","name":{}}`, `{"id":"2"}`, `{"id":"3","name":"Ann"}`),
			want: []string{"0 err $.name.first(0)|givenName|is required but $.name.first is missing",
				"1 err $.name.first(0)|givenName|is required but $.name.first is missing",
				"2 err $.name.first(0)|givenName|is required but $.name.first is missing"}},
		{name: "required value null or empty", in: doc(`{"id":"1","name":{"first":null}}`, `{"id":" ","name":{"first":"Bo"}}`),
			want: []string{"0 err $.name.first(0)|givenName|is required but empty", "1 err $.id(0)|sourcedId|is required but empty"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			exp := mustParse(t, jsonRules, tt.lim)
			rows, err := collect(exp, tt.in)
			if tt.wantErr == nil && err != nil {
				t.Fatalf("MapJSON: %v", err)
			}
			if tt.wantErr != nil {
				if !errors.Is(err, ErrInvalidExport) {
					t.Fatalf("MapJSON: %v, want an error wrapping ErrInvalidExport", err)
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q lacks %q", err, w)
					}
				}
			}
			if len(rows) != len(tt.want) {
				t.Fatalf("%d rows, want %d: %v", len(rows), len(tt.want), summaries(rows))
			}
			for i, r := range rows {
				if got := summary(r); !strings.HasPrefix(got, tt.want[i]) {
					t.Errorf("row %d: %s\n          want %s", i, got, tt.want[i])
				}
				if r.File != "in" || len(r.Raw) == 0 {
					t.Errorf("row %d: file %q raw %q", i, r.File, r.Raw)
				}
			}
		})
	}
}

func TestMapJSONRecord(t *testing.T) {
	exp := mustParse(t, jsonRules, Limits{})
	rows := mapCSV(t, exp, doc(`{"id":2,"name":{"first":"Bo \"B\"\u0007","last":"Ng"},"grades":["K","1",null],"active":false,"score":9.5}`))
	want := `{"sourcedId":"2","status":"active","enabledUser":false,"givenName":"Bo \"B\"\u0007","familyName":"Ng","grades":["KG","01"],"metadata":{"score":"9.5"}}`
	if got := string(rows[0].Record); got != want {
		t.Errorf("record\n%s\nwant\n%s", got, want)
	}
	if e := (FieldError{Position: Position{File: "f.json", Line: 3, Column: "$.id"}, Target: "sourcedId", Message: "is required"}); e.Error() != "f.json[3] $.id: sourcedId: is required" {
		t.Errorf("FieldError.Error() = %q", e.Error())
	}
}

func TestMapJSONRecordsPaths(t *testing.T) {
	for _, tt := range []struct{ records, in string }{
		{"$", `[{"id":"1"}]`},
		{"$.data.rows", `{"data":{"skip":[1,2,{"a":"]"}],"rows":[{"id":"1"}]}}`},
		{"$.pages[1].rows", `{"pages":[{"rows":[{"id":"0"}]},{"rows":[{"id":"1"}]}]}`},
		{`$["the rows"]`, `{"the rows":[{"id":"1"}]}`},
	} {
		src := "version: 1\nexports:\n  - name: s\n    format: json\n    records: '" + tt.records + "'\n    collection: orgs\n    fields: [{target: sourcedId, from: $.id}]\n"
		exp := mustParse(t, src, Limits{})
		rows, err := collect(exp, tt.in)
		if err != nil || len(rows) != 1 || string(rows[0].Record) != `{"sourcedId":"1","status":"active"}` {
			t.Errorf("records %s: %v %v", tt.records, err, summaries(rows))
		}
	}
}
