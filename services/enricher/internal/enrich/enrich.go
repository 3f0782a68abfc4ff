// Package enrich turns one raw record into what the enricher emits for it: an enriched record, a
// dead-letter record with a typed reason, or nothing (a suppressed record: erased, or without the
// consent the district's policy requires). Client retries are the pipeline's business: it consults the
// dedup set only for records that are enriched.
package enrich

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/edtech-analytics/platform/libs/keyring"
	"github.com/edtech-analytics/platform/libs/pii"
	"github.com/edtech-analytics/platform/libs/records"
	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/edtech-analytics/platform/libs/tenancy/tenants"
	"github.com/edtech-analytics/platform/services/enricher/internal/identity"
	"github.com/edtech-analytics/platform/services/enricher/internal/policy"
	"github.com/edtech-analytics/platform/services/enricher/internal/roster"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Tenants gives the district of a record.
type Tenants interface {
	Tenant(ctx context.Context, id string) (tenants.Tenant, error)
}

// Policies gives a district's compiled policy.
type Policies interface {
	Policy(ctx context.Context, t tenants.Tenant) (*policy.Compiled, error)
}

// Zones gives a district's time zone (control.tenants.time_zone), whose midnight begins the days the
// rollups count its events on.
type Zones interface {
	Location(ctx context.Context, tenantID string) (*time.Location, error)
}

// Identities resolves SIS ids to identities; Link also matches roster users across SIS vendors.
type Identities interface {
	Resolve(ctx context.Context, t tenants.Tenant, source, sis string) (identity.Identity, error)
	ResolveMany(ctx context.Context, t tenants.Tenant, keys []identity.Key) error
	Link(ctx context.Context, t tenants.Tenant, source, sis, matchKey string) (identity.Identity, error)
}

// Context stores and joins roster context.
type Context interface {
	Student(ctx context.Context, tenant, internalID string) (roster.Student, error)
	PrefetchStudents(ctx context.Context, tenant string, internalIDs []string) error
	Class(ctx context.Context, tenant, classID string) (roster.Class, error)
	LineItem(ctx context.Context, tenant, id string) (roster.LineItem, error)
	Apply(ctx context.Context, ev *records.RawEvent, person, consentKey string) error
}

// Keys open the identifying fields the gateway sealed under each person's data key (a *keyring.Keyring).
type Keys interface {
	// Preload reads the data keys of the sealed values among values in one round trip.
	Preload(ctx context.Context, values []string) error
	// Open returns a field's plaintext (plaintext values as they are); keyring.ErrShredded when the
	// person's key is gone, keyring.ErrMalformed when the value is not a sealed value of the district.
	Open(ctx context.Context, tenant, v string) (string, error)
	// KeyOf returns the data key a sealed value was sealed under (nil for a plaintext value), which seals
	// the enriched record's identifying fields again.
	KeyOf(ctx context.Context, tenant, v string) (*keyring.DataKey, error)
}

// Erased tells erased districts and students.
type Erased interface {
	District(tenant string) bool
	Student(tenant, internalID string) bool
}

// Why a record is suppressed (Outcome.Suppressed).
const (
	SuppressedErased    = "erased"
	SuppressedNoConsent = "no_consent"
)

// Outcome is what to emit for one raw record: Enriched, DLQ, or neither when Suppressed says why. PII is
// the personal data found in the record's free text, if any (of an enriched record, or one the
// district's free-text rule rejected).
type Outcome struct {
	Enriched   *records.EnrichedEvent
	DLQ        *records.DLQRecord
	Suppressed string
	PII        *PII
}

// PII is what the district's free-text rule found in one record (policy.Compiled.FreeText), with the
// district and source the record came from.
type PII struct {
	Tenant, Source string
	Found          []policy.Detection
}

// NoPerson is the actor internal id of roster records that are about no person (orgs, classes, courses,
// academic sessions, line items).
const NoPerson = "00000000-0000-0000-0000-000000000000"

// SchemaVersion is the only ingest contract version the enricher reads.
const SchemaVersion = 1

// Deps are what the enricher joins against.
type Deps struct {
	Tenants    Tenants
	Policies   Policies
	Zones      Zones
	Identities Identities
	Context    Context
	Erased     Erased
	Keys       Keys
}

// Enricher applies identity, roster context, derivation and the district policy.
type Enricher struct {
	codec *records.Codec
	deps  Deps
	now   func() time.Time
}

// New builds an enricher.
func New(codec *records.Codec, deps Deps) *Enricher {
	return &Enricher{codec: codec, deps: deps, now: time.Now}
}

// ErrTransient marks failures worth retrying (a store unavailable); the batch is aborted and retried.
var ErrTransient = errors.New("transient enrichment failure")

func transient(err error) error { return fmt.Errorf("%w: %w", ErrTransient, err) }

// Enrich decodes and enriches rec. Errors are transient (wrap ErrTransient): the record must be retried.
func (e *Enricher) Enrich(ctx context.Context, rec *kgo.Record) (Outcome, error) {
	var out Outcome
	err := e.Batch(ctx, []*kgo.Record{rec}, func(_ *kgo.Record, o Outcome) error { out = o; return nil })
	return out, err
}

// Batch enriches the records of one poll in order and calls emit with each outcome, stopping at the first
// error of either. Before that, it resolves the identities and loads the roster context of the students
// the records are about in a few statements per district, so that a storm of first sightings costs a
// batch rather than round trips per record. Enrichment errors are transient (wrap ErrTransient).
func (e *Enricher) Batch(ctx context.Context, recs []*kgo.Record, emit func(*kgo.Record, Outcome) error) error {
	items := make([]item, len(recs))
	for i, rec := range recs {
		items[i] = e.decode(rec)
	}
	if err := e.open(ctx, items); err != nil {
		return transient(err)
	}
	memo := map[string]*district{}
	if err := e.prefetch(ctx, memo, items); err != nil {
		return transient(err)
	}
	for i := range items {
		out, err := e.enrich(ctx, memo, &items[i])
		if err != nil {
			return err
		}
		if err := emit(items[i].rec, out); err != nil {
			return err
		}
	}
	return nil
}

// item is one record of a batch, decoded and checked.
type item struct {
	rec        *kgo.Record
	raw        records.RawEvent
	dead       *Outcome         // the record is a dead letter
	err        error            // decoding failed for a reason that may pass (e.g. the registry is unreachable)
	suppressed string           // the record is suppressed: its person's key was shredded
	key        *keyring.DataKey // the person's data key the record's fields were sealed under, if any
}

// open replaces the sealed identifying fields of the batch's records with their plaintext, reading the
// data keys they need in one round trip, and then checks each record's fields. A record whose person's
// key is shredded is suppressed (the person was erased: nothing of theirs may pass, whenever the record
// is read); a field that does not open, or a record that fails the checks, goes to the dead-letter topic.
// Other errors are the key store's: the batch is retried.
func (e *Enricher) open(ctx context.Context, items []item) error {
	var sealed []string
	for i := range items {
		if items[i].dead == nil && items[i].err == nil {
			items[i].raw.IdentifyingStrings(func(_ string, p *string) {
				if keyring.IsSealed(*p) {
					sealed = append(sealed, *p)
				}
			})
		}
	}
	if len(sealed) > 0 {
		if err := e.deps.Keys.Preload(ctx, sealed); err != nil {
			return err
		}
	}
	for i := range items {
		it := &items[i]
		if it.dead != nil || it.err != nil {
			continue
		}
		var failed error
		var field string
		it.raw.IdentifyingStrings(func(path string, p *string) {
			if failed != nil {
				return
			}
			if it.key == nil {
				if it.key, failed = e.deps.Keys.KeyOf(ctx, it.raw.TenantID, *p); failed != nil {
					field = path
					return
				}
			}
			plain, err := e.deps.Keys.Open(ctx, it.raw.TenantID, *p)
			if err != nil {
				failed, field = err, path
				return
			}
			*p = plain
		})
		if failed == nil {
			if failed = it.raw.UnpackSealed(); failed != nil {
				failed, field = fmt.Errorf("%w: %w", keyring.ErrMalformed, failed), "sealed"
			}
		}
		switch {
		case failed == nil:
			if errs := check(&it.raw); len(errs) > 0 {
				out := e.dead(it.rec, records.ReasonInvalidField, errs[0].Field+": "+errs[0].Message, &it.raw, errs)
				it.dead = &out
			}
		case errors.Is(failed, keyring.ErrShredded):
			it.suppressed = SuppressedErased
		case errors.Is(failed, keyring.ErrMalformed):
			out := e.dead(it.rec, records.ReasonInvalidField, field+": sealed value does not open: "+failed.Error(), &it.raw,
				[]records.FieldError{{Field: field, Message: "sealed value does not open for this district"}})
			it.dead = &out
		default:
			return failed
		}
	}
	return nil
}

func (e *Enricher) decode(rec *kgo.Record) item {
	it := item{rec: rec}
	raw := &it.raw
	if err := e.codec.Decode(rec.Value, raw); err != nil {
		var out Outcome
		switch {
		case errors.Is(err, records.ErrUnknownSchema):
			out = e.dead(rec, records.ReasonUnknownSchema, err.Error(), nil, nil)
		case errors.Is(err, records.ErrBadFrame):
			out = e.dead(rec, records.ReasonUndecodable, err.Error(), nil, nil)
		default:
			it.err = transient(err)
			return it
		}
		it.dead = &out
		return it
	}
	if raw.SchemaVersion != SchemaVersion {
		out := e.dead(rec, records.ReasonUnknownSchema, fmt.Sprintf("schema_version %d is not supported", raw.SchemaVersion), raw,
			[]records.FieldError{{Field: "schema_version", Message: fmt.Sprintf("unsupported version; supported: %d", SchemaVersion)}})
		it.dead = &out
	}
	return it // checked once its sealed fields are open (open)
}

// district is a district and its policy, looked up once per batch, with the people the batch's records
// are about.
type district struct {
	t     tenants.Tenant
	err   error // of the tenant lookup
	pol   *policy.Compiled
	loc   *time.Location // the district's time zone
	keys  []identity.Key
	users map[identity.Key]bool // roster users: their records link identities one by one, in order
}

// district returns the batch's entry for a district, looking it up on first use.
func (e *Enricher) district(ctx context.Context, memo map[string]*district, id string) (*district, error) {
	if d, ok := memo[id]; ok {
		return d, nil
	}
	d := &district{}
	d.t, d.err = e.deps.Tenants.Tenant(ctx, id)
	if d.err == nil && d.t.DeletedAt == nil {
		pol, err := e.deps.Policies.Policy(ctx, d.t)
		if err != nil {
			return nil, err
		}
		d.pol = pol
		// A zone that cannot be read fails the batch, which is retried: a record is never stamped with a
		// day of another zone.
		loc, err := e.deps.Zones.Location(ctx, id)
		if err != nil {
			return nil, err
		}
		d.loc = loc
	}
	memo[id] = d
	return d, nil
}

// prefetch resolves, per district, the identities of the batch's people (except roster users, whose
// records link identities one by one, in order) and loads their roster context.
func (e *Enricher) prefetch(ctx context.Context, memo map[string]*district, items []item) error {
	for i := range items {
		it := &items[i]
		if it.dead != nil || it.err != nil || e.deps.Erased.District(it.raw.TenantID) {
			continue
		}
		d, err := e.district(ctx, memo, it.raw.TenantID)
		if err != nil {
			return err
		}
		if d.pol == nil {
			continue // an unknown district's records go to the DLQ; other errors surface in enrich
		}
		k, person := subjectKey(d.pol, &it.raw)
		switch {
		case it.raw.RosterUser != nil:
			if d.users == nil {
				d.users = map[identity.Key]bool{}
			}
			d.users[k] = true
		case person:
			d.keys = append(d.keys, k)
		}
	}
	for _, d := range memo {
		keys := d.keys[:0]
		for _, k := range d.keys {
			if !d.users[k] {
				keys = append(keys, k)
			}
		}
		if len(keys) == 0 {
			continue
		}
		if err := e.deps.Identities.ResolveMany(ctx, d.t, keys); err != nil {
			return err
		}
		ids := make([]string, 0, len(keys))
		for _, k := range keys {
			id, err := e.deps.Identities.Resolve(ctx, d.t, k.Source, k.SIS)
			if err != nil {
				return err
			}
			ids = append(ids, id.InternalID)
		}
		if err := e.deps.Context.PrefetchStudents(ctx, d.t.ID, ids); err != nil {
			return err
		}
	}
	return nil
}

// enrich enriches one decoded record.
func (e *Enricher) enrich(ctx context.Context, memo map[string]*district, it *item) (Outcome, error) {
	if it.err != nil {
		return Outcome{}, it.err
	}
	if e.deps.Erased.District(it.raw.TenantID) {
		return Outcome{Suppressed: SuppressedErased}, nil
	}
	if it.dead != nil {
		return *it.dead, nil
	}
	if it.suppressed != "" {
		return Outcome{Suppressed: it.suppressed}, nil
	}
	rec, raw := it.rec, it.raw
	d, err := e.district(ctx, memo, raw.TenantID)
	switch {
	case err != nil:
		return Outcome{}, transient(err)
	case errors.Is(d.err, tenancy.ErrNotFound) || (d.err == nil && d.t.DeletedAt != nil):
		return e.dead(rec, records.ReasonOther, fmt.Sprintf("unknown or deleted tenant %q", raw.TenantID), &raw,
			[]records.FieldError{{Field: "tenant_id", Message: "unknown or deleted tenant"}}), nil
	case d.err != nil:
		return Outcome{}, transient(d.err)
	}
	tenant, pol := d.t, d.pol

	subj, err := e.subject(ctx, tenant, pol, &raw)
	if err != nil {
		return Outcome{}, transient(err)
	}
	if subj.person && e.deps.Erased.Student(raw.TenantID, subj.id.InternalID) {
		return Outcome{Suppressed: SuppressedErased}, nil
	}
	if records.IsRosterType(raw.Type) {
		person := subj.id.InternalID
		if !subj.person {
			person = ""
		}
		if err := e.deps.Context.Apply(ctx, &raw, person, pol.ConsentKey()); err != nil {
			return Outcome{}, transient(err)
		}
	}
	j, err := e.join(ctx, &raw, subj)
	if err != nil {
		return Outcome{}, transient(err)
	}
	age := policy.Adult
	if subj.isStudent(j.student) {
		age = pol.UnknownAge()
		if j.birth != nil {
			age, _ = policy.AgeOf(*j.birth, raw.OccurredAt)
		}
		if !records.IsRosterType(raw.Type) && pol.NeedsConsent(raw.Type, j.years) && !policy.ConsentGiven(j.student.Consent) {
			return Outcome{Suppressed: SuppressedNoConsent}, nil
		}
	}

	out := &records.EnrichedEvent{
		EventID: raw.EventID, TenantID: raw.TenantID, SourceID: raw.SourceID, Type: raw.Type,
		OccurredAt: raw.OccurredAt, ReceivedAt: raw.ReceivedAt, SchemaVersion: raw.SchemaVersion,
		Actor: records.EnrichedActor{
			InternalID: subj.id.InternalID, Pseudonym: subj.id.Pseudonym, Role: subj.role, SISID: subj.sis,
		},
		SchoolID: j.school, ClassID: raw.ClassID, SessionID: raw.SessionID,
		PolicyVersion: pol.Version, EnrichedAt: e.now().UTC().Truncate(time.Millisecond),
		Derived: j.derived(&raw), LocalDate: localDate(raw.OccurredAt, d.loc),
	}
	out.SetPayloads(raw.Payloads())
	if field := pol.Apply(out, age); field != "" {
		return e.dead(rec, records.ReasonPolicyViolation, fmt.Sprintf("policy version %d rejects records carrying %s", pol.Version, field),
			&raw, []records.FieldError{{Field: field, Message: "rejected by the district's policy"}}), nil
	}
	var found *PII
	if ds, rejected := pol.FreeText(out, age); len(ds) > 0 {
		found = &PII{Tenant: raw.TenantID, Source: raw.SourceID, Found: ds}
		if rejected {
			errs := make([]records.FieldError, len(ds))
			for i, d := range ds {
				errs[i] = records.FieldError{Field: d.Field, Message: fmt.Sprintf("holds %s (%s); rejected by the district's free-text rule", kindName(d.Kind), d.Kind)}
			}
			o := e.dead(rec, records.ReasonPolicyViolation, fmt.Sprintf("policy version %d rejects free text holding personal data: %s in %s",
				pol.Version, ds[0].Kind, ds[0].Field), &raw, errs)
			o.PII = found
			return o, nil
		}
	}
	if it.key != nil {
		// Sealed again under the person's key, as the gateway sealed them: erasing the person makes the
		// enriched copies unreadable too (ADR 0010); the sink opens them.
		if err := out.PackSealed(); err != nil {
			return Outcome{}, err
		}
		out.IdentifyingStrings(func(_ string, p *string) { *p = it.key.Seal(*p) })
	}
	return Outcome{Enriched: out, PII: found}, nil
}

// localDate is the date at occurred in loc, as Avro's date (midnight UTC of that date).
func localDate(occurred time.Time, loc *time.Location) *time.Time {
	y, m, d := occurred.In(loc).Date()
	day := time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
	return &day
}

// kindName names a kind of personal data in a dead letter's field errors.
func kindName(k pii.Kind) string {
	switch k {
	case pii.SSN:
		return "an SSN-like number"
	case pii.Email:
		return "an email address"
	case pii.Phone:
		return "a phone number"
	}
	return string(k)
}

// subject is who a record is about.
type subject struct {
	person bool // false for roster records about no person
	id     identity.Identity
	sis    *string
	role   string
}

func (s subject) isStudent(st roster.Student) bool {
	return s.person && (s.role == "student" || st.IsStudent)
}

// subjectKey names the person a record is about — the actor of a learning event, the user of a roster
// user, demographics, enrollment or result record — in the namespace of the record's source; person is
// false for roster records about no one.
func subjectKey(pol *policy.Compiled, raw *records.RawEvent) (k identity.Key, person bool) {
	k.Source = pol.Namespace(raw.SourceID)
	switch {
	case raw.RosterUser != nil:
		k.SIS = raw.RosterUser.SourcedID
	case raw.RosterDemographics != nil:
		k.SIS = raw.RosterDemographics.SourcedID
	case raw.RosterEnrollment != nil:
		k.SIS = raw.RosterEnrollment.UserSourcedID
	case raw.RosterResult != nil:
		k.SIS = raw.RosterResult.StudentSourcedID
	case records.IsRosterType(raw.Type):
		return identity.Key{}, false
	default:
		k.SIS = raw.Actor.SISID
	}
	return k, true
}

// subject resolves the person a record is about (a roster user links by the district's matching key).
func (e *Enricher) subject(ctx context.Context, t tenants.Tenant, pol *policy.Compiled, raw *records.RawEvent) (subject, error) {
	k, person := subjectKey(pol, raw)
	if !person {
		return subject{id: identity.Identity{InternalID: NoPerson}, role: raw.Actor.Role, sis: nonEmpty(raw.Actor.SISID)}, nil
	}
	s := subject{person: true, role: raw.Actor.Role, sis: &k.SIS}
	var err error
	switch {
	case raw.RosterUser != nil:
		for _, r := range raw.RosterUser.Roles {
			if s.role == "" || r.Role == "student" {
				s.role = r.Role
			}
		}
		s.id, err = e.deps.Identities.Link(ctx, t, k.Source, k.SIS, pol.MatchKey(raw.RosterUser))
		return s, err
	case raw.RosterEnrollment != nil:
		s.role = raw.RosterEnrollment.Role
	case raw.RosterResult != nil:
		s.role = "student"
	}
	s.id, err = e.deps.Identities.Resolve(ctx, t, k.Source, k.SIS)
	return s, err
}

// joined is the roster context of one record.
type joined struct {
	student roster.Student
	birth   *time.Time
	years   *int
	band    *string
	school  *string
	grade   *string
	session *string
	dueAt   *time.Time
}

func (e *Enricher) join(ctx context.Context, raw *records.RawEvent, subj subject) (joined, error) {
	var j joined
	j.school = raw.SchoolID
	if subj.person {
		st, err := e.deps.Context.Student(ctx, raw.TenantID, subj.id.InternalID)
		if err != nil {
			return j, err
		}
		j.student = st
		j.birth = st.BirthDate
		switch { // a roster record's own birth date is the freshest
		case raw.RosterUser != nil && raw.RosterUser.BirthDate != nil:
			j.birth = raw.RosterUser.BirthDate
		case raw.RosterDemographics != nil && raw.RosterDemographics.BirthDate != nil:
			j.birth = raw.RosterDemographics.BirthDate
		}
		if len(st.Grades) > 0 {
			j.grade = &st.Grades[0]
		}
		if j.school == nil && len(st.Schools) == 1 {
			j.school = &st.Schools[0]
		}
	}
	if raw.ClassID != nil {
		c, err := e.deps.Context.Class(ctx, raw.TenantID, *raw.ClassID)
		if err != nil {
			return j, err
		}
		if j.school == nil && c.School != "" {
			j.school = &c.School
		}
		if j.grade == nil && len(c.Grades) == 1 {
			j.grade = &c.Grades[0]
		}
		j.session = nonEmpty(c.SessionAt(raw.OccurredAt.UTC()))
	}
	if s := raw.AssignmentSubmission; s != nil {
		j.dueAt = s.DueAt
		if j.dueAt == nil {
			li, err := e.deps.Context.LineItem(ctx, raw.TenantID, s.AssignmentID)
			if err != nil {
				return j, err
			}
			if !li.DueAt.IsZero() {
				j.dueAt = &li.DueAt
			}
		}
	}
	if j.birth != nil {
		_, band := policy.AgeOf(*j.birth, raw.OccurredAt)
		years := policy.Years(*j.birth, raw.OccurredAt)
		j.years, j.band = &years, &band
	}
	return j, nil
}

// derived computes the derived fields of raw from its joined context.
func (j joined) derived(raw *records.RawEvent) records.Derived {
	d := records.Derived{AgeBand: j.band, GradeLevel: j.grade, AcademicSessionID: j.session}
	if j.years != nil {
		u13, u18 := *j.years < 13, *j.years < 18
		d.Under13, d.Under18 = &u13, &u18
	}
	if s := raw.AssignmentSubmission; s != nil && j.dueAt != nil {
		late := s.SubmittedAt.After(*j.dueAt)
		d.Late = &late
	}
	if s := raw.Session; s != nil && s.Action == records.SessionLogout && s.DurationSeconds != nil {
		secs := *s.DurationSeconds
		d.SessionSeconds = &secs
	}
	return d
}

func nonEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func (e *Enricher) dead(rec *kgo.Record, reason, detail string, raw *records.RawEvent, errs []records.FieldError) Outcome {
	topic, part, off := rec.Topic, int(rec.Partition), rec.Offset
	d := &records.DLQRecord{
		Reason: reason, Detail: detail, Errors: errs, Stage: records.StageEnricher,
		SourceTopic: &topic, SourcePartition: &part, SourceOffset: &off,
		Original: rec.Value, FailedAt: e.now().UTC().Truncate(time.Millisecond),
	}
	if d.Errors == nil {
		d.Errors = []records.FieldError{}
	}
	d.Headers = make([]records.Header, 0, len(rec.Headers))
	for _, h := range rec.Headers {
		d.Headers = append(d.Headers, records.Header{Key: h.Key, Value: h.Value})
	}
	if raw != nil {
		t, id := raw.TenantID, raw.EventID
		d.TenantID, d.EventID = &t, &id
	}
	return Outcome{DLQ: d}
}
