package app_test

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/edtech-analytics/platform/libs/chutil/chtest"
	"github.com/edtech-analytics/platform/libs/kafkax"
	"github.com/edtech-analytics/platform/libs/obs"
	"github.com/edtech-analytics/platform/libs/obs/obstest"
	"github.com/edtech-analytics/platform/libs/svc"
	"github.com/edtech-analytics/platform/libs/svc/stream"
	"github.com/edtech-analytics/platform/libs/testenv/kafkatest"
	"github.com/edtech-analytics/platform/services/aggregator/app"
	"github.com/edtech-analytics/platform/services/aggregator/internal/chstore"
	"github.com/edtech-analytics/platform/services/aggregator/internal/synth"
	"github.com/twmb/franz-go/pkg/kgo"
)

func TestConfigFlagsAndEnv(t *testing.T) {
	envs := []string{"CLICKHOUSE_ADDR", "CLICKHOUSE_DATABASE", "CLICKHOUSE_USER", "CLICKHOUSE_PASSWORD", "ADMIN_ADDR", "AGGREGATOR_GROUP", "ANALYST_DATABASE_PREFIX",
		"AGGREGATOR_COMPACT_INTERVAL", "AGGREGATOR_COMPACT_OPEN_MIN_PARTS", "AGGREGATOR_FETCH_MIN_BYTES", "AGGREGATOR_FETCH_MAX_WAIT",
		"AGGREGATOR_MAX_POLL_RECORDS", "CLICKHOUSE_CLUSTER", "CLICKHOUSE_KEEPER", "CLICKHOUSE_KEEPER_ROOT"}
	for _, e := range envs {
		t.Setenv(e, "") // restored after the test
		if err := os.Unsetenv(e); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name string
		env  map[string]string
		args []string
		want app.Config
	}{
		{"defaults", nil, nil, app.Config{ClickHouseAddr: "127.0.0.1:9000", ClickHouseDatabase: "edtech", ClickHouseUser: "default",
			AdminAddr: ":9090", Group: "edtech-aggregator", AnalystPrefix: "analyst_", Compact: chstore.CompactConfig{Interval: time.Hour, OpenMinParts: 8},
			Fetch: kafkax.Batching{MinBytes: 4 << 20, MaxWait: time.Second}, MaxPollRecords: 100_000}},
		{"env", map[string]string{"CLICKHOUSE_ADDR": "ch:9000", "CLICKHOUSE_DATABASE": "prod", "CLICKHOUSE_USER": "agg",
			"CLICKHOUSE_PASSWORD": "s3cret", "ADMIN_ADDR": ":9191", "AGGREGATOR_GROUP": "g2", "ANALYST_DATABASE_PREFIX": "an_",
			"AGGREGATOR_COMPACT_INTERVAL": "10m", "AGGREGATOR_COMPACT_OPEN_MIN_PARTS": "0", "AGGREGATOR_FETCH_MIN_BYTES": "1",
			"AGGREGATOR_FETCH_MAX_WAIT": "250ms", "AGGREGATOR_MAX_POLL_RECORDS": "5000", "CLICKHOUSE_CLUSTER": "edtech",
			"CLICKHOUSE_KEEPER": "zk-0:2181, zk-1:2181", "CLICKHOUSE_KEEPER_ROOT": "/prod/agg"}, nil,
			app.Config{ClickHouseAddr: "ch:9000", ClickHouseDatabase: "prod", ClickHouseUser: "agg", ClickHousePassword: "s3cret", AdminAddr: ":9191",
				Cluster: chstore.ClusterConfig{Name: "edtech", Keeper: []string{"zk-0:2181", "zk-1:2181"}, KeeperRoot: "/prod/agg"},
				Group:   "g2", AnalystPrefix: "an_", Compact: chstore.CompactConfig{Interval: 10 * time.Minute},
				Fetch: kafkax.Batching{MinBytes: 1, MaxWait: 250 * time.Millisecond}, MaxPollRecords: 5000}},
		{"flags win", map[string]string{"AGGREGATOR_GROUP": "g2", "AGGREGATOR_FETCH_MAX_WAIT": "250ms"}, []string{"-group", "g3", "-clickhouse.addr", "x:1",
			"-analyst.prefix", "", "-compact.interval", "0", "-fetch.max-wait", "2s"},
			app.Config{ClickHouseAddr: "x:1", ClickHouseDatabase: "edtech", ClickHouseUser: "default", AdminAddr: ":9090", Group: "g3",
				Compact: chstore.CompactConfig{OpenMinParts: 8}, Fetch: kafkax.Batching{MinBytes: 4 << 20, MaxWait: 2 * time.Second}, MaxPollRecords: 100_000}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			var cfg app.Config
			fs := flag.NewFlagSet("aggregator", flag.ContinueOnError)
			cfg.RegisterFlags(fs)
			if err := fs.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			got := cfg
			got.Kafka = kafkax.Config{}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) || got.ClickHousePassword.Reveal() != tt.want.ClickHousePassword.Reveal() {
				t.Fatalf("config = %+v, want %+v", got, tt.want)
			}
		})
	}
	var cfg app.Config
	cfg.RegisterFlags(flag.NewFlagSet("aggregator", flag.ContinueOnError))
	cfg.ClickHouseDatabase, cfg.Group, cfg.Compact.OpenMinParts = "", "", 1
	cfg.Fetch, cfg.MaxPollRecords = kafkax.Batching{MinBytes: 0, MaxWait: time.Minute}, 0
	cfg.Cluster.Name = "edtech" // without Keeper
	err := cfg.Validate()
	for _, field := range []string{"clickhouse.database", "group", "compact.open-min-parts", "fetch.min-bytes", "fetch.max-wait", "max-poll-records", "clickhouse.keeper"} {
		if err == nil || !strings.Contains(err.Error(), field) {
			t.Fatalf("Validate of an empty database and group and one open part = %v, want it to name %s", err, field)
		}
	}
}

// TestRunConsumesIntoClickHouse runs the service as main does: it creates and migrates the database,
// creates the topics, turns ready once it owns partitions, keeps the rollups from what is produced, and
// returns nil when its context ends.
func TestRunConsumesIntoClickHouse(t *testing.T) {
	conn, db, chAddr := chtest.New(t) // Run creates the database if missing; chtest drops it afterwards
	_, kcfg := kafkatest.New(t)
	cfg := app.Config{
		ClickHouseAddr: chAddr, ClickHouseDatabase: db, ClickHouseUser: "default", AdminAddr: "127.0.0.1:0",
		Group: "aggregator", Kafka: kcfg, AnalystPrefix: db + "_an_",
		Compact: chstore.CompactConfig{Interval: 200 * time.Millisecond},
		Fetch:   kafkax.Batching{MinBytes: 1, MaxWait: 100 * time.Millisecond}, MaxPollRecords: 10_000,
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	tel, err := obs.Init(t.Context(), "aggregator-test")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	logs := obstest.NewLog()
	done := make(chan error, 1)
	go func() {
		done <- app.Run(ctx, cfg, svc.Runtime{Log: slog.New(slog.NewJSONHandler(logs, nil)), Tel: tel}, kafkatest.GroupOpts()...)
	}()
	adminAddr := logs.Addr(t, "admin listening", nil)

	waitFor(t, "readiness", func() bool { return get(t, "http://"+adminAddr+"/readyz") == http.StatusOK })

	codec, err := stream.NewCodec(t.Context(), kcfg)
	if err != nil {
		t.Fatal(err)
	}
	evs, _ := synth.Events(5, 3, 300)
	cl, err := kafkax.NewClient(kcfg, kafkax.Deps{}, "", kafkax.ProducerOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	recs := make([]*kgo.Record, len(evs))
	for i := range evs {
		b, err := codec.Encode(&evs[i])
		if err != nil {
			t.Fatal(err)
		}
		recs[i] = &kgo.Record{Topic: kcfg.Topics().Enriched, Key: []byte(evs[i].TenantID), Value: b}
	}
	if err := cl.ProduceSync(t.Context(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}

	want := synth.Want(evs)
	waitFor(t, "the rollups to match the input", func() bool {
		got, err := synth.Got(t.Context(), conn)
		return err == nil && len(synth.Diff(want, got)) == 0
	})
	// Compaction runs beside the consumer: the closed months of every rollup end in one part each.
	waitFor(t, "compaction to merge the closed months", func() bool {
		var several uint64
		err := conn.QueryRow(t.Context(), `SELECT count() FROM (SELECT table, partition_id FROM system.parts
			WHERE database = currentDatabase() AND active AND has(?, table) GROUP BY table, partition_id HAVING count() > 1)`,
			chstore.Rollups).Scan(&several)
		return err == nil && several == 0
	})
	if got, err := synth.Got(t.Context(), conn); err != nil || len(synth.Diff(want, got)) != 0 {
		t.Fatalf("rollups after compaction: err %v, %d keys differ", err, len(synth.Diff(want, got)))
	}
	waitFor(t, "the merges to show in /metrics", func() bool {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+adminAddr+"/metrics", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		defer func() {
			if err := resp.Body.Close(); err != nil {
				t.Error(err)
			}
		}()
		body, err := io.ReadAll(resp.Body)
		return err == nil && strings.Contains(string(body), `aggregator_rollup_partitions_merged_total{`) &&
			strings.Contains(string(body), `table="metrics_daily"`)
	})
	// The service made each district's analyst views on first sight.
	var analystDBs uint64
	if err := conn.QueryRow(t.Context(), "SELECT count() FROM system.databases WHERE startsWith(name, ?)", cfg.AnalystPrefix).Scan(&analystDBs); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3; i++ {
		if err := conn.Exec(context.Background(), fmt.Sprintf("DROP DATABASE IF EXISTS %sdistrict_%d", cfg.AnalystPrefix, i)); err != nil {
			t.Error(err)
		}
	}
	if analystDBs != 3 {
		t.Fatalf("%d analyst databases, want one per district (3)", analystDBs)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run returned %v after its context ended", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return after its context ended")
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
	_ = resp.Body.Close()
	return resp.StatusCode
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
