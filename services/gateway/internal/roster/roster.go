// Package roster decodes OneRoster 1.2 input into raw roster records: a REST-style JSON collection
// ({"users":[...]}) or a CSV bulk/delta package (a zip of manifest.csv and the OneRoster CSV files).
// Each record is checked on its own, so good records are accepted beside bad ones, and every error
// names its field: "users[3].dateLastModified" in JSON, "users.csv:12:dateLastModified" (file, line,
// column) in CSV. A body or package that cannot be read at all is an error for the whole request.
// The package is pure: no HTTP, no Kafka.
//
// # Envelope conventions
//
// A record becomes a records.RawEvent of the matching roster type, with SchemaVersion 1 and tenant,
// source and arrival time from the request. OccurredAt is the record's dateLastModified (for a user,
// the latest of the user's and its roles.csv rows').
//
// EventID is a deterministic UUID (version 5 layout: SHA-1 over a fixed namespace, the tenant, source,
// collection, sourcedId, dateLastModified and the decoded payload), so a re-sent file yields the same
// ids and the enricher drops the repeats, while a modified record, even one a bulk file sends without
// dateLastModified, is a new event.
//
// Actor is who the record is about. Only user-ish records name a person:
//   - users and demographics: the user's own sourcedId, with the role of the user's primary role
//     (demographics take it from the users of the same package; RoleUnknown when it has none);
//   - enrollments: the enrolled user's sourcedId and the enrollment's role;
//   - results: the student's sourcedId and role "student".
//
// Orgs, academic sessions, courses, classes and line items describe no person: their actor is the
// entity's own sourcedId with role RoleSystem. Downstream code must identify students only from
// user-ish records (users, demographics, enrollments, results), never from a RoleSystem actor.
// SchoolID and ClassID are set where the entity has them: enrollments (school, class), classes
// (school), line items (class, and school when given) and results (class when given).
//
// # What is checked
//
// sourcedId is required (at most 256 bytes); status is active or tobedeleted; dateLastModified is an
// RFC 3339 timestamp, not more than 24h ahead of the request. Dates (birthDate, startDate, beginDate,
// scoreDate, ...) are YYYY-MM-DD. The enumerations OneRoster defines are checked (org type, session
// type, class type, user roles and role types, enrollment role, sex, score status), and the
// extensible ones also accept "ext:" values. Required references must be present. A tobedeleted
// record needs only its sourcedId, dateLastModified and, for enrollments and results, the person it
// is about; whatever else it carries is still checked. Text must be valid UTF-8 without control
// characters (free text may hold tab and line breaks).
// Booleans are JSON booleans (or "true"/"false" strings, as OneRoster 1.1 sent them), and in CSV
// true/false in any case. metadata objects become map[string]string (scalars as text, nested values as
// compact JSON); in CSV, metadata.* columns fill the same map. Passwords are never carried, not even
// in the raw copy of a rejected record.
//
// # CSV packages
//
// A package holds files at the root of the zip; manifest.csv is optional and, when present, gives each
// file's mode (bulk, delta or absent) and must agree with the files present. In bulk files status and
// dateLastModified may be blank (status is then active and the time of arrival stands in for
// dateLastModified); in delta files they are required. OneRoster 1.2 roles.csv rows are joined onto
// their users (a role row without its user in users.csv is rejected: a role change travels with its
// user), and OneRoster 1.1 role/orgSourcedIds columns are read as primary roles. The other OneRoster
// 1.2 files the platform does not carry (categories.csv, resources.csv, scoreScales.csv, ...) are
// skipped and listed in Package.Ignored; any other file name rejects the package. Columns outside the
// OneRoster bindings (1.1 and 1.2) reject the package, so a misspelt column cannot drop data silently.
// A request is bounded by Limits: records, columns, the bytes of a header and of a record, of a file
// and of a package once unzipped (and at most MaxPackageFiles files); what decoding holds is charged
// to a Memory before it is held, so a caller can bound it too.
//
// Bulk semantics are not applied here: Package.Files says which files the manifest marks bulk, and the
// import step (libs/tenancy/rosters) turns a bulk file's missing records into tombstones, holds uploads
// over the district's thresholds and records whose references are unknown (Upload, Describe,
// Tombstone). Not supported: the gradebook files outside lineItems.csv and results.csv.
package roster

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/edtech-analytics/platform/libs/records"
	"github.com/edtech-analytics/platform/services/gateway/internal/ingest"
)

// Actor roles this package sets besides the OneRoster ones.
const (
	// RoleSystem is the actor role of records that describe no person: orgs, academic sessions,
	// courses, classes and line items, whose actor is the entity itself.
	RoleSystem = "system"
	// RoleUnknown is the actor role of a user-ish record whose role is not known: demographics sent
	// without their user, or a deleted user or enrollment sent without roles.
	RoleUnknown = "unknown"
)

// Errors for a whole request; callers branch on them with errors.Is.
var (
	// ErrUnknownCollection is a collection name outside Collections.
	ErrUnknownCollection = errors.New("unknown OneRoster collection")
	// ErrInvalidPackage is a CSV package that cannot be read: not a zip, an unknown file, a bad
	// manifest, a bad header or CSV syntax.
	ErrInvalidPackage = errors.New("invalid OneRoster CSV package")
	// ErrPackageTooLarge is a package over a bound of Limits or MaxPackageFiles.
	ErrPackageTooLarge = errors.New("OneRoster CSV package too large")
)

// Collections returns the collections accepted, by their OneRoster JSON collection name; the CSV
// file of each is the name with ".csv".
func Collections() []string {
	out := make([]string, len(entities))
	for i, e := range entities {
		out[i] = e.collection
	}
	return out
}

// DecodeJSON decodes a OneRoster JSON collection body such as {"users":[{...}]} (the collection's
// plural key; other keys are ignored). It returns an error wrapping ErrUnknownCollection for an
// unknown collection, an *ingest.SyntaxError for a body that is not such a document, and one wrapping
// ingest.ErrTooManyEvents for more than maxRecords records. Accepted and Rejected carry each record's
// position in the array. Only lim.MaxRecords applies to JSON; mem is charged with what decoding holds
// and its error returned wrapped.
func DecodeJSON(collection string, body []byte, meta ingest.Meta, lim Limits, mem Memory) ([]ingest.Accepted, []ingest.Rejected, error) {
	lim = lim.withDefaults()
	e, ok := entityByCollection(collection)
	if !ok {
		return nil, nil, fmt.Errorf("%w %q; known: %v", ErrUnknownCollection, collection, Collections())
	}
	// Splitting copies the body twice: the collection's array, then its records (the first copy is
	// garbage once the second is made).
	if err := grow(mem, 2*int64(len(body))); err != nil {
		return nil, nil, fmt.Errorf("a body of %d bytes: %w", len(body), err)
	}
	items, err := splitCollection(body, collection, lim.MaxRecords)
	if err != nil {
		return nil, nil, err
	}
	var out results
	seen := make(map[string]string, len(items))
	for i, item := range items {
		prefix := fmt.Sprintf("%s[%d]", collection, i)
		src, ok := newJSONSource(prefix, item)
		if !ok {
			out.reject(i, []ingest.FieldError{{Field: prefix, Message: "must be a JSON object"}}, item)
			continue
		}
		// The record's fields are copied once more as the event's text.
		if err := grow(mem, recordCost+int64(len(item))+fieldCost*int64(len(src.m))); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", prefix, err)
		}
		r := &rec{src: src, now: meta.ReceivedAt}
		ev, errs := decodeRecord(e, r, meta)
		errs = checkDuplicate(seen, r.sourcedID, errs, src)
		if len(errs) > 0 {
			raw := src.scrubbed()
			if err := grow(mem, 2*int64(len(raw))); err != nil {
				return nil, nil, fmt.Errorf("%s: %w", prefix, err)
			}
			out.reject(i, errs, raw)
			continue
		}
		if err := grow(mem, metadataCost*int64(len(r.meta))); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", prefix, err)
		}
		if err := out.accept(i, ev, r.hash, r.size); err != nil {
			return nil, nil, err
		}
	}
	return out.accepted, out.rejected, nil
}

// results collects the outcome of each record.
type results struct {
	accepted []ingest.Accepted
	rejected []ingest.Rejected
	each     func(ingest.Accepted) error // when set, accepted records go here instead
}

// accept keeps an accepted record, or passes it to each when the caller streams them.
func (r *results) accept(i int, ev *records.RawEvent, hash []byte, size int) error {
	a := ingest.Accepted{Index: i, Event: ev, Hash: hash, Size: size}
	if r.each != nil {
		return r.each(a)
	}
	r.accepted = append(r.accepted, a)
	return nil
}

func (r *results) reject(i int, errs []ingest.FieldError, raw []byte) {
	r.rejected = append(r.rejected, ingest.Rejected{Index: i, Errors: errs, Raw: raw})
}

// checkDuplicate rejects a record whose sourcedId an earlier record of the same request already used.
func checkDuplicate(seen map[string]string, id string, errs []ingest.FieldError, src source) []ingest.FieldError {
	if id == "" {
		return errs
	}
	f := same("sourcedId")
	if first, dup := seen[id]; dup {
		return append(errs, ingest.FieldError{Field: src.at(f), Message: "duplicate of " + first})
	}
	seen[id] = src.where()
	return errs
}

// decodeRecord checks one record and builds its raw event; the event is usable only without errors.
func decodeRecord(e *entity, r *rec, meta ingest.Meta) (*records.RawEvent, []ingest.FieldError) {
	r.base()
	ev := e.build(r)
	ev.Type = e.typ
	ev.TenantID, ev.SourceID = meta.TenantID, meta.SourceID
	ev.ReceivedAt = meta.ReceivedAt.UTC().Truncate(time.Millisecond)
	ev.SchemaVersion = 1
	if len(r.errs) > 0 {
		return ev, r.errs
	}
	id, hash, size, err := eventID(meta, e.collection, r.sourcedID, r.modified, ev.Payloads())
	if err != nil {
		return ev, []ingest.FieldError{{Field: r.src.at(same("sourcedId")), Message: "cannot be encoded: " + err.Error()}}
	}
	r.hash, r.size = hash, size
	ev.EventID = id
	ev.OccurredAt = r.occurred
	if r.modified.IsZero() {
		// A bulk row without dateLastModified: it is as new as its arrival.
		ev.OccurredAt = ev.ReceivedAt
		p := ev.Payloads()
		if c, ok := p.RosterCommon(); ok {
			*c.DateLastModified = ev.ReceivedAt
		}
	}
	return ev, nil
}

// idNamespace is the UUID namespace of roster event ids (a fixed random UUID).
var idNamespace = [16]byte{0x4c, 0x3b, 0x0e, 0x52, 0x9d, 0x41, 0x4f, 0x7a, 0xa5, 0x0c, 0x6e, 0x1d, 0x28, 0x93, 0xb7, 0x61}

// eventID is a version-5 style UUID: SHA-1 of the namespace, tenant, source, collection, sourcedId,
// dateLastModified and the payload's canonical JSON (struct field order, sorted map keys) without its
// dateLastModified. The same JSON gives the record's content hash (SHA-256, 16 bytes), by which the
// import step tells a changed record from one sent again. The JSON is json.Marshal's (an Encoder writes
// the same bytes and a newline, into a buffer used again).
func eventID(meta ingest.Meta, collection, sourcedID string, modified time.Time, p records.Payloads) (string, []byte, int, error) {
	c, ok := p.RosterCommon()
	if !ok {
		return "", nil, 0, fmt.Errorf("%s: not a roster payload", collection)
	}
	sc := hashScratches.Get().(*hashScratch)
	defer func() {
		if sc.json.Cap() <= maxScratch && cap(sc.id) <= maxScratch { // a rare large record is not kept
			hashScratches.Put(sc)
		}
	}()
	sc.json.Reset()
	stamped := *c.DateLastModified
	*c.DateLastModified = time.Time{}
	err := sc.enc.Encode(p)
	*c.DateLastModified = stamped
	if err != nil {
		return "", nil, 0, err
	}
	payload := bytes.TrimSuffix(sc.json.Bytes(), []byte("\n"))
	sum := sha256.Sum256(payload)
	var stamp string
	if !modified.IsZero() {
		stamp = modified.UTC().Format(time.RFC3339Nano)
	}
	in := append(sc.id[:0], idNamespace[:]...)
	for _, part := range []string{meta.TenantID, meta.SourceID, collection, sourcedID, stamp} {
		in = append(in, part...)
		in = append(in, 0) // no part holds NUL: meta is the gateway's own, the rest was checked
	}
	in = append(in, payload...)
	sc.id = in
	u := sha1.Sum(in)
	u[6] = u[6]&0x0f | 0x50 // version 5
	u[8] = u[8]&0x3f | 0x80 // RFC 4122 variant
	var b [36]byte
	hex.Encode(b[0:8], u[0:4])
	b[8] = '-'
	hex.Encode(b[9:13], u[4:6])
	b[13] = '-'
	hex.Encode(b[14:18], u[6:8])
	b[18] = '-'
	hex.Encode(b[19:23], u[8:10])
	b[23] = '-'
	hex.Encode(b[24:], u[10:16])
	return string(b[:]), sum[:16], len(payload), nil
}

// hashScratch is eventID's buffers, kept in a pool: the payload's JSON, and the id's SHA-1 input.
type hashScratch struct {
	json bytes.Buffer
	enc  *json.Encoder
	id   []byte
}

// maxScratch bounds the buffers the pool keeps.
const maxScratch = 64 << 10

var hashScratches = sync.Pool{New: func() any {
	sc := &hashScratch{}
	sc.enc = json.NewEncoder(&sc.json)
	return sc
}}

// SourcedIDOf returns the sourcedId of a roster record ("" for other records).
func SourcedIDOf(ev *records.RawEvent) string { return sourcedIDOf(ev) }

// sourcedIDOf returns the sourcedId of the event's roster payload.
func sourcedIDOf(ev *records.RawEvent) string {
	p := ev.Payloads()
	if c, ok := p.RosterCommon(); ok {
		return *c.SourcedID
	}
	return ""
}
