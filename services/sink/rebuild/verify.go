package rebuild

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/edtech-analytics/platform/libs/records"
	"github.com/edtech-analytics/platform/services/sink/internal/pgstore"
	"github.com/jackc/pgx/v5"
)

// SkipOtherDistrict is the reason a record keyed by the district but carrying another tenant id is not
// applied (the live sink applies it to that tenant).
const SkipOtherDistrict = "other_district"

// TypeUndecodable stands for the type of a record that does not decode.
const TypeUndecodable = "undecodable"

// Verification checks the replayed state against the log: for every record type, the district's records
// the log held in the replayed range equal those applied plus those skipped (with the reasons); every
// partition was applied up to the live sink's offset; and the learning events the target's
// student_activity counts grew by exactly the learning events applied.
type Verification struct {
	Ranges []Range     `json:"ranges"`
	Types  []TypeCount `json:"types"`
	Events EventsCheck `json:"events"`
	OK     bool        `json:"ok"`
	Errors []string    `json:"errors,omitempty"`
}

// Range is the replayed offsets of one partition, [From, To).
type Range struct {
	Partition int32 `json:"partition"`
	From      int64 `json:"from"`
	To        int64 `json:"to"`
	Applied   int64 `json:"applied_to"` // where the target's recorded replay offset stands
}

// TypeCount accounts for the district's records of one type in the replayed range.
type TypeCount struct {
	Type    string           `json:"type"`
	Log     int64            `json:"log"` // records the log held (keyed by the district)
	Applied int64            `json:"applied"`
	Skipped map[string]int64 `json:"skipped,omitempty"` // by reason
}

// EventsCheck compares the learning events applied with what the target's student_activity counts.
type EventsCheck struct {
	Applied int64 `json:"applied"`
	Counted int64 `json:"counted"` // growth of sum(student_activity.event_count) over the replay
	Erased  int64 `json:"erased"`  // applied, then deleted by their student's erasure marker
}

func (c *TypeCount) skip(reason string) {
	if c.Skipped == nil {
		c.Skipped = map[string]int64{}
	}
	c.Skipped[reason]++
}

func (c *TypeCount) skippedTotal() int64 {
	var n int64
	for _, v := range c.Skipped {
		n += v
	}
	return n
}

func (r *run) outcome(typ string) *TypeCount {
	c := r.outcomes[typ]
	if c == nil {
		c = &TypeCount{Type: typ}
		r.outcomes[typ] = c
	}
	return c
}

func recordType(d pgstore.Record) string {
	if d.Event == nil {
		return TypeUndecodable
	}
	return d.Event.Type
}

// verify fills the report's verification, in tx after the catch-up, and returns ErrVerification when a
// check fails.
func (r *run) verify(ctx context.Context, tx pgx.Tx) error {
	v := Verification{}
	// What the log held in the range: the district's records fetched, less those fetched past the caps.
	inRange := maps.Clone(r.seen)
	for _, st := range r.parts {
		for _, d := range st.pending {
			inRange[recordType(d)]--
		}
	}
	types := slices.Sorted(maps.Keys(inRange))
	for typ := range r.outcomes {
		if _, ok := inRange[typ]; !ok {
			types = append(types, typ)
		}
	}
	slices.Sort(types)
	for _, typ := range types {
		c := TypeCount{Type: typ}
		if o := r.outcomes[typ]; o != nil {
			c = *o
		}
		c.Log = inRange[typ]
		if c.Log == 0 && c.Applied == 0 && c.skippedTotal() == 0 {
			continue
		}
		if c.Applied+c.skippedTotal() != c.Log {
			v.Errors = append(v.Errors, fmt.Sprintf("%s: %d records of district %s in the replayed range, %d applied and %d skipped",
				typ, c.Log, r.tenant, c.Applied, c.skippedTotal()))
		}
		if !records.IsRosterType(typ) && typ != TypeUndecodable && typ != records.TypeStudentErased {
			v.Events.Applied += c.Applied
		}
		v.Types = append(v.Types, c)
	}
	_, stored, err := r.storedOffsets(ctx, tx)
	if err != nil {
		return err
	}
	for _, p := range slices.Sorted(maps.Keys(r.parts)) {
		rg := Range{Partition: p, From: r.parts[p].start, To: r.caps[p], Applied: stored[p]}
		if rg.Applied != rg.To {
			v.Errors = append(v.Errors, fmt.Sprintf("partition %d: applied up to offset %d, the live sink stands at %d", p, rg.Applied, rg.To))
		}
		v.Ranges = append(v.Ranges, rg)
	}
	counted, err := r.events(ctx, tx, r.target)
	if err != nil {
		return err
	}
	v.Events.Counted = counted - r.baseEvents
	v.Events.Erased = r.erased
	if v.Events.Counted != v.Events.Applied-v.Events.Erased {
		v.Errors = append(v.Errors, fmt.Sprintf("%d learning events applied (%d of them erased since), but %s.student_activity counts %d more",
			v.Events.Applied, v.Events.Erased, r.target, v.Events.Counted))
	}
	v.OK = len(v.Errors) == 0
	r.report.Verification = v
	if !v.OK {
		return fmt.Errorf("%w: %s", ErrVerification, strings.Join(v.Errors, "; "))
	}
	return nil
}
