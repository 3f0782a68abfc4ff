package app_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/edtech-analytics/platform/libs/records"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// childEnv makes this test binary run as the enricher (see TestMain): childKilled or childFinishes.
const childEnv = "ENRICHER_TEST_CHILD"

const (
	childKilled   = "killed"   // a child the test kills
	childFinishes = "finishes" // the child that must finish the work
)

// childGroupOpts are the subprocess's group timeouts. A child that gets killed is evicted within about a
// second, so the next one takes its partitions quickly. The child that must finish uses ordinary ones: on
// a loaded machine (the suite runs packages side by side, and CI may share the machine) an 800 ms session
// let a broker answer late enough to evict it again and again, and it never finished. Session timeouts
// are per member, so its own do not slow the eviction of the killed ones.
func childGroupOpts(finishes bool) []kgo.Opt {
	if finishes {
		return []kgo.Opt{
			kgo.SessionTimeout(30 * time.Second),
			kgo.HeartbeatInterval(time.Second),
			kgo.RebalanceTimeout(30 * time.Second),
			kgo.FetchMaxWait(100 * time.Millisecond),
		}
	}
	return []kgo.Opt{
		kgo.SessionTimeout(800 * time.Millisecond),
		kgo.HeartbeatInterval(100 * time.Millisecond),
		kgo.RebalanceTimeout(time.Second),
		kgo.FetchMaxWait(100 * time.Millisecond),
	}
}

// TestExactlyOnceUnderSIGKILL runs the enricher as a real process against the in-test kfake broker (which
// survives the kills) and PostgreSQL, SIGKILLs it at random points at least 20 times while raw fills with
// accepted events, client retries of them and bad records, and proves that enriched, read with
// read_committed, holds each accepted event exactly once, with one internal id per student, and the DLQ
// each bad record once.
func TestExactlyOnceUnderSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("kills a subprocess 22 times")
	}
	h := newHarness(t, "d1", "d2", "d3")
	const (
		kills    = 22
		perStage = 400
	)
	var (
		accepted = map[string]bool{} // tenant/event id
		sent     []*records.RawEvent
		bad      int
	)
	stage := func(n int) {
		var recs []*kgo.Record
		for range n {
			tenant := []string{"d1", "d2", "d3"}[rand.IntN(3)]
			ev := h.event(tenant, fmt.Sprintf("S%d", rand.IntN(3000))) // many first sightings: identity writes
			accepted[tenant+"/"+ev.EventID] = true
			sent = append(sent, ev)
			recs = append(recs, h.rawRecord(ev))
		}
		for range n / 8 { // client retries: the same events again, later in the log
			recs = append(recs, h.rawRecord(sent[rand.IntN(len(sent))]))
		}
		recs = append(recs, &kgo.Record{Topic: h.kcfg.Topics().Raw, Key: []byte("d1"), Value: []byte("garbage")})
		bad++
		rand.Shuffle(len(recs), func(i, j int) { recs[i], recs[j] = recs[j], recs[i] })
		h.produce(recs...)
	}

	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// A killed child's open transaction blocks read_committed readers until the broker aborts it at its
	// transaction timeout, so the children that get killed use a short one. The last child, which must
	// finish the work, gets a longer one: with 1s, a loaded machine (the suite runs packages side by
	// side) made its first-sighting batches outlast half of it again and again, and each such batch is
	// aborted and retried smaller.
	startChild := func(role, txnTimeout, logLevel string) *exec.Cmd {
		cmd := exec.CommandContext(t.Context(), exe)
		cmd.Env = append(os.Environ(), childEnv+"="+role, "DATABASE_URL="+h.dbURL, "MASTER_KEYS="+h.masterKeys,
			"KAFKA_BROKERS="+h.kcfg.Brokers[0], "KAFKA_TOPIC_PREFIX="+h.kcfg.TopicPrefix, "KAFKA_PARTITIONS=4",
			"ADMIN_ADDR=127.0.0.1:0", "ENRICHER_TRANSACTION_TIMEOUT="+txnTimeout, "LOG_LEVEL="+logLevel)
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}

	start := time.Now()
	for range kills {
		stage(perStage) // events keep arriving between kills
		child := startChild(childKilled, "1s", "error")
		time.Sleep(time.Duration(300+rand.IntN(1300)) * time.Millisecond)
		if err := child.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = child.Wait() // "signal: killed"
	}
	t.Logf("%d kills in %v", kills, time.Since(start).Round(time.Millisecond))

	// Let one run finish the work, then read what committed. It joins once the killed members are gone
	// from the group (their sessions expire), so that it owns every partition by itself.
	waitGroupEmpty(t, h, "edtech-enricher")
	child := startChild(childFinishes, "5s", "info") // its log shows on a failure
	defer func() {
		_ = child.Process.Signal(syscall.SIGKILL)
		_ = child.Wait()
	}()
	var got []records.EnrichedEvent
	for deadline := time.Now().Add(120 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if got = h.enriched(); len(got) >= len(accepted) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for every accepted event: %d of %d in enriched (read_committed)", len(got), len(accepted))
		}
	}
	// Nothing more may arrive: once the group has committed every raw record (in the transactions that
	// produced their output), enriched holds all it ever will of them.
	waitGroupCommitted(t, h, "edtech-enricher", h.kcfg.Topics().Raw)
	got = h.enriched()
	counts := map[string]int{}
	ids := map[string]string{}
	for _, ev := range got {
		k := ev.TenantID + "/" + ev.EventID
		counts[k]++
		if counts[k] > 1 {
			t.Fatalf("event %s enriched %d times", k, counts[k])
		}
		if !accepted[k] {
			t.Fatalf("enriched holds %s, which was never accepted", k)
		}
		student := ev.TenantID + "/" + *ev.Actor.SISID
		if prev, ok := ids[student]; ok && prev != ev.Actor.InternalID {
			t.Fatalf("%s has two internal ids: %s and %s", student, prev, ev.Actor.InternalID)
		}
		ids[student] = ev.Actor.InternalID
	}
	if len(counts) != len(accepted) {
		t.Fatalf("enriched holds %d of %d accepted events", len(counts), len(accepted))
	}
	dead := 0
	for _, r := range h.readCommitted(h.kcfg.Topics().DLQ) {
		var d records.DLQRecord
		if err := h.codec.Decode(r.Value, &d); err != nil || d.Reason != records.ReasonUndecodable {
			t.Fatalf("dead letter %+v, %v", d, err)
		}
		dead++
	}
	if dead != bad {
		t.Fatalf("%d dead letters, want %d", dead, bad)
	}
	t.Logf("%d accepted events (%d records with retries and bad ones) enriched exactly once in %v",
		len(accepted), len(sent)+bad, time.Since(start).Round(time.Millisecond))
}

// waitGroupEmpty waits until the consumer group has no member left.
func waitGroupEmpty(t *testing.T, h *harness, group string) {
	t.Helper()
	adm := kadm.NewClient(h.client.Client)
	h.waitFor("group "+group+" to have no member left", time.Minute, func() bool {
		described, err := adm.DescribeGroups(t.Context(), group)
		return err == nil && described.Error() == nil && len(described[group].Members) == 0
	})
}

// waitGroupCommitted waits until the group's committed offsets reach the end of every partition of topic.
func waitGroupCommitted(t *testing.T, h *harness, group, topic string) {
	t.Helper()
	adm := kadm.NewClient(h.client.Client)
	h.waitFor("group "+group+" to commit every record of "+topic, time.Minute, func() bool {
		ends, err := adm.ListEndOffsets(t.Context(), topic)
		if err != nil || ends.Error() != nil {
			return false
		}
		committed, err := adm.FetchOffsets(t.Context(), group)
		if err != nil || committed.Error() != nil {
			return false
		}
		caughtUp := true
		ends.Each(func(o kadm.ListedOffset) {
			c, ok := committed.Lookup(topic, o.Partition)
			if o.Offset > 0 && (!ok || c.At < o.Offset) {
				caughtUp = false
			}
		})
		return caughtUp
	})
}
