// Package app wires the enricher: config, PostgreSQL (tenants, identities), the codec, and the
// transactional raw -> enriched pipeline. main only parses config and calls Run.
package app

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/edtech-analytics/platform/libs/conf"
	"github.com/edtech-analytics/platform/libs/kafkax"
	"github.com/edtech-analytics/platform/libs/obs"
	"github.com/edtech-analytics/platform/libs/pgutil"
	"github.com/edtech-analytics/platform/libs/svc"
	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/edtech-analytics/platform/services/enricher/internal/dedup"
	"github.com/edtech-analytics/platform/services/enricher/internal/enrich"
	"github.com/edtech-analytics/platform/services/enricher/internal/identity"
	"github.com/edtech-analytics/platform/services/enricher/internal/pipeline"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"
)

// Config is the enricher's configuration.
type Config struct {
	AdminAddr       string
	DatabaseURL     conf.Secret
	Group           string
	TransactionalID string
	DedupWindow     time.Duration
	Kafka           kafkax.Config
	// ConsumerExtra adds client options (tests shorten group timeouts). Not a flag.
	ConsumerExtra []kgo.Opt
}

// RegisterFlags binds the config to flags with env defaults.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	host, _ := os.Hostname()
	conf.String(fs, &c.AdminAddr, "admin.addr", "ADMIN_ADDR", ":9090", "address of /healthz, /readyz and /metrics")
	conf.SecretVar(fs, &c.DatabaseURL, "database.url", "DATABASE_URL", "PostgreSQL URL (control schema, district identities)")
	conf.String(fs, &c.Group, "group", "ENRICHER_GROUP", "edtech-enricher", "consumer group")
	conf.String(fs, &c.TransactionalID, "transactional-id", "ENRICHER_TRANSACTIONAL_ID", "enricher-"+host,
		"transactional id prefix; a random suffix is added per start")
	conf.Duration(fs, &c.DedupWindow, "dedup-window", "ENRICHER_DEDUP_WINDOW", 48*time.Hour, "how long a client event_id is remembered to drop retries (at least 24h)")
	c.Kafka.RegisterFlags(fs)
}

// Validate reports configuration errors.
func (c *Config) Validate() error {
	var errs []error
	if c.DatabaseURL == "" {
		errs = append(errs, errors.New("database.url: required (env DATABASE_URL)"))
	}
	if c.Group == "" {
		errs = append(errs, errors.New("group: required"))
	}
	if c.DedupWindow < 24*time.Hour {
		errs = append(errs, errors.New("dedup-window: must be at least 24h"))
	}
	return errors.Join(append(errs, c.Kafka.Validate())...)
}

// Run enriches until ctx is done.
func Run(ctx context.Context, cfg Config, rt svc.Runtime) error {
	health := obs.NewHealth("kafka", "postgres")
	pool, err := pgutil.Connect(ctx, cfg.DatabaseURL.Reveal())
	if err != nil {
		return err
	}
	defer pool.Close()
	health.SetReady("postgres", true)
	codec, err := svc.NewCodec(ctx, cfg.Kafka)
	if err != nil {
		return err
	}
	cfg.Kafka.ClientID = "enricher"
	deps := kafkax.Deps{Log: rt.Log, Tracer: rt.Tel.Tracer, Propagator: rt.Tel.Propagator}
	admin, err := kafkax.NewClient(cfg.Kafka, deps, "")
	if err != nil {
		return err
	}
	defer admin.Close()

	enr := enrich.New(codec, newTenantCache(tenancy.NewStore(pool), 30*time.Second), identity.New(pool, 1_000_000))
	// A fresh suffix per start: the previous incarnation's open transaction is aborted by the broker's
	// transaction timeout, and the group generation (KIP-447) fences it as a zombie.
	pipe := pipeline.New(pipeline.Config{Group: cfg.Group, TransactionalID: cfg.TransactionalID + "-" + randomSuffix(), Extra: cfg.ConsumerExtra},
		cfg.Kafka, deps, codec, enr, dedup.New(cfg.DedupWindow), nil)

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return obs.ServeAdmin(gctx, rt.Log, cfg.AdminAddr, health, rt.Tel.Metrics) })
	g.Go(func() error {
		if err := svc.WaitKafka(gctx, rt.Log, admin.Client, cfg.Kafka); err != nil {
			return err
		}
		health.SetReady("kafka", true)
		err := pipe.Run(gctx)
		health.SetReady("kafka", false)
		return err
	})
	err = g.Wait()
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

func randomSuffix() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// tenantCache caches district lookups for ttl (tenants change rarely; deletions also arrive on the
// control topic).
type tenantCache struct {
	store *tenancy.Store
	ttl   time.Duration

	mu      sync.Mutex
	entries map[string]tenantEntry
}

type tenantEntry struct {
	t       tenancy.Tenant
	err     error
	expires time.Time
}

func newTenantCache(store *tenancy.Store, ttl time.Duration) *tenantCache {
	return &tenantCache{store: store, ttl: ttl, entries: map[string]tenantEntry{}}
}

func (c *tenantCache) Tenant(ctx context.Context, id string) (tenancy.Tenant, error) {
	now := time.Now()
	c.mu.Lock()
	e, ok := c.entries[id]
	c.mu.Unlock()
	if ok && now.Before(e.expires) {
		return e.t, e.err
	}
	t, err := c.store.Tenant(ctx, id)
	if err != nil && !errors.Is(err, tenancy.ErrNotFound) && !errors.Is(err, tenancy.ErrInvalidArgument) {
		return t, fmt.Errorf("loading tenant: %w", err)
	}
	if errors.Is(err, tenancy.ErrInvalidArgument) {
		err = tenancy.ErrNotFound
	}
	c.mu.Lock()
	c.entries[id] = tenantEntry{t: t, err: err, expires: now.Add(c.ttl)}
	c.mu.Unlock()
	return t, err
}
