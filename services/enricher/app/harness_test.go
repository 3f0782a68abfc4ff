package app_test

import (
	"bufio"
	"context"
	"fmt"
	"github.com/edtech-analytics/platform/libs/keyring/keyringtest"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edtech-analytics/platform/libs/conf"
	"github.com/edtech-analytics/platform/libs/kafkax"
	"github.com/edtech-analytics/platform/libs/obs"
	"github.com/edtech-analytics/platform/libs/pgutil/pgtest"
	"github.com/edtech-analytics/platform/libs/records"
	"github.com/edtech-analytics/platform/libs/svc"
	"github.com/edtech-analytics/platform/libs/svc/stream"
	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/edtech-analytics/platform/libs/tenancy/fleet"
	"github.com/edtech-analytics/platform/libs/tenancy/privacy"
	"github.com/edtech-analytics/platform/libs/tenancy/tenants"
	"github.com/edtech-analytics/platform/libs/testenv/kafkatest"
	"github.com/edtech-analytics/platform/services/enricher/app"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestMain doubles as the enricher's main when the SIGKILL test starts this binary as a subprocess.
func TestMain(m *testing.M) {
	if role := os.Getenv(childEnv); role != "" {
		var cfg app.Config
		svc.Main("enricher", &cfg, func(ctx context.Context, rt svc.Runtime) error {
			return app.Run(ctx, cfg, rt, childGroupOpts(role == childFinishes)...)
		})
	}
	os.Exit(m.Run())
}

// harness is a kfake cluster and a migrated database with districts, shared by the app tests.
type harness struct {
	t    *testing.T
	kcfg kafkax.Config
	// masterKeys are the MASTER_KEYS of every enricher the harness starts.
	masterKeys string
	pool       *pgxpool.Pool
	dbURL      string
	districts  *tenants.Store
	policy     *privacy.Store
	codec      *records.Codec
	client     *kafkax.Client
	seq        int
}

func newHarness(t *testing.T, ids ...string) *harness {
	t.Helper()
	ctx := t.Context()
	pool, url := pgtest.New(t)
	if err := tenancy.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	districts := tenants.New(fleet.New(pool, os.Getenv))
	for _, id := range ids {
		if _, err := districts.Create(ctx, id, "District "+id); err != nil {
			t.Fatal(err)
		}
	}
	_, kcfg := kafkatest.New(t)
	cl, err := kafkax.NewClient(kcfg, kafkax.Deps{}, "", kafkax.ProducerOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	if err := kafkax.EnsureTopics(ctx, cl.Client, kcfg.Partitions, 1, kafkax.PlatformTopics(kcfg)); err != nil {
		t.Fatal(err)
	}
	codec, err := stream.NewCodec(ctx, kcfg)
	if err != nil {
		t.Fatal(err)
	}
	return &harness{t: t, kcfg: kcfg, pool: pool, dbURL: url, districts: districts, policy: privacy.New(pool), codec: codec, client: cl,
		masterKeys: keyringtest.MasterKeys()}
}

// event returns a login of sis in tenant with a fresh event id.
func (h *harness) event(tenant, sis string) *records.RawEvent {
	h.seq++
	at := time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC).Add(time.Duration(h.seq) * time.Second)
	return &records.RawEvent{EventID: fmt.Sprintf("00000000-0000-4000-8000-%012d", h.seq), TenantID: tenant, SourceID: "sis",
		Type: records.TypeSession, OccurredAt: at, ReceivedAt: at, SchemaVersion: 1,
		Actor: records.Actor{SISID: sis, Role: "student"}, Session: &records.SessionEvent{Action: records.SessionLogin}}
}

func (h *harness) rawRecord(ev *records.RawEvent) *kgo.Record {
	h.t.Helper()
	b, err := h.codec.Encode(ev)
	if err != nil {
		h.t.Fatal(err)
	}
	return &kgo.Record{Topic: h.kcfg.Topics().Raw, Key: []byte(ev.TenantID), Value: b}
}

func (h *harness) produce(recs ...*kgo.Record) {
	h.t.Helper()
	if err := h.client.ProduceSync(h.t.Context(), recs...).FirstErr(); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) produceRaw(evs ...*records.RawEvent) {
	h.t.Helper()
	for _, ev := range evs {
		h.produce(h.rawRecord(ev))
	}
}

func (h *harness) produceControl(cmd records.ControlCommand) {
	h.t.Helper()
	b, err := h.codec.Encode(&cmd)
	if err != nil {
		h.t.Fatal(err)
	}
	h.produce(&kgo.Record{Topic: h.kcfg.Topics().Control, Key: []byte(cmd.TenantID), Value: b})
}

// config is the in-process enricher's configuration: flag defaults, the test's servers, short timeouts.
func (h *harness) config(group string) app.Config {
	var cfg app.Config
	cfg.RegisterFlags(newFlagSet())
	cfg.AdminAddr, cfg.DatabaseURL, cfg.Group, cfg.Kafka = "127.0.0.1:0", conf.Secret(h.dbURL), group, h.kcfg
	cfg.Keys.MasterKeys = conf.Secret(h.masterKeys)
	cfg.TransactionTimeout = 2 * time.Second
	return cfg
}

// running is an in-process enricher.
type running struct {
	tel  *obs.Telemetry
	stop func()
}

// start runs an enricher with short group timeouts (kafkatest.GroupOpts) plus opts.
func (h *harness) start(cfg app.Config, opts ...kgo.Opt) *running {
	h.t.Helper()
	return h.startWith(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), append(kafkatest.GroupOpts(), opts...)...)
}

// startWith runs an enricher logging to log, with opts added to its Kafka clients.
func (h *harness) startWith(cfg app.Config, log *slog.Logger, opts ...kgo.Opt) *running {
	h.t.Helper()
	tel, err := obs.Init(h.t.Context(), "enricher")
	if err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- app.Run(ctx, cfg, svc.Runtime{Log: log, Tel: tel}, opts...)
	}()
	r := &running{tel: tel}
	r.stop = func() {
		cancel()
		if err := <-done; err != nil {
			h.t.Errorf("enricher: %v", err)
		}
		r.stop = func() {}
	}
	h.t.Cleanup(func() { r.stop() })
	return r
}

// outcomes scrapes the enricher_records counter by outcome from the metrics endpoint.
func (r *running) outcomes(t *testing.T) map[string]int {
	t.Helper()
	rec := httptest.NewRecorder()
	r.tel.Metrics.ServeHTTP(rec, httptest.NewRequestWithContext(t.Context(), "GET", "/metrics", nil))
	out := map[string]int{}
	sc := bufio.NewScanner(rec.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "enricher_records_total{") {
			continue
		}
		_, rest, _ := strings.Cut(line, `outcome="`)
		outcome, _, _ := strings.Cut(rest, `"`)
		n, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		out[outcome] += int(n)
	}
	return out
}

// readCommitted reads a topic with read_committed from the start to its current stable end.
func (h *harness) readCommitted(topic string) []*kgo.Record {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(h.t.Context(), 30*time.Second)
	defer cancel()
	ends, err := kadm.NewClient(h.client.Client).ListCommittedOffsets(ctx, topic)
	if err != nil {
		h.t.Fatal(err)
	}
	remaining := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			remaining[o.Partition] = o.Offset
		}
	})
	if len(remaining) == 0 {
		return nil
	}
	cl, err := kafkax.NewClient(h.kcfg, kafkax.Deps{}, "", kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.KeepControlRecords())
	if err != nil {
		h.t.Fatal(err)
	}
	defer cl.Close()
	var out []*kgo.Record
	for len(remaining) > 0 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			h.t.Fatalf("reading %s: %v", topic, ctx.Err())
		}
		fs.EachRecord(func(r *kgo.Record) {
			if !r.Attrs.IsControl() {
				out = append(out, r)
			}
			if end, ok := remaining[r.Partition]; ok && r.Offset+1 >= end {
				delete(remaining, r.Partition)
			}
		})
	}
	return out
}

// enriched decodes the committed enriched records.
func (h *harness) enriched() []records.EnrichedEvent {
	h.t.Helper()
	var out []records.EnrichedEvent
	for _, r := range h.readCommitted(h.kcfg.Topics().Enriched) {
		var ev records.EnrichedEvent
		if err := h.codec.Decode(r.Value, &ev); err != nil {
			h.t.Fatal(err)
		}
		out = append(out, ev)
	}
	return out
}

// waitFor polls cond until it holds or the timeout passes.
func (h *harness) waitFor(what string, timeout time.Duration, cond func() bool) {
	h.t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			h.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// has reports whether events holds the event id.
func has(events []records.EnrichedEvent, id string) bool {
	for _, ev := range events {
		if ev.EventID == id {
			return true
		}
	}
	return false
}
