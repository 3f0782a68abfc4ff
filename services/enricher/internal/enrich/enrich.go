// Package enrich turns one raw record into what the enricher emits for it: an enriched record, a
// dead-letter record with a typed reason, or nothing (a client retry already passed on).
package enrich

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/edtech-analytics/platform/libs/records"
	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Tenants gives the district of an event.
type Tenants interface {
	Tenant(ctx context.Context, id string) (tenancy.Tenant, error)
}

// Identities resolves SIS ids to internal ids.
type Identities interface {
	Resolve(ctx context.Context, tenantID, sourceID, sisID string) (string, error)
}

// Outcome is what to emit for one raw record: exactly one of Enriched and DLQ is set, or Duplicate.
type Outcome struct {
	Enriched  *records.EnrichedEvent
	DLQ       *records.DLQRecord
	Duplicate bool
}

// Enricher applies identity, derivation and the district policy.
type Enricher struct {
	codec      *records.Codec
	tenants    Tenants
	identities Identities
	now        func() time.Time
}

// New builds an enricher.
func New(codec *records.Codec, tenants Tenants, identities Identities) *Enricher {
	return &Enricher{codec: codec, tenants: tenants, identities: identities, now: time.Now}
}

// PolicyVersion is the version of the default policy (FERPA: the district controls its records; the
// SIS id is kept for the district's own current state, analytics see pseudonyms only). Per-district
// versioned policies replace it.
const PolicyVersion = 1

// ErrTransient marks failures worth retrying (a store unavailable); the batch is aborted and retried.
var ErrTransient = errors.New("transient enrichment failure")

// Enrich decodes and enriches rec. seen is asked whether the event id is a retry; it is consulted only
// for records that decode and pass checks, so rejected records never occupy the dedup window.
func (e *Enricher) Enrich(ctx context.Context, rec *kgo.Record, seen func(tenant, eventID string) bool) (Outcome, error) {
	var raw records.RawEvent
	if err := e.codec.Decode(rec.Value, &raw); err != nil {
		reason := records.ReasonUndecodable
		if errors.Is(err, records.ErrUnknownSchema) {
			reason = records.ReasonUnknownSchema
		}
		return Outcome{DLQ: e.dead(rec, reason, err.Error(), nil, nil)}, nil
	}
	if err := raw.CheckPayload(); err != nil {
		return Outcome{DLQ: e.dead(rec, records.ReasonInvalidField, err.Error(), &raw, []records.FieldError{{Field: "type", Message: err.Error()}})}, nil
	}
	tenant, err := e.tenants.Tenant(ctx, raw.TenantID)
	switch {
	case errors.Is(err, tenancy.ErrNotFound) || (err == nil && tenant.DeletedAt != nil):
		return Outcome{DLQ: e.dead(rec, records.ReasonOther, fmt.Sprintf("unknown or deleted tenant %q", raw.TenantID), &raw,
			[]records.FieldError{{Field: "tenant_id", Message: "unknown or deleted tenant"}})}, nil
	case err != nil:
		return Outcome{}, fmt.Errorf("%w: loading tenant %s: %v", ErrTransient, raw.TenantID, err)
	}
	if seen(raw.TenantID, raw.EventID) {
		return Outcome{Duplicate: true}, nil
	}
	internalID, err := e.identities.Resolve(ctx, raw.TenantID, raw.SourceID, raw.Actor.SISID)
	if err != nil {
		return Outcome{}, fmt.Errorf("%w: %v", ErrTransient, err)
	}
	sis := raw.Actor.SISID
	out := &records.EnrichedEvent{
		EventID: raw.EventID, TenantID: raw.TenantID, SourceID: raw.SourceID, Type: raw.Type,
		OccurredAt: raw.OccurredAt, ReceivedAt: raw.ReceivedAt, SchemaVersion: raw.SchemaVersion,
		Actor: records.EnrichedActor{
			InternalID: internalID, Pseudonym: Pseudonym(tenant.PseudonymKey, internalID), Role: raw.Actor.Role, SISID: &sis,
		},
		SchoolID: raw.SchoolID, ClassID: raw.ClassID, SessionID: raw.SessionID,
		PolicyVersion: PolicyVersion, EnrichedAt: e.now().UTC().Truncate(time.Millisecond),
		Derived: derive(&raw),
	}
	out.SetPayloads(raw.Payloads())
	return Outcome{Enriched: out}, nil
}

// Pseudonym is the district-keyed HMAC of an internal id: stable within a district, unjoinable across
// districts (each has its own key).
func Pseudonym(key []byte, internalID string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(internalID))
	return "p_" + hex.EncodeToString(m.Sum(nil)[:16])
}

func derive(raw *records.RawEvent) records.Derived {
	var d records.Derived
	if s := raw.AssignmentSubmission; s != nil && s.DueAt != nil {
		late := s.SubmittedAt.After(*s.DueAt)
		d.Late = &late
	}
	if s := raw.Session; s != nil && s.Action == records.SessionLogout && s.DurationSeconds != nil {
		secs := *s.DurationSeconds
		d.SessionSeconds = &secs
	}
	return d
}

func (e *Enricher) dead(rec *kgo.Record, reason, detail string, raw *records.RawEvent, errs []records.FieldError) *records.DLQRecord {
	topic, part, off := rec.Topic, rec.Partition, rec.Offset
	d := &records.DLQRecord{
		Reason: reason, Detail: detail, Errors: errs, Stage: records.StageEnricher,
		SourceTopic: &topic, SourcePartition: &part, SourceOffset: &off,
		Original: rec.Value, FailedAt: e.now().UTC().Truncate(time.Millisecond),
	}
	if d.Errors == nil {
		d.Errors = []records.FieldError{}
	}
	for _, h := range rec.Headers {
		d.Headers = append(d.Headers, records.Header{Key: h.Key, Value: h.Value})
	}
	if d.Headers == nil {
		d.Headers = []records.Header{}
	}
	if raw != nil {
		t, id := raw.TenantID, raw.EventID
		d.TenantID, d.EventID = &t, &id
	}
	return d
}
