package roster

import (
	"slices"
	"strings"
	"testing"

	"github.com/edtech-analytics/platform/libs/records"
	"github.com/hamba/avro/v2"
)

// TestEveryRosterFieldHasItsColumn: each entity's builder reads the CSV column of every field of the
// entity's schema, the column named as the field in camel case (OneRoster's sourcedId is the schema's
// sourced_id), so a field added to a roster schema cannot be left out of the gateway. The fields below
// are the ones OneRoster CSV does not carry in the entity's own file, or carries under another name.
func TestEveryRosterFieldHasItsColumn(t *testing.T) {
	notInFile := map[string][]string{
		records.TypeRosterOrg:             {"children_sourced_ids"}, // JSON only
		records.TypeRosterAcademicSession: {"children_sourced_ids"}, // JSON only
		records.TypeRosterUser:            {"roles", "birth_date"},  // roles.csv (or role and orgSourcedIds); demographics.csv
		records.TypeRosterLineItem:        {"score_scale_sourced_id"},
		records.TypeRosterResult:          {"score_scale_sourced_id"},
	}
	otherName := map[string]string{"preferred_first_name": "preferredGivenName", "preferred_last_name": "preferredFamilyName"}

	schemas, err := records.RosterEntities()
	if err != nil {
		t.Fatal(err)
	}
	if len(schemas) != len(entities) {
		t.Fatalf("%d roster entities in the schemas, %d collections", len(schemas), len(entities))
	}
	for _, s := range schemas {
		i := slices.IndexFunc(entities, func(e *entity) bool { return e.typ == s.Type })
		if i < 0 {
			t.Errorf("no collection for %s", s.Type)
			continue
		}
		e := entities[i]
		for _, f := range s.Schema.Fields() {
			name := f.Name()
			if name == records.RosterMetadata || slices.Contains(notInFile[s.Type], name) {
				continue // metadata: the metadata.* columns
			}
			col, ok := otherName[name]
			if !ok {
				col = camel(name)
			}
			if !slices.Contains(e.columns, col) {
				t.Errorf("%s.csv: the builder reads no column %s for the field %s", e.collection, col, name)
			}
		}
	}
}

// TestRoleColumns: roles.csv has a column for every field of a user's role, and requires the ones the
// schema does not let be null, and the user the row joins onto.
func TestRoleColumns(t *testing.T) {
	schemas, err := records.RosterEntities()
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(schemas, func(e *records.RosterEntity) bool { return e.Type == records.TypeRosterUser })
	roles := schemas[i].Schema.Fields()[slices.IndexFunc(schemas[i].Schema.Fields(), func(f *avro.Field) bool { return f.Name() == "roles" })]
	want := []string{userColumn}
	for _, f := range roles.Type().(*avro.ArraySchema).Items().(*avro.RecordSchema).Fields() {
		if !slices.Contains(roleColumns, camel(f.Name())) {
			t.Errorf("roles.csv columns %v lack %s", roleColumns, camel(f.Name()))
		}
		if _, nullable := f.Type().(*avro.UnionSchema); !nullable {
			want = append(want, camel(f.Name()))
		}
	}
	if !slices.Equal(roleRequired, want) {
		t.Errorf("roles.csv requires %v, want %v", roleRequired, want)
	}
}

// camel turns a snake_case schema name into OneRoster's camelCase.
func camel(s string) string {
	parts := strings.Split(s, "_")
	for i, p := range parts[1:] {
		parts[i+1] = strings.ToUpper(p[:1]) + p[1:]
	}
	return strings.Join(parts, "")
}
