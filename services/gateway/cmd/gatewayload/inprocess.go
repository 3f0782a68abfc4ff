package main

import (
	"context"
	"errors"
	"fmt"
	"github.com/edtech-analytics/platform/libs/keyring"
	"github.com/edtech-analytics/platform/libs/pgutil"
	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/edtech-analytics/platform/libs/tenancy/fleet"
	"github.com/edtech-analytics/platform/libs/tenancy/mappings"
	"github.com/edtech-analytics/platform/libs/tenancy/rosters"
	"github.com/edtech-analytics/platform/libs/tenancy/statements"
	"github.com/edtech-analytics/platform/libs/testenv/devenv"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/edtech-analytics/platform/libs/kafkax"
	"github.com/edtech-analytics/platform/libs/obs"
	"github.com/edtech-analytics/platform/libs/svc/stream"
	"github.com/edtech-analytics/platform/services/gateway/internal/server"
	"github.com/edtech-analytics/platform/services/gateway/internal/tenants"
	"github.com/twmb/franz-go/pkg/kfake"
)

// gateway is a gateway running in this process: kfake, the producer, the HTTP server.
type gateway struct {
	url     string
	tenants []string
	keys    []string
	close   func()
}

// keyMap is an in-memory key store: the load measures the gateway, not PostgreSQL (the gateway caches
// key lookups for the key TTL anyway).
type keyMap map[string]server.Key

func (m keyMap) Lookup(_ context.Context, plaintext string) (server.Key, error) {
	if k, ok := m[plaintext]; ok {
		return k, nil
	}
	return server.Key{}, server.ErrInvalidKey
}

// startGateway wires the gateway as app.Run does (same producer options, telemetry and per-record
// tracing), with kfake for Kafka and in-memory keys and tenant
// settings (rate limits high enough not to throttle the load).
func startGateway(ctx context.Context, cfg config) (gw *gateway, err error) {
	var cleanup []func()
	closeAll := func() {
		for i := len(cleanup) - 1; i >= 0; i-- {
			cleanup[i]()
		}
	}
	defer func() {
		if err != nil {
			closeAll()
		}
	}()
	dir := cfg.kafkaDir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "gatewayload-kfake-"); err != nil {
			return nil, fmt.Errorf("creating kfake dir: %w", err)
		}
		cleanup = append(cleanup, func() { _ = os.RemoveAll(dir) })
	}
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.DefaultNumPartitions(12), kfake.DataDir(dir))
	if err != nil {
		return nil, fmt.Errorf("starting kfake: %w", err)
	}
	cleanup = append(cleanup, cluster.Close)
	kcfg := kafkax.Config{Brokers: cluster.ListenAddrs(), TopicPrefix: "load.", ClientID: "gateway", Partitions: 12, ReplicationFactor: 1}

	tel, err := obs.Init(ctx, "gateway")
	if err != nil {
		return nil, err
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	producer, err := kafkax.NewProducer(kcfg, kafkax.Deps{Log: log, Tracer: obs.SampledChildrenOnly(tel.Tracer), Propagator: tel.Propagator})
	if err != nil {
		return nil, err
	}
	cleanup = append(cleanup, producer.Close)
	if err := stream.WaitKafka(ctx, log, producer.Client, kcfg); err != nil {
		return nil, err
	}
	codec, err := stream.NewCodec(ctx, kcfg)
	if err != nil {
		return nil, err
	}

	gw = &gateway{}
	keys := keyMap{}
	for i := range cfg.tenants {
		id, key := fmt.Sprintf("load%02d", i), fmt.Sprintf("load-key-%02d", i)
		gw.tenants, gw.keys = append(gw.tenants, id), append(gw.keys, key)
		keys[key] = server.Key{ID: key, TenantID: id, SourceID: "load", Verbs: []string{server.VerbEventsWrite}}
	}
	reg, err := tenants.New(func(context.Context) ([]tenants.Stored, error) { return nil, nil },
		tenants.RateLimit{EventsPerSecond: 100_000_000, Burst: 100_000_000}, 1000, log)
	if err != nil {
		return nil, err
	}
	sealer, pool, dropKeys, err := loadKeyring(ctx)
	if err != nil {
		return nil, err
	}
	cleanup = append(cleanup, dropKeys)
	districts := fleet.New(pool, os.Getenv) // the load sends no roster: the import step is idle
	cleanup = append(cleanup, districts.Close)
	srv, err := server.New(server.Deps{Log: log, Keys: keys, Tenants: reg, Producer: producer.Client, Codec: codec, Sealer: sealer,
		Rosters: rosters.New(fleet.NewDistrictPools(districts)), Mappings: mappings.New(pool),
		Statements: statements.New(fleet.NewDistrictPools(districts)), Tracer: tel.Tracer, Meter: tel.Meter},
		server.Topics{Raw: kcfg.Topics().Raw, DLQ: kcfg.Topics().DLQ}, server.Limits{MaxBodyBytes: 5 << 20, MaxEvents: 1000})
	if err != nil {
		return nil, err
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listening: %w", err)
	}
	hs := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()
	cleanup = append(cleanup, func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = hs.Shutdown(sctx)
		if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Warn("serving", "err", err)
		}
		_ = producer.Flush(sctx)
		_ = tel.Shutdown(sctx)
	})
	gw.url = "http://" + ln.Addr().String()
	gw.close = closeAll
	return gw, nil
}

// requests prepares the load's batches for this gateway's tenants.
func (g *gateway) requests(cfg config) ([]request, error) {
	return prepare(g.tenants, g.keys, cfg.batch)
}

// loadKeyring returns a keyring, with a fresh master key, over a database of its own on the local test
// PostgreSQL (devenv), which the returned function drops: the gateway seals every person's fields, and
// the load measures that too.
func loadKeyring(ctx context.Context) (*keyring.Keyring, *pgxpool.Pool, func(), error) {
	serverURL, err := devenv.Postgres(ctx)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("postgres for the keys: %w", err)
	}
	name := fmt.Sprintf("gatewayload_keys_%d", os.Getpid())
	admin, err := pgx.Connect(ctx, serverURL)
	if err != nil {
		return nil, nil, nil, err
	}
	defer func() { _ = admin.Close(context.WithoutCancel(ctx)) }()
	if _, err := admin.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
		return nil, nil, nil, err
	}
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return nil, nil, nil, err
	}
	drop := func() {
		ctx := context.Background()
		if conn, err := pgx.Connect(ctx, serverURL); err == nil {
			_, _ = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
			_ = conn.Close(ctx)
		}
	}
	dbURL, err := pgutil.WithDatabase(serverURL, name)
	if err != nil {
		drop()
		return nil, nil, nil, err
	}
	pool, err := pgutil.Connect(ctx, dbURL)
	if err != nil {
		drop()
		return nil, nil, nil, err
	}
	if err := tenancy.Migrate(ctx, pool); err != nil {
		pool.Close()
		drop()
		return nil, nil, nil, err
	}
	master, err := keyring.ParseLocalKeys(keyring.NewLocalKeyLine("load"))
	if err != nil {
		pool.Close()
		drop()
		return nil, nil, nil, err
	}
	return keyring.New(pool, master, keyring.Options{}), pool, func() { pool.Close(); drop() }, nil
}
