package server_test

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/edtech-analytics/platform/libs/records"
	"github.com/edtech-analytics/platform/libs/testenv/sampledata"
	"github.com/edtech-analytics/platform/services/gateway/internal/server"
	"github.com/edtech-analytics/platform/services/gateway/internal/tenants"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func batch(events ...string) string { return `{"events":[` + strings.Join(events, ",") + `]}` }

// TestRateLimitRefusesWholeBatchesWith429: a district over its limit gets 429 with Retry-After for the
// whole batch (invalid events count too) and nothing of it is produced; other districts are unaffected.
func TestRateLimitRefusesWholeBatchesWith429(t *testing.T) {
	f := newFixture(t, func(s *setup) {
		s.stored = []tenants.Stored{{TenantID: "small", RateLimit: &tenants.RateLimit{EventsPerSecond: 1, Burst: 5}}}
	})
	if code, _, out := f.post(t, "small", "application/json", batch(event(1, "present"), event(2, "present"), event(3, "present"))); code != 202 {
		t.Fatalf("first batch: %d %v", code, out)
	}
	// Two events are left in the bucket; this batch has one valid and two invalid events: refused whole.
	code, hdr, out := f.post(t, "small", "application/json", batch(event(4, "present"), event(5, "asleep"), `{}`))
	if code != http.StatusTooManyRequests || out["type"] != "/problems/rate-limited" || hdr.Get("Retry-After") != "1" {
		t.Fatalf("over the limit: %d %v, Retry-After %q", code, out, hdr.Get("Retry-After"))
	}
	if code, _, out := f.post(t, "small", "application/json", batch(event(6, "present"), event(7, "present"))); code != 202 {
		t.Fatalf("a batch that fits the rest of the bucket: %d %v", code, out)
	}
	if code, _, out := f.post(t, "good", "application/json", batch(event(8, "present"), event(9, "present"), event(10, "present"))); code != 202 {
		t.Fatalf("another district: %d %v", code, out)
	}
	ids := f.rawEventIDs(t)
	for _, n := range []int{4, 5} {
		if ids[eventID(n)] != 0 {
			t.Errorf("event %d of the refused batch was produced", n)
		}
	}
	for _, n := range []int{1, 2, 3, 6, 7, 8, 9, 10} {
		if ids[eventID(n)] != 1 {
			t.Errorf("event %d is in raw %d times, want once", n, ids[eventID(n)])
		}
	}
	if dlq := f.readTopic(t, f.kcfg.Topics().DLQ); len(dlq) != 0 {
		t.Errorf("the refused batch's invalid events reached the DLQ: %d records", len(dlq))
	}
}

func eventID(i int) string { return fmt.Sprintf("6f1c2b7e-8a3d-4c1e-9f00-%012d", i) }

// rawEventIDs counts the records of raw by event id.
func (f *fixture) rawEventIDs(t *testing.T) map[string]int {
	t.Helper()
	ids := map[string]int{}
	for _, r := range f.readTopic(t, f.kcfg.Topics().Raw) {
		var ev records.RawEvent
		if err := f.codec.Decode(r.Value, &ev); err != nil {
			t.Fatal(err)
		}
		ids[ev.EventID]++
	}
	return ids
}

// TestHotDistrictSpreadsByStudent: a hot district's records are keyed tenant_id/shard, spread over every
// sub-key and more than one partition, while each student's events share one key and partition and stay
// in the order they were sent.
func TestHotDistrictSpreadsByStudent(t *testing.T) {
	const shards = 8
	f := newFixture(t, func(s *setup) {
		s.stored = []tenants.Stored{{TenantID: "hot", HotShards: shards}}
		s.limits = server.Limits{MaxBodyBytes: 1 << 20, MaxEvents: 1000}
	})
	spec := sampledata.Spec{TenantID: "hot", Schools: 2, ClassesPerSchool: 2, StudentsPerClass: 10, Days: 2, EventsPerStudent: 4,
		Start: time.Date(2026, 11, 16, 0, 0, 0, 0, time.UTC), Seed: 7}
	events := spec.Events()
	bodies, err := sampledata.Batches(events, 100)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range bodies {
		if code, _, out := f.post(t, "hot", "application/json", string(b)); code != 202 || len(out["rejected"].([]any)) != 0 {
			t.Fatalf("batch: %d %v", code, out)
		}
	}
	sent := map[string][]string{} // student -> event ids in the order sent
	for _, e := range events {
		sent[e.Actor.SISID] = append(sent[e.Actor.SISID], e.EventID)
	}

	type place struct {
		key       string
		partition int32
	}
	where := map[string]place{}    // student -> where their events went
	order := map[string][]string{} // student -> event ids in log order
	keys, parts := map[string]bool{}, map[int32]bool{}
	raw := f.readTopic(t, f.kcfg.Topics().Raw)
	slices.SortFunc(raw, func(a, b *kgo.Record) int { return int(a.Offset - b.Offset) })
	for _, r := range raw {
		ev := f.rawEvent(t, r)
		sis, p := ev.Actor.SISID, place{string(r.Key), r.Partition}
		if prev, ok := where[sis]; ok && prev != p {
			t.Fatalf("student %s's events went to %v and %v", sis, prev, p)
		}
		where[sis] = p
		order[sis] = append(order[sis], ev.EventID)
		if want := fmt.Sprintf("hot/%d", tenants.Shard(sis, shards)); p.key != want {
			t.Fatalf("student %s keyed %q, want %q", sis, p.key, want)
		}
		keys[p.key], parts[p.partition] = true, true
	}
	if len(raw) != len(events) {
		t.Fatalf("raw holds %d records, sent %d", len(raw), len(events))
	}
	if len(keys) != shards || len(parts) < 2 {
		t.Fatalf("%d students used %d sub-keys on %d partitions", len(sent), len(keys), len(parts))
	}
	for sis, ids := range sent {
		if !slices.Equal(order[sis], ids) {
			t.Fatalf("student %s's events are out of order in raw", sis)
		}
	}
}

// TestProducerBufferFullIs503: when Kafka stops answering and the producer's buffer fills, a request
// whose events do not all fit is refused with 503 and Retry-After at once, without waiting for the part of
// it that did fit; a batch already buffered is acknowledged once Kafka answers again.
func TestProducerBufferFullIs503(t *testing.T) {
	f := newFixture(t, func(s *setup) { s.producer = []kgo.Opt{kgo.MaxBufferedRecords(6)} })
	release := make(chan struct{})
	released := false
	defer func() {
		if !released {
			close(release)
		}
	}()
	f.kafka.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		f.kafka.SleepControl(func() { <-release }) // a broker that takes requests and does not answer
		return nil, nil, false
	})

	first := make(chan int, 1)
	go func() {
		code, _, _ := f.post(t, "good", "application/json", batch(event(1, "present"), event(2, "present"), event(3, "present")))
		first <- code
	}()
	deadline := time.Now().Add(5 * time.Second)
	for f.cl.BufferedProduceRecords() < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("the first batch was not buffered: %d records", f.cl.BufferedProduceRecords())
		}
		time.Sleep(5 * time.Millisecond)
	}

	// The invalid last event's DLQ record and two of the four valid events fit in the buffer and wait
	// for Kafka; the other two are refused at once. Neither wait may hold up the refusal.
	type answer struct {
		code int
		hdr  http.Header
		out  map[string]any
	}
	second := make(chan answer, 1)
	go func() {
		code, hdr, out := f.post(t, "good", "application/json", batch(event(4, "present"), event(5, "present"), event(6, "present"), event(7, "present"), event(8, "asleep")))
		second <- answer{code, hdr, out}
	}()
	var a answer
	select {
	case a = <-second:
	case <-time.After(2 * time.Second):
		t.Fatal("the refusal waited for Kafka")
	}
	if a.code != http.StatusServiceUnavailable || a.hdr.Get("Retry-After") == "" || a.out["type"] != "/problems/kafka-unavailable" ||
		!strings.Contains(a.out["detail"].(string), "buffer is full") {
		t.Fatalf("buffer full: %d %v", a.code, a.out)
	}
	select {
	case code := <-first:
		t.Fatalf("the buffered batch was answered (%d) before Kafka acknowledged it", code)
	default:
	}

	close(release)
	released = true
	if code := <-first; code != 202 {
		t.Fatalf("buffered batch: %d after Kafka answered", code)
	}
	// Events 4 and 5 were buffered and may be in raw: they were never acknowledged, the client resends
	// them and the enricher drops the repeats by event_id.
	ids := f.rawEventIDs(t)
	for n := 1; n <= 8; n++ {
		switch want := ids[eventID(n)]; {
		case n <= 3 && want != 1:
			t.Errorf("acknowledged event %d is in raw %d times", n, want)
		case n >= 6 && want != 0:
			t.Errorf("refused event %d reached raw", n)
		}
	}
}
