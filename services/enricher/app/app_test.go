package app_test

import (
	"flag"
	"testing"
	"time"

	"github.com/edtech-analytics/platform/libs/records"
)

func newFlagSet() *flag.FlagSet { return flag.NewFlagSet("enricher", flag.ContinueOnError) }

func ptr[T any](v T) *T { return &v }

// TestErasureIsDurableAndAppliedBeforeProcessing: erase commands on the control topic suppress a
// student's records from then on; a command issued while the enricher is down is in force before it
// processes anything after restarting; and a replay of raw (a new consumer group) enriches nothing of
// the erased students.
func TestErasureIsDurableAndAppliedBeforeProcessing(t *testing.T) {
	h := newHarness(t, "d1")
	a1, b1 := h.event("d1", "A"), h.event("d1", "B")
	h.produceRaw(a1, b1)
	r := h.start(h.config("enricher"))
	h.waitFor("the first events", 20*time.Second, func() bool { ev := h.enriched(); return has(ev, a1.EventID) && has(ev, b1.EventID) })

	// Erase A by its SIS id while running.
	h.produceControl(records.ControlCommand{CommandID: "10000000-0000-4000-8000-000000000001", Type: records.CommandEraseStudent,
		TenantID: "d1", IssuedAt: time.Now(), IssuedBy: "test", SourceID: ptr("sis"), SISID: ptr("A")})
	h.waitFor("the erasure to be recorded", 20*time.Second, func() bool {
		var n int
		_ = h.pool.QueryRow(t.Context(), "SELECT count(*) FROM control.erasures").Scan(&n)
		return n == 1
	})
	a2, b2 := h.event("d1", "A"), h.event("d1", "B")
	h.produceRaw(a2, b2)
	h.waitFor("B's second event", 20*time.Second, func() bool { return has(h.enriched(), b2.EventID) })
	if has(h.enriched(), a2.EventID) {
		t.Fatal("an event of an erased student was enriched")
	}
	r.stop()

	// While the enricher is down: B is erased (by internal id) and more events arrive.
	var bID string
	for _, ev := range h.enriched() {
		if ev.EventID == b1.EventID {
			bID = ev.Actor.InternalID
		}
	}
	h.produceControl(records.ControlCommand{CommandID: "10000000-0000-4000-8000-000000000002", Type: records.CommandEraseStudent,
		TenantID: "d1", IssuedAt: time.Now(), IssuedBy: "test", StudentInternalID: &bID})
	b3, c1 := h.event("d1", "B"), h.event("d1", "C")
	h.produceRaw(b3, c1)
	r = h.start(h.config("enricher"))
	h.waitFor("C's event", 20*time.Second, func() bool { return has(h.enriched(), c1.EventID) })
	if has(h.enriched(), b3.EventID) {
		t.Fatal("an event of a student erased while the enricher was down was enriched after the restart")
	}
	r.stop()

	// Replay raw from the start under a new group: A and B's records are all suppressed, C's is a retry.
	before := len(h.enriched())
	r = h.start(h.config("enricher-replay"))
	h.waitFor("the replay", 20*time.Second, func() bool {
		o := r.outcomes(t)
		return o["erased"]+o["duplicate"] >= 6
	})
	if o := r.outcomes(t); o["erased"] != 5 || o["duplicate"] != 1 || o["enriched"] != 0 {
		t.Fatalf("replay outcomes = %v, want 5 erased and 1 duplicate", o)
	}
	if after := len(h.enriched()); after != before {
		t.Fatalf("the replay added %d enriched records", after-before)
	}
	// The district keeps no clear SIS id of the erased students.
	var clearIDs int
	if err := h.pool.QueryRow(t.Context(), `SELECT count(*) FROM district_d1.student_identities
		WHERE sis_id IN ('A', 'B')`).Scan(&clearIDs); err != nil || clearIDs != 0 {
		t.Fatalf("clear SIS ids of erased students: %d (%v)", clearIDs, err)
	}
}
