// Package app wires the gateway: config, stores, Kafka producer, HTTP servers, and graceful drain. It is
// importable so the dev stack can run the gateway in-process; main only parses config and calls Run.
package app

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"github.com/google/uuid"
	"go.opentelemetry.io/otel/metric"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/edtech-analytics/platform/libs/conf"
	"github.com/edtech-analytics/platform/libs/kafkax"
	"github.com/edtech-analytics/platform/libs/keyring"
	"github.com/edtech-analytics/platform/libs/obs"
	"github.com/edtech-analytics/platform/libs/pgutil"
	"github.com/edtech-analytics/platform/libs/svc"
	"github.com/edtech-analytics/platform/libs/svc/stream"
	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/edtech-analytics/platform/libs/tenancy/credentials"
	"github.com/edtech-analytics/platform/libs/tenancy/fleet"
	"github.com/edtech-analytics/platform/libs/tenancy/ingest"
	"github.com/edtech-analytics/platform/libs/tenancy/mappings"
	"github.com/edtech-analytics/platform/libs/tenancy/rosters"
	"github.com/edtech-analytics/platform/libs/tenancy/statements"
	tenantstore "github.com/edtech-analytics/platform/libs/tenancy/tenants"
	"github.com/edtech-analytics/platform/services/gateway/internal/quality"
	"github.com/edtech-analytics/platform/services/gateway/internal/roster"
	"github.com/edtech-analytics/platform/services/gateway/internal/server"
	"github.com/edtech-analytics/platform/services/gateway/internal/tenants"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"
)

// Config is the gateway's configuration.
type Config struct {
	HTTPAddr     string
	HTTPTLS      conf.ServerTLS // HTTPS on the public port (empty: plain HTTP behind a TLS-terminating ingress)
	AdminAddr    string
	DatabaseURL  conf.Secret
	Kafka        kafkax.Config
	MaxBodyBytes int
	MaxEvents    int
	// MaxRosterBodyBytes and MaxRosterRecords bound one roster request (a JSON collection or CSV zip).
	MaxRosterBodyBytes int
	MaxRosterRecords   int
	// RosterColumns, RosterHeaderBytes and RosterRecordBytes bound a file of a CSV package;
	// RosterFileBytes and RosterUnzippedBytes a file and a package once unzipped.
	RosterColumns       int
	RosterHeaderBytes   int
	RosterRecordBytes   int
	RosterFileBytes     int
	RosterUnzippedBytes int
	// RosterMemoryBudget is what all roster requests together may hold, RosterRequestMemory one of them.
	RosterMemoryBudget  int
	RosterRequestMemory int
	// RosterSpoolDir is where roster requests keep their encoded records until the upload is decided.
	RosterSpoolDir string
	// BodyReadTimeout and RosterBodyReadTimeout bound how long reading one request body may take.
	BodyReadTimeout       time.Duration
	RosterBodyReadTimeout time.Duration
	KeyCacheTTL           time.Duration
	DrainTimeout          time.Duration
	ShutdownDelay         time.Duration
	// RateLimit applies to districts without a limit of their own, across all gateway instances: each
	// enforces its share, the limit divided by the instances live within InstanceTTL.
	RateLimit     tenants.RateLimit
	TenantRefresh time.Duration
	InstanceTTL   time.Duration
	// Keys are the master keys of the key hierarchy that seals identifying fields (ADR 0010).
	Keys keyring.Config
	// QualityInterval is how often the districts' roster quality gauges are computed (0: never), over
	// the uploads of the last QualityWindow.
	QualityInterval time.Duration
	QualityWindow   time.Duration
}

// RegisterFlags binds the config to flags with env defaults.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	conf.String(fs, &c.HTTPAddr, "http.addr", "HTTP_ADDR", ":8080", "address of the public API")
	c.HTTPTLS.RegisterFlags(fs, "http.", "HTTP_")
	conf.String(fs, &c.AdminAddr, "admin.addr", "ADMIN_ADDR", ":9090", "address of /healthz, /readyz and /metrics")
	conf.SecretVar(fs, &c.DatabaseURL, "database.url", "DATABASE_URL", "PostgreSQL URL of the control schema (API keys)")
	conf.Int(fs, &c.MaxBodyBytes, "max-body-bytes", "GATEWAY_MAX_BODY_BYTES", 5<<20, "largest request body")
	conf.Int(fs, &c.MaxEvents, "max-events", "GATEWAY_MAX_EVENTS", 1000, "most events in one request")
	conf.Int(fs, &c.MaxRosterBodyBytes, "max-roster-body-bytes", "GATEWAY_MAX_ROSTER_BODY_BYTES", 64<<20, "largest roster request body (JSON collection or CSV zip)")
	conf.Int(fs, &c.MaxRosterRecords, "max-roster-records", "GATEWAY_MAX_ROSTER_RECORDS", roster.DefaultLimits().MaxRecords, "most roster records in one request")
	lim := roster.DefaultLimits()
	conf.Int(fs, &c.RosterColumns, "roster.max-columns", "GATEWAY_ROSTER_MAX_COLUMNS", lim.MaxColumns, "most columns of a roster CSV file, and fields of any of its rows (413 over)")
	conf.Int(fs, &c.RosterHeaderBytes, "roster.max-header-bytes", "GATEWAY_ROSTER_MAX_HEADER_BYTES", lim.MaxHeaderBytes, "largest header of a roster CSV file (413 over)")
	conf.Int(fs, &c.RosterRecordBytes, "roster.max-record-bytes", "GATEWAY_ROSTER_MAX_RECORD_BYTES", lim.MaxRecordBytes, "largest record (row) of a roster CSV file (413 over)")
	conf.Int(fs, &c.RosterFileBytes, "roster.max-file-bytes", "GATEWAY_ROSTER_MAX_FILE_BYTES", int(lim.MaxFileBytes), "largest file of a roster CSV package once unzipped (413 over)")
	conf.Int(fs, &c.RosterUnzippedBytes, "roster.max-unzipped-bytes", "GATEWAY_ROSTER_MAX_UNZIPPED_BYTES", int(lim.MaxUnzippedBytes), "largest roster CSV package once unzipped, all files together (413 over)")
	conf.Int(fs, &c.RosterMemoryBudget, "roster.memory-budget", "GATEWAY_ROSTER_MEMORY_BUDGET", 256<<20, "memory all roster requests of this instance may hold together (503 with Retry-After when others hold it)")
	conf.Int(fs, &c.RosterRequestMemory, "roster.request-memory", "GATEWAY_ROSTER_REQUEST_MEMORY", 128<<20, "memory one roster request may hold (413 over)")
	conf.String(fs, &c.RosterSpoolDir, "roster.spool-dir", "GATEWAY_ROSTER_SPOOL_DIR", "",
		"directory of roster requests' spool files (their encoded records, a file each until the upload is decided; empty: the system's temporary directory)")
	conf.Duration(fs, &c.BodyReadTimeout, "body-read-timeout", "GATEWAY_BODY_READ_TIMEOUT", 10*time.Second, "how long reading an events request body may take (408 after)")
	conf.Duration(fs, &c.RosterBodyReadTimeout, "roster-body-read-timeout", "GATEWAY_ROSTER_BODY_READ_TIMEOUT", 5*time.Minute, "how long reading a roster request body may take (408 after)")
	conf.Duration(fs, &c.KeyCacheTTL, "key-cache-ttl", "GATEWAY_KEY_CACHE_TTL", 5*time.Second, "how long a key lookup is cached (bounds revocation delay)")
	conf.Duration(fs, &c.DrainTimeout, "drain-timeout", "GATEWAY_DRAIN_TIMEOUT", 25*time.Second, "how long in-flight requests may take to finish on shutdown")
	conf.Duration(fs, &c.ShutdownDelay, "shutdown-delay", "GATEWAY_SHUTDOWN_DELAY", 0, "time between turning not-ready and closing the listener on shutdown")
	conf.Int(fs, &c.RateLimit.EventsPerSecond, "rate-limit.events-per-sec", "GATEWAY_RATE_LIMIT_EVENTS_PER_SEC", 5000, "default events per second per district across all gateway instances (ctl tenant set-limits overrides it)")
	conf.Int(fs, &c.RateLimit.Burst, "rate-limit.burst", "GATEWAY_RATE_LIMIT_BURST", 20000, "default burst per district across all gateway instances, in events")
	conf.Duration(fs, &c.TenantRefresh, "tenant-refresh", "GATEWAY_TENANT_REFRESH", 5*time.Second, "how often districts' rate limits and hot flags are reloaded and this instance's heartbeat is written")
	conf.Duration(fs, &c.InstanceTTL, "instance-ttl", "GATEWAY_INSTANCE_TTL", 15*time.Second,
		"an instance whose heartbeat is older than this no longer counts among the live instances the rate limits are divided by")
	conf.Duration(fs, &c.QualityInterval, "roster-quality-interval", "GATEWAY_ROSTER_QUALITY_INTERVAL", 5*time.Minute, "how often districts' roster quality gauges are computed (0: never)")
	conf.Duration(fs, &c.QualityWindow, "roster-quality-window", "GATEWAY_ROSTER_QUALITY_WINDOW", 24*time.Hour, "the roster uploads the quality gauges cover")
	c.Kafka.RegisterFlags(fs)
	c.Keys.RegisterFlags(fs)
}

// Validate reports configuration errors.
func (c *Config) Validate() error {
	var errs []error
	if c.DatabaseURL == "" {
		errs = append(errs, errors.New("database.url: required (env DATABASE_URL)"))
	}
	if c.MaxBodyBytes < 1024 {
		errs = append(errs, errors.New("max-body-bytes: must be at least 1024"))
	}
	if c.MaxRosterBodyBytes < 1024 {
		errs = append(errs, errors.New("max-roster-body-bytes: must be at least 1024"))
	}
	if c.MaxRosterRecords < 1 {
		errs = append(errs, errors.New("max-roster-records: must be at least 1"))
	}
	if c.RosterColumns < 1 || c.RosterHeaderBytes < 1024 || c.RosterRecordBytes < 1024 || c.RosterFileBytes < 1024 || c.RosterUnzippedBytes < 1024 {
		errs = append(errs, errors.New("roster.max-columns: must be at least 1; roster.max-header-bytes, roster.max-record-bytes, roster.max-file-bytes, roster.max-unzipped-bytes: must be at least 1024"))
	}
	if c.RosterRequestMemory < c.MaxRosterBodyBytes || c.RosterMemoryBudget < c.RosterRequestMemory {
		errs = append(errs, fmt.Errorf("roster.request-memory (%d) must be at least max-roster-body-bytes (%d) and at most roster.memory-budget (%d)",
			c.RosterRequestMemory, c.MaxRosterBodyBytes, c.RosterMemoryBudget))
	}
	if c.BodyReadTimeout < 100*time.Millisecond || c.RosterBodyReadTimeout < 100*time.Millisecond {
		errs = append(errs, errors.New("body-read-timeout, roster-body-read-timeout: must be at least 100ms"))
	}
	if c.MaxEvents < 1 {
		errs = append(errs, errors.New("max-events: must be at least 1"))
	}
	if c.RateLimit.EventsPerSecond < 1 || c.RateLimit.Burst < 1 {
		errs = append(errs, errors.New("rate-limit.events-per-sec, rate-limit.burst: must be at least 1"))
	}
	if c.TenantRefresh < 100*time.Millisecond {
		errs = append(errs, errors.New("tenant-refresh: must be at least 100ms"))
	}
	if c.InstanceTTL < 2*c.TenantRefresh {
		errs = append(errs, errors.New("instance-ttl: must be at least twice tenant-refresh (env GATEWAY_INSTANCE_TTL), or live instances would drop out between heartbeats"))
	}
	return errors.Join(append(errs, c.Kafka.Validate())...)
}

// Hooks let an embedding process learn where the gateway listens, and how many live instances it divides
// the rate limits by whenever that changes.
type Hooks struct {
	OnListen func(addr string)
	OnPeers  func(n int)
}

// Run serves until ctx is done, then drains: new requests get 503 and readiness goes false, in-flight
// requests finish, the producer flushes every buffered record, and Run returns. opts are added to its Kafka
// client.
func Run(ctx context.Context, cfg Config, rt svc.Runtime, hooks Hooks, opts ...kgo.Opt) error {
	health := obs.NewHealth("kafka", "postgres", "serving")
	pool, err := pgutil.Connect(ctx, cfg.DatabaseURL.Reveal())
	if err != nil {
		return err
	}
	defer pool.Close()
	keys := credentialKeys{credentials.NewKeyCache(credentials.New(pool), cfg.KeyCacheTTL)}
	settings := ingest.New(pool)
	registry, err := tenants.New(storedSettings(settings), cfg.RateLimit, cfg.MaxEvents, rt.Log)
	if err != nil {
		return err
	}
	// This instance's heartbeat: every refresh counts the live instances, and the limits are divided by them.
	instance := uuid.NewString()
	registry.WithPeers(func(ctx context.Context) (int, error) {
		// Not cut short by shutdown: the server may still commit a heartbeat whose client gave up, after
		// Leave below, and bring this instance back until it ages out. Run's refresh loop has returned, with
		// its last heartbeat, before Leave runs.
		hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		return settings.Heartbeat(hctx, instance, cfg.InstanceTTL)
	},
		func(n int) {
			rt.Log.Info("live gateway instances changed; each district's rate limit is shared among them", "instances", n)
			if hooks.OnPeers != nil {
				hooks.OnPeers(n)
			}
		})
	defer func() {
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := settings.Leave(lctx, instance); err != nil {
			rt.Log.Warn("leaving the live gateway instances; the others count this one until its heartbeat ages out", "err", err)
		}
	}()
	if err := registry.Refresh(ctx); err != nil {
		return err
	}
	stopLive, err := liveGauge(rt.Tel.Meter, registry)
	if err != nil {
		return err
	}
	defer stopLive()
	sealer, err := cfg.Keys.Open(pool, keyring.Options{})
	if err != nil {
		return err
	}
	districts := fleet.New(pool, os.Getenv)
	defer districts.Close()
	rosterStore := rosters.New(fleet.NewDistrictPools(districts))
	health.SetReady("postgres", true)

	cfg.Kafka = cfg.Kafka.ForService("gateway")
	deps := kafkax.Deps{Log: rt.Log, Tracer: obs.SampledChildrenOnly(rt.Tel.Tracer), Propagator: rt.Tel.Propagator}
	// Accepted records go to raw, rejected ones to the dead-letter topic: one idempotent producer.
	producer, err := kafkax.NewProducer(cfg.Kafka, deps, opts...)
	if err != nil {
		return err
	}
	defer producer.Close()
	codec, err := stream.NewCodec(ctx, cfg.Kafka)
	if err != nil {
		return err
	}
	srv, err := server.New(server.Deps{Log: rt.Log, Keys: keys, Tenants: registry, Producer: producer.Client, Codec: codec, Sealer: sealer,
		Rosters: rosterStore, Mappings: mappings.New(pool), SpoolDir: cfg.RosterSpoolDir,
		Statements: statements.New(fleet.NewDistrictPools(districts)), Tracer: rt.Tel.Tracer, Meter: rt.Tel.Meter, Propagator: rt.Tel.Propagator},
		server.Topics{Raw: cfg.Kafka.Topics().Raw, DLQ: cfg.Kafka.Topics().DLQ},
		server.Limits{MaxBodyBytes: int64(cfg.MaxBodyBytes), MaxEvents: cfg.MaxEvents,
			MaxRosterBodyBytes: int64(cfg.MaxRosterBodyBytes),
			Roster: roster.Limits{MaxRecords: cfg.MaxRosterRecords, MaxColumns: cfg.RosterColumns, MaxHeaderBytes: cfg.RosterHeaderBytes,
				MaxRecordBytes: cfg.RosterRecordBytes, MaxFileBytes: int64(cfg.RosterFileBytes), MaxUnzippedBytes: int64(cfg.RosterUnzippedBytes)},
			RosterMemoryBudget: int64(cfg.RosterMemoryBudget), RosterRequestMemory: int64(cfg.RosterRequestMemory),
			BodyReadTimeout: cfg.BodyReadTimeout, RosterBodyReadTimeout: cfg.RosterBodyReadTimeout})
	if err != nil {
		return err
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", cfg.HTTPAddr, err)
	}
	if tlsCfg, err := cfg.HTTPTLS.Config(); err != nil {
		_ = ln.Close()
		return fmt.Errorf("http.%w", err)
	} else if tlsCfg != nil {
		ln = tls.NewListener(ln, tlsCfg)
	}
	rt.Log.Info("listening", "addr", ln.Addr().String())
	if hooks.OnListen != nil {
		hooks.OnListen(ln.Addr().String())
	}
	hs := &http.Server{Handler: Routes(srv, health, rt.Tel.Metrics), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second}
	health.SetReady("serving", true)

	// The public and admin servers outlive ctx: they stop only after the drain below, so load balancers
	// and probes see an explicit not-ready answer while in-flight requests finish.
	g, gctx := errgroup.WithContext(ctx)
	httpCtx, stopHTTP := context.WithCancel(context.WithoutCancel(ctx))
	defer stopHTTP()
	adminCtx, stopAdmin := context.WithCancel(context.WithoutCancel(ctx))
	defer stopAdmin()
	g.Go(func() error { return obs.ServeAdmin(adminCtx, rt.Log, cfg.AdminAddr, health, rt.Tel.Metrics) })
	g.Go(func() error {
		defer stopAdmin()
		return obs.Serve(httpCtx, rt.Log, hs, ln, cfg.DrainTimeout)
	})
	g.Go(func() error { return registry.Run(gctx, cfg.TenantRefresh) })
	if cfg.QualityInterval > 0 {
		list := func(ctx context.Context) ([]string, error) {
			all, err := tenantstore.New(districts).Tenants(ctx)
			ids := make([]string, 0, len(all))
			for _, t := range all {
				if t.Status != tenancy.StatusDeleted {
					ids = append(ids, t.ID)
				}
			}
			return ids, err
		}
		collector, stopGauges, err := quality.New(rt.Tel.Meter, rosterStore, list, cfg.QualityWindow, rt.Log)
		if err != nil {
			return err
		}
		defer stopGauges()
		g.Go(func() error { return collector.Run(gctx, cfg.QualityInterval) })
	}
	g.Go(func() error {
		if err := stream.WaitKafka(gctx, rt.Log, producer.Client, cfg.Kafka); err != nil {
			return err
		}
		health.SetReady("kafka", true)
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		rt.Log.Info("draining: refusing new requests, not ready, finishing in-flight ones")
		srv.Drain() // before readiness flips, so no request admitted after /readyz says no
		health.SetReady("serving", false)
		if cfg.ShutdownDelay > 0 {
			time.Sleep(cfg.ShutdownDelay) // let load balancers see not-ready before the listener closes
		}
		stopHTTP()
		return nil
	})
	err = g.Wait()
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if ferr := producer.Flush(fctx); ferr != nil {
		err = errors.Join(err, fmt.Errorf("flushing producer: %w", ferr))
	}
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	return err
}

// Routes joins the public API with /healthz, /readyz and /metrics, as the gateway serves them.
func Routes(srv *server.Server, health *obs.Health, metrics http.Handler) http.Handler {
	mux := http.NewServeMux()
	health.Register(mux, metrics)
	mux.Handle("/", srv.Handler())
	return mux
}

// storedSettings reads the districts' ingest settings from the control schema.
func storedSettings(store *ingest.Store) tenants.Source {
	return func(ctx context.Context) ([]tenants.Stored, error) {
		list, err := store.Settings(ctx)
		if err != nil {
			return nil, err
		}
		out := make([]tenants.Stored, len(list))
		for i, s := range list {
			out[i] = tenants.Stored{TenantID: s.TenantID, HotShards: s.HotShards}
			if s.RateLimit != nil {
				out[i].RateLimit = &tenants.RateLimit{EventsPerSecond: s.RateLimit.EventsPerSecond, Burst: s.RateLimit.Burst}
			}
		}
		return out, nil
	}
}

// credentialKeys adapts the control schema's cached key lookups to the server's KeyStore.
type credentialKeys struct{ cache *credentials.KeyCache }

func (k credentialKeys) Lookup(ctx context.Context, plaintext string) (server.Key, error) {
	key, err := k.cache.Lookup(ctx, plaintext)
	if errors.Is(err, credentials.ErrInvalidKey) {
		return server.Key{}, server.ErrInvalidKey
	}
	if err != nil {
		return server.Key{}, err
	}
	return server.Key{ID: key.ID, TenantID: key.TenantID, SourceID: key.SourceID, Verbs: key.Verbs}, nil
}

// liveGauge registers gateway_live_instances: the instances this one divides the rate limits by.
func liveGauge(mp metric.MeterProvider, registry *tenants.Registry) (func(), error) {
	m := mp.Meter("gateway")
	live, err := m.Int64ObservableGauge("gateway_live_instances",
		metric.WithDescription("live gateway instances (this one included) each district's rate limit is divided by"))
	if err != nil {
		return nil, fmt.Errorf("creating metric gateway_live_instances: %w", err)
	}
	reg, err := m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		o.ObserveInt64(live, int64(registry.Live()))
		return nil
	}, live)
	if err != nil {
		return nil, fmt.Errorf("registering gateway_live_instances: %w", err)
	}
	return func() { _ = reg.Unregister() }, nil
}
