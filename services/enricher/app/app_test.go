package app_test

import (
	"flag"
	"strings"
	"testing"
	"time"

	"github.com/edtech-analytics/platform/libs/records"
	"github.com/edtech-analytics/platform/libs/tenancy/privacy"
	"github.com/edtech-analytics/platform/services/ctl/ctltest"
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

// TestDLQReplayGoesThroughTheNormalPath: records dead-lettered for an unknown district and for a policy
// violation are replayed with ctl after the fix (the district created, the policy relaxed) and are then
// enriched like any other, once.
func TestDLQReplayGoesThroughTheNormalPath(t *testing.T) {
	h := newHarness(t, "d1")
	strict, err := privacy.Template(privacy.TemplateFERPA)
	if err != nil {
		t.Fatal(err)
	}
	strict.Template, strict.Fields["session.device"] = privacy.TemplateCustom, privacy.ActionReject
	if _, err := h.policy.SetPolicy(t.Context(), "d1", strict, "test"); err != nil {
		t.Fatal(err)
	}
	rejected, early, fine := h.event("d1", "A"), h.event("d2", "B"), h.event("d1", "C")
	rejected.Session.Device = ptr("ipad-7")
	h.produceRaw(rejected, early, fine)
	cfg := h.config("enricher")
	cfg.PolicyRefresh = 100 * time.Millisecond
	h.start(cfg)
	h.waitFor("two dead letters", 20*time.Second, func() bool { return len(h.readCommitted(h.kcfg.Topics().DLQ)) == 2 })

	// The fixes: the district is created, the policy no longer rejects the field.
	if _, err := h.districts.Create(t.Context(), "d2", "District d2"); err != nil {
		t.Fatal(err)
	}
	relaxed, _ := privacy.Template(privacy.TemplateFERPA)
	if _, err := h.policy.SetPolicy(t.Context(), "d1", relaxed, "test"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // past the enricher's cache interval
	if out := ctltest.Run(t, "dlq", "replay", "--database-url", h.dbURL, "--kafka.brokers", h.kcfg.Brokers[0],
		"--kafka.topic-prefix", h.kcfg.TopicPrefix); !strings.Contains(out, "replayed 2 of 2") {
		t.Fatalf("ctl dlq replay: %s", out)
	}
	h.waitFor("the replayed records", 20*time.Second, func() bool {
		ev := h.enriched()
		return has(ev, rejected.EventID) && has(ev, early.EventID)
	})
	counts := map[string]int{}
	for _, ev := range h.enriched() {
		counts[ev.EventID]++
		if ev.EventID == rejected.EventID && (ev.PolicyVersion != 2 || *ev.Session.Device != "ipad-7") {
			t.Fatalf("replayed record enriched under policy %d: %+v", ev.PolicyVersion, ev.Session)
		}
	}
	if counts[rejected.EventID] != 1 || counts[early.EventID] != 1 || counts[fine.EventID] != 1 || len(counts) != 3 {
		t.Fatalf("enriched counts = %v", counts)
	}
	if n := len(h.readCommitted(h.kcfg.Topics().DLQ)); n != 2 {
		t.Fatalf("the DLQ holds %d records after the replay, want the 2 originals", n)
	}
}
