package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/edtech-analytics/platform/libs/archive"
	"github.com/edtech-analytics/platform/libs/archive/archivetest"
	"github.com/edtech-analytics/platform/libs/conf"
	"github.com/edtech-analytics/platform/libs/kafkax"
	"github.com/edtech-analytics/platform/libs/keyring"
	"github.com/edtech-analytics/platform/libs/obs"
	"github.com/edtech-analytics/platform/libs/records"
	"github.com/edtech-analytics/platform/libs/svc"
	"github.com/edtech-analytics/platform/libs/svc/stream"
	"github.com/edtech-analytics/platform/libs/tenancy/audit"
	"github.com/edtech-analytics/platform/libs/testenv/kafkatest"
	sink "github.com/edtech-analytics/platform/services/sink/app"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestRebuildCommand: with the sink running, ctl rebuild repairs a district whose live table was
// damaged, shows its progress and the comparison, and a dry run first leaves the damage in place.
func TestRebuildCommand(t *testing.T) {
	pool, url := migratedDB(t)
	mustCtl(t, url, "tenant", "create", "--id", "north", "--name", "North")
	mustCtl(t, url, "tenant", "create", "--id", "south", "--name", "South")
	_, kcfg := kafkatest.New(t)

	tel, err := obs.Init(t.Context(), "sink")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- sink.Run(ctx, sink.Config{AdminAddr: "127.0.0.1:0", DatabaseURL: conf.Secret(url), Group: "edtech-sink", Keys: keyring.Config{MasterKeys: conf.Secret(testMasterKeys)},
			Kafka: kcfg}, svc.Runtime{Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Tel: tel}, kafkatest.GroupOpts()...)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("sink: %v", err)
		}
	})

	codec, err := stream.NewCodec(t.Context(), kcfg)
	if err != nil {
		t.Fatal(err)
	}
	producer, err := kafkax.NewClient(kcfg, kafkax.Deps{}, "", kafkax.ProducerOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	const n = 200
	for i := range n {
		tenant := []string{"north", "south"}[i%2]
		ev := records.EnrichedEvent{
			EventID: fmt.Sprintf("00000000-0000-4000-8000-%012d", i), TenantID: tenant, Type: records.TypeContentView,
			OccurredAt:  time.Date(2026, 3, 2, 9, i%60, 0, 0, time.UTC),
			Actor:       records.EnrichedActor{InternalID: fmt.Sprintf("00000000-0000-4000-9000-%012d", i%7)},
			ContentView: &records.ContentView{ContentID: "v", ContentType: "video", DurationSeconds: 30},
		}
		b, err := codec.Encode(&ev)
		if err != nil {
			t.Fatal(err)
		}
		if err := producer.ProduceSync(t.Context(), &kgo.Record{Topic: kcfg.Topics().Enriched, Key: []byte(tenant), Value: b}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	activity := func() (rows, events int64) {
		if err := pool.QueryRow(t.Context(), "SELECT count(*), coalesce(sum(event_count), 0) FROM district_north.student_activity").Scan(&rows, &events); err != nil {
			t.Fatal(err)
		}
		return rows, events
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, events := activity(); events != n/2; _, events = activity() {
		if time.Now().After(deadline) {
			t.Fatalf("the sink applied %d of north's %d events", events, n/2)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := pool.Exec(t.Context(), "DELETE FROM district_north.student_activity WHERE event_count > 10"); err != nil {
		t.Fatal(err)
	}
	damagedRows, _ := activity()

	kafkaFlags := []string{"--kafka.brokers", strings.Join(kcfg.Brokers, ","), "--kafka.topic-prefix", kcfg.TopicPrefix}
	out := mustCtl(t, url, append([]string{"rebuild", "--tenant", "north", "--dry-run"}, kafkaFlags...)...)
	for _, want := range []string{"dry run: live tables kept", "different from", "verified against the log", records.TypeContentView,
		"ONLY REBUILT", "student_activity only rebuilt: "} {
		if !strings.Contains(out, want) {
			t.Errorf("dry run printed %q, want %q in it", out, want)
		}
	}
	if rows, _ := activity(); rows != damagedRows {
		t.Errorf("a dry run changed the live table: %d rows, had %d", rows, damagedRows)
	}

	// Without --accept-diff a different rebuilt state is refused: non-zero exit, diff printed, live kept.
	out, _, err = ctl(t, url, append([]string{"rebuild", "--tenant", "north"}, kafkaFlags...)...)
	if err == nil || !strings.Contains(err.Error(), "--accept-diff") || !strings.Contains(out, "student_activity only rebuilt: ") ||
		!strings.Contains(out, "refused") {
		t.Errorf("rebuild without --accept-diff: %v\n%s", err, out)
	}
	if rows, _ := activity(); rows != damagedRows {
		t.Errorf("a refused rebuild changed the live table: %d rows, had %d", rows, damagedRows)
	}

	out, progress, err := ctl(t, url, append([]string{"rebuild", "--tenant", "north", "--accept-diff", "--output", "json"}, kafkaFlags...)...)
	if err != nil {
		t.Fatalf("rebuild: %v\n%s", err, progress)
	}
	var report struct {
		Swapped, Equal   bool
		Scanned, Applied int64
		Kept             *struct{ Schema string }
	}
	if err := json.Unmarshal([]byte(out), &report); err != nil || !report.Swapped || report.Equal || report.Applied != n/2 ||
		report.Kept == nil || report.Kept.Schema != "retired_north" {
		t.Errorf("rebuild report %q (%v)", out, err)
	}
	if !strings.Contains(progress, "rebuild north: done") || !strings.Contains(progress, "records/s") {
		t.Errorf("progress = %q", progress)
	}
	if rows, events := activity(); rows != 7 || events != n/2 {
		t.Errorf("after the rebuild north has %d students and %d events, want 7 and %d", rows, events, n/2)
	}

	out = mustCtl(t, url, append([]string{"rebuild", "--tenant", "north", "--rollback"}, kafkaFlags...)...)
	if rows, _ := activity(); rows != damagedRows || !strings.Contains(out, "rolled back") {
		t.Errorf("after --rollback north has %d students, want the %d before the rebuild; printed %q", rows, damagedRows, out)
	}
	mustCtl(t, url, append([]string{"rebuild", "--tenant", "north", "--rollback"}, kafkaFlags...)...)
	if rows, events := activity(); rows != 7 || events != n/2 {
		t.Errorf("after a second --rollback north has %d students and %d events, want the rebuilt 7 and %d", rows, events, n/2)
	}
	out = mustCtl(t, url, "rebuild", "--tenant", "north", "--drop-old")
	if !strings.Contains(out, "dropped retired_north") {
		t.Errorf("--drop-old printed %q", out)
	}
	if _, _, err := ctl(t, url, "rebuild", "--tenant", "north", "--drop-old"); err == nil || !strings.Contains(err.Error(), "no replaced tables") {
		t.Errorf("second --drop-old: %v", err)
	}

	entries, err := audit.New(pool, nil).Entries(t.Context(), 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, en := range entries {
		if strings.HasPrefix(en.Action, "district.rebuild") && en.TenantID == "north" {
			var d struct{ Outcome string }
			_ = json.Unmarshal([]byte(en.Detail), &d)
			actions = append(actions, en.Action+": "+strings.SplitN(d.Outcome, ":", 2)[0])
		}
	}
	want := []string{"district.rebuild: dry run", "district.rebuild: refused", "district.rebuild: swapped in; the replaced tables are kept in retired_north (ctl rebuild --rollback or --drop-old)",
		"district.rebuild.rollback: rolled back; the replaced tables are kept in retired_north", "district.rebuild.rollback: rolled back; the replaced tables are kept in retired_north",
		"district.rebuild.drop_old: "}
	if !slices.Equal(actions, want) {
		t.Errorf("audited = %q, want %q", actions, want)
	}
	// From the archive: every record of the topic archived, the dry run reads north's from the files and
	// finds the state it rebuilds identical to the live one.
	dir := t.TempDir()
	archiveTopic(t, codec, kcfg, dir)
	out = mustCtl(t, url, append([]string{"rebuild", "--tenant", "north", "--dry-run", "--archive.url", "file://" + dir}, kafkaFlags...)...)
	if want := fmt.Sprintf("replayed %d of %d records (%d from the archive)", n/2, n/2, n/2); !strings.Contains(out, want) || !strings.Contains(out, "identical to") {
		t.Errorf("dry run from the archive printed %q, want %q and the state identical", out, want)
	}
	if _, _, err := ctl(t, url, append([]string{"rebuild", "--tenant", "north", "--archive.url", "nowhere://x"}, kafkaFlags...)...); err == nil ||
		!strings.Contains(err.Error(), "--archive.url") {
		t.Errorf("an archive URL of no known scheme: %v", err)
	}
	if _, _, err := ctl(t, url, "rebuild", "--tenant", "north", "--store", "mongo"); err == nil || !strings.Contains(err.Error(), "--store") {
		t.Errorf("an unknown store: %v", err)
	}
	if _, _, err := ctl(t, url, "rebuild", "--tenant", "north", "--store", "clickhouse", "--rollback"); err == nil || !strings.Contains(err.Error(), "--rollback") {
		t.Errorf("--rollback of a clickhouse rebuild: %v", err)
	}
	if _, _, err := ctl(t, url, "rebuild", "--tenant", "Nope!"); err == nil || !strings.Contains(err.Error(), "--tenant") {
		t.Errorf("bad tenant: %v", err)
	}
	if _, _, err := ctl(t, url, "rebuild", "--tenant", "north", "--rollback", "--drop-old"); !errors.Is(err, ErrUsage) {
		t.Errorf("--rollback --drop-old: %v, want a usage error", err)
	}
}

// archiveTopic archives every record of the enriched topic into the directory dir, as the archiver does.
func archiveTopic(t *testing.T, codec *records.Codec, kcfg kafkax.Config, dir string) {
	t.Helper()
	topic := kcfg.Topics().Enriched
	cl, err := kgo.NewClient(kgo.SeedBrokers(kcfg.Brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(t.Context(), topic)
	if err != nil {
		t.Fatal(err)
	}
	from := map[int32]kgo.Offset{}
	left := 0
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			from[o.Partition] = kgo.NewOffset().AtStart()
			left += int(o.Offset)
		}
	})
	cl.AddConsumePartitions(map[string]map[int32]kgo.Offset{topic: from})
	st := archive.New(archivetest.OpenDir(t, dir), codec, archive.EnrichedLayer(), nil)
	for left > 0 {
		fetches := cl.PollFetches(t.Context())
		if err := fetches.Err(); err != nil {
			t.Fatal(err)
		}
		fetches.EachPartition(func(fp kgo.FetchTopicPartition) {
			if err := st.Write(t.Context(), topic, fp.Partition, fp.Records); err != nil {
				t.Fatal(err)
			}
			left -= len(fp.Records)
		})
	}
}
