package roster

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/edtech-analytics/platform/libs/mapping"
	"github.com/edtech-analytics/platform/libs/records"
	"github.com/edtech-analytics/platform/libs/tenancy/rosters"
	"github.com/edtech-analytics/platform/services/gateway/internal/ingest"
)

// FileInfo is one file of a request as read: its positions are From up to To (exclusive) in the
// request's Accepted and Rejected.
type FileInfo struct {
	Name       string
	Collection string
	Mode       rosters.Mode
	From, To   int
	// Present are the sourcedIds of the file's rejected rows that had one.
	Present []string
	// Findings counts the data-quality findings of the file's rows.
	Findings int
	// Export and Columns are a mapped CSV file's export and header (see rosters.File).
	Export  string
	Columns []string
}

// Files returns the import step's files of a request's files, with their counts of rows read and rejected.
func Files(files []FileInfo, rejected []ingest.Rejected) []rosters.File {
	out := make([]rosters.File, len(files))
	for i, f := range files {
		out[i] = rosters.File{Name: f.Name, Entity: f.Collection, Mode: f.Mode, Received: f.To - f.From, Present: f.Present, Findings: f.Findings,
			Export: f.Export, Columns: f.Columns}
		for _, r := range rejected {
			if r.Index >= f.From && r.Index < f.To {
				out[i].Rejected++
			}
		}
	}
	return out
}

// Describe returns the ledger item of a roster record: entity, sourcedId, status, the person it is
// about, the hash of its content without dateLastModified, and the entities it references that must
// be known before it is applied (an enrollment's user, class and school; a class's course, school and
// terms; a result's line item, student and class).
func Describe(a ingest.Accepted) (rosters.Item, error) {
	ev := a.Event
	e, ok := entityByType(ev.Type)
	p := ev.Payloads()
	c, isRoster := p.RosterCommon()
	if !ok || !isRoster {
		return rosters.Item{}, fmt.Errorf("%s is not a roster record", ev.Type)
	}
	it := rosters.Item{Entity: e.collection, SourcedID: *c.SourcedID, Active: *c.Status != statusDeleted, Hash: a.Hash}
	if ev.Actor.Role != RoleSystem {
		it.Person = ev.Actor.SISID
	}
	if it.Hash == nil {
		_, hash, _, err := eventID(ingest.Meta{}, e.collection, it.SourcedID, time.Time{}, p)
		if err != nil {
			return rosters.Item{}, fmt.Errorf("hashing %s %s: %w", e.collection, it.SourcedID, err)
		}
		it.Hash = hash
	}
	ref := func(entity, id string) {
		if id != "" {
			it.Refs = append(it.Refs, rosters.Ref{Entity: entity, SourcedID: id})
		}
	}
	switch {
	case ev.RosterEnrollment != nil:
		en := ev.RosterEnrollment
		ref(rosters.Users, en.UserSourcedID)
		ref(rosters.Classes, en.ClassSourcedID)
		ref(rosters.Orgs, en.SchoolSourcedID)
	case ev.RosterClass != nil:
		cl := ev.RosterClass
		ref(rosters.Courses, cl.CourseSourcedID)
		ref(rosters.Orgs, cl.SchoolSourcedID)
		for _, t := range cl.TermSourcedIds {
			ref(rosters.AcademicSessions, t)
		}
	case ev.RosterResult != nil:
		r := ev.RosterResult
		ref(rosters.LineItems, r.LineItemSourcedID)
		ref(rosters.Users, r.StudentSourcedID)
		if r.ClassSourcedID != nil {
			ref(rosters.Classes, *r.ClassSourcedID)
		}
	}
	return it, nil
}

// Tombstone returns the record that deactivates a record a bulk file lacked: status tobedeleted, dated
// at the request's arrival, naming the person it is about (enrollments and results need one) and, in
// metadata.deactivatedBy, the upload.
func Tombstone(meta ingest.Meta, m rosters.Missing, uploadID string) (*records.RawEvent, error) {
	e, ok := entityByCollection(m.Entity)
	if !ok {
		return nil, fmt.Errorf("%w %q", ErrUnknownCollection, m.Entity)
	}
	obj := map[string]any{"sourcedId": m.SourcedID, "status": statusDeleted,
		"dateLastModified": meta.ReceivedAt.UTC().Format(time.RFC3339Nano),
		"metadata":         map[string]string{"deactivatedBy": "upload " + uploadID}}
	switch m.Entity {
	case rosters.Enrollments:
		obj["user"] = map[string]string{"sourcedId": m.Person}
	case rosters.Results:
		obj["student"] = map[string]string{"sourcedId": m.Person}
	}
	b, err := json.Marshal(obj)
	if err != nil {
		return nil, err
	}
	src, _ := newJSONSource(m.Entity, b)
	ev, errs := decodeRecord(e, &rec{src: src, now: meta.ReceivedAt}, meta)
	if len(errs) > 0 {
		return nil, fmt.Errorf("tombstone of %s %s: %v", m.Entity, m.SourcedID, errs)
	}
	return ev, nil
}

func entityByType(typ string) (*entity, bool) {
	for _, e := range entities {
		if e.typ == typ {
			return e, true
		}
	}
	return nil, false
}

// CollectionOf returns the OneRoster collection of a roster record ("" for other records).
func CollectionOf(ev *records.RawEvent) string {
	if e, ok := entityByType(ev.Type); ok {
		return e.collection
	}
	return ""
}

// RecordDecoder decodes single OneRoster JSON records one by one, as a mapped export yields them, with
// the checks of DecodeJSON: each record on its own, and a sourcedId used twice in a collection rejected
// after its first use.
type RecordDecoder struct {
	meta ingest.Meta
	seen map[string]map[string]string // collection -> sourcedId -> where it was first
}

// NewRecordDecoder returns a decoder for records arriving with meta.
func NewRecordDecoder(meta ingest.Meta) *RecordDecoder {
	return &RecordDecoder{meta: meta, seen: map[string]map[string]string{}}
}

// Decode decodes one record of collection; its errors name fields under where (e.g. "students.csv:12",
// giving "students.csv:12.givenName"). It returns the accepted record (with its content hash) or the
// record's errors; an unknown collection is an error of the caller.
func (d *RecordDecoder) Decode(collection string, item []byte, where string, mem Memory) (ingest.Accepted, []ingest.FieldError, error) {
	return d.DecodeMapped(collection, item, nil, where, mem)
}

// DecodeMapped is Decode of a record the mapping engine produced, read from its values (a row of an
// export mapped WithValues) rather than by parsing its JSON; without values it is Decode. The result is
// Decode's for the same record, and holds nothing of vals (which the engine reuses for its next row).
func (d *RecordDecoder) DecodeMapped(collection string, item []byte, vals []mapping.Value, where string, mem Memory) (ingest.Accepted, []ingest.FieldError, error) {
	e, ok := entityByCollection(collection)
	if !ok {
		return ingest.Accepted{}, nil, fmt.Errorf("%w %q; known: %v", ErrUnknownCollection, collection, Collections())
	}
	var src source
	var fields int
	if vs, ok := newValuesSource(where, vals, item); ok {
		src, fields = vs, len(vals)
	} else {
		js, ok := newJSONSource(where, item)
		if !ok {
			return ingest.Accepted{}, []ingest.FieldError{{Field: where, Message: "must be a JSON object"}}, nil
		}
		src, fields = js, len(js.m)
	}
	if err := grow(mem, recordCost+2*int64(len(item))+fieldCost*int64(fields)); err != nil {
		return ingest.Accepted{}, nil, fmt.Errorf("%s: %w", where, err)
	}
	r := &rec{src: src, now: d.meta.ReceivedAt}
	ev, errs := decodeRecord(e, r, d.meta)
	seen := d.seen[collection]
	if seen == nil {
		seen = map[string]string{}
		d.seen[collection] = seen
	}
	if errs = checkDuplicate(seen, r.sourcedID, errs, src); len(errs) > 0 {
		return ingest.Accepted{}, errs, nil
	}
	return ingest.Accepted{Event: ev, Hash: r.hash, Size: r.size}, nil, nil
}
