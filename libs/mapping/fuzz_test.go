package mapping

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

const fuzzCSVRules = `version: 1
exports:
  - name: s
    format: csv
    collection: users
    fields:
      - {target: sourcedId, from: id, required: true}
      - {target: givenName, from: name, split: {sep: ",", index: 1}, case: title, required: true}
      - {target: familyName, from: name, split: {sep: ",", index: 0}, case: upper}
      - {target: "grades[]", from: grade, split: {sep: ";"}, map: {"K": KG, "1": "01"}, unmapped: keep}
      - {target: "roles[0].beginDate", from: start, date: M/D/YY}
      - {target: "roles[0].role", from: role, map: {"S": student, "T": teacher}, unmapped: default, default: student}
      - {target: "roles[0].roleType", const: primary}
      - {target: "roles[0].org.sourcedId", from: [school, building]}
      - {target: enabledUser, from: active, map: {"Y": "true", "N": "false"}, unmapped: drop}
      - {target: metadata.room, concat: [building, "/", room]}
      - {target: metadata.note, concat: [room, note], sep: " - "}
`

const fuzzJSONRules = `version: 1
exports:
  - name: s
    format: json
    records: $.data[0].rows
    collection: classes
    fields:
      - {target: sourcedId, from: $.id, required: true}
      - {target: title, from: [$.title, $.name.full], case: title}
      - {target: "grades[]", from: $.grades, map: {"K": KG}, unmapped: keep}
      - {target: "periods[]", from: $.p, split: {sep: ","}}
      - {target: "terms[]", from: $.terms}
      - {target: course, from: $.course.id}
      - target: metadata.x
        concat:
          - $.a
          - $["b c"]
          - "!"
`

// checkRows asserts what holds for any input: each row has a record or errors, never both; records are
// JSON objects, and their values write them; lines increase; a file error is ErrInvalidExport.
func checkRows(t *testing.T, exp *Export, in []byte, strict bool) {
	last := -1
	err := exp.WithValues().Map("fuzz", strings.NewReader(string(in)), func(r Row) error {
		if (r.Record == nil) == (len(r.Errors) == 0) {
			t.Fatalf("line %d: record %q with errors %v", r.Line, r.Record, r.Errors)
		}
		if r.Record != nil && (!json.Valid(r.Record) || r.Record[0] != '{') {
			t.Fatalf("line %d: record is not a JSON object: %q", r.Line, r.Record)
		}
		if got := AppendJSON(nil, r.Values); r.Record != nil && !bytes.Equal(got, r.Record) {
			t.Fatalf("line %d: values write %q, record %q", r.Line, got, r.Record)
		}
		if r.Line <= last || strict && r.Line != last+1 {
			t.Fatalf("line %d after %d", r.Line, last)
		}
		last = r.Line
		return nil
	})
	if err != nil && !errors.Is(err, ErrInvalidExport) {
		t.Fatalf("Map: %v, want nil or ErrInvalidExport", err)
	}
}

func FuzzMapCSV(f *testing.F) {
	exp := mustParse(f, fuzzCSVRules, Limits{MaxFieldBytes: 256, MaxRowBytes: 1024})
	const h = "id,name,grade,start,role,school,building,active,room,note\n"
	for _, s := range []string{
		h + "1,\"Lee, ann\",K;1,9/1/26,S,X1,,Y,12,hi\n",
		"\ufeff" + strings.ReplaceAll(h+"1,\"Lee, ann\",K,9/1/26,T,,B2,N,,\n2,\"Ng, bo\",7,,Q,X,,?,,\n", "\n", "\r\n"),
		h + "1,\"Lee\nAnn\",K\n2,B\"o,1,,,,,,,\n3,\"unterminated,,,,,,,,,\n",
		h + "1,,,,,,,,,\n,x,,,,,,,,\n",
		"id,id\n1,2\n",
		"name\nx\n",
		h + "1,\"a,\xffb\",K,99/99/99,S,X,,Y,,\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		checkRows(t, exp, in, false)
	})
}

func FuzzMapJSON(f *testing.F) {
	exp := mustParse(f, fuzzJSONRules, Limits{MaxFieldBytes: 256, MaxRowBytes: 1024})
	for _, s := range []string{
		`{"data":[{"rows":[{"id":"1","title":"math","grades":["K","3"],"p":"1,2","terms":["t1"],"course":{"id":"c"},"a":1,"b c":true}]}]}`,
		`{"data":[{"rows":[1,null,{"id":2},{"id":[3]},{"id":"4","name":{"full":"x"}},{"id":"5","grades":"K"}]}]}`,
		`{"data":[{"rows":[{"id":"1"},{"id":"2",}]}]}`,
		`{"data":[{"rows":{}}]}`,
		`{"data":[]}`,
		"\ufeff{\"data\":[{\"rows\":[{\"id\":\"\xff\"}]}]}",
		`[]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		checkRows(t, exp, in, true)
	})
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{fuzzCSVRules, fuzzJSONRules, csvRules, jsonRules, "version: 1\n", "{", "exports: [{fields: [{target: \"roles[0\"}]}]"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		rules, err := Parse(src, Limits{})
		if err != nil {
			if !errors.Is(err, ErrInvalidRules) {
				t.Fatalf("Parse: %v, want ErrInvalidRules", err)
			}
			return
		}
		for _, name := range rules.Exports() {
			if _, ok := rules.Export(name); !ok {
				t.Fatalf("export %q listed but not found", name)
			}
		}
	})
}
