// Package app wires the archiver: config, the archive bucket, the record codec, and one
// offsets-in-the-destination consume loop per archived topic (raw and enriched), the periodic compaction
// of closed days, and the admin server.
// main only parses config and calls Run.
package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/edtech-analytics/platform/libs/archive"
	"github.com/edtech-analytics/platform/libs/conf"
	"github.com/edtech-analytics/platform/libs/kafkax"
	"github.com/edtech-analytics/platform/libs/obs"
	"github.com/edtech-analytics/platform/libs/svc"
	"github.com/edtech-analytics/platform/libs/svc/stream"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"
)

// Config is the archiver's configuration.
type Config struct {
	// ArchiveURL is the gocloud.dev/blob URL of the archive (archive.Schemes), e.g.
	// file:///var/lib/edtech/archive or s3://edtech-archive?region=eu-west-1.
	ArchiveURL string
	AdminAddr  string
	// Group prefixes the consumer groups: <group>-raw and <group>-enriched.
	Group string
	// MaxPollRecords bounds the records of one poll; each partition's share of a poll becomes one set of
	// files, so larger polls make fewer, larger files.
	MaxPollRecords int
	// CompactInterval is how often the closed days' small files are merged (0: never).
	CompactInterval time.Duration
	// CompactTargetBytes bounds the bytes of the files merged into one.
	CompactTargetBytes int
	// CompactGrace is how long after its end a day is left to late events before it is compacted.
	CompactGrace time.Duration
	Kafka        kafkax.Config
	Fetch        kafkax.Batching
}

// RegisterFlags binds the config to flags with env defaults.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	conf.String(fs, &c.ArchiveURL, "archive.url", "ARCHIVE_URL", "", "gocloud.dev/blob URL of the archive: file://, s3://, gs:// or azblob://, e.g. file:///var/lib/edtech/archive")
	conf.String(fs, &c.AdminAddr, "admin.addr", "ADMIN_ADDR", ":9090", "address of /healthz, /readyz and /metrics")
	conf.String(fs, &c.Group, "group", "ARCHIVER_GROUP", "edtech-archiver", "Kafka consumer group prefix: <group>-raw and <group>-enriched")
	conf.Int(fs, &c.MaxPollRecords, "max-poll-records", "ARCHIVER_MAX_POLL_RECORDS", 100_000,
		"records per poll across a topic's partitions; each partition's share becomes one file per tenant and day")
	conf.Duration(fs, &c.CompactInterval, "compact.interval", "ARCHIVER_COMPACT_INTERVAL", 15*time.Minute,
		"how often the small files of closed days are merged (0: never)")
	conf.Int(fs, &c.CompactTargetBytes, "compact.target-bytes", "ARCHIVER_COMPACT_TARGET_BYTES", archive.DefaultCompactTarget,
		"bytes of small files merged into one at most")
	conf.Duration(fs, &c.CompactGrace, "compact.grace", "ARCHIVER_COMPACT_GRACE", 24*time.Hour,
		"how long after its end a day is left to late events before it is compacted")
	c.Fetch.RegisterFlags(fs, "", "ARCHIVER_", DefaultFetchMinBytes, DefaultFetchMaxWait)
	c.Kafka.RegisterFlags(fs)
}

// Validate reports configuration errors.
func (c *Config) Validate() error {
	errs := []error{c.Fetch.Validate("")}
	if c.ArchiveURL == "" {
		errs = append(errs, errors.New("archive.url: required (env ARCHIVE_URL)"))
	} else if err := archive.CheckURL(c.ArchiveURL); err != nil {
		errs = append(errs, fmt.Errorf("archive.url: %w, e.g. file:///var/lib/edtech/archive or s3://bucket?region=... (env ARCHIVE_URL)", err))
	}
	if c.Group == "" {
		errs = append(errs, errors.New("group: required (env ARCHIVER_GROUP)"))
	}
	if c.MaxPollRecords <= 0 {
		errs = append(errs, errors.New("max-poll-records: must be positive (env ARCHIVER_MAX_POLL_RECORDS)"))
	}
	if c.CompactInterval < 0 {
		errs = append(errs, errors.New("compact.interval: must not be negative (env ARCHIVER_COMPACT_INTERVAL)"))
	}
	if c.CompactTargetBytes <= 0 {
		errs = append(errs, errors.New("compact.target-bytes: must be positive (env ARCHIVER_COMPACT_TARGET_BYTES)"))
	}
	if c.CompactGrace < 0 {
		errs = append(errs, errors.New("compact.grace: must not be negative (env ARCHIVER_COMPACT_GRACE)"))
	}
	return errors.Join(append(errs, c.Kafka.Validate())...)
}

// Run archives the raw and enriched topics until ctx is done. It is ready once the archive answers, Kafka
// answers and both groups have assigned it partitions. opts are added to every Kafka client it builds
// (tests shorten group timeouts).
func Run(ctx context.Context, cfg Config, rt svc.Runtime, opts ...kgo.Opt) error {
	health := obs.NewHealth("archive", "kafka", "raw", "enriched")
	cfg.Kafka = cfg.Kafka.ForService("archiver")
	topics := cfg.Kafka.Topics()
	deps := kafkax.Deps{Log: rt.Log, Tracer: rt.Tel.Tracer, Propagator: rt.Tel.Propagator}

	bucket, err := archive.Open(ctx, cfg.ArchiveURL)
	if err != nil {
		return fmt.Errorf("opening the archive (ARCHIVE_URL): %w", err)
	}
	defer func() {
		if cerr := bucket.Close(); cerr != nil {
			rt.Log.Warn("closing the archive", "err", cerr)
		}
	}()
	arch := archive.Blob{B: bucket}
	if _, err := arch.List(ctx, archive.TmpPrefix); err != nil {
		return fmt.Errorf("reading the archive: %w", err)
	}
	health.SetReady("archive", true)
	metrics, err := archive.NewMetrics(rt.Tel.Meter)
	if err != nil {
		return err
	}
	codec, err := stream.NewCodec(ctx, cfg.Kafka)
	if err != nil {
		return err
	}
	type layer struct {
		name     string
		consumer *kafkax.StoreConsumer
		cl       *kafkax.Client
	}
	var layers []layer
	closeAll := func() {
		for _, l := range layers {
			l.cl.Close()
		}
	}
	rawStore, enrichedStore := archive.New(arch, codec, archive.RawLayer(), metrics), archive.New(arch, codec, archive.EnrichedLayer(), metrics)
	adm, err := kafkax.NewAdmin(cfg.Kafka, deps, opts...)
	if err != nil {
		return err
	}
	defer adm.Close()
	stopLag, err := reportLag(rt.Tel.Meter, kadm.NewClient(adm.Client), []lagSource{
		{"raw", topics.Raw, rawStore.Published}, {"enriched", topics.Enriched, enrichedStore.Published}})
	if err != nil {
		return err
	}
	defer stopLag()
	for _, l := range []struct {
		name, topic string
		store       kafkax.Store
	}{
		{"raw", topics.Raw, rawStore},
		{"enriched", topics.Enriched, enrichedStore},
	} {
		group := cfg.Group + "-" + l.name
		consumer, err := kafkax.NewStoreConsumer(rt.Log,
			kafkax.ConsumerConfig{Group: group, Topic: l.topic, MaxPollRecords: cfg.MaxPollRecords, Meter: rt.Tel.Meter},
			l.store, func(ready bool) { health.SetReady(l.name, ready) })
		if err != nil {
			closeAll()
			return err
		}
		cl, err := kafkax.NewGroupConsumer(cfg.Kafka, deps, group, l.topic, cfg.Fetch, consumer.Rebalance(), opts...)
		if err != nil {
			closeAll()
			return err
		}
		layers = append(layers, layer{l.name, consumer, cl})
	}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return obs.ServeAdmin(gctx, rt.Log, cfg.AdminAddr, health, rt.Tel.Metrics) })
	if cfg.CompactInterval > 0 {
		opts := archive.CompactOptions{TargetBytes: int64(cfg.CompactTargetBytes), Grace: cfg.CompactGrace}
		raw, enriched := archive.NewCompactor(arch, archive.RawLayer(), opts, metrics), archive.NewCompactor(arch, archive.EnrichedLayer(), opts, metrics)
		ticker := time.NewTicker(cfg.CompactInterval)
		defer ticker.Stop()
		g.Go(func() error {
			return compactEvery(gctx, rt.Log, ticker.C, []layerCompactor{{"raw", raw.Run}, {"enriched", enriched.Run}})
		})
	}
	for _, l := range layers {
		g.Go(func() error {
			if err := stream.WaitKafka(gctx, rt.Log, l.cl.Client, cfg.Kafka); err != nil {
				l.cl.Close()
				return err
			}
			health.SetReady("kafka", true)
			return l.consumer.Run(gctx, l.cl)
		})
	}
	err = g.Wait()
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	return err
}

// Fetch batching defaults (kafkax.Batching): each partition's share of a poll becomes a Parquet file per
// district and day, whose cost is mostly fixed: a fetch waits for 16 MiB or 10 s (the archive is not read
// live).
const (
	DefaultFetchMinBytes = 16 << 20
	DefaultFetchMaxWait  = 10 * time.Second
)
