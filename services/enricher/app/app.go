// Package app wires the enricher: config, PostgreSQL (tenants, policies, identities, roster context,
// erasures), the codec, the control topic consumer and the transactional raw -> enriched pipeline. main
// only parses config and calls Run.
package app

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"github.com/edtech-analytics/platform/libs/keyring"
	"os"
	"time"

	"github.com/edtech-analytics/platform/libs/conf"
	"github.com/edtech-analytics/platform/libs/kafkax"
	"github.com/edtech-analytics/platform/libs/obs"
	"github.com/edtech-analytics/platform/libs/pgutil"
	"github.com/edtech-analytics/platform/libs/records"
	"github.com/edtech-analytics/platform/libs/svc"
	"github.com/edtech-analytics/platform/libs/svc/stream"
	"github.com/edtech-analytics/platform/libs/tenancy/fleet"
	"github.com/edtech-analytics/platform/libs/tenancy/privacy"
	"github.com/edtech-analytics/platform/libs/tenancy/tenants"
	"github.com/edtech-analytics/platform/libs/tenancy/timezones"
	"github.com/edtech-analytics/platform/services/enricher/internal/claims"
	"github.com/edtech-analytics/platform/services/enricher/internal/control"
	"github.com/edtech-analytics/platform/services/enricher/internal/dedup"
	"github.com/edtech-analytics/platform/services/enricher/internal/enrich"
	"github.com/edtech-analytics/platform/services/enricher/internal/identity"
	"github.com/edtech-analytics/platform/services/enricher/internal/pipeline"
	"github.com/edtech-analytics/platform/services/enricher/internal/quality"
	"github.com/edtech-analytics/platform/services/enricher/internal/roster"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"
)

// Config is the enricher's configuration.
type Config struct {
	AdminAddr          string
	DatabaseURL        conf.Secret
	Group              string
	TransactionalID    string
	TransactionTimeout time.Duration
	DedupWindow        time.Duration
	PolicyRefresh      time.Duration
	IdentityCache      int
	ContextCache       int
	Kafka              kafkax.Config
	// Keys are the master keys of the key hierarchy the gateway seals identifying fields with (ADR 0010).
	Keys keyring.Config
}

// RegisterFlags binds the config to flags with env defaults.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	host, _ := os.Hostname()
	conf.String(fs, &c.AdminAddr, "admin.addr", "ADMIN_ADDR", ":9090", "address of /healthz, /readyz and /metrics")
	conf.SecretVar(fs, &c.DatabaseURL, "database.url", "DATABASE_URL", "PostgreSQL URL (control schema, district identities)")
	conf.String(fs, &c.Group, "group", "ENRICHER_GROUP", "edtech-enricher", "consumer group")
	conf.String(fs, &c.TransactionalID, "transactional-id", "ENRICHER_TRANSACTIONAL_ID", "enricher-"+host,
		"transactional id prefix; a random suffix is added per start")
	conf.Duration(fs, &c.TransactionTimeout, "transaction-timeout", "ENRICHER_TRANSACTION_TIMEOUT", 10*time.Second,
		"Kafka transaction timeout: after a crash, the dead instance's partitions resume within about this long")
	conf.Duration(fs, &c.DedupWindow, "dedup-window", "ENRICHER_DEDUP_WINDOW", 48*time.Hour, "how long a client event_id is remembered to drop retries (at least 24h)")
	conf.Duration(fs, &c.PolicyRefresh, "policy-refresh", "ENRICHER_POLICY_REFRESH", 30*time.Second,
		"how long a district's policy, time zone and tenant record are cached (policy_updated commands apply at once)")
	conf.Int(fs, &c.IdentityCache, "identity-cache", "ENRICHER_IDENTITY_CACHE", 2_000_000, "SIS id mappings kept in memory")
	conf.Int(fs, &c.ContextCache, "context-cache", "ENRICHER_CONTEXT_CACHE", 1_000_000, "roster context entries of each kind kept in memory")
	c.Kafka.RegisterFlags(fs)
	c.Keys.RegisterFlags(fs)
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
	if c.TransactionTimeout < time.Second {
		errs = append(errs, errors.New("transaction-timeout: must be at least 1s"))
	}
	if c.DedupWindow < 24*time.Hour {
		errs = append(errs, errors.New("dedup-window: must be at least 24h"))
	}
	if c.PolicyRefresh <= 0 || c.IdentityCache < 1 || c.ContextCache < 1 {
		errs = append(errs, errors.New("policy-refresh, identity-cache and context-cache: must be positive"))
	}
	return errors.Join(append(errs, c.Kafka.Validate())...)
}

// Run enriches until ctx is done. Before the first raw record, the erasures are loaded from PostgreSQL
// and the control topic is read to its end, so no record of an erased student is enriched, even on a
// replay. It is ready once it owns partitions of raw and has restored their dedup state. opts are added
// to every Kafka client it builds (tests shorten group timeouts, or hold a read).
func Run(ctx context.Context, cfg Config, rt svc.Runtime, opts ...kgo.Opt) error {
	health := obs.NewHealth("kafka", "postgres", "erasures", "partitions")
	pool, err := pgutil.Connect(ctx, cfg.DatabaseURL.Reveal())
	if err != nil {
		return err
	}
	defer pool.Close()
	keys, err := cfg.Keys.Open(pool, keyring.Options{})
	if err != nil {
		return err
	}
	health.SetReady("postgres", true)
	codec, err := stream.NewCodec(ctx, cfg.Kafka)
	if err != nil {
		return err
	}
	cfg.Kafka = cfg.Kafka.ForService("enricher")
	deps := kafkax.Deps{Log: rt.Log, Tracer: obs.SampledChildrenOnly(rt.Tel.Tracer), Propagator: rt.Tel.Propagator}
	topics := cfg.Kafka.Topics()
	// Every Kafka client of the enricher. The transactional session is built in Run below (again when it
	// keeps failing); each reader has one user, since a reader reads one thing at a time.
	admin, err := kafkax.NewAdmin(cfg.Kafka, deps, opts...) // waits for the cluster
	if err != nil {
		return err
	}
	defer admin.Close()
	controlReader, err := kafkax.NewReader(cfg.Kafka, deps, opts...) // erasures and other commands
	if err != nil {
		return err
	}
	defer controlReader.Close()
	restoreReader, err := kafkax.NewReader(cfg.Kafka, deps, opts...) // the dedup state of assigned partitions
	if err != nil {
		return err
	}
	defer restoreReader.Close()
	backfillReader, err := kafkax.NewReader(cfg.Kafka, deps, opts...) // a switched district's ids (ADR 0007)
	if err != nil {
		return err
	}
	defer backfillReader.Close()
	registry, err := control.Load(ctx, pool)
	if err != nil {
		return err
	}
	counts, err := newCounters(rt.Tel.Meter)
	if err != nil {
		return err
	}

	instances := fleet.New(pool, os.Getenv)
	defer instances.Close() // the pools of instances other than main
	known := newTenantCache(tenants.New(instances), keys, cfg.PolicyRefresh)
	policies := newPolicyCache(privacy.New(pool), cfg.PolicyRefresh)
	zones := newZoneCache(timezones.New(pool), cfg.PolicyRefresh)
	// Identities and roster context live in each district's schema, on the instance it is placed on.
	districts := fleet.NewDistrictPools(instances)
	identities := identity.New(districts, cfg.IdentityCache)
	rosterCtx := roster.New(districts, cfg.ContextCache)
	enr := enrich.New(codec, enrich.Deps{Tenants: known, Policies: policies, Zones: zones, Identities: identities, Context: rosterCtx, Erased: registry, Keys: keys})
	commands := &control.Consumer{Pool: pool, Pools: districts, Topic: topics.Control, Reader: controlReader.Client, Log: rt.Log,
		Codec: codec, Registry: registry,
		Tenants: known, Identities: identities, Context: rosterCtx,
		OnCommand: func(cmd records.ControlCommand) {
			known.Forget(cmd.TenantID)
			policies.Forget(cmd.TenantID)
			zones.Forget(cmd.TenantID)
			districts.Forget(cmd.TenantID)
		}}
	// Ids of districts that are hot or switched within the window are claimed in the control schema (ADR 0007).
	shared := claims.New(pool, cfg.DedupWindow)
	pipe := pipeline.New(pipeline.Config{Group: cfg.Group, TransactionTimeout: cfg.TransactionTimeout,
		OnAssigned: func() { identities.Reset(); rosterCtx.Reset() },
		OnCommit:   func(s pipeline.Stats) { counts.add(ctx, s) },
	}, topics, rt.Log, codec, enr, dedup.New(cfg.DedupWindow), shared, quality.New(districts),
		pipeline.Changelog{Restore: restoreReader.Client, Backfill: backfillReader.Client},
		func(ok bool) { health.SetReady("partitions", ok) })
	// Raw in, enriched, dead letters and the dedup changelog out, in Kafka transactions. A fresh suffix
	// per start: the previous incarnation's open transaction is aborted by the broker's transaction
	// timeout, and the group generation (KIP-447) fences it as a zombie. The changelog is written to the
	// partition number of the raw record it remembers.
	txn := kafkax.TransactConfig{Group: cfg.Group, Topic: topics.Raw, TransactionalID: cfg.TransactionalID + "-" + randomSuffix(),
		Timeout: cfg.TransactionTimeout}
	newSession := func() (*kgo.GroupTransactSession, error) {
		return kafkax.NewTransactionalSession(cfg.Kafka, deps, txn, pipe.Rebalance(),
			append([]kgo.Opt{kgo.RecordPartitioner(kafkax.NewPartitioner(topics.Dedup))}, opts...)...)
	}
	health.SetDegraded("stalled_batches", func() any {
		if s := pipe.Stalled(); s != nil {
			return s
		}
		return nil
	})

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return obs.ServeAdmin(gctx, rt.Log, cfg.AdminAddr, health, rt.Tel.Metrics) })
	g.Go(func() error { return shared.RunExpiry(gctx, rt.Log, 5*time.Minute) })
	caughtUp := make(chan struct{})
	g.Go(func() error {
		if err := stream.WaitKafka(gctx, rt.Log, admin.Client, cfg.Kafka); err != nil {
			return err
		}
		health.SetReady("kafka", true)
		return commands.Run(gctx, func() {
			rt.Log.Info("control topic read to its end; erasures in force")
			health.SetReady("erasures", true)
			close(caughtUp)
		})
	})
	g.Go(func() error {
		select {
		case <-caughtUp:
		case <-gctx.Done():
			return nil
		}
		err := pipe.Run(gctx, newSession)
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
