package roster

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/edtech-analytics/platform/libs/mapping"
)

// decodedBoth decodes a mapped record from its JSON (Decode) and from its values (DecodeMapped), each
// with its own decoder, and fails the test unless both give the same: accepted record (event, content
// hash, size), field errors and error. It reports whether the values were read (not the JSON).
type decodedBoth struct {
	byJSON, byValues *RecordDecoder
	read, accepted   int
}

func newDecodedBoth() *decodedBoth {
	return &decodedBoth{byJSON: NewRecordDecoder(meta), byValues: NewRecordDecoder(meta)}
}

func (d *decodedBoth) check(t *testing.T, collection string, record []byte, vals []mapping.Value, where string) {
	t.Helper()
	a1, errs1, err1 := d.byJSON.Decode(collection, record, where, nil)
	a2, errs2, err2 := d.byValues.DecodeMapped(collection, record, vals, where, nil)
	if !reflect.DeepEqual(a1, a2) || !reflect.DeepEqual(errs1, errs2) || fmt.Sprint(err1) != fmt.Sprint(err2) {
		j1, _ := json.Marshal(a1.Event)
		j2, _ := json.Marshal(a2.Event)
		t.Fatalf("%s: %s\nfrom JSON:   %s %x %d %v %v\nfrom values: %s %x %d %v %v",
			where, record, j1, a1.Hash, a1.Size, errs1, err1, j2, a2.Hash, a2.Size, errs2, err2)
	}
	if _, ok := newValuesSource(where, vals, record); ok {
		d.read++
	}
	if errs1 == nil && err1 == nil {
		d.accepted++
	}
}

// TestMappedValuesDecodeAsJSON maps every example export of libs/mapping (and its broken samples) and
// decodes each record both from its JSON and from its values: the events, hashes and errors are the same.
func TestMappedValuesDecodeAsJSON(t *testing.T) {
	root := filepath.Join("..", "..", "..", "..", "libs", "mapping")
	files, err := filepath.Glob(filepath.Join(root, "examples", "*", "*"))
	if err != nil {
		t.Fatal(err)
	}
	broken, err := filepath.Glob(filepath.Join(root, "testdata", "broken", "*", "*"))
	if err != nil {
		t.Fatal(err)
	}
	d := newDecodedBoth()
	records := 0
	for _, file := range append(files, broken...) {
		if filepath.Base(file) == "rules.yaml" {
			continue
		}
		shape := filepath.Base(filepath.Dir(file))
		src, err := os.ReadFile(filepath.Join(root, "examples", shape, "rules.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		rules, err := mapping.Parse(src, mapping.Limits{})
		if err != nil {
			t.Fatal(err)
		}
		body, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range rules.Exports() {
			exp, _ := rules.Export(name)
			if !exp.Matches(file) {
				continue
			}
			err := exp.WithModified(meta.ReceivedAt).WithValues().Map(filepath.Base(file), bytes.NewReader(body), func(row mapping.Row) error {
				if row.Record != nil {
					records++
					d.check(t, row.Collection, row.Record, row.Values, fmt.Sprintf("%s:%d", row.File, row.Line))
				}
				return nil
			})
			if err != nil {
				t.Fatalf("%s: %v", file, err)
			}
		}
	}
	if records < 50 || d.read != records || d.accepted < records/2 {
		t.Fatalf("%d records, %d read from values, %d accepted", records, d.read, d.accepted)
	}
}

// generated lists, per collection, every target a rule can write and the values its column takes.
var generated = map[string][]struct{ target, pool string }{
	"orgs": {{"name", "text"}, {"type", "enum:school,district,department,ext:zone,campus"}, {"identifier", "text"},
		{"parent", "ref"}, {"children[]", "refs"}},
	"academicSessions": {{"title", "text"}, {"type", "enum:term,schoolYear,semester,ext:block,quarter"}, {"startDate", "date"},
		{"endDate", "date"}, {"schoolYear", "enum:2027,2026,27,"}, {"parent", "ref"}, {"children[]", "refs"}},
	"courses": {{"title", "text"}, {"schoolYear", "ref"}, {"courseCode", "text"}, {"grades[]", "list"}, {"subjects[]", "list"},
		{"subjectCodes[]", "list"}, {"org", "ref"}},
	"classes": {{"title", "text"}, {"classCode", "text"}, {"classType", "enum:homeroom,scheduled,ext:lab,lecture"},
		{"location", "text"}, {"grades[]", "list"}, {"subjects[]", "list"}, {"subjectCodes[]", "list"}, {"periods[]", "list"},
		{"course", "ref"}, {"school", "ref"}, {"terms[]", "refs"}},
	"users": {{"enabledUser", "bool"}, {"username", "text"}, {"userIds[0].type", "text"}, {"userIds[0].identifier", "text"},
		{"userIds[1].type", "text"}, {"userIds[1].identifier", "text"}, {"givenName", "text"}, {"familyName", "text"},
		{"middleName", "text"}, {"preferredFirstName", "text"}, {"preferredLastName", "text"}, {"pronouns", "text"},
		{"identifier", "text"}, {"userMasterIdentifier", "text"}, {"email", "text"}, {"sms", "text"}, {"phone", "text"},
		{"agents[]", "refs"}, {"grades[]", "list"},
		{"roles[0].roleType", "enum:primary,secondary,tertiary"}, {"roles[0].role", "enum:student,teacher,aide,ext:coach,wizard"},
		{"roles[0].org.sourcedId", "ref"}, {"roles[0].beginDate", "date"}, {"roles[0].endDate", "date"},
		{"roles[0].status", "enum:active,tobedeleted,gone"}, {"roles[0].dateLastModified", "timestamp"},
		{"roles[1].roleType", "enum:primary,secondary"}, {"roles[1].role", "enum:teacher,guardian"}, {"roles[1].org.sourcedId", "ref"},
		{"role", "enum:student,teacher,wizard"}, {"orgs[]", "refs"}},
	"enrollments": {{"user", "ref"}, {"class", "ref"}, {"school", "ref"}, {"role", "enum:student,teacher,ext:tutor,wizard"},
		{"primary", "bool"}, {"beginDate", "date"}, {"endDate", "date"}},
	"demographics": {{"birthDate", "date"}, {"sex", "enum:female,male,other,unspecified,x"},
		{"americanIndianOrAlaskaNative", "bool"}, {"asian", "bool"}, {"blackOrAfricanAmerican", "bool"},
		{"nativeHawaiianOrOtherPacificIslander", "bool"}, {"white", "bool"}, {"demographicRaceTwoOrMoreRaces", "bool"},
		{"hispanicOrLatinoEthnicity", "bool"}, {"countryOfBirthCode", "text"}, {"stateOfBirthAbbreviation", "text"},
		{"cityOfBirth", "text"}, {"publicSchoolResidenceStatus", "text"}},
	"lineItems": {{"title", "text"}, {"description", "text"}, {"assignDate", "timestamp"}, {"dueDate", "timestamp"},
		{"class", "ref"}, {"school", "ref"}, {"category", "ref"}, {"gradingPeriod", "ref"}, {"academicSession", "ref"},
		{"scoreScale", "ref"}, {"resultValueMin", "number"}, {"resultValueMax", "number"}},
	"results": {{"lineItem", "ref"}, {"student", "ref"}, {"class", "ref"}, {"scoreScale", "ref"},
		{"scoreStatus", "enum:submitted,exempt,fully graded,lost"}, {"score", "number"}, {"textScore", "text"},
		{"scoreDate", "date"}, {"comment", "text"}, {"inProgress", "bool"}, {"incomplete", "bool"}, {"late", "bool"},
		{"missing", "bool"}},
}

var pools = map[string][]string{
	"id":     {"s1", "s2", "s3", "s4", "s5", "s6", "s7", "s8", "s9", "s10", "s11", "s12", "", "a b", "x\u0085y"},
	"text":   {"Ada", "Lovelace", "x", "ümlaut é", `a "quoted" \ b`, "<&>", "line\nbreak", "tab\there", "\u2028", "  padded  ", strings.Repeat("long", 80), "bell\a"},
	"ref":    {"org-1", "r2", "dup", "a b", strings.Repeat("r", 300)},
	"refs":   {"r1", "r1;r2", "r1;;r2", ";", "r3; r4"},
	"list":   {"09", "09;10", "a;;b", ";", "Math;Science"},
	"bool":   {"true", "false", "TRUE", "False"},
	"number": {"0", "1", "2.5", "-3", "1e3", "100", "0.000001", "12345678901234567890123"},
	"date":   {"2026-09-01", "2025-08-15", "2027-06-15", "1899-12-31", "1960-02-29", "2200-01-01"},
	"timestamp": {"2026-09-01T08:00:00Z", "2026-09-01T08:00:00.123456+02:00", "2026-11-22T00:00:00Z", "2026-09-01",
		"1960-01-01T00:00:00Z"},
	"status":   {"active", "active", "tobedeleted", "gone"},
	"modified": {"2026-09-01T08:00:00Z", "2026-09-02T10:30:00.5Z", "2027-01-01T00:00:00Z"},
}

// TestMappedValuesGeneratedRecords maps generated exports of every collection, with a rule for every
// target and values both good and bad (so records are accepted and rejected for every reason the
// decoder has), and decodes each record both from its JSON and from its values: the same results.
func TestMappedValuesGeneratedRecords(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	for _, collection := range Collections() {
		exp, in := generatedExport(t, collection, rng, 600)
		d := newDecodedBoth()
		records := 0
		err := exp.WithValues().Map(collection+".csv", in, func(row mapping.Row) error {
			if row.Record != nil {
				records++
				d.check(t, row.Collection, row.Record, row.Values, fmt.Sprintf("%s:%d", row.File, row.Line))
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if records < 100 || d.read != records || d.accepted < 10 || d.accepted > records-10 {
			t.Errorf("%s: %d records, %d read from values, %d accepted: want both outcomes", collection, records, d.read, d.accepted)
		}
		t.Logf("%s: %d records, %d accepted", collection, records, d.accepted)
	}
}

// generatedExport returns an export of collection with a rule for every target, and a CSV file of rows
// for it: values mostly good, some bad, some absent, a few sourcedIds twice.
func generatedExport(t *testing.T, collection string, rng *rand.Rand, rows int) (*mapping.Export, *bytes.Buffer) {
	t.Helper()
	targets := append([]struct{ target, pool string }{{"sourcedId", "id"}, {"status", "status"}, {"dateLastModified", "modified"}},
		generated[collection]...)
	targets = append(targets, struct{ target, pool string }{"metadata.a", "text"}, struct{ target, pool string }{"metadata.b", "id"})
	var rules strings.Builder
	fmt.Fprintf(&rules, "version: 1\nexports:\n  - name: gen\n    format: csv\n    collection: %s\n    fields:\n", collection)
	var in bytes.Buffer
	w := csv.NewWriter(&in)
	header := make([]string, len(targets))
	for i, tg := range targets {
		header[i] = fmt.Sprintf("c%d", i)
		fmt.Fprintf(&rules, "      - target: %q\n        from: %s\n", tg.target, header[i])
		if strings.HasSuffix(tg.target, "[]") {
			rules.WriteString("        split: {sep: \";\"}\n")
		}
		if strings.HasPrefix(tg.target, "metadata.") || tg.pool == "text" {
			rules.WriteString("        trim: false\n")
		}
	}
	if err := w.Write(header); err != nil {
		t.Fatal(err)
	}
	for range rows {
		row := make([]string, len(targets))
		for i, tg := range targets {
			pool := pools[tg.pool]
			if e, ok := strings.CutPrefix(tg.pool, "enum:"); ok {
				pool = strings.Split(e, ",")
			}
			switch n := rng.IntN(10); {
			case n == 0 && tg.target != "sourcedId":
				row[i] = "" // absent value: no key
			case n < 7:
				row[i] = pool[0] // mostly the first (good) value, so records are accepted too
			default:
				row[i] = pool[rng.IntN(len(pool))]
			}
			if tg.target == "sourcedId" && rng.IntN(20) > 0 {
				row[i] = fmt.Sprintf("s%d", rng.IntN(400)) // a few duplicates
			}
		}
		if err := w.Write(row); err != nil {
			t.Fatal(err)
		}
	}
	w.Flush()
	parsed, err := mapping.Parse([]byte(rules.String()), mapping.Limits{})
	if err != nil {
		t.Fatalf("%s rules: %v\n%s", collection, err, rules.String())
	}
	exp, _ := parsed.Export("gen")
	return exp, &in
}

// TestMappedValuesOfOtherForms: values of a form the decoder does not read directly (a number where it
// reads text, a key twice, invalid UTF-8, a boolean that is none) decode as their JSON does.
func TestMappedValuesOfOtherForms(t *testing.T) {
	text := func(k, v string) mapping.Value { return mapping.Value{Key: k, Text: v} }
	of := func(k string, kind mapping.ValueKind, v string) mapping.Value {
		return mapping.Value{Key: k, Kind: kind, Text: v}
	}
	base := []mapping.Value{text("sourcedId", "u1"), text("status", "active"), text("dateLastModified", "2026-09-01T08:00:00Z")}
	role := [][]mapping.Value{{text("roleType", "primary"), text("role", "student"), of("org", mapping.ValueRef, "org-1")}}
	// withRoles is a valid user with roles, more replacing or adding keys.
	withRoles := func(roles mapping.Value, more ...mapping.Value) []mapping.Value {
		vs := append(append([]mapping.Value(nil), base...), of("enabledUser", mapping.ValueBool, "true"),
			text("givenName", "Ada"), text("familyName", "L"), roles)
		for _, m := range more {
			if i := slices.IndexFunc(vs, func(v mapping.Value) bool { return v.Key == m.Key }); i >= 0 {
				vs[i] = m
			} else {
				vs = append(vs, m)
			}
		}
		return vs
	}
	user := func(more ...mapping.Value) []mapping.Value {
		return withRoles(mapping.Value{Key: "roles", Kind: mapping.ValueObjects, Objects: role}, more...)
	}
	cases := []struct {
		name, collection string
		vals             []mapping.Value
		values           bool // read from the values, not the JSON
	}{
		{"plain", "users", user(), true},
		{"number for text", "users", user(of("pronouns", mapping.ValueNumber, "5")), true},
		{"text for list", "users", user(text("grades", "09")), true},
		{"refs for list", "users", user(mapping.Value{Key: "grades", Kind: mapping.ValueRefs, List: []string{"09"}}), true},
		{"empty list entry", "users", user(mapping.Value{Key: "grades", Kind: mapping.ValueTexts, List: []string{"", "09"}}), true},
		{"text for flag", "users", user(text("enabledUser", "TRUE")), true},
		{"bad text for flag", "users", user(text("enabledUser", "yes")), true},
		{"not a boolean", "users", user(of("enabledUser", mapping.ValueBool, "yes")), false},
		{"text for ref", "users", withRoles(mapping.Value{Key: "roles", Kind: mapping.ValueObjects, Objects: [][]mapping.Value{{text("roleType", "primary"), text("role", "student"), text("org", "org-1")}}}), true},
		{"empty ref", "users", withRoles(mapping.Value{Key: "roles", Kind: mapping.ValueObjects, Objects: [][]mapping.Value{{text("roleType", "primary"), text("role", "student"), of("org", mapping.ValueRef, "")}}}), true},
		{"empty role", "users", withRoles(mapping.Value{Key: "roles", Kind: mapping.ValueObjects, Objects: [][]mapping.Value{{}}}), true},
		{"texts for roles", "users", withRoles(mapping.Value{Key: "roles", Kind: mapping.ValueTexts, List: []string{"student"}}), true},
		{"empty refs entry", "users", user(mapping.Value{Key: "agents", Kind: mapping.ValueRefs, List: []string{"p1", ""}}), true},
		{"user ids", "users", user(mapping.Value{Key: "userIds", Kind: mapping.ValueObjects, Objects: [][]mapping.Value{{text("type", "LDAP"), text("identifier", "ada")}, {text("type", "X")}}}), true},
		{"user id key in another case", "users", user(mapping.Value{Key: "userIds", Kind: mapping.ValueObjects, Objects: [][]mapping.Value{{text("Type", "LDAP"), text("identifier", "ada")}}}), true},
		{"user id ref", "users", user(mapping.Value{Key: "userIds", Kind: mapping.ValueObjects, Objects: [][]mapping.Value{{of("type", mapping.ValueRef, "LDAP"), text("identifier", "ada")}}}), true},
		{"metadata", "users", user(mapping.Value{Key: "metadata", Kind: mapping.ValueMetadata, Fields: []mapping.Value{text("a", "1"), text("b", "")}}), true},
		{"metadata key twice", "users", user(mapping.Value{Key: "metadata", Kind: mapping.ValueMetadata, Fields: []mapping.Value{text("a", "1"), text("a", "2")}}), false},
		{"metadata of a number", "users", user(mapping.Value{Key: "metadata", Kind: mapping.ValueMetadata, Fields: []mapping.Value{of("a", mapping.ValueNumber, "1")}}), false},
		{"text for metadata", "users", user(text("metadata", "x")), true},
		{"key twice", "users", append(user(), text("givenName", "Bob")), false},
		{"invalid UTF-8", "users", user(text("pronouns", "a\xffb")), false},
		{"invalid UTF-8 in a list", "users", user(mapping.Value{Key: "grades", Kind: mapping.ValueTexts, List: []string{"\xff"}}), false},
		{"control characters", "users", user(text("pronouns", "a\x00b\u2028")), true},
		{"score", "results", append(append([]mapping.Value(nil), base...), of("lineItem", mapping.ValueRef, "li"), of("student", mapping.ValueRef, "u1"),
			text("scoreStatus", "submitted"), of("score", mapping.ValueNumber, "2.5e1")), true},
		{"text score", "results", append(append([]mapping.Value(nil), base...), of("lineItem", mapping.ValueRef, "li"), of("student", mapping.ValueRef, "u1"),
			text("scoreStatus", "submitted"), text("score", "12")), true},
		{"number too large", "results", append(append([]mapping.Value(nil), base...), of("lineItem", mapping.ValueRef, "li"), of("student", mapping.ValueRef, "u1"),
			text("scoreStatus", "submitted"), of("score", mapping.ValueNumber, "1e400")), false},
		{"not a number", "results", append(append([]mapping.Value(nil), base...), of("score", mapping.ValueNumber, "+1")), false},
		{"bool for ref", "enrollments", append(append([]mapping.Value(nil), base...), of("user", mapping.ValueBool, "true")), true},
		{"metadata for ref", "enrollments", append(append([]mapping.Value(nil), base...), mapping.Value{Key: "user", Kind: mapping.ValueMetadata, Fields: []mapping.Value{text("sourcedId", "u1")}}), true},
	}
	accepted := 0
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := newDecodedBoth()
			d.check(t, c.collection, mapping.AppendJSON(nil, c.vals), c.vals, "in.csv:2")
			if got := d.read == 1; got != c.values {
				t.Errorf("read from values: %v, want %v", got, c.values)
			}
			if c.name == "plain" && d.accepted != 1 {
				t.Errorf("the plain user is rejected")
			}
			accepted += d.accepted
		})
	}
	if accepted < 10 || accepted > len(cases)-10 {
		t.Errorf("%d of %d cases accepted: want both outcomes", accepted, len(cases))
	}
	// Without values, DecodeMapped is Decode.
	d := newDecodedBoth()
	d.check(t, "users", mapping.AppendJSON(nil, user()), nil, "in.csv:3")
	d.check(t, "users", []byte(`[]`), nil, "in.csv:4")
	if d.read != 0 {
		t.Errorf("read %d records from no values", d.read)
	}
}
