package app

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/edtech-analytics/platform/libs/archive"
	"github.com/edtech-analytics/platform/libs/archive/archivetest"
	"github.com/edtech-analytics/platform/libs/kafkax"
	"github.com/edtech-analytics/platform/libs/records"
	"github.com/edtech-analytics/platform/libs/testenv/kafkatest"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestReplayRepublishesWhatTheEnricherDidNotPassOn: north's raw archive holds 30 events over three days
// (six of them sent twice, as client retries), its enriched archive 20 of them; south's records share
// the partition. A replay of the first two days republishes, once each and with their keys, exactly
// north's events of those days that the enriched layer lacks; a dry run counts the same and publishes
// nothing.
func TestReplayRepublishesWhatTheEnricherDidNotPassOn(t *testing.T) {
	_, url := migratedDB(t)
	_, kcfg := kafkatest.New(t)
	codec, err := records.NewCodec(t.Context(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	b := archivetest.OpenDir(t, dir)
	day := time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)
	var raw, enriched []*kgo.Record
	want := map[string]bool{} // north's events of days 1-2 that are not enriched
	add := func(tenant string, i int, retry bool) {
		at := day.Add(time.Duration(i%3)*24*time.Hour + time.Duration(i)*time.Minute)
		id := fmt.Sprintf("00000000-0000-4000-8000-%012d", i)
		if tenant == "south" {
			id = fmt.Sprintf("00000000-0000-4000-9000-%012d", i)
		}
		view := &records.ContentView{ContentID: "v", ContentType: "video", DurationSeconds: 30}
		rv, err := codec.Encode(&records.RawEvent{EventID: id, TenantID: tenant, SourceID: "lms", Type: records.TypeContentView,
			OccurredAt: at, ReceivedAt: at, SchemaVersion: 1, Actor: records.Actor{SISID: "s1", Role: "student"}, ContentView: view})
		if err != nil {
			t.Fatal(err)
		}
		raw = append(raw, &kgo.Record{Key: []byte(tenant + "/3"), Value: rv, Offset: int64(len(raw))})
		if retry || tenant != "north" {
			return
		}
		if i%3 == 0 { // not enriched: a third of north's events
			want[id] = at.Before(day.AddDate(0, 0, 2))
			return
		}
		ev, err := codec.Encode(&records.EnrichedEvent{EventID: id, TenantID: tenant, SourceID: "lms", Type: records.TypeContentView,
			OccurredAt: at, ReceivedAt: at, EnrichedAt: at, SchemaVersion: 1,
			Actor: records.EnrichedActor{InternalID: "00000000-0000-4000-9000-000000000001", Role: "student"}, ContentView: view})
		if err != nil {
			t.Fatal(err)
		}
		enriched = append(enriched, &kgo.Record{Key: []byte(tenant + "/3"), Value: ev, Offset: int64(len(enriched))})
	}
	for i := range 30 {
		add("north", i, false)
		add("south", i, false)
		if i%5 == 0 {
			add("north", i, true)
		}
	}
	for id, inRange := range want {
		if !inRange {
			delete(want, id)
		}
	}
	if err := archive.New(b, codec, archive.RawLayer(), nil).Write(t.Context(), kcfg.Topics().Raw, 0, raw); err != nil {
		t.Fatal(err)
	}
	if err := archive.New(b, codec, archive.EnrichedLayer(), nil).Write(t.Context(), kcfg.Topics().Enriched, 0, enriched); err != nil {
		t.Fatal(err)
	}

	admin, err := kgo.NewClient(kgo.SeedBrokers(kcfg.Brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if err := kafkax.EnsureTopics(t.Context(), admin, 4, 1, []kafkax.TopicSpec{{Name: kcfg.Topics().Raw}}); err != nil {
		t.Fatal(err)
	}
	args := []string{"replay", "--tenant", "north", "--from", "2026-03-02", "--to", "2026-03-03", "--archive.url", "file://" + dir,
		"--kafka.brokers", strings.Join(kcfg.Brokers, ","), "--kafka.topic-prefix", kcfg.TopicPrefix}
	// Days 1-2 hold north's events i%3 in {0,1}: 20 events, 4 of them retried, 10 enriched (i%3 == 1).
	out := mustCtl(t, url, append(args, "--dry-run")...)
	if line := fmt.Sprintf("24 raw records in 2 files; 4 retries and 10 events already enriched left out; would republish (dry run) %d to", len(want)); !strings.Contains(out, line) {
		t.Fatalf("dry run printed %q, want %q", out, line)
	}
	out = mustCtl(t, url, args...)
	if !strings.Contains(out, fmt.Sprintf("republished %d to %s", len(want), kcfg.Topics().Raw)) {
		t.Fatalf("replay printed %q", out)
	}
	got := readAllRecords(t, kcfg.Brokers, kcfg.Topics().Raw, len(want))
	var ids []string
	for _, r := range got {
		var ev records.RawEvent
		if err := codec.Decode(r.Value, &ev); err != nil {
			t.Fatal(err)
		}
		if string(r.Key) != "north/3" || !want[ev.EventID] {
			t.Errorf("republished %s keyed %q", ev.EventID, r.Key)
		}
		ids = append(ids, ev.EventID)
	}
	if slices.Sort(ids); len(slices.Compact(ids)) != len(want) {
		t.Errorf("republished %v, want each of %d events once", ids, len(want))
	}
	if _, _, err := ctl(t, url, "replay", "--tenant", "north", "--from", "2026-03-03", "--to", "2026-03-02", "--archive.url", "file://"+dir); err == nil ||
		!strings.Contains(err.Error(), "--to") {
		t.Errorf("a range that ends before it begins: %v", err)
	}
}

// readAllRecords reads topic from its start until n records came, and a last fetch finds no more.
func readAllRecords(t *testing.T, brokers []string, topic string, n int) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var out []*kgo.Record
	for len(out) < n {
		fetches := cl.PollFetches(t.Context())
		if err := fetches.Err(); err != nil {
			t.Fatal(err)
		}
		out = append(out, fetches.Records()...)
	}
	return out
}
