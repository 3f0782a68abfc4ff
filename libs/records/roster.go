package records

import (
	"fmt"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/hamba/avro/v2"

	"github.com/edtech-analytics/platform/schemas"
)

// RosterEntity is one OneRoster entity as the schemas define it: its event type, its payload record and
// the generated struct that holds it. Code that stores or reads entities derives its fields from here
// rather than naming them again.
type RosterEntity struct {
	Type   string             // event type, e.g. roster.org
	Field  string             // the envelopes' field that carries it, e.g. roster_org
	Schema *avro.RecordSchema // the payload record, e.g. edtech.v1.RosterOrg
	GoType reflect.Type       // its struct, e.g. RosterOrg

	payload                     int // its field in Payloads
	sourcedID, status, modified int // its fields every entity has
}

// The fields every OneRoster entity starts with.
const (
	RosterSourcedID        = "sourced_id"
	RosterStatus           = "status"
	RosterDateLastModified = "date_last_modified"
	RosterMetadata         = "metadata"
)

// RosterEntities returns the OneRoster entities in EventTypes order. Each is the record of the raw_event
// field its type names (roster.org: roster_org) in the embedded schemas, parsed once.
func RosterEntities() ([]*RosterEntity, error) { return rosterEntities() }

var rosterEntities = sync.OnceValues(loadRosterEntities)

func loadRosterEntities() ([]*RosterEntity, error) {
	sources, err := ParseSources(schemas.FS)
	if err != nil {
		return nil, err
	}
	raw, ok := sources[KindRaw.SchemaName()].(*avro.RecordSchema)
	if !ok {
		return nil, fmt.Errorf("schema %s is not a record", KindRaw.SchemaName())
	}
	envelope, payloads := reflect.TypeFor[RawEvent](), reflect.TypeFor[Payloads]()
	var out []*RosterEntity
	for _, typ := range EventTypes() {
		if !IsRosterType(typ) {
			continue
		}
		e := &RosterEntity{Type: typ, Field: strings.ReplaceAll(typ, ".", "_")}
		i := FieldIndex(envelope, e.Field)
		if i < 0 {
			return nil, fmt.Errorf("RawEvent has no field %s", e.Field)
		}
		e.GoType = envelope.Field(i).Type.Elem()
		if e.Schema, err = optionalRecord(raw, e.Field); err != nil {
			return nil, err
		}
		e.payload = -1
		for j := range payloads.NumField() {
			if payloads.Field(j).Type == reflect.PointerTo(e.GoType) {
				e.payload = j
			}
		}
		for _, f := range e.Schema.Fields() {
			if FieldIndex(e.GoType, f.Name()) < 0 {
				return nil, fmt.Errorf("%s has no field %s", e.GoType, f.Name())
			}
		}
		e.sourcedID, e.status, e.modified = FieldIndex(e.GoType, RosterSourcedID), FieldIndex(e.GoType, RosterStatus),
			FieldIndex(e.GoType, RosterDateLastModified)
		if e.payload < 0 {
			return nil, fmt.Errorf("Payloads has no *%s field", e.GoType)
		}
		for _, f := range []struct {
			i    int
			name string
			want reflect.Type
		}{
			{e.sourcedID, RosterSourcedID, reflect.TypeFor[string]()},
			{e.status, RosterStatus, reflect.TypeFor[string]()},
			{e.modified, RosterDateLastModified, reflect.TypeFor[time.Time]()},
		} {
			if f.i < 0 || e.GoType.Field(f.i).Type != f.want {
				return nil, fmt.Errorf("%s: every roster entity has a field %s of Go type %s", e.GoType, f.name, f.want)
			}
		}
		out = append(out, e)
	}
	return out, nil
}

// optionalRecord returns the record of rec's field name, whose type is ["null", record].
func optionalRecord(rec *avro.RecordSchema, name string) (*avro.RecordSchema, error) {
	for _, f := range rec.Fields() {
		if f.Name() != name {
			continue
		}
		if u, ok := f.Type().(*avro.UnionSchema); ok && u.Nullable() && len(u.Types()) == 2 {
			for _, t := range u.Types() {
				if r, ok := deref(t).(*avro.RecordSchema); ok {
					return r, nil
				}
			}
		}
		return nil, fmt.Errorf("%s.%s is not an optional record", rec.Name(), name)
	}
	return nil, fmt.Errorf("%s has no field %s", rec.Name(), name)
}

// FieldIndex returns the index of the field of struct type t that holds the Avro field name (by its avro
// tag), or -1.
func FieldIndex(t reflect.Type, name string) int {
	for i := range t.NumField() {
		if tag, _, _ := strings.Cut(t.Field(i).Tag.Get("avro"), ","); tag == name {
			return i
		}
	}
	return -1
}

// Payload returns the entity's payload in p (the struct a *GoType in p points to), or the zero Value when
// p does not hold one.
func (e *RosterEntity) Payload(p *Payloads) reflect.Value {
	v := reflect.ValueOf(p).Elem().Field(e.payload)
	if v.IsNil() {
		return reflect.Value{}
	}
	return v.Elem()
}

// RosterCommon points at the fields of one entity's payload that every entity has.
type RosterCommon struct {
	SourcedID        *string
	Status           *string
	DateLastModified *time.Time
}

// Common returns the fields every entity has of the entity's payload in p; ok is false when p does not
// hold one.
func (e *RosterEntity) Common(p *Payloads) (c RosterCommon, ok bool) {
	v := e.Payload(p)
	if !v.IsValid() {
		return c, false
	}
	return RosterCommon{
		SourcedID:        v.Field(e.sourcedID).Addr().Interface().(*string),
		Status:           v.Field(e.status).Addr().Interface().(*string),
		DateLastModified: v.Field(e.modified).Addr().Interface().(*time.Time),
	}, true
}
