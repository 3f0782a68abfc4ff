package pgstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"

	"github.com/edtech-analytics/platform/libs/kafkax"
	"github.com/edtech-analytics/platform/libs/keyring"
	"github.com/edtech-analytics/platform/libs/records"
	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Record is one consumed record after decoding and checks: it applies (Skip == "") or is skipped for the
// reason Skip names.
type Record struct {
	Offset int64
	Skip   string
	Event  *records.EnrichedEvent // nil when undecodable

	student pgtype.UUID // the actor's internal id; required for learning events, optional for roster
	eventID pgtype.UUID
}

// Keys open the identifying fields the enricher sealed under each person's data key (a *keyring.Keyring).
type Keys interface {
	// Preload reads the data keys of the sealed values among values in one round trip.
	Preload(ctx context.Context, values []string) error
	// Open returns a field's plaintext (plaintext values as they are); keyring.ErrShredded when the
	// person's key is gone, keyring.ErrMalformed when the value is not a sealed value of the district.
	Open(ctx context.Context, tenant, v string) (string, error)
}

// Decode decodes every record, opens its sealed identifying fields with keys, and marks the ones to skip:
// those whose person's key was shredded (the person was erased) are skipped as erased. Only a transient
// failure (the schema registry or the key store unreachable) is an error; records that can never decode
// are skipped, not retried forever.
func Decode(ctx context.Context, codec *records.Codec, keys Keys, log *slog.Logger, recs []*kgo.Record) ([]Record, error) {
	out := make([]Record, len(recs))
	var sealed []string
	for i, r := range recs {
		d := &out[i]
		d.Offset = r.Offset
		if kafkax.DeadLettered(r) {
			d.Skip = SkipDeadLettered
			continue
		}
		ev := &records.EnrichedEvent{}
		if err := codec.Decode(r.Value, ev); err != nil {
			if !errors.Is(err, records.ErrBadFrame) && !errors.Is(err, records.ErrUnknownSchema) {
				return nil, fmt.Errorf("decoding record at offset %d: %w", r.Offset, err)
			}
			log.Warn("skipping undecodable record", "partition", r.Partition, "offset", r.Offset, "err", err)
			d.Skip = SkipUndecodable
			continue
		}
		d.Event = ev
		ev.IdentifyingStrings(func(_ string, p *string) {
			if keyring.IsSealed(*p) {
				sealed = append(sealed, *p)
			}
		})
	}
	if len(sealed) > 0 {
		if keys == nil {
			return nil, errors.New("records carry sealed fields and the sink has no master keys (MASTER_KEYS)")
		}
		if err := keys.Preload(ctx, sealed); err != nil {
			return nil, fmt.Errorf("reading data keys: %w", err)
		}
	}
	for i := range out {
		d := &out[i]
		if d.Event == nil {
			continue
		}
		skip, err := open(ctx, keys, d.Event)
		if err != nil {
			return nil, fmt.Errorf("opening the record at offset %d: %w", d.Offset, err)
		}
		if d.Skip = skip; skip == "" {
			d.Skip = d.check()
		}
	}
	return out, nil
}

// open replaces the record's sealed identifying fields with their plaintext: SkipErased when the
// person's key is gone, SkipInvalid when a value does not open for the district; errors are the key
// store's. Decode has refused sealed values already when keys is nil.
func open(ctx context.Context, keys Keys, ev *records.EnrichedEvent) (skip string, err error) {
	ev.IdentifyingStrings(func(_ string, p *string) {
		if skip != "" || err != nil || !keyring.IsSealed(*p) {
			return
		}
		plain, oerr := keys.Open(ctx, ev.TenantID, *p)
		switch {
		case errors.Is(oerr, keyring.ErrShredded):
			skip = SkipErased
		case errors.Is(oerr, keyring.ErrMalformed):
			skip = SkipInvalid
		case oerr != nil:
			err = oerr
		default:
			*p = plain
		}
	})
	if skip == "" && err == nil && ev.UnpackSealed() != nil {
		skip = SkipInvalid
	}
	return skip, err
}

// check returns why the record cannot apply, or "" when it can.
func (d *Record) check() string {
	ev := d.Event
	if ev.Type == records.TypeStudentErased {
		if d.student.Scan(ev.Actor.InternalID) != nil || tenancy.ValidTenantID(ev.TenantID) != nil {
			return SkipInvalid
		}
		return ""
	}
	if ev.Type == records.TypeClickHouseRebuild {
		return SkipOtherStore
	}
	if !records.IsKnownType(ev.Type) {
		return SkipUnsupported
	}
	if ev.CheckPayload() != nil || tenancy.ValidTenantID(ev.TenantID) != nil {
		return SkipInvalid
	}
	if records.IsRosterType(ev.Type) {
		_ = d.student.Scan(ev.Actor.InternalID) // optional: known when the enricher resolved the user
		if !rosterCheck(ev) {
			return SkipInvalid
		}
		return ""
	}
	if d.student.Scan(ev.Actor.InternalID) != nil || d.eventID.Scan(ev.EventID) != nil {
		return SkipInvalid
	}
	return ""
}

// Applier turns applicable records into the SQL that applies them to a district schema.
type Applier struct {
	roster map[string]*rosterTable // by event type
}

// NewApplier returns an Applier.
func NewApplier() (*Applier, error) {
	roster, err := rosterTables()
	if err != nil {
		return nil, fmt.Errorf("deriving the roster tables from the schemas: %w", err)
	}
	return &Applier{roster: roster}, nil
}

// Work is the applicable records of one district (in offset order; skipped ones are ignored) and the
// schema to apply them to.
type Work struct {
	Schema  string
	Records []Record
}

// Queue reduces each district's records to one row per key and queues the statements that apply them:
// one statement for the learning-event tables of all the districts, and the roster statements. Applying
// the same records split into other batches gives the same state. A student's erasure marker deletes
// the student's rows after the records before it are applied and before those after it are.
func (a *Applier) Queue(b *pgx.Batch, work []Work) error {
	c := &combined{}
	for _, w := range work {
		dist := newDistrict(a.roster)
		for i := range w.Records {
			d := &w.Records[i]
			switch {
			case d.Skip != "":
			case d.Event.Type == records.TypeStudentErased:
				if err := dist.queue(b, c, w.Schema); err != nil {
					return err
				}
				c.flush(b)
				b.Queue(fmt.Sprintf(eraseStudent, pgx.Identifier{w.Schema}.Sanitize()), d.student)
				dist = newDistrict(a.roster)
			default:
				dist.add(d)
			}
		}
		if err := dist.queue(b, c, w.Schema); err != nil {
			return err
		}
	}
	c.flush(b)
	return nil
}

// eraseStudent deletes what the sink's tables of a district schema (%[1]s) hold of the student $1: its
// learning-event state and its roster user, with the enrollments, demographics and results of that user.
const eraseStudent = `WITH u AS (DELETE FROM %[1]s.roster_users WHERE internal_id = $1 RETURNING sourced_id),
	e AS (DELETE FROM %[1]s.roster_enrollments WHERE user_sourced_id IN (SELECT sourced_id FROM u)),
	g AS (DELETE FROM %[1]s.roster_demographics WHERE sourced_id IN (SELECT sourced_id FROM u)),
	r AS (DELETE FROM %[1]s.roster_results WHERE student_sourced_id IN (SELECT sourced_id FROM u)),
	x AS (DELETE FROM %[1]s.roster_deletions WHERE sourced_id IN (SELECT sourced_id FROM u)),
	a AS (DELETE FROM %[1]s.student_activity WHERE internal_id = $1),
	t AS (DELETE FROM %[1]s.attendance_daily WHERE internal_id = $1),
	s AS (DELETE FROM %[1]s.assessment_results_latest WHERE internal_id = $1)
DELETE FROM %[1]s.submissions WHERE internal_id = $1`

// byTenant groups applicable records by tenant, keeping offset order, and returns the tenants sorted.
func byTenant(recs []Record) (map[string][]Record, []string) {
	out := map[string][]Record{}
	for _, d := range recs {
		if d.Skip == "" {
			out[d.Event.TenantID] = append(out[d.Event.TenantID], d)
		}
	}
	return out, slices.Sorted(maps.Keys(out))
}

// Tables lists the district tables the sink derives from the enriched topic, the ones a rebuild replaces.
// The rest of a district schema (the enricher's tables, goose's version table) is not the sink's.
func Tables() []string {
	out := []string{"student_activity", "attendance_daily", "assessment_results_latest", "submissions"}
	for _, t := range rosterTableDefs {
		out = append(out, t.name)
	}
	return append(out, "roster_deletions")
}
