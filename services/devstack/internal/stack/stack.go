// Package stack runs the whole platform in one process: an embedded Kafka (kfake) and every service,
// each started and stopped on its own so tests can crash and restart one mid-stream.
package stack

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"github.com/edtech-analytics/platform/libs/keyring"
	"log/slog"
	"maps"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/edtech-analytics/platform/libs/conf"
	"github.com/edtech-analytics/platform/libs/kafkax"
	"github.com/edtech-analytics/platform/libs/pgutil"
	"github.com/edtech-analytics/platform/libs/svc"
	"github.com/edtech-analytics/platform/libs/tenancy"
	aggregator "github.com/edtech-analytics/platform/services/aggregator/app"
	archiver "github.com/edtech-analytics/platform/services/archiver/app"
	enricher "github.com/edtech-analytics/platform/services/enricher/app"
	gateway "github.com/edtech-analytics/platform/services/gateway/app"
	query "github.com/edtech-analytics/platform/services/query/app"
	sink "github.com/edtech-analytics/platform/services/sink/app"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Config says where the stack's stores are and how to expose it.
type Config struct {
	KafkaDataDir       string // kfake persistence ("" keeps Kafka in memory)
	KafkaPort          int    // 0: any free port
	Partitions         int
	DatabaseURL        string
	ClickHouseAddr     string
	ClickHouseDatabase string
	GatewayAddr        string // e.g. 127.0.0.1:8080, or 127.0.0.1:0
	QueryAddr          string // e.g. 127.0.0.1:8081, or 127.0.0.1:0
	// ArchiveURL is where the archiver writes, e.g. file:///path/to/archive; "" runs no archiver.
	ArchiveURL string
	// Keys are the master keys of the gateway, the enricher and the sink; empty, they come from the environment
	// (MASTER_KEYS or MASTER_KEY_FILE).
	Keys keyring.Config
}

// ProfileLabel is the CPU profiler label naming the service (or "kafka") a goroutine belongs to.
const ProfileLabel = "service"

// Service names.
const (
	Gateway    = "gateway"
	Enricher   = "enricher"
	Aggregator = "aggregator"
	Sink       = "sink"
	Query      = "query"
	Archiver   = "archiver"
)

// Stack is a running platform.
type Stack struct {
	cfg   Config
	opts  []kgo.Opt // added to every Kafka client of the consumers (tests shorten group timeouts)
	rt    svc.Runtime
	log   *slog.Logger
	kafka *kfake.Cluster
	// Kafka is the config every service uses to reach the embedded cluster.
	Kafka kafkax.Config
	// GatewayURL and QueryURL are where the gateway and the dashboard API listen once Start returns.
	GatewayURL, QueryURL string
	// ArchiveURL is where the archiver writes; "" when the stack runs none.
	ArchiveURL string

	mu       sync.Mutex
	services map[string]*running
}

type running struct {
	cancel context.CancelFunc
	done   chan error
}

// Start starts Kafka, migrates the control schema and starts every service. It returns when the gateway
// accepts requests. opts are added to every Kafka client of the enricher, aggregator and sink (tests
// shorten group timeouts).
func Start(ctx context.Context, cfg Config, rt svc.Runtime, opts ...kgo.Opt) (*Stack, error) {
	if cfg.Partitions <= 0 {
		cfg.Partitions = 4
	}
	if err := checkEnv(); err != nil {
		return nil, err
	}
	kopts := []kfake.Opt{kfake.NumBrokers(1), kfake.DefaultNumPartitions(cfg.Partitions), kfake.GroupMinSessionTimeout(100 * time.Millisecond)}
	if cfg.KafkaPort > 0 {
		kopts = append(kopts, kfake.Ports(cfg.KafkaPort))
	}
	if cfg.KafkaDataDir != "" {
		kopts = append(kopts, kfake.DataDir(cfg.KafkaDataDir))
	}
	// Every goroutine of a service, and of the embedded Kafka, carries the profiler label "service", so a
	// CPU profile of the whole process tells the services apart (cmd/pipelineload reports it per event).
	var cluster *kfake.Cluster
	var err error
	pprof.Do(ctx, pprof.Labels(ProfileLabel, "kafka"), func(context.Context) { cluster, err = kfake.NewCluster(kopts...) })
	if err != nil {
		return nil, fmt.Errorf("starting embedded kafka: %w", err)
	}
	s := &Stack{cfg: cfg, opts: opts, rt: rt, log: rt.Log, kafka: cluster, services: map[string]*running{}, ArchiveURL: cfg.ArchiveURL,
		Kafka: kafkax.Config{Brokers: cluster.ListenAddrs(), TopicPrefix: "edtech.", Partitions: cfg.Partitions, ReplicationFactor: 1}}

	pool, err := pgutil.Connect(ctx, cfg.DatabaseURL)
	if err != nil {
		cluster.Close()
		return nil, err
	}
	err = tenancy.Migrate(ctx, pool)
	pool.Close()
	if err != nil {
		cluster.Close()
		return nil, fmt.Errorf("migrating control schema: %w", err)
	}

	listening, queryListening := make(chan string, 1), make(chan string, 1)
	s.startGateway(listening)
	s.startQuery(queryListening)
	consumers := []string{Enricher, Aggregator, Sink}
	if cfg.ArchiveURL != "" {
		consumers = append(consumers, Archiver)
	}
	for _, name := range consumers {
		if err := s.StartService(name); err != nil {
			return nil, errors.Join(err, s.Close())
		}
	}
	for _, l := range []struct {
		name string
		ch   <-chan string
		url  *string
	}{{Gateway, listening, &s.GatewayURL}, {Query, queryListening, &s.QueryURL}} {
		select {
		case addr := <-l.ch:
			*l.url = "http://" + addr
		case <-ctx.Done():
			return nil, errors.Join(ctx.Err(), s.Close())
		case <-time.After(60 * time.Second):
			return nil, errors.Join(fmt.Errorf("%s did not start within 60s", l.name), s.Close())
		}
	}
	return s, nil
}

// defaults fills a service config with its flag defaults (as if started with no flags); checkEnv has
// made sure the environment's values parse.
func defaults(c interface{ RegisterFlags(*flag.FlagSet) }) {
	fs := flag.NewFlagSet("defaults", flag.ContinueOnError)
	c.RegisterFlags(fs)
	_ = fs.Parse(nil) // no arguments: nothing to fail
}

// checkEnv reports the environment values of every service's configuration that do not parse, so the
// stack stops naming them instead of running on defaults.
func checkEnv() error {
	var errs []error
	for _, c := range []interface{ RegisterFlags(*flag.FlagSet) }{
		&gateway.Config{}, &query.Config{}, &enricher.Config{}, &aggregator.Config{}, &sink.Config{}, &archiver.Config{},
	} {
		fs := flag.NewFlagSet("env", flag.ContinueOnError)
		c.RegisterFlags(fs)
		errs = append(errs, conf.Check(fs))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("invalid configuration: %w", err)
	}
	return nil
}

func (s *Stack) runtime(name string) svc.Runtime {
	return svc.Runtime{Log: s.rt.Log.With("service", name), Tel: s.rt.Tel}
}

// masterKeys gives a service the stack's master keys, unless the stack takes them from the environment.
func (s *Stack) masterKeys(c *keyring.Config) {
	if s.cfg.Keys != (keyring.Config{}) {
		*c = s.cfg.Keys
	}
}

func (s *Stack) startGateway(listening chan<- string) {
	var cfg gateway.Config
	defaults(&cfg)
	cfg.HTTPAddr, cfg.AdminAddr, cfg.DatabaseURL, cfg.Kafka = s.cfg.GatewayAddr, "127.0.0.1:0", conf.Secret(s.cfg.DatabaseURL), s.Kafka
	s.masterKeys(&cfg.Keys)
	s.launch(Gateway, func(ctx context.Context) error {
		return gateway.Run(ctx, cfg, s.runtime(Gateway), gateway.Hooks{OnListen: func(addr string) { listening <- addr }})
	})
}

func (s *Stack) startQuery(listening chan<- string) {
	var cfg query.Config
	defaults(&cfg)
	cfg.HTTPAddr, cfg.AdminAddr, cfg.DatabaseURL = s.cfg.QueryAddr, "127.0.0.1:0", conf.Secret(s.cfg.DatabaseURL)
	s.masterKeys(&cfg.Keys)
	cfg.ClickHouseAddr, cfg.ClickHouseDatabase = s.cfg.ClickHouseAddr, s.cfg.ClickHouseDatabase
	s.launch(Query, func(ctx context.Context) error {
		return query.Run(ctx, cfg, s.runtime(Query), query.Hooks{OnListen: func(addr string) { listening <- addr }})
	})
}

// StartService starts one of the consumers (again, after StopService): the enricher, aggregator, sink,
// or the archiver when the stack has an ArchiveURL. Names of further enricher
// instances in the same group start with Enricher and a dash ("enricher-2").
func (s *Stack) StartService(name string) error {
	switch {
	case name == Enricher || strings.HasPrefix(name, Enricher+"-"):
		var cfg enricher.Config
		defaults(&cfg)
		cfg.AdminAddr, cfg.DatabaseURL, cfg.Kafka = "127.0.0.1:0", conf.Secret(s.cfg.DatabaseURL), s.Kafka
		s.masterKeys(&cfg.Keys)
		s.launch(name, func(ctx context.Context) error { return enricher.Run(ctx, cfg, s.runtime(name), s.opts...) })
	case name == Aggregator:
		var cfg aggregator.Config
		defaults(&cfg)
		cfg.AdminAddr, cfg.Kafka = "127.0.0.1:0", s.Kafka
		cfg.ClickHouseAddr, cfg.ClickHouseDatabase = s.cfg.ClickHouseAddr, s.cfg.ClickHouseDatabase
		s.launch(name, func(ctx context.Context) error { return aggregator.Run(ctx, cfg, s.runtime(name), s.opts...) })
	case name == Sink:
		var cfg sink.Config
		defaults(&cfg)
		cfg.AdminAddr, cfg.DatabaseURL, cfg.Kafka = "127.0.0.1:0", conf.Secret(s.cfg.DatabaseURL), s.Kafka
		s.masterKeys(&cfg.Keys)
		s.launch(name, func(ctx context.Context) error { return sink.Run(ctx, cfg, s.runtime(name), s.opts...) })
	case name == Archiver && s.cfg.ArchiveURL != "":
		var cfg archiver.Config
		defaults(&cfg)
		cfg.AdminAddr, cfg.ArchiveURL, cfg.Kafka = "127.0.0.1:0", s.cfg.ArchiveURL, s.Kafka
		s.launch(name, func(ctx context.Context) error { return archiver.Run(ctx, cfg, s.runtime(name), s.opts...) })
	default:
		return fmt.Errorf("unknown service %q", name)
	}
	return nil
}

func (s *Stack) launch(name string, run func(ctx context.Context) error) {
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, done: make(chan error, 1)}
	s.mu.Lock()
	s.services[name] = r
	s.mu.Unlock()
	go pprof.Do(ctx, pprof.Labels(ProfileLabel, name), func(ctx context.Context) {
		err := run(ctx)
		if err != nil && !errors.Is(err, context.Canceled) {
			s.log.Error("service stopped with error", "service", name, "err", err)
		}
		r.done <- err
	})
}

// StopService stops one service and waits for it.
func (s *Stack) StopService(name string) error {
	s.mu.Lock()
	r := s.services[name]
	delete(s.services, name)
	s.mu.Unlock()
	if r == nil {
		return nil
	}
	r.cancel()
	if err := <-r.done; err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// Close stops every service, the gateway first so nothing new arrives, then Kafka.
func (s *Stack) Close() error {
	var errs []error
	for _, name := range []string{Gateway, Query, Enricher, Aggregator, Sink, Archiver} {
		errs = append(errs, s.StopService(name))
	}
	s.mu.Lock()
	rest := slices.Collect(maps.Keys(s.services)) // further enricher instances
	s.mu.Unlock()
	for _, name := range rest {
		errs = append(errs, s.StopService(name))
	}
	s.kafka.Close()
	return errors.Join(errs...)
}
