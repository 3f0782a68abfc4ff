// Package app wires the connector: config, the control database and the master keys that open the
// sources' secrets, the gateway client, the syncer of OneRoster REST sources on its tick, the file drop on
// its poll, the webhooks server and the admin server. main only parses config and calls Run.
package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/edtech-analytics/platform/libs/archive"
	"github.com/edtech-analytics/platform/libs/conf"
	"github.com/edtech-analytics/platform/libs/keyring"
	"github.com/edtech-analytics/platform/libs/obs"
	"github.com/edtech-analytics/platform/libs/pgutil"
	"github.com/edtech-analytics/platform/libs/svc"
	"github.com/edtech-analytics/platform/libs/tenancy/connectors"
	"github.com/edtech-analytics/platform/services/connector/internal/drop"
	"github.com/edtech-analytics/platform/services/connector/internal/gateway"
	"github.com/edtech-analytics/platform/services/connector/internal/syncer"
	"github.com/edtech-analytics/platform/services/connector/internal/webhook"
)

// Config is the connector's configuration.
type Config struct {
	DatabaseURL conf.Secret
	Keys        keyring.Config
	// GatewayURL is the gateway's base URL, e.g. http://gateway:8080.
	GatewayURL string
	AdminAddr  string
	// HTTPAddr serves the webhooks (POST /v1/webhooks/{source}).
	HTTPAddr string
	// DropURL is the gocloud.dev/blob URL of the file drop; DropPoll how often it is polled.
	DropURL  string
	DropPoll time.Duration
	// SyncTick is how often the sources' schedules are checked.
	SyncTick        time.Duration
	PageSize        int
	RequestTimeout  time.Duration
	GatewayTimeout  time.Duration
	RetryTries      int
	BreakerFailures int
	BreakerTimeout  time.Duration
	MaxConcurrent   int
}

// RegisterFlags binds the config to flags with env defaults.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	conf.SecretVar(fs, &c.DatabaseURL, "database.url", "DATABASE_URL", "PostgreSQL URL of the control schema (connector sources)")
	c.Keys.RegisterFlags(fs)
	conf.String(fs, &c.GatewayURL, "gateway.url", "CONNECTOR_GATEWAY_URL", "http://gateway:8080", "base URL of the gateway the rosters are sent to")
	conf.String(fs, &c.AdminAddr, "admin.addr", "ADMIN_ADDR", ":9090", "address of /healthz, /readyz and /metrics")
	conf.String(fs, &c.HTTPAddr, "http.addr", "HTTP_ADDR", ":8080", "address of the webhooks, POST /v1/webhooks/{source}")
	conf.String(fs, &c.DropURL, "drop.url", "CONNECTOR_DROP_URL", "file:///var/lib/edtech/drop",
		"gocloud.dev/blob URL of the file drop (<tenant>/<source>/ per file-drop source): file://, s3://, gs:// or azblob://")
	conf.Duration(fs, &c.DropPoll, "drop.poll", "CONNECTOR_DROP_POLL", 5*time.Second, "how often the file drop is polled")
	conf.Duration(fs, &c.SyncTick, "sync.tick", "CONNECTOR_SYNC_TICK", 30*time.Second, "how often the sources' schedules are checked")
	conf.Int(fs, &c.PageSize, "sync.page-size", "CONNECTOR_PAGE_SIZE", 1000, "records asked of a OneRoster provider per page (limit)")
	conf.Duration(fs, &c.RequestTimeout, "sync.request-timeout", "CONNECTOR_REQUEST_TIMEOUT", 60*time.Second,
		"deadline of each request to a provider or the gateway")
	conf.Duration(fs, &c.GatewayTimeout, "gateway.timeout", "CONNECTOR_GATEWAY_TIMEOUT", 10*time.Minute,
		"deadline of each upload to the gateway (a district's full sync is one upload)")
	conf.Int(fs, &c.RetryTries, "sync.retry-tries", "CONNECTOR_RETRY_TRIES", 5, "tries of a failing request, with exponential backoff and jitter")
	conf.Int(fs, &c.BreakerFailures, "sync.breaker-failures", "CONNECTOR_BREAKER_FAILURES", 3, "failed syncs in a row that open a source's breaker")
	conf.Int(fs, &c.MaxConcurrent, "sync.max-concurrent", "CONNECTOR_MAX_CONCURRENT", 4, "syncs run at once (one per source)")
	conf.Duration(fs, &c.BreakerTimeout, "sync.breaker-timeout", "CONNECTOR_BREAKER_TIMEOUT", 10*time.Minute,
		"how long an open breaker skips its source before one sync is tried")
}

// Validate reports configuration errors.
func (c *Config) Validate() error {
	var errs []error
	if c.DatabaseURL == "" {
		errs = append(errs, errors.New("database.url: required (env DATABASE_URL)"))
	}
	if c.Keys.MasterKeys == "" && c.Keys.MasterKeyFile == "" {
		errs = append(errs, errors.New("master-keys: required to open the sources' secrets (env MASTER_KEYS or MASTER_KEY_FILE)"))
	}
	if u, err := url.Parse(c.GatewayURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("gateway.url: an http:// or https:// URL, got %q (env CONNECTOR_GATEWAY_URL)", c.GatewayURL))
	}
	if err := archive.CheckURL(c.DropURL); err != nil {
		errs = append(errs, fmt.Errorf("drop.url: %w (env CONNECTOR_DROP_URL)", err))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"drop.poll (env CONNECTOR_DROP_POLL)", c.DropPoll}, {"sync.tick (env CONNECTOR_SYNC_TICK)", c.SyncTick}, {"sync.request-timeout (env CONNECTOR_REQUEST_TIMEOUT)", c.RequestTimeout},
		{"gateway.timeout (env CONNECTOR_GATEWAY_TIMEOUT)", c.GatewayTimeout},
		{"sync.breaker-timeout (env CONNECTOR_BREAKER_TIMEOUT)", c.BreakerTimeout}} {
		if d.v <= 0 {
			errs = append(errs, fmt.Errorf("%s: must be positive", d.name))
		}
	}
	for _, n := range []struct {
		name string
		v    int
	}{{"sync.page-size (env CONNECTOR_PAGE_SIZE)", c.PageSize}, {"sync.retry-tries (env CONNECTOR_RETRY_TRIES)", c.RetryTries},
		{"sync.breaker-failures (env CONNECTOR_BREAKER_FAILURES)", c.BreakerFailures}, {"sync.max-concurrent (env CONNECTOR_MAX_CONCURRENT)", c.MaxConcurrent}} {
		if n.v <= 0 {
			errs = append(errs, fmt.Errorf("%s: must be positive", n.name))
		}
	}
	return errors.Join(errs...)
}

// Option changes how Run starts.
type Option func(*options)

type options struct{ listener net.Listener }

// WithListener serves the webhooks on ln instead of listening on HTTPAddr (tests pass a loopback listener
// they opened).
func WithListener(ln net.Listener) Option { return func(o *options) { o.listener = ln } }

// Run syncs the sources until ctx is done. It is ready once the control database and the drop answer.
func Run(ctx context.Context, cfg Config, rt svc.Runtime, opts ...Option) error {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	health := obs.NewHealth("postgres", "drop")
	pool, err := pgutil.Connect(ctx, cfg.DatabaseURL.Reveal())
	if err != nil {
		return err
	}
	defer pool.Close()
	master, err := keyring.LoadLocalKeys(cfg.Keys.MasterKeys.Reveal(), cfg.Keys.MasterKeyFile)
	if err != nil {
		return fmt.Errorf("loading the master keys: %w", err)
	}
	store := connectors.New(pool, master)
	if _, err := store.List(ctx, ""); err != nil {
		return fmt.Errorf("reading the connector sources (has 'ctl migrate' been run?): %w", err)
	}
	health.SetReady("postgres", true)
	gw := gateway.New(cfg.GatewayURL, &http.Client{Timeout: cfg.GatewayTimeout})
	// Requests to the providers carry their own deadlines (sync.request-timeout).
	sync, err := syncer.New(store, gw, rt.Log, rt.Tel.Meter.Meter("connector"), syncer.Options{
		PageSize: cfg.PageSize, RequestTimeout: cfg.RequestTimeout, RetryTries: uint(cfg.RetryTries),
		BreakerFailures: uint32(cfg.BreakerFailures), BreakerTimeout: cfg.BreakerTimeout, Overlap: time.Minute,
		MaxConcurrent: cfg.MaxConcurrent})
	if err != nil {
		return err
	}
	bucket, err := archive.Open(ctx, cfg.DropURL)
	if err != nil {
		return fmt.Errorf("opening the file drop (CONNECTOR_DROP_URL): %w", err)
	}
	defer func() {
		if cerr := bucket.Close(); cerr != nil {
			rt.Log.Warn("closing the file drop", "err", cerr)
		}
	}()
	if _, err := bucket.List(nil).Next(ctx); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("reading the file drop: %w", err)
	}
	health.SetReady("drop", true)
	files := drop.New(bucket, store, gw, rt.Log)

	// A webhook queues a delta sync of its source; the syncer runs one sync of a source at a time.
	triggers := make(chan [2]string, 64)
	hooks := webhook.New(store, func(tenant, source string) bool {
		select {
		case triggers <- [2]string{tenant, source}:
			return true
		default:
			return false
		}
	}, rt.Log, nil)
	mux := http.NewServeMux()
	hooks.Register(mux)
	ln := o.listener
	if ln == nil {
		if ln, err = (&net.ListenConfig{}).Listen(ctx, "tcp", cfg.HTTPAddr); err != nil {
			return fmt.Errorf("listening on %s (HTTP_ADDR): %w", cfg.HTTPAddr, err)
		}
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second}

	syncTick, dropTick := time.NewTicker(cfg.SyncTick), time.NewTicker(cfg.DropPoll)
	defer syncTick.Stop()
	defer dropTick.Stop()
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return obs.ServeAdmin(gctx, rt.Log, cfg.AdminAddr, health, rt.Tel.Metrics) })
	g.Go(func() error { return obs.Serve(gctx, rt.Log, srv, ln, 10*time.Second) })
	g.Go(func() error { return sync.Run(gctx, syncTick.C, triggers) })
	g.Go(func() error { return files.Run(gctx, dropTick.C) })
	err = g.Wait()
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	return err
}
