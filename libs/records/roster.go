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

	payload int // its field in Payloads
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
		if e.payload < 0 {
			return nil, fmt.Errorf("Payloads has no *%s field", e.GoType)
		}
		if _, ok := rosterCommon(reflect.New(e.GoType).Elem()); !ok {
			return nil, fmt.Errorf("%s lacks a field every roster entity has (%s, %s, %s)", e.GoType, RosterSourcedID,
				RosterStatus, RosterDateLastModified)
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

// RosterCommon points at the fields every OneRoster entity has, in one entity's payload.
type RosterCommon struct {
	SourcedID        *string
	Status           *string
	DateLastModified *time.Time
}

// RosterCommon returns the fields every OneRoster entity has of the roster payload p holds (the first,
// in a p that holds several); ok is false when p holds none.
func (p *Payloads) RosterCommon() (RosterCommon, bool) {
	v := reflect.ValueOf(p).Elem()
	for i := range v.NumField() {
		if f := v.Field(i); !f.IsNil() {
			if c, ok := rosterCommon(f.Elem()); ok {
				return c, true
			}
		}
	}
	return RosterCommon{}, false
}

// rosterCommon returns the common fields of s, an addressable payload struct, or ok false when s lacks one.
func rosterCommon(s reflect.Value) (c RosterCommon, ok bool) {
	ix := commonFields(s.Type())
	if ix[0] < 0 || ix[1] < 0 || ix[2] < 0 {
		return c, false
	}
	var ok1, ok2, ok3 bool
	c.SourcedID, ok1 = s.Field(ix[0]).Addr().Interface().(*string)
	c.Status, ok2 = s.Field(ix[1]).Addr().Interface().(*string)
	c.DateLastModified, ok3 = s.Field(ix[2]).Addr().Interface().(*time.Time)
	return c, ok1 && ok2 && ok3
}

// commonIndexes caches, per payload type, the indexes of its sourced_id, status and date_last_modified
// fields (-1 when it lacks one).
var commonIndexes sync.Map

func commonFields(t reflect.Type) [3]int {
	if v, ok := commonIndexes.Load(t); ok {
		return v.([3]int)
	}
	ix := [3]int{FieldIndex(t, RosterSourcedID), FieldIndex(t, RosterStatus), FieldIndex(t, RosterDateLastModified)}
	commonIndexes.Store(t, ix)
	return ix
}
