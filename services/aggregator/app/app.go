// Package app wires the aggregator: config, ClickHouse (database, migrations, store), the record codec,
// Kafka and the offsets-in-the-destination consume loop, and the admin server. It is importable so the dev
// stack can run the aggregator in-process; main only parses config and calls Run.
package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/cenkalti/backoff/v5"
	"github.com/edtech-analytics/platform/libs/chutil"
	"github.com/edtech-analytics/platform/libs/conf"
	"github.com/edtech-analytics/platform/libs/kafkax"
	"github.com/edtech-analytics/platform/libs/obs"
	"github.com/edtech-analytics/platform/libs/records"
	"github.com/edtech-analytics/platform/libs/svc"
	"github.com/edtech-analytics/platform/libs/svc/stream"
	"github.com/edtech-analytics/platform/services/aggregator/internal/chstore"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"
)

// Config is the aggregator's configuration.
type Config struct {
	ClickHouseAddr     string
	ClickHouseDatabase string
	ClickHouseUser     string
	ClickHousePassword conf.Secret
	ClickHouseTLS      conf.ClientTLS
	// Cluster chooses the replicated cluster layout (ADR 0026); its zero value is the single-server layout.
	Cluster   chstore.ClusterConfig
	AdminAddr string
	Group     string
	// AnalystPrefix starts the name of each district's analyst database; empty turns analyst views off.
	AnalystPrefix string
	// Compact says when months of the rollups are merged into one part (chstore.RunCompaction).
	Compact chstore.CompactConfig
	Kafka   kafkax.Config
	Fetch   kafkax.Batching
	// MaxPollRecords bounds the records of one poll across partitions; each partition's share is one insert.
	MaxPollRecords int
}

// RegisterFlags binds the config to flags with env defaults.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	conf.String(fs, &c.ClickHouseAddr, "clickhouse.addr", "CLICKHOUSE_ADDR", "127.0.0.1:9000", "ClickHouse native-protocol address, host:port")
	conf.String(fs, &c.ClickHouseDatabase, "clickhouse.database", "CLICKHOUSE_DATABASE", "edtech", "ClickHouse database, created and migrated at start")
	conf.String(fs, &c.ClickHouseUser, "clickhouse.user", "CLICKHOUSE_USER", "default", "ClickHouse user")
	conf.SecretVar(fs, &c.ClickHousePassword, "clickhouse.password", "CLICKHOUSE_PASSWORD", "ClickHouse password")
	c.ClickHouseTLS.RegisterFlags(fs, "clickhouse.", "CLICKHOUSE_", "ClickHouse (its secure native port)")
	conf.String(fs, &c.Cluster.Name, "clickhouse.cluster", "CLICKHOUSE_CLUSTER", "",
		"ClickHouse cluster (remote_servers) to create replicated, sharded tables on; empty keeps one server's plain tables")
	conf.List(fs, &c.Cluster.Keeper, "clickhouse.keeper", "CLICKHOUSE_KEEPER", "",
		"ZooKeeper or ClickHouse Keeper addresses (host:port, comma-separated) of the cluster, where the offsets are kept; required with clickhouse.cluster")
	conf.String(fs, &c.Cluster.KeeperRoot, "clickhouse.keeper-root", "CLICKHOUSE_KEEPER_ROOT", "",
		"Keeper node under which the offsets are kept (default /edtech/aggregator/<database>)")
	conf.String(fs, &c.AdminAddr, "admin.addr", "ADMIN_ADDR", ":9090", "address of /healthz, /readyz and /metrics")
	conf.String(fs, &c.Group, "group", "AGGREGATOR_GROUP", "edtech-aggregator", "Kafka consumer group")
	conf.String(fs, &c.AnalystPrefix, "analyst.prefix", "ANALYST_DATABASE_PREFIX", "analyst_",
		"prefix of each district's analyst database (pseudonymised views); empty turns them off")
	conf.Duration(fs, &c.Compact.Interval, "compact.interval", "AGGREGATOR_COMPACT_INTERVAL", time.Hour,
		"how often months of the rollups with several parts are merged into one (OPTIMIZE ... FINAL); 0 turns it off")
	conf.Int(fs, &c.Compact.OpenMinParts, "compact.open-min-parts", "AGGREGATOR_COMPACT_OPEN_MIN_PARTS", 8,
		"parts the current month of a rollup may reach before compaction merges it too; 0 leaves it to ClickHouse")
	c.Fetch.RegisterFlags(fs, "", "AGGREGATOR_", DefaultFetchMinBytes, DefaultFetchMaxWait)
	conf.Int(fs, &c.MaxPollRecords, "max-poll-records", "AGGREGATOR_MAX_POLL_RECORDS", 100_000,
		"records per poll across partitions; each partition's share is one insert, whose cost in ClickHouse is mostly fixed")
	c.Kafka.RegisterFlags(fs)
}

// Validate reports configuration errors.
func (c *Config) Validate() error {
	errs := []error{c.Fetch.Validate("")}
	if c.MaxPollRecords < 1 {
		errs = append(errs, errors.New("max-poll-records: must be at least 1 (env AGGREGATOR_MAX_POLL_RECORDS)"))
	}
	if c.ClickHouseAddr == "" {
		errs = append(errs, errors.New("clickhouse.addr: required (env CLICKHOUSE_ADDR)"))
	}
	if c.ClickHouseDatabase == "" {
		errs = append(errs, errors.New("clickhouse.database: required (env CLICKHOUSE_DATABASE)"))
	}
	if c.Group == "" {
		errs = append(errs, errors.New("group: required (env AGGREGATOR_GROUP)"))
	}
	if c.Cluster.Enabled() && len(c.Cluster.Keeper) == 0 {
		errs = append(errs, errors.New("clickhouse.keeper: required with clickhouse.cluster (env CLICKHOUSE_KEEPER)"))
	}
	if !c.Cluster.Enabled() && (len(c.Cluster.Keeper) > 0 || c.Cluster.KeeperRoot != "") {
		errs = append(errs, errors.New("clickhouse.keeper: only with clickhouse.cluster (env CLICKHOUSE_CLUSTER)"))
	}
	if c.Compact.Interval < 0 {
		errs = append(errs, errors.New("compact.interval: must not be negative (env AGGREGATOR_COMPACT_INTERVAL)"))
	}
	if c.Compact.OpenMinParts < 0 || c.Compact.OpenMinParts == 1 {
		errs = append(errs, errors.New("compact.open-min-parts: must be 0 (off) or at least 2 (env AGGREGATOR_COMPACT_OPEN_MIN_PARTS)"))
	}
	return errors.Join(append(errs, c.Kafka.Validate())...)
}

// Run consumes the enriched topic into ClickHouse until ctx is done. It is ready once ClickHouse is
// migrated, Kafka answers and the group has assigned it partitions; an instance without partitions (more
// instances than partitions) stays not ready. opts are added to every Kafka client it builds (tests
// shorten group timeouts).
func Run(ctx context.Context, cfg Config, rt svc.Runtime, opts ...kgo.Opt) error {
	health := obs.NewHealth("clickhouse", "kafka", "partitions")
	cfg.Kafka = cfg.Kafka.ForService("aggregator")
	topics := cfg.Kafka.Topics()
	deps := kafkax.Deps{Log: rt.Log, Tracer: rt.Tel.Tracer, Propagator: rt.Tel.Propagator}
	// Records ClickHouse refuses for their content go to the dead-letter topic.
	dlq, err := kafkax.NewProducer(cfg.Kafka, deps, opts...)
	if err != nil {
		return err
	}
	defer dlq.Close()

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return obs.ServeAdmin(gctx, rt.Log, cfg.AdminAddr, health, rt.Tel.Metrics) })
	g.Go(func() error {
		conn, err := waitClickHouse(gctx, cfg, rt)
		if err != nil {
			return err
		}
		health.SetReady("clickhouse", true)
		cctx, stopCompaction := context.WithCancel(gctx)
		compacted := make(chan error, 1)
		round := func(ctx context.Context, openMinParts int) ([]chstore.Merged, error) {
			return chstore.Compact(ctx, conn, cfg.ClickHouseDatabase, openMinParts)
		}
		if cfg.Cluster.Enabled() {
			cluster := chutil.NewCluster(conn, cfg.Cluster.Name, cfg.ClickHouseDatabase, dialNode(cfg))
			defer cluster.Close()
			round = func(ctx context.Context, openMinParts int) ([]chstore.Merged, error) {
				return chstore.CompactCluster(ctx, cluster, openMinParts)
			}
		}
		go func() {
			compacted <- chstore.RunCompaction(cctx, round, cfg.Compact, rt.Log, rt.Tel.Meter)
		}()
		err = func() error {
			consumer, err := newConsumer(gctx, cfg, rt, conn, dlq.Client, health)
			if err != nil {
				return err
			}
			// The enriched topic, read in the group; offsets live in ClickHouse (ADR 0003).
			cl, err := kafkax.NewGroupConsumer(cfg.Kafka, deps, cfg.Group, topics.Enriched, cfg.Fetch, consumer.Rebalance(), opts...)
			if err != nil {
				return err
			}
			return consume(gctx, cfg, rt, consumer, cl, health)
		}()
		stopCompaction()
		err = errors.Join(err, <-compacted)
		if cerr := conn.Close(); cerr != nil { // every write has returned by now
			rt.Log.Warn("closing clickhouse connection", "err", cerr)
		}
		return err
	})
	err = g.Wait()
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	return err
}

// dialNode connects to one node of the ClickHouse cluster, as the aggregator's own connection is made.
func dialNode(cfg Config) func(ctx context.Context, addr string) (driver.Conn, error) {
	return func(ctx context.Context, addr string) (driver.Conn, error) {
		tlsCfg, err := cfg.ClickHouseTLS.Config()
		if err != nil {
			return nil, fmt.Errorf("clickhouse.%w", err)
		}
		return chutil.Open(ctx, chutil.Options{Addr: addr, Database: cfg.ClickHouseDatabase, User: cfg.ClickHouseUser,
			Password: cfg.ClickHousePassword.Reveal(), DialTimeout: 5 * time.Second, MaxOpenConns: 2, TLS: tlsCfg})
	}
}

// newConsumer builds the store consumer writing the enriched topic into ClickHouse, dead-lettering through
// dlq the records ClickHouse refuses.
func newConsumer(ctx context.Context, cfg Config, rt svc.Runtime, conn driver.Conn, dlq *kgo.Client, health *obs.Health) (*kafkax.StoreConsumer, error) {
	codec, err := stream.NewCodec(ctx, cfg.Kafka)
	if err != nil {
		return nil, err
	}
	scfg := chstore.Config{Database: cfg.ClickHouseDatabase, AnalystPrefix: cfg.AnalystPrefix, Cluster: cfg.Cluster}
	scfg.Cluster.Dial = dialNode(cfg)
	if cfg.Cluster.Enabled() {
		// An open insert is settled by reading its records again, as the consumer read them.
		// A reader of its own for each range: settling is rare, and no earlier read's fetches can linger.
		scfg.Reread = func(ctx context.Context, topic string, p int32, from, through int64) ([]*kgo.Record, error) {
			reader, err := kafkax.NewReader(cfg.Kafka, kafkax.Deps{Log: rt.Log})
			if err != nil {
				return nil, err
			}
			defer reader.Close()
			return kafkax.ReadRange(ctx, reader.Client, topic, p, from, through)
		}
	}
	store, err := chstore.New(conn, codec, scfg, chstore.Deps{Log: rt.Log, Tracer: rt.Tel.Tracer, Meter: rt.Tel.Meter})
	if err != nil {
		return nil, err
	}
	go func() { <-ctx.Done(); store.Close() }()
	if cfg.Cluster.Enabled() {
		go warnOfNodeSettings(ctx, rt.Log, store)
	}
	topics := cfg.Kafka.Topics()
	return kafkax.NewStoreConsumer(rt.Log,
		kafkax.ConsumerConfig{Group: cfg.Group, Topic: topics.Enriched, MaxPollRecords: cfg.MaxPollRecords,
			DeadLetter: stream.DeadLetters(codec, dlq, topics.DLQ, records.StageAggregator), Meter: rt.Tel.Meter},
		store, func(ready bool) { health.SetReady("partitions", ready) })
}

// warnOfNodeSettings logs each server setting a node of the ClickHouse cluster lacks (chstore.CheckNodes):
// nothing fails for want of one until a replica crashes, so the operator learns of it at start.
func warnOfNodeSettings(ctx context.Context, log *slog.Logger, store *chstore.Store) {
	problems, err := store.CheckNodes(ctx)
	if err != nil && ctx.Err() == nil {
		log.Warn("could not check the clickhouse nodes' settings", "err", err)
	}
	for _, p := range problems {
		log.Warn("a clickhouse node lacks a setting the cluster layout needs", "problem", p)
	}
}

// consume runs consumer with cl once Kafka answers, until ctx is done; cl is closed when it returns.
func consume(ctx context.Context, cfg Config, rt svc.Runtime, consumer *kafkax.StoreConsumer, cl *kafkax.Client, health *obs.Health) error {
	stopReports, err := stream.ReportStalls(rt.Tel.Meter, health, cfg.Kafka.Topics().Enriched, consumer)
	if err != nil {
		cl.Close()
		return err
	}
	defer stopReports()
	if err := stream.WaitKafka(ctx, rt.Log, cl.Client, cfg.Kafka); err != nil {
		cl.Close()
		return err
	}
	health.SetReady("kafka", true)
	err = consumer.Run(ctx, cl)
	health.SetReady("kafka", false)
	return err
}

// waitClickHouse connects once ClickHouse answers (retrying until ctx ends), then creates the database
// if missing and migrates it. Errors after the server answered are returned: they will not go away.
func waitClickHouse(ctx context.Context, cfg Config, rt svc.Runtime) (driver.Conn, error) {
	tlsCfg, err := cfg.ClickHouseTLS.Config()
	if err != nil {
		return nil, fmt.Errorf("clickhouse.%w", err)
	}
	opts := chutil.Options{Addr: cfg.ClickHouseAddr, User: cfg.ClickHouseUser, Password: cfg.ClickHousePassword.Reveal(), DialTimeout: 5 * time.Second,
		TLS: tlsCfg}
	attempt := 0
	admin, err := backoff.Retry(ctx, func() (driver.Conn, error) {
		attempt++
		conn, err := chutil.Open(ctx, opts)
		if err != nil {
			rt.Log.Warn("waiting for clickhouse", "attempt", attempt, "err", err)
		}
		return conn, err
	}, svc.WaitPolicy()...)
	if err != nil {
		return nil, fmt.Errorf("waiting for clickhouse: %w", err)
	}
	if cfg.Cluster.Enabled() {
		err = admin.Exec(ctx, "CREATE DATABASE IF NOT EXISTS "+chutil.QuoteIdent(cfg.ClickHouseDatabase)+" ON CLUSTER "+chutil.QuoteIdent(cfg.Cluster.Name))
	} else {
		err = chutil.CreateDatabase(ctx, admin, cfg.ClickHouseDatabase)
	}
	if cerr := admin.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("closing clickhouse connection: %w", cerr)
	}
	if err != nil {
		return nil, err
	}
	opts.Database = cfg.ClickHouseDatabase
	conn, err := chutil.Open(ctx, opts)
	if err != nil {
		return nil, err
	}
	migrate := func() error { return chstore.Migrate(ctx, conn, cfg.ClickHouseDatabase) }
	if cfg.Cluster.Enabled() {
		migrate = func() error { return chstore.MigrateCluster(ctx, conn, cfg.ClickHouseDatabase, cfg.Cluster.Name) }
	}
	if err := migrate(); err != nil {
		return nil, errors.Join(err, conn.Close())
	}
	rt.Log.Info("clickhouse migrated", "addr", cfg.ClickHouseAddr, "database", cfg.ClickHouseDatabase)
	return conn, nil
}

// Fetch batching defaults (kafkax.Batching): each partition's share of a poll is one insert, which feeds
// every materialized view and makes a part in each of their tables at a cost that is mostly fixed (about
// 30 ms of ClickHouse CPU for 1,250 rows or for 20,000): a fetch waits for 4 MiB (about 20,000 events) or
// one second.
const (
	DefaultFetchMinBytes = 4 << 20
	DefaultFetchMaxWait  = time.Second
)
