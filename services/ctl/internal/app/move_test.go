package app

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/edtech-analytics/platform/libs/conf"
	"github.com/edtech-analytics/platform/libs/kafkax"
	"github.com/edtech-analytics/platform/libs/keyring"
	"github.com/edtech-analytics/platform/libs/obs"
	"github.com/edtech-analytics/platform/libs/pgutil/pgtest"
	"github.com/edtech-analytics/platform/libs/records"
	"github.com/edtech-analytics/platform/libs/svc"
	"github.com/edtech-analytics/platform/libs/svc/stream"
	"github.com/edtech-analytics/platform/libs/tenancy/audit"
	"github.com/edtech-analytics/platform/libs/testenv/kafkatest"
	sink "github.com/edtech-analytics/platform/services/sink/app"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestTenantMoveCommand: with the sink running, ctl tenant move moves a district to another instance;
// the events sent before and after are all counted once, on the new instance; --drop-old drops the old
// copy; each step is in the audit log.
func TestTenantMoveCommand(t *testing.T) {
	control, url := migratedDB(t)
	east, eastURL := pgtest.New(t)
	t.Setenv("PG_EAST_URL", eastURL) // the sink reads the instances' URLs from its environment
	env := map[string]string{EnvDatabaseURL: url, "PG_EAST_URL": eastURL}
	run := func(args ...string) (string, string) {
		t.Helper()
		out, errOut, err := ctlEnv(t, env, args...)
		if err != nil {
			t.Fatalf("ctl %s: %v\n%s", strings.Join(args, " "), err, errOut)
		}
		return out, errOut
	}
	run("instance", "add", "--name", "east", "--url-env", "PG_EAST_URL")
	run("tenant", "create", "--id", "north", "--name", "North")
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
	sent := 0
	send := func(n int) {
		for range n {
			ev := records.EnrichedEvent{
				EventID: fmt.Sprintf("00000000-0000-4000-8000-%012d", sent), TenantID: "north", Type: records.TypeContentView,
				OccurredAt:  time.Date(2026, 3, 2, 9, sent%60, 0, 0, time.UTC),
				Actor:       records.EnrichedActor{InternalID: fmt.Sprintf("00000000-0000-4000-9000-%012d", sent%7)},
				ContentView: &records.ContentView{ContentID: "v", ContentType: "video", DurationSeconds: 30},
			}
			b, err := codec.Encode(&ev)
			if err != nil {
				t.Fatal(err)
			}
			if err := producer.ProduceSync(t.Context(), &kgo.Record{Topic: kcfg.Topics().Enriched, Key: []byte("north"), Value: b}).FirstErr(); err != nil {
				t.Fatal(err)
			}
			sent++
		}
	}
	events := func() int64 {
		var n int64
		pool := control
		var in string
		if err := control.QueryRow(t.Context(), "SELECT instance FROM control.placements WHERE tenant_id = 'north'").Scan(&in); err != nil {
			t.Fatal(err)
		}
		if in == "east" {
			pool = east
		}
		if err := pool.QueryRow(t.Context(), "SELECT coalesce(sum(event_count), 0) FROM district_north.student_activity").Scan(&n); err != nil {
			return -1 // between the commits of a move
		}
		return n
	}
	waitEvents := func() {
		t.Helper()
		deadline := time.After(60 * time.Second)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for events() != int64(sent) {
			select {
			case <-deadline:
				t.Fatalf("north counts %d events, %d were sent", events(), sent)
			case <-tick.C:
			}
		}
	}
	send(150)
	waitEvents()

	kafkaFlags := []string{"--kafka.brokers", strings.Join(kcfg.Brokers, ","), "--kafka.topic-prefix", kcfg.TopicPrefix}
	if _, _, err := ctlEnv(t, env, "tenant", "move", "--id", "north"); err == nil || !strings.Contains(err.Error(), "--to") {
		t.Errorf("move without --to: %v", err)
	}
	out, progress := run(append([]string{"tenant", "move", "--id", "north", "--to", "east"}, kafkaFlags...)...)
	if !strings.Contains(out, "from main to east") || !strings.Contains(out, "moved; the old copy is kept as moved_north on main") ||
		!strings.Contains(progress, "move north: done") {
		t.Errorf("tenant move printed %q\n%s", out, progress)
	}
	if !hasSchema(t, east, "district_north") || hasSchema(t, control, "district_north") || !hasSchema(t, control, "moved_north") {
		t.Error("schemas after the move: want district_north on east and moved_north on main")
	}
	if list, _ := run("tenant", "list"); !strings.Contains(list, "east") {
		t.Errorf("tenant list = %q", list)
	}
	send(100)
	waitEvents()

	out, _ = run("tenant", "move", "--id", "north", "--drop-old")
	if !strings.Contains(out, "dropped moved_north on instance main") || hasSchema(t, control, "moved_north") {
		t.Errorf("--drop-old printed %q", out)
	}
	entries, err := audit.New(control, nil).Entries(t.Context(), 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, en := range entries {
		if strings.HasPrefix(en.Action, "tenant.move") {
			var d struct {
				From, To string
				Moved    bool
			}
			_ = json.Unmarshal([]byte(en.Detail), &d)
			actions = append(actions, fmt.Sprintf("%s %s %s %v", en.Action, d.From, d.To, d.Moved))
		}
	}
	if got := strings.Join(actions, ", "); got != "tenant.move main east true, tenant.move.drop_old   false" {
		t.Errorf("audit entries: %s", got)
	}
}
