// Package app wires the sink: config, PostgreSQL, the record codec, and the store consumer that applies
// the enriched topic to each district's schema. It is importable so the dev stack can run the sink
// in-process; main only parses config and calls Run.
package app

import (
	"context"
	"errors"
	"flag"
	"os"
	"time"

	"github.com/edtech-analytics/platform/libs/conf"
	"github.com/edtech-analytics/platform/libs/kafkax"
	"github.com/edtech-analytics/platform/libs/keyring"
	"github.com/edtech-analytics/platform/libs/obs"
	"github.com/edtech-analytics/platform/libs/records"
	"github.com/edtech-analytics/platform/libs/svc"
	"github.com/edtech-analytics/platform/libs/svc/stream"
	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/edtech-analytics/platform/libs/tenancy/fleet"
	"github.com/edtech-analytics/platform/services/sink/internal/pgstore"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"
)

// probeInterval is how often readiness re-checks Kafka and PostgreSQL.
const probeInterval = 5 * time.Second

// Config is the sink's configuration.
type Config struct {
	AdminAddr      string
	DatabaseURL    conf.Secret
	Group          string
	MaxPollRecords int
	Kafka          kafkax.Config
	Fetch          kafkax.Batching
	// Keys are the master keys that open the identifying fields the enricher sealed (ADR 0010).
	Keys keyring.Config
}

// DefaultMaxPollRecords is 2,500 records per partition of a 12-partition topic. A write's cost is mostly
// per district it touches, and with 1,500 districts a partition's batch of 833 touched about 125 of them:
// at 2,500 the cost per event with 1,500 districts came within 15% of that with 10 (BENCHMARKS.md).
const DefaultMaxPollRecords = 30_000

// RegisterFlags binds the config to flags with env defaults.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	conf.String(fs, &c.AdminAddr, "admin.addr", "ADMIN_ADDR", ":9090", "address of /healthz, /readyz and /metrics")
	conf.SecretVar(fs, &c.DatabaseURL, "database.url", "DATABASE_URL", "PostgreSQL URL of the control and district schemas")
	conf.String(fs, &c.Group, "sink.group", "SINK_GROUP", "edtech-sink", "consumer group, also the name the stored offsets are kept under")
	conf.Int(fs, &c.MaxPollRecords, "sink.max-poll-records", "SINK_MAX_POLL_RECORDS", DefaultMaxPollRecords, "records per poll across partitions (bigger batches cost less per record)")
	c.Fetch.RegisterFlags(fs, "sink.", "SINK_", DefaultFetchMinBytes, DefaultFetchMaxWait)
	c.Kafka.RegisterFlags(fs)
	c.Keys.RegisterFlags(fs)
}

// Validate reports configuration errors.
func (c *Config) Validate() error {
	errs := []error{c.Fetch.Validate("sink.")}
	if c.DatabaseURL == "" {
		errs = append(errs, errors.New("database.url: required (env DATABASE_URL)"))
	}
	if c.Group == "" {
		errs = append(errs, errors.New("sink.group: required (env SINK_GROUP)"))
	}
	if c.MaxPollRecords < 1 {
		errs = append(errs, errors.New("sink.max-poll-records: must be at least 1"))
	}
	return errors.Join(append(errs, c.Kafka.Validate())...)
}

// Run consumes the enriched topic into PostgreSQL until ctx is done, writing each district to the
// instance it is placed on (the control database, or an instance whose URL is in the environment
// variable control.instances names). It is ready while Kafka and the control database answer and the
// group has assigned it partitions. When PostgreSQL goes away the consumer pauses the partitions it
// cannot write and resumes them from the stored offsets once it is back. opts are added to every Kafka
// client it builds (tests shorten group timeouts).
func Run(ctx context.Context, cfg Config, rt svc.Runtime, opts ...kgo.Opt) error {
	health := obs.NewHealth("kafka", "postgres", "partitions")
	pool, err := pgstore.Connect(ctx, cfg.DatabaseURL.Reveal())
	if err != nil {
		return err
	}
	defer pool.Close()
	health.SetReady("postgres", true)
	if err := tenancy.Migrate(ctx, pool); err != nil {
		return err
	}
	codec, err := stream.NewCodec(ctx, cfg.Kafka)
	if err != nil {
		return err
	}
	instances := fleet.New(pool, os.Getenv).WithConnect(pgstore.Connect)
	defer instances.Close()
	keys, err := cfg.Keys.Open(pool, keyring.Options{})
	if err != nil {
		return err
	}
	store, err := pgstore.New(cfg.Group, pgstore.Deps{Fleet: instances, Codec: codec, Keys: keys, Log: rt.Log, Tracer: rt.Tel.Tracer, Meter: rt.Tel.Meter})
	if err != nil {
		return err
	}

	cfg.Kafka = cfg.Kafka.ForService("sink")
	topics := cfg.Kafka.Topics()
	deps := kafkax.Deps{Log: rt.Log, Tracer: rt.Tel.Tracer, Propagator: rt.Tel.Propagator}
	// Records PostgreSQL refuses for their content go to the dead-letter topic.
	dlq, err := kafkax.NewProducer(cfg.Kafka, deps, opts...)
	if err != nil {
		return err
	}
	defer dlq.Close()
	consumer, err := kafkax.NewStoreConsumer(rt.Log,
		kafkax.ConsumerConfig{Group: cfg.Group, Topic: topics.Enriched, MaxPollRecords: cfg.MaxPollRecords,
			DeadLetter: stream.DeadLetters(codec, dlq.Client, topics.DLQ, records.StageSink), Meter: rt.Tel.Meter},
		store, func(ok bool) { health.SetReady("partitions", ok) })
	if err != nil {
		return err
	}
	// The enriched topic, read in the group; offsets live in each PostgreSQL instance (ADR 0003). The
	// consumer closes it when it stops.
	member, err := kafkax.NewGroupConsumer(cfg.Kafka, deps, cfg.Group, topics.Enriched, cfg.Fetch, consumer.Rebalance(), opts...)
	if err != nil {
		return err
	}
	stopReports, err := stream.ReportStalls(rt.Tel.Meter, health, topics.Enriched, consumer)
	if err != nil {
		member.Close()
		return err
	}
	defer stopReports()
	cl := member.Client

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return obs.ServeAdmin(gctx, rt.Log, cfg.AdminAddr, health, rt.Tel.Metrics) })
	g.Go(func() error {
		if err := stream.WaitKafka(gctx, rt.Log, cl, cfg.Kafka); err != nil {
			cl.Close()
			return err
		}
		health.SetReady("kafka", true)
		g.Go(func() error {
			probe(gctx, health, func(ctx context.Context) error { return kafkax.Ping(ctx, cl) }, pool.Ping)
			return nil
		})
		return consumer.Run(gctx, member)
	})
	err = g.Wait()
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	return err
}

// probe marks Kafka and PostgreSQL ready or not every probeInterval until ctx is done.
func probe(ctx context.Context, health *obs.Health, kafka, postgres func(context.Context) error) {
	t := time.NewTicker(probeInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pctx, cancel := context.WithTimeout(ctx, probeInterval)
		health.SetReady("kafka", kafka(pctx) == nil)
		health.SetReady("postgres", postgres(pctx) == nil)
		cancel()
	}
}

// Fetch batching defaults (kafkax.Batching): PostgreSQL writes cost little per batch: fetches return as soon as records are there.
const (
	DefaultFetchMinBytes = 1
	DefaultFetchMaxWait  = 500 * time.Millisecond
)
