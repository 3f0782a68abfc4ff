package app_test

import (
	"bytes"
	"context"
	"flag"
	"log/slog"
	"math"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/edtech-analytics/platform/libs/conf"
	"github.com/edtech-analytics/platform/libs/kafkax"
	"github.com/edtech-analytics/platform/libs/keyring"
	"github.com/edtech-analytics/platform/libs/keyring/keyringtest"
	"github.com/edtech-analytics/platform/libs/obs"
	"github.com/edtech-analytics/platform/libs/pgutil/pgtest"
	"github.com/edtech-analytics/platform/libs/svc"
	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/edtech-analytics/platform/libs/tenancy/credentials"
	"github.com/edtech-analytics/platform/libs/tenancy/fleet"
	"github.com/edtech-analytics/platform/libs/tenancy/ingest"
	tenantstore "github.com/edtech-analytics/platform/libs/tenancy/tenants"
	"github.com/edtech-analytics/platform/libs/testenv/kafkatest"
	"github.com/edtech-analytics/platform/libs/testenv/sampledata"
	"github.com/edtech-analytics/platform/services/gateway/app"
	"github.com/jackc/pgx/v5/pgxpool"
)

// gatewayEnv is a control database with district d1 and an event key of it, and a Kafka, on which the
// tests run whole gateways (app.Run).
type gatewayEnv struct {
	pool       *pgxpool.Pool
	dbURL      string
	kcfg       kafkax.Config
	key        string
	masterKeys string
}

func newGatewayEnv(t *testing.T) *gatewayEnv {
	t.Helper()
	ctx := t.Context()
	pool, dbURL := pgtest.New(t)
	if err := tenancy.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	districts := fleet.New(pool, os.Getenv)
	t.Cleanup(districts.Close)
	if _, err := tenantstore.New(districts).Create(ctx, "d1", "d1"); err != nil {
		t.Fatal(err)
	}
	key, _, err := credentials.New(pool).CreateAPIKey(ctx, "d1", "lms", []string{credentials.VerbEventsWrite})
	if err != nil {
		t.Fatal(err)
	}
	_, kcfg := kafkatest.New(t)
	admin, err := kafkax.NewClient(kcfg, kafkax.Deps{}, "")
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if err := kafkax.EnsureTopics(ctx, admin.Client, 4, 1, kafkax.PlatformTopics(kcfg)); err != nil {
		t.Fatal(err)
	}
	return &gatewayEnv{pool: pool, dbURL: dbURL, kcfg: kcfg, key: key, masterKeys: keyringtest.MasterKeys()}
}

// instance is a running gateway.
type instance struct {
	url   string
	peers chan int
	stop  func()
}

// start runs a gateway on the environment until the test ends (or stop); adjust changes its configuration.
func (e *gatewayEnv) start(t *testing.T, adjust func(*app.Config)) *instance {
	t.Helper()
	var cfg app.Config
	fs := flag.NewFlagSet("gateway", flag.ContinueOnError)
	cfg.RegisterFlags(fs)
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	cfg.HTTPAddr, cfg.AdminAddr, cfg.DatabaseURL, cfg.Kafka = "127.0.0.1:0", "127.0.0.1:0", conf.Secret(e.dbURL), e.kcfg
	cfg.Keys = keyring.Config{MasterKeys: conf.Secret(e.masterKeys)}
	cfg.TenantRefresh, cfg.InstanceTTL = 100*time.Millisecond, time.Minute // no live instance ages out under load
	if adjust != nil {
		adjust(&cfg)
	}
	tel, err := obs.Init(t.Context(), "gateway-test")
	if err != nil {
		t.Fatal(err)
	}
	in := &instance{peers: make(chan int, 16)}
	listening := make(chan string, 1)
	runCtx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- app.Run(runCtx, cfg, svc.Runtime{Log: slog.New(slog.DiscardHandler), Tel: tel},
			app.Hooks{OnListen: func(addr string) { listening <- addr }, OnPeers: func(n int) { in.peers <- n }},
			kafkatest.GroupOpts()...)
	}()
	select {
	case addr := <-listening:
		in.url = "http://" + addr
	case err := <-done:
		t.Fatalf("gateway stopped: %v", err)
	}
	stopped := false
	in.stop = func() {
		if !stopped {
			stopped = true
			cancel()
			if err := <-done; err != nil {
				t.Errorf("gateway: %v", err)
			}
		}
	}
	t.Cleanup(in.stop)
	return in
}

// TestRateLimitHoldsAcrossInstances runs two gateway processes' worth of the gateway (two app.Run on one
// control database and one Kafka) and sends a district's events to both until each refuses them: the
// district gets its limit once in total (its burst, plus its rate over the time the sending took), not
// once per instance. When one instance stops, the other is told it is alone and takes the whole limit.
func TestRateLimitHoldsAcrossInstances(t *testing.T) {
	ctx := t.Context()
	env := newGatewayEnv(t)
	pool, key := env.pool, env.key
	const rate, burst = 1, 4000 // per district, across instances
	if _, err := ingest.New(pool).SetRateLimit(ctx, "d1", &ingest.RateLimit{EventsPerSecond: rate, Burst: burst}); err != nil {
		t.Fatal(err)
	}
	waitPeers := func(in *instance, want int) {
		t.Helper()
		for n := range in.peers { // each change, in order; the test's deadline bounds the wait
			if n == want {
				return
			}
		}
	}
	a, b := env.start(t, nil), env.start(t, nil)
	waitPeers(a, 2) // a counted b; b counted a on its first refresh
	waitPeers(b, 2)

	spec := sampledata.Spec{TenantID: "d1", Schools: 1, ClassesPerSchool: 2, StudentsPerClass: 25, Days: 40, EventsPerStudent: 5,
		Start: time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC), Seed: 3}
	bodies, err := sampledata.Batches(spec.Events(), 500)
	if err != nil {
		t.Fatal(err)
	}
	post := func(url string, body []byte) (int, int) {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/v1/events", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode == http.StatusAccepted {
			return resp.StatusCode, 500
		}
		return resp.StatusCode, 0
	}
	accepted, next := 0, 0
	began := time.Now()
	for _, in := range []*instance{a, b} {
		for next < len(bodies) {
			code, n := post(in.url, bodies[next])
			next++
			accepted += n
			if code == http.StatusTooManyRequests {
				break
			}
			if code != http.StatusAccepted {
				t.Fatalf("gateway answered %d", code)
			}
		}
	}
	took := time.Since(began).Seconds()
	// The burst once, plus what the rate refills while the requests were sent (in whole batches).
	if most := burst + 500*int(math.Ceil(rate*took/500)); accepted > most || accepted < burst/2 {
		t.Fatalf("two instances accepted %d events of a district limited to a burst of %d and %d/s over %.1f s", accepted, burst, rate, took)
	}

	// b stops and leaves: a is told it is alone, and takes the whole limit.
	b.stop()
	waitPeers(a, 1)
	var live int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM control.gateway_instances`).Scan(&live); err != nil || live != 1 {
		t.Fatalf("gateway instances recorded after one stopped: %d (%v)", live, err)
	}
}
