package pgstore

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/edtech-analytics/platform/libs/records"
	"github.com/hamba/avro/v2"
	"github.com/jackc/pgx/v5"
)

// Roster state: one row per OneRoster entity, keyed by sourced_id. A record applies only when its
// date_last_modified is not older than what the district holds for that entity, the row or the
// deletion remembered in roster_deletions, so replays and late deltas never move state backwards; on
// equal times the later record wins, within a batch and across batches alike. status tobedeleted deletes
// the row and remembers the deletion.
//
// A table's columns are its entity's schema fields (records.RosterEntities), of the same names, less the
// few rosterTableDefs names. Rows go to PostgreSQL as one JSON array per table and batch, read with
// jsonb_populate_recordset into the table's own row type: the JSON keys are the column names.

// rosterTableDef is what a roster table does not take from its entity's schema.
type rosterTableDef struct {
	typ, name string
	skip      []string          // schema fields the table does not keep
	rename    map[string]string // schema field -> its column, where the names differ
}

// rosterTableDefs are the district's roster tables, one per OneRoster entity. Every schema field not
// named here is a column of the same name; roster_users also holds internal_id (the user's enriched
// actor). TestRosterTablesMatchTheDistrictSchema checks the columns against the district schema.
var rosterTableDefs = []rosterTableDef{
	{typ: records.TypeRosterOrg, name: "roster_orgs", skip: []string{"children_sourced_ids"}},
	{typ: records.TypeRosterAcademicSession, name: "roster_academic_sessions", skip: []string{"children_sourced_ids"}},
	{typ: records.TypeRosterCourse, name: "roster_courses", skip: []string{"subject_codes"}},
	{typ: records.TypeRosterClass, name: "roster_classes", skip: []string{"subject_codes"}},
	{typ: records.TypeRosterUser, name: "roster_users", skip: []string{"user_ids", "sms", "phone"},
		rename: map[string]string{"enabled_user": "enabled"}},
	{typ: records.TypeRosterEnrollment, name: "roster_enrollments", rename: map[string]string{"primary": "is_primary"}},
	{typ: records.TypeRosterDemographics, name: "roster_demographics",
		rename: map[string]string{"demographic_race_two_or_more_races": "two_or_more_races"}},
	{typ: records.TypeRosterLineItem, name: "roster_line_items"},
	{typ: records.TypeRosterResult, name: "roster_results"},
}

// internalIDColumn is roster_users' column of the user's internal id, the one column no schema field fills.
const internalIDColumn = "internal_id"

// rosterTable is one roster table, ready to take rows.
type rosterTable struct {
	rosterTableDef
	entity  *records.RosterEntity
	columns []rosterColumn
	update  string // "(col, ...) = ROW(EXCLUDED.col, ...)" for every column but the key
}

// rosterColumn is one column of a roster table: a field of the entity's payload, or internal_id (field -1,
// no Avro type).
type rosterColumn struct {
	name  string
	key   string      // `"name":`
	field int         // in the payload struct
	avro  avro.Schema // the field's Avro type
	write jsonWriter
}

// rosterTables returns the roster tables by event type.
func rosterTables() (map[string]*rosterTable, error) {
	entities, err := records.RosterEntities()
	if err != nil {
		return nil, err
	}
	defs := map[string]rosterTableDef{}
	for _, d := range rosterTableDefs {
		defs[d.typ] = d
	}
	out := map[string]*rosterTable{}
	for _, e := range entities {
		def, ok := defs[e.Type]
		if !ok {
			return nil, fmt.Errorf("no roster table for %s", e.Type)
		}
		t := &rosterTable{rosterTableDef: def, entity: e}
		named := 0
		for _, f := range e.Schema.Fields() {
			if slices.Contains(def.skip, f.Name()) {
				named++
				continue
			}
			col := f.Name()
			if c, ok := def.rename[col]; ok {
				col = c
				named++
			}
			i := records.FieldIndex(e.GoType, f.Name())
			w, err := writerFor(f.Type(), e.GoType.Field(i).Type)
			if err != nil {
				return nil, fmt.Errorf("%s.%s: %w", e.Type, f.Name(), err)
			}
			t.columns = append(t.columns, rosterColumn{name: col, field: i, avro: f.Type(), write: w})
		}
		if named != len(def.skip)+len(def.rename) {
			return nil, fmt.Errorf("%s: the table names fields its schema does not have", def.name)
		}
		if e.Type == records.TypeRosterUser {
			t.columns = append(t.columns, rosterColumn{name: internalIDColumn, field: -1, write: writeValue})
		}
		var cols, vals []string
		for i := range t.columns {
			c := &t.columns[i]
			c.key = strconv.Quote(c.name) + ":"
			switch c.name {
			case records.RosterSourcedID:
				continue
			case internalIDColumn: // a record that does not know it keeps the one already known
				vals = append(vals, "coalesce(EXCLUDED.internal_id, t.internal_id)")
			default:
				vals = append(vals, "EXCLUDED."+c.name)
			}
			cols = append(cols, c.name)
		}
		t.update = "(" + strings.Join(cols, ", ") + ") = ROW(" + strings.Join(vals, ", ") + ")"
		out[e.Type] = t
	}
	if len(out) != len(rosterTableDefs) {
		return nil, fmt.Errorf("%d roster tables for %d roster entities", len(rosterTableDefs), len(out))
	}
	return out, nil
}

// rosterRow is one row of a roster table: the entity's payload and, for a user, the internal id when
// the record knows it.
type rosterRow struct {
	table      *rosterTable
	payload    reflect.Value // the entity's payload struct
	internalID *string
}

// MarshalJSON writes the row as an object of its columns.
func (r *rosterRow) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, c := range r.table.columns {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(c.key)
		v := reflect.ValueOf(r.internalID)
		if c.field >= 0 {
			v = r.payload.Field(c.field)
		}
		if err := c.write(&b, v); err != nil {
			return nil, fmt.Errorf("column %s: %w", c.name, err)
		}
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// jsonWriter writes one value of a payload as its column reads it.
type jsonWriter func(b *bytes.Buffer, v reflect.Value) error

// writerFor returns how a value of Avro type s, held in Go type t, is written: dates as YYYY-MM-DD (date
// columns), arrays and maps never as null (NOT NULL columns), a record as an object of all its fields
// (a jsonb column of an array of records), anything else as encoding/json writes it.
func writerFor(s avro.Schema, t reflect.Type) (jsonWriter, error) {
	switch s := s.(type) {
	case *avro.RefSchema:
		return writerFor(s.Schema(), t)
	case *avro.UnionSchema:
		if !s.Nullable() || len(s.Types()) != 2 || t.Kind() != reflect.Pointer {
			return nil, fmt.Errorf("union %s is not [null, T] held in a pointer", s)
		}
		inner := s.Types()[0]
		if inner.Type() == avro.Null {
			inner = s.Types()[1]
		}
		w, err := writerFor(inner, t.Elem())
		if err != nil {
			return nil, err
		}
		return func(b *bytes.Buffer, v reflect.Value) error {
			if v.IsNil() {
				b.WriteString("null")
				return nil
			}
			return w(b, v.Elem())
		}, nil
	case *avro.PrimitiveSchema:
		if l := s.Logical(); l != nil && l.Type() == avro.Date {
			return writeDate, nil
		}
		return writeValue, nil
	case *avro.ArraySchema:
		w, err := writerFor(s.Items(), t.Elem())
		if err != nil {
			return nil, err
		}
		return func(b *bytes.Buffer, v reflect.Value) error {
			b.WriteByte('[')
			for i := range v.Len() {
				if i > 0 {
					b.WriteByte(',')
				}
				if err := w(b, v.Index(i)); err != nil {
					return err
				}
			}
			b.WriteByte(']')
			return nil
		}, nil
	case *avro.MapSchema:
		return func(b *bytes.Buffer, v reflect.Value) error {
			if v.IsNil() {
				b.WriteString("{}")
				return nil
			}
			return writeValue(b, v)
		}, nil
	case *avro.RecordSchema:
		type field struct {
			key   string
			index int
			write jsonWriter
		}
		var fields []field
		for _, f := range s.Fields() {
			i := records.FieldIndex(t, f.Name())
			if i < 0 {
				return nil, fmt.Errorf("%s has no field %s", t, f.Name())
			}
			w, err := writerFor(f.Type(), t.Field(i).Type)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", f.Name(), err)
			}
			fields = append(fields, field{key: strconv.Quote(f.Name()) + ":", index: i, write: w})
		}
		return func(b *bytes.Buffer, v reflect.Value) error {
			b.WriteByte('{')
			for i, f := range fields {
				if i > 0 {
					b.WriteByte(',')
				}
				b.WriteString(f.key)
				if err := f.write(b, v.Field(f.index)); err != nil {
					return err
				}
			}
			b.WriteByte('}')
			return nil
		}, nil
	}
	return nil, fmt.Errorf("no column type for Avro %s", s.Type())
}

// writeDate writes a date.
func writeDate(b *bytes.Buffer, v reflect.Value) error {
	t, ok := v.Interface().(time.Time)
	if !ok {
		return fmt.Errorf("a date held in %s", v.Type())
	}
	b.WriteString(`"` + t.Format(time.DateOnly) + `"`)
	return nil
}

// writeValue writes a value as encoding/json does.
func writeValue(b *bytes.Buffer, v reflect.Value) error {
	j, err := json.Marshal(v.Interface())
	if err != nil {
		return err
	}
	b.Write(j)
	return nil
}

const (
	// upsertRoster: %[1]s the table, %[2]s roster_deletions, %[3]s the update list; $1 the rows as a JSON
	// array, $2 the entity type.
	upsertRoster = `WITH src AS (SELECT * FROM jsonb_populate_recordset(NULL::%[1]s, $1::jsonb)),
		ok AS (SELECT src.* FROM src WHERE NOT EXISTS (SELECT 1 FROM %[2]s d
			WHERE d.entity = $2 AND d.sourced_id = src.sourced_id AND d.date_last_modified > src.date_last_modified)),
		undeleted AS (DELETE FROM %[2]s d USING ok WHERE d.entity = $2 AND d.sourced_id = ok.sourced_id)
		INSERT INTO %[1]s AS t SELECT * FROM ok ORDER BY sourced_id
		ON CONFLICT (sourced_id) DO UPDATE SET %[3]s WHERE EXCLUDED.date_last_modified >= t.date_last_modified`
	// deleteRoster: %[1]s the table, %[2]s roster_deletions; $1 the entity type, $2 sourced ids, $3 their
	// date_last_modified.
	deleteRoster = `WITH src AS (SELECT * FROM unnest($2::text[], $3::timestamptz[]) AS s(sourced_id, date_last_modified)),
		ok AS (SELECT src.* FROM src
			WHERE NOT EXISTS (SELECT 1 FROM %[1]s t WHERE t.sourced_id = src.sourced_id AND t.date_last_modified > src.date_last_modified)
			AND NOT EXISTS (SELECT 1 FROM %[2]s d WHERE d.entity = $1 AND d.sourced_id = src.sourced_id AND d.date_last_modified > src.date_last_modified)),
		gone AS (DELETE FROM %[1]s t USING ok WHERE t.sourced_id = ok.sourced_id)
		INSERT INTO %[2]s AS d (entity, sourced_id, date_last_modified) SELECT $1, sourced_id, date_last_modified FROM ok ORDER BY sourced_id
		ON CONFLICT (entity, sourced_id) DO UPDATE SET date_last_modified = EXCLUDED.date_last_modified`
)

// rosterKey names one entity of a district.
type rosterKey struct{ typ, sourcedID string }

// rosterOp is the winning record of an entity in a batch: a row to upsert, or a delete. An upsert that
// won over a delete in the same batch keeps that delete's time in deletedAt: the delete is applied
// first. A user upsert that does not know the internal id keeps in prior the user rows of the batch
// that did, since the last delete, in order: they are applied before it, each only if it is not older
// than the row it meets, exactly as if the batch's records had been applied one by one.
type rosterOp struct {
	dlm       time.Time
	delete    bool
	row       *rosterRow // for upserts
	user      *rosterRow // row again when it is a user
	deletedAt *time.Time
	prior     []*rosterRow
}

// addRoster reduces one roster record into the batch's ops: it wins over the entity's op so far unless
// older. Wins form a chain of non-decreasing times, so against any stored row the ops of the chain that
// apply are a suffix of it, and only the deletes and the user rows that carry an internal id can
// change what the final op leaves.
func (dist *district) addRoster(t *rosterTable, ev *records.EnrichedEvent, internalID *string) {
	k, op := rosterOpOf(t, ev, internalID)
	cur, ok := dist.roster[k]
	if ok && op.dlm.Before(cur.dlm) {
		return
	}
	if ok && !op.delete {
		switch {
		case cur.delete:
			op.deletedAt = &cur.dlm
		default:
			op.deletedAt = cur.deletedAt
			if op.user != nil && op.user.internalID == nil {
				op.prior = cur.prior
				if cur.user.internalID != nil {
					op.prior = append(slices.Clip(op.prior), cur.user)
				}
			}
		}
	}
	dist.roster[k] = op
}

// queueRoster adds the district's roster upserts and deletes to b, one of each per table at most, in a
// fixed table order with keys sorted so that concurrent writers lock rows in the same order.
func (dist *district) queueRoster(b *pgx.Batch, schema string) error {
	if len(dist.roster) == 0 {
		return nil
	}
	deletions := pgx.Identifier{schema, "roster_deletions"}.Sanitize()
	keys := sortedKeys(dist.roster, func(a, b rosterKey) int {
		if c := strings.Compare(a.typ, b.typ); c != 0 {
			return c
		}
		return strings.Compare(a.sourcedID, b.sourcedID)
	})
	for chunk := range chunkBy(keys, func(k rosterKey) string { return k.typ }) {
		t := dist.tables[chunk[0].typ]
		table := pgx.Identifier{schema, t.name}.Sanitize()
		var (
			rounds  [][]*rosterRow // rounds[i] holds the i-th prior row of keys that have one; the last round the ops
			finals  []*rosterRow
			delIDs  []string
			delDLMs []time.Time
		)
		for _, k := range chunk {
			op := dist.roster[k]
			switch {
			case op.delete:
				delIDs, delDLMs = append(delIDs, k.sourcedID), append(delDLMs, op.dlm)
				continue
			case op.deletedAt != nil:
				delIDs, delDLMs = append(delIDs, k.sourcedID), append(delDLMs, *op.deletedAt)
			}
			for i, u := range op.prior {
				if i == len(rounds) {
					rounds = append(rounds, nil)
				}
				rounds[i] = append(rounds[i], u)
			}
			finals = append(finals, op.row)
		}
		if len(delIDs) > 0 { // before the upserts: a delete that an upsert of this batch follows comes first
			b.Queue(fmt.Sprintf(deleteRoster, table, deletions), t.typ, delIDs, delDLMs)
		}
		for _, rows := range append(rounds, finals) {
			if len(rows) == 0 {
				continue
			}
			doc, err := json.Marshal(rows)
			if err != nil {
				return fmt.Errorf("encoding %s rows: %w", t.name, err)
			}
			b.Queue(fmt.Sprintf(upsertRoster, table, deletions, t.update), string(doc), t.typ)
		}
	}
	return nil
}

// chunkBy yields runs of consecutive elements with the same group.
func chunkBy[T any](s []T, group func(T) string) func(yield func([]T) bool) {
	return func(yield func([]T) bool) {
		for start := 0; start < len(s); {
			end := start + 1
			for end < len(s) && group(s[end]) == group(s[start]) {
				end++
			}
			if !yield(s[start:end]) {
				return
			}
			start = end
		}
	}
}

// rosterCheck reports whether a roster record, its payload checked, has a sourced id and a known status.
func rosterCheck(ev *records.EnrichedEvent) bool {
	p := ev.Payloads()
	c, ok := p.RosterCommon()
	return ok && *c.SourcedID != "" && (*c.Status == records.RosterActive || *c.Status == records.RosterToBeDeleted)
}

// rosterOpOf turns a checked roster record into its entity key and op. internalID is the actor's
// internal id when it is a UUID (for users only).
func rosterOpOf(t *rosterTable, ev *records.EnrichedEvent, internalID *string) (rosterKey, rosterOp) {
	p := ev.Payloads()
	c, _ := p.RosterCommon()
	op := rosterOp{dlm: *c.DateLastModified}
	if *c.Status == records.RosterToBeDeleted {
		op.delete = true
	} else {
		op.row = &rosterRow{table: t, payload: t.entity.Payload(&p)}
		if t.typ == records.TypeRosterUser {
			op.row.internalID, op.user = internalID, op.row
		}
	}
	return rosterKey{typ: ev.Type, sourcedID: *c.SourcedID}, op
}
