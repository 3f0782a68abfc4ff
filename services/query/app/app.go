// Package app wires the query service: the dashboard read API over ClickHouse rollups, authenticated by
// dashboard tokens (or API keys with dashboards:read) from the control schema, scoped by role with the
// districts' rosters. main only parses config and calls Run.
package app

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"github.com/edtech-analytics/platform/libs/keyring"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/edtech-analytics/platform/libs/chutil"
	"github.com/edtech-analytics/platform/libs/conf"
	"github.com/edtech-analytics/platform/libs/obs"
	"github.com/edtech-analytics/platform/libs/pgutil"
	"github.com/edtech-analytics/platform/libs/quality"
	"github.com/edtech-analytics/platform/libs/svc"
	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/edtech-analytics/platform/libs/tenancy/audit"
	"github.com/edtech-analytics/platform/libs/tenancy/credentials"
	"github.com/edtech-analytics/platform/libs/tenancy/fleet"
	"github.com/edtech-analytics/platform/libs/tenancy/jobs"
	"github.com/edtech-analytics/platform/libs/tenancy/tenants"
	"github.com/edtech-analytics/platform/libs/tenancy/timezones"
	"github.com/edtech-analytics/platform/libs/usage"
	"github.com/edtech-analytics/platform/services/query/internal/admin"
	"github.com/edtech-analytics/platform/services/query/internal/api"
	"github.com/edtech-analytics/platform/services/query/internal/auth"
	"github.com/edtech-analytics/platform/services/query/internal/eventquality"
	"github.com/edtech-analytics/platform/services/query/internal/ui"
	"github.com/edtech-analytics/platform/services/query/internal/usagegauges"
	"golang.org/x/sync/errgroup"
)

// Config is the query service's configuration.
type Config struct {
	HTTPAddr           string
	HTTPTLS            conf.ServerTLS // HTTPS on the public port (empty: plain HTTP behind a TLS-terminating ingress)
	AdminAddr          string
	DatabaseURL        conf.Secret
	ClickHouseAddr     string
	ClickHouseDatabase string
	ClickHouseUser     string
	ClickHousePassword conf.Secret
	ClickHouseTLS      conf.ClientTLS
	KeyCacheTTL        time.Duration
	MinDistricts       int
	MinStudents        int
	BandDistricts      int
	// Keys are the master keys that wrap the key the audit log is signed with (ADR 0010).
	Keys keyring.Config
	// ExportDir is where ctl jobs work writes district exports, a directory per job; the admin API serves
	// their files from it. Empty: exports cannot be requested through the API.
	ExportDir string
	// QualityInterval is how often the districts' event quality gauges are computed (0: never); Quality
	// what the checks compare against (libs/quality).
	QualityInterval time.Duration
	Quality         quality.Config
	// UsageInterval is how often the current month's usage gauges are measured (0: never).
	UsageInterval time.Duration
	// SummaryCacheTTL and SummaryCacheEntries bound the cache of closed ranges' summaries (0: off).
	SummaryCacheTTL     time.Duration
	SummaryCacheEntries int
}

// RegisterFlags binds the config to flags with env defaults.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	conf.String(fs, &c.HTTPAddr, "http.addr", "HTTP_ADDR", ":8081", "address of the dashboard API")
	c.HTTPTLS.RegisterFlags(fs, "http.", "HTTP_")
	conf.String(fs, &c.AdminAddr, "admin.addr", "ADMIN_ADDR", ":9090", "address of /healthz, /readyz and /metrics")
	conf.SecretVar(fs, &c.DatabaseURL, "database.url", "DATABASE_URL", "PostgreSQL URL of the control schema (API keys)")
	conf.String(fs, &c.ClickHouseAddr, "clickhouse.addr", "CLICKHOUSE_ADDR", "127.0.0.1:9000", "ClickHouse native-protocol address, host:port")
	conf.String(fs, &c.ClickHouseDatabase, "clickhouse.database", "CLICKHOUSE_DATABASE", "edtech", "ClickHouse database of the rollups")
	conf.String(fs, &c.ClickHouseUser, "clickhouse.user", "CLICKHOUSE_USER", "default", "ClickHouse user")
	conf.SecretVar(fs, &c.ClickHousePassword, "clickhouse.password", "CLICKHOUSE_PASSWORD", "ClickHouse password")
	c.ClickHouseTLS.RegisterFlags(fs, "clickhouse.", "CLICKHOUSE_", "ClickHouse (its secure native port)")
	conf.String(fs, &c.ExportDir, "export.dir", "EXPORT_DIR", "",
		"where the privacy worker writes district exports (the same storage); empty: no exports through the admin API")
	conf.Duration(fs, &c.KeyCacheTTL, "key-cache-ttl", "QUERY_KEY_CACHE_TTL", 5*time.Second,
		"how long a token, key or roster lookup is cached (bounds the delay of a revocation or roster change)")
	conf.Int(fs, &c.MinDistricts, "benchmark.min-districts", "BENCHMARK_MIN_DISTRICTS", 5,
		"least number of districts a cross-district benchmark must cover to be served")
	conf.Int(fs, &c.MinStudents, "benchmark.min-students", "BENCHMARK_MIN_STUDENTS", 10,
		"least number of active students a district needs in the range to contribute to a benchmark")
	conf.Int(fs, &c.BandDistricts, "benchmark.band-districts", "BENCHMARK_BAND_DISTRICTS", 3,
		"least number of districts behind each band mean a benchmark releases (at least 3)")
	conf.Duration(fs, &c.QualityInterval, "quality.interval", "QUERY_QUALITY_INTERVAL", 15*time.Minute,
		"how often districts' event quality gauges (volume anomalies, ClickHouse against the sink) are computed (0: never)")
	conf.Int(fs, &c.Quality.Volume.Weeks, "quality.volume-weeks", "QUERY_QUALITY_VOLUME_WEEKS", 8,
		"how many previous same weekdays a day's event count is compared with")
	conf.Float64(fs, &c.Quality.Volume.Z, "quality.volume-z", "QUERY_QUALITY_VOLUME_Z", 3,
		"least |z-score| of a day's event count against the baseline that is a volume anomaly")
	conf.Float64(fs, &c.Quality.Volume.Floor, "quality.volume-floor", "QUERY_QUALITY_VOLUME_FLOOR", 50,
		"least difference in events from the baseline mean that is a volume anomaly (so small districts do not alert on noise)")
	conf.Duration(fs, &c.Quality.Settle, "quality.settle", "QUERY_QUALITY_SETTLE", time.Hour,
		"how long after a UTC day's end it is compared between ClickHouse and the sink")
	conf.Duration(fs, &c.UsageInterval, "usage.interval", "QUERY_USAGE_INTERVAL", 15*time.Minute,
		"how often the districts' usage gauges of the current month (events, active students, roster, storage, privacy jobs) are measured (0: never)")
	conf.Duration(fs, &c.SummaryCacheTTL, "summary-cache.ttl", "QUERY_SUMMARY_CACHE_TTL", 10*time.Minute,
		"how long a summary of a closed range is served from the cache (bounds how long late events stay out of it; 0: no cache)")
	conf.Int(fs, &c.SummaryCacheEntries, "summary-cache.entries", "QUERY_SUMMARY_CACHE_ENTRIES", 10000,
		"most summaries of closed ranges the cache holds, least recently used evicted first (0: no cache)")
	c.Keys.RegisterFlags(fs)
}

// summaryCache is the summary cache's part of the config.
func (c *Config) summaryCache() api.SummaryCacheConfig {
	// The day closes as for the event quality checks, whose defaults give a settle of 0 its meaning.
	return api.SummaryCacheConfig{Entries: c.SummaryCacheEntries, TTL: c.SummaryCacheTTL, Settle: c.Quality.WithDefaults().Settle,
		GenerationTTL: c.KeyCacheTTL}
}

// Validate reports configuration errors.
func (c *Config) Validate() error {
	var errs []error
	if c.DatabaseURL == "" {
		errs = append(errs, errors.New("database.url: required (env DATABASE_URL)"))
	}
	if c.ClickHouseAddr == "" {
		errs = append(errs, errors.New("clickhouse.addr: required (env CLICKHOUSE_ADDR)"))
	}
	if c.BandDistricts < 3 {
		errs = append(errs, errors.New("benchmark.band-districts: at least 3 (env BENCHMARK_BAND_DISTRICTS)"))
	}
	if c.MinDistricts < c.BandDistricts {
		errs = append(errs, errors.New("benchmark.min-districts: at least benchmark.band-districts (env BENCHMARK_MIN_DISTRICTS)"))
	}
	if c.MinStudents < 1 {
		errs = append(errs, errors.New("benchmark.min-students: at least 1 (env BENCHMARK_MIN_STUDENTS)"))
	}
	if c.UsageInterval < 0 {
		errs = append(errs, errors.New("usage.interval: not negative (env QUERY_USAGE_INTERVAL)"))
	}
	if c.QualityInterval < 0 {
		errs = append(errs, errors.New("quality.interval: not negative (env QUERY_QUALITY_INTERVAL)"))
	}
	if err := c.Quality.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("quality: %w", err))
	}
	if err := c.summaryCache().Validate(); err != nil {
		errs = append(errs, fmt.Errorf("summary-cache (env QUERY_SUMMARY_CACHE_TTL, QUERY_SUMMARY_CACHE_ENTRIES): %w", err))
	}
	return errors.Join(errs...)
}

// Hooks let an embedding process learn where the API listens.
type Hooks struct {
	OnListen func(addr string)
}

// Run serves until ctx is done.
func Run(ctx context.Context, cfg Config, rt svc.Runtime, hooks Hooks) (err error) {
	health := obs.NewHealth("postgres", "clickhouse")
	pool, err := pgutil.Connect(ctx, cfg.DatabaseURL.Reveal())
	if err != nil {
		return err
	}
	defer pool.Close()
	health.SetReady("postgres", true)
	chTLS, err := cfg.ClickHouseTLS.Config()
	if err != nil {
		return fmt.Errorf("clickhouse.%w", err)
	}
	ch, err := chutil.Open(ctx, chutil.Options{Addr: cfg.ClickHouseAddr, Database: cfg.ClickHouseDatabase,
		User: cfg.ClickHouseUser, Password: cfg.ClickHousePassword.Reveal(), Settings: api.ClickHouseSettings, TLS: chTLS})
	if err != nil {
		return err
	}
	defer func() {
		if cerr := ch.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("closing clickhouse connection: %w", cerr))
		}
	}()
	health.SetReady("clickhouse", true)

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
	if hooks.OnListen != nil {
		hooks.OnListen(ln.Addr().String())
	}
	mux := http.NewServeMux()
	health.Register(mux, rt.Tel.Metrics)
	districts := fleet.New(pool, os.Getenv)
	defer districts.Close() // the pools of instances other than main
	resolver := auth.NewResolver(credentials.New(pool), districts, cfg.KeyCacheTTL)
	keys, err := cfg.Keys.Open(pool, keyring.Options{})
	if err != nil {
		return err
	}
	auditLog, districtStore := audit.New(pool, keys), tenants.New(districts)
	summaries, err := api.NewSummaryCache(cfg.summaryCache(), jobs.New(pool), rt.Tel.Meter, time.Now, rt.Log)
	if err != nil {
		return err
	}
	// In the replicated cluster layout the usage report measures each shard's tables on one of its nodes.
	usageReporter := usage.New(pool, fleet.NewDistrictPools(districts), ch).WithNodes(func(ctx context.Context, addr string) (driver.Conn, error) {
		return chutil.Open(ctx, chutil.Options{Addr: addr, Database: cfg.ClickHouseDatabase, User: cfg.ClickHouseUser,
			Password: cfg.ClickHousePassword.Reveal(), Settings: api.ClickHouseSettings, TLS: chTLS, MaxOpenConns: 2})
	})
	mux.Handle("/", api.New(rt.Log, resolver, auditLog, districtStore, ch, api.Config{MinDistricts: cfg.MinDistricts,
		MinStudents: cfg.MinStudents, BandDistricts: cfg.BandDistricts}, api.WithSummaryCache(summaries),
		api.WithTimeZones(timezones.New(pool), cfg.KeyCacheTTL), api.WithUsage(usageReporter)).Handler())
	ui.New(rt.Log, resolver).Register(mux)
	mux.Handle("/v1/admin/", (&admin.Admin{Log: rt.Log, ExportDir: cfg.ExportDir, Keys: credentials.New(pool), Jobs: jobs.New(pool), Audit: auditLog,
		Students: jobs.Students{Pools: districts, ErasedSIS: keys.ErasedSISFunc(func(ctx context.Context, tenant string) ([]byte, error) {
			t, err := districtStore.Tenant(ctx, tenant)
			return t.PseudonymKey, err
		})}}).Handler())
	hs := &http.Server{Handler: Instrument(mux, rt.Tel), ReadHeaderTimeout: 10 * time.Second}

	var collector *eventquality.Collector
	if cfg.QualityInterval > 0 {
		qcfg := cfg.Quality
		qcfg.Days = 1 // the gauge shows the last closed day
		checker := quality.NewChecker(ch, fleet.NewDistrictPools(districts), tenancy.SchemaName, qcfg)
		var stopGauges func()
		if collector, stopGauges, err = eventquality.New(rt.Tel.Meter, checker, activeDistricts(districtStore), time.Now, rt.Log); err != nil {
			return fmt.Errorf("event quality gauges: %w", err)
		}
		defer stopGauges()
	}

	var usageCollector *usagegauges.Collector
	if cfg.UsageInterval > 0 {
		var stopGauges func()
		if usageCollector, stopGauges, err = usagegauges.New(rt.Tel.Meter, usageReporter, time.Now, rt.Log); err != nil {
			return fmt.Errorf("usage gauges: %w", err)
		}
		defer stopGauges()
	}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return obs.ServeAdmin(gctx, rt.Log, cfg.AdminAddr, health, rt.Tel.Metrics) })
	g.Go(func() error { return obs.Serve(gctx, rt.Log, hs, ln, 10*time.Second) })
	if collector != nil {
		g.Go(func() error { return collector.Run(gctx, cfg.QualityInterval) })
	}
	if usageCollector != nil {
		g.Go(func() error { return usageCollector.Run(gctx, cfg.UsageInterval) })
	}
	err = g.Wait()
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// activeDistricts lists the districts that are not deleted.
func activeDistricts(store *tenants.Store) eventquality.Districts {
	return func(ctx context.Context) ([]string, error) {
		all, err := store.Tenants(ctx)
		ids := make([]string, 0, len(all))
		for _, t := range all {
			if t.Status != tenancy.StatusDeleted {
				ids = append(ids, t.ID)
			}
		}
		return ids, err
	}
}

// Instrument wraps the service's routes in OpenTelemetry's HTTP instrumentation: a span per request named
// by its route, and http.server.request.duration (seconds) with the route (http.route, the mux's pattern,
// such as "/v1/schools/{school_id}/summary"), the method and the status, so each endpoint has its own
// latency histogram without an id in its labels.
func Instrument(h http.Handler, tel *obs.Telemetry) http.Handler {
	return otelhttp.NewHandler(h, "query", otelhttp.WithMeterProvider(tel.Meter), otelhttp.WithTracerProvider(tel.Tracer),
		otelhttp.WithPropagators(tel.Propagator), otelhttp.WithSpanNameFormatter(func(op string, r *http.Request) string {
			if r.Pattern != "" {
				return r.Pattern
			}
			return op
		}))
}
