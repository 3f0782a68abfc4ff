package records

import (
	"reflect"
	"slices"
	"testing"

	"github.com/hamba/avro/v2"
)

func TestRosterEntities(t *testing.T) {
	entities, err := RosterEntities()
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, e := range entities {
		types = append(types, e.Type)
	}
	var want []string
	for _, typ := range EventTypes() {
		if IsRosterType(typ) {
			want = append(want, typ)
		}
	}
	if !slices.Equal(types, want) {
		t.Fatalf("entities %v, want the roster types %v", types, want)
	}
	enriched := sources(t)[KindEnriched.SchemaName()].(*avro.RecordSchema)
	for _, e := range entities {
		payload := samplePayload(t, e.Type)
		if e.GoType != reflect.TypeOf(payload).Elem() || e.GoType.Name() != e.Schema.Name() {
			t.Errorf("%s: schema %s, Go type %s, payload %T", e.Type, e.Schema.FullName(), e.GoType, payload)
		}
		// The enriched envelope carries the same record in the same field.
		if r, err := optionalRecord(enriched, e.Field); err != nil || r.Fingerprint() != e.Schema.Fingerprint() {
			t.Errorf("%s: enriched_event.%s is not raw_event's: %v", e.Type, e.Field, err)
		}

		var p Payloads
		if _, err := p.Set(payload); err != nil {
			t.Fatal(err)
		}
		c, ok := p.RosterCommon()
		v := e.Payload(&p)
		if !ok || !v.IsValid() || v.Addr().Interface() != payload {
			t.Fatalf("%s: payload not found in %+v", e.Type, p)
		}
		if c.SourcedID != v.FieldByName("SourcedID").Addr().Interface() || c.Status != v.FieldByName("Status").Addr().Interface() ||
			c.DateLastModified != v.FieldByName("DateLastModified").Addr().Interface() {
			t.Errorf("%s: RosterCommon does not point at the payload's own fields", e.Type)
		}
		other := samplePayloads(t, TypeAttendance)
		if _, ok := other.RosterCommon(); ok || e.Payload(&other).IsValid() {
			t.Errorf("%s: found in an attendance payload", e.Type)
		}
	}
}
