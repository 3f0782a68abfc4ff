package app_test

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/edtech-analytics/platform/libs/conf"
	"github.com/edtech-analytics/platform/libs/kafkax"
	"github.com/edtech-analytics/platform/libs/keyring"
	"github.com/edtech-analytics/platform/libs/obs"
	"github.com/edtech-analytics/platform/libs/obs/obstest"
	"github.com/edtech-analytics/platform/libs/pgutil/pgtest"
	"github.com/edtech-analytics/platform/libs/records"
	"github.com/edtech-analytics/platform/libs/svc"
	"github.com/edtech-analytics/platform/libs/svc/stream"
	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/edtech-analytics/platform/libs/tenancy/fleet"
	"github.com/edtech-analytics/platform/libs/tenancy/tenants"
	"github.com/edtech-analytics/platform/libs/testenv/kafkatest"
	"github.com/edtech-analytics/platform/services/sink/app"
	"github.com/twmb/franz-go/pkg/kgo"
)

func TestConfig(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr string // "" for valid
	}{
		{name: "defaults need a database", args: nil, wantErr: "database.url"},
		{name: "valid", args: []string{"-database.url", "postgres://x/y"}},
		{name: "empty group", args: []string{"-database.url", "postgres://x/y", "-sink.group", ""}, wantErr: "sink.group"},
		{name: "poll size", args: []string{"-database.url", "postgres://x/y", "-sink.max-poll-records", "0"}, wantErr: "sink.max-poll-records"},
		{name: "kafka checked too", args: []string{"-database.url", "postgres://x/y", "-kafka.partitions", "0"}, wantErr: "kafka.partitions"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("DATABASE_URL", "")
			var cfg app.Config
			fs := flag.NewFlagSet("sink", flag.ContinueOnError)
			cfg.RegisterFlags(fs)
			if err := fs.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			if cfg.AdminAddr != ":9090" {
				t.Errorf("admin addr %q, want :9090", cfg.AdminAddr)
			}
			err := cfg.Validate()
			if tt.wantErr == "" && err != nil {
				t.Fatalf("Validate: %v", err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("Validate = %v, want an error about %s", err, tt.wantErr)
			}
			if tt.wantErr == "" && cfg.Group != "edtech-sink" {
				t.Errorf("group %q, want edtech-sink", cfg.Group)
			}
		})
	}
}

func TestRunConsumesEnrichedIntoDistrictSchemas(t *testing.T) {
	pool, dbURL := pgtest.New(t)
	if err := tenancy.Migrate(t.Context(), pool); err != nil {
		t.Fatal(err)
	}
	if _, err := tenants.New(fleet.New(pool, os.Getenv)).Create(t.Context(), "lakeside", "Lakeside USD"); err != nil {
		t.Fatal(err)
	}
	_, kcfg := kafkatest.New(t)
	cfg := app.Config{AdminAddr: "127.0.0.1:0", DatabaseURL: conf.Secret(dbURL), Group: "sink", Kafka: kcfg, Keys: testKeys}
	tel, err := obs.Init(t.Context(), "sink")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	logs := obstest.NewLog()
	done := make(chan error, 1)
	go func() {
		done <- app.Run(ctx, cfg, svc.Runtime{Log: slog.New(slog.NewJSONHandler(logs, nil)), Tel: tel}, kafkatest.GroupOpts()...)
	}()
	admin := logs.Addr(t, "admin listening", nil)

	waitFor(t, "the sink to be ready", func() bool { return get(t, "http://"+admin+"/readyz") == http.StatusOK })

	codec, err := stream.NewCodec(t.Context(), kcfg)
	if err != nil {
		t.Fatal(err)
	}
	producer, err := kafkax.NewClient(kcfg, kafkax.Deps{}, "", kafkax.ProducerOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	const student, n = "6f1c1f4e-0d7a-4c59-9d0b-3f7f2a1c9e01", 25
	for i := range n {
		ev := records.EnrichedEvent{
			EventID: fmt.Sprintf("00000000-0000-4000-8000-%012d", i), TenantID: "lakeside", Type: records.TypeContentView,
			OccurredAt: time.Date(2026, 3, 2, 9, i, 0, 0, time.UTC), Actor: records.EnrichedActor{InternalID: student},
			ContentView: &records.ContentView{ContentID: "v", ContentType: "video", DurationSeconds: 30},
		}
		b, err := codec.Encode(&ev)
		if err != nil {
			t.Fatal(err)
		}
		if err := producer.ProduceSync(t.Context(), &kgo.Record{Topic: kcfg.Topics().Enriched, Key: []byte(ev.TenantID), Value: b}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}

	var count int64
	waitFor(t, "the events in district_lakeside", func() bool {
		err := pool.QueryRow(t.Context(), "SELECT coalesce(sum(event_count), 0) FROM district_lakeside.student_activity").Scan(&count)
		return err == nil && count == n
	})
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	var stored int64
	if err := pool.QueryRow(t.Context(), "SELECT sum(next_offset) FROM control.consumer_offsets WHERE consumer = 'sink'").Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if stored != n {
		t.Errorf("stored offsets add up to %d, want %d", stored, n)
	}
}

func get(t *testing.T, url string) int {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	defer func() {
		if err := resp.Body.Close(); err != nil {
			t.Error(err)
		}
	}()
	return resp.StatusCode
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// testKeys are the master keys of every sink these tests run (each process its own: the records here
// are not sealed).
var testKeys = keyring.Config{MasterKeys: conf.Secret(keyring.NewLocalKeyLine("sink-test"))}
