package kafkax

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
	"github.com/twmb/franz-go/plugin/kotel"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Deps are the observability dependencies of a client.
type Deps struct {
	Log        *slog.Logger
	Tracer     trace.TracerProvider
	Propagator propagation.TextMapPropagator
}

// Tracer returns the kotel tracer that injects and extracts trace context in record headers.
func (d Deps) kotelTracer(clientID, group string) *kotel.Tracer {
	opts := []kotel.TracerOpt{kotel.ClientID(clientID)}
	if d.Tracer != nil {
		opts = append(opts, kotel.TracerProvider(d.Tracer))
	}
	if d.Propagator != nil {
		opts = append(opts, kotel.TracerPropagator(d.Propagator))
	}
	if group != "" {
		opts = append(opts, kotel.ConsumerGroup(group))
	}
	return kotel.NewTracer(opts...)
}

// Client is a franz-go client plus the kotel tracer that starts processing spans from record headers.
type Client struct {
	*kgo.Client
	tracer *kotel.Tracer
}

// ProcessSpan starts a span for processing r, child of the trace the producer put in r's headers.
func (c *Client) ProcessSpan(r *kgo.Record) (context.Context, trace.Span) {
	return c.tracer.WithProcessSpan(r)
}

// Options returns the options every client shares: brokers, client id, SASL/TLS, logging, tracing hooks
// and the partitioner. group names the consumer group for span attributes ("" for producers).
func Options(cfg Config, deps Deps, group string) ([]kgo.Opt, *kotel.Tracer, error) {
	tr := deps.kotelTracer(cfg.ClientID, group)
	opts := []kgo.Opt{
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.ClientID(cfg.ClientID),
		kgo.WithHooks(recordTracing{Tracer: tr, prop: deps.Propagator}),
		kgo.RecordPartitioner(NewPartitioner()),
	}
	if deps.Log != nil {
		opts = append(opts, kgo.WithLogger(slogAdapter{deps.Log.With("component", "kafka")}))
	}
	tlsCfg, err := cfg.TLS.Config()
	if err != nil {
		return nil, nil, fmt.Errorf("kafka.%w", err)
	}
	if tlsCfg != nil {
		opts = append(opts, kgo.DialTLSConfig(tlsCfg))
	}
	switch strings.ToUpper(cfg.SASLMechanism) {
	case "":
	case "PLAIN":
		opts = append(opts, kgo.SASL(plain.Auth{User: cfg.SASLUser, Pass: cfg.SASLPassword.Reveal()}.AsMechanism()))
	case "SCRAM-SHA-256":
		opts = append(opts, kgo.SASL(scram.Auth{User: cfg.SASLUser, Pass: cfg.SASLPassword.Reveal()}.AsSha256Mechanism()))
	case "SCRAM-SHA-512":
		opts = append(opts, kgo.SASL(scram.Auth{User: cfg.SASLUser, Pass: cfg.SASLPassword.Reveal()}.AsSha512Mechanism()))
	default:
		return nil, nil, fmt.Errorf("unknown SASL mechanism %q", cfg.SASLMechanism)
	}
	return opts, tr, nil
}

// NewClient builds a client with the shared options plus extra.
func NewClient(cfg Config, deps Deps, group string, extra ...kgo.Opt) (*Client, error) {
	opts, tr, err := Options(cfg, deps, group)
	if err != nil {
		return nil, err
	}
	cl, err := kgo.NewClient(append(opts, extra...)...)
	if err != nil {
		return nil, fmt.Errorf("creating kafka client: %w", err)
	}
	return &Client{Client: cl, tracer: tr}, nil
}

// MaxRecordBatchBytes bounds one record batch of a producer (franz-go's default, Kafka's default
// max.message.bytes): a record that does not fit in a batch of its own is refused with
// kerr.MessageTooLarge, so producers that take outside input check their records against it first.
const MaxRecordBatchBytes = 1_000_012

// ProducerOptions are the options of every producer: acks=all with the idempotent producer (franz-go's
// defaults, stated here so nobody turns them off), a short linger for batching, bounded buffering and
// batches of at most MaxRecordBatchBytes.
func ProducerOptions() []kgo.Opt {
	return []kgo.Opt{
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerBatchMaxBytes(MaxRecordBatchBytes),
		kgo.ProducerLinger(2 * time.Millisecond),
		kgo.ProducerBatchCompression(kgo.Lz4Compression(), kgo.NoCompression()),
		kgo.MaxBufferedRecords(200_000),
		kgo.RecordDeliveryTimeout(30 * time.Second),
	}
}

// Ping checks that the cluster answers.
func Ping(ctx context.Context, cl *kgo.Client) error {
	if err := cl.Ping(ctx); err != nil {
		return fmt.Errorf("pinging kafka: %w", err)
	}
	return nil
}

// TopicSpec describes a topic to create when missing.
type TopicSpec struct {
	Name    string
	Configs map[string]string
	// RetentionEnv, when set, names the environment variable (a Go duration) that sets retention.ms; the
	// generated create-topics.sh reads it as the services do.
	RetentionEnv string
	// Why explains the settings (a comment in the generated create-topics.sh).
	Why string
}

//go:generate go run ./cmd/topicscript -o ../../k8s/create-topics.sh

// PlatformTopics returns the specs of the platform's topics, the one place their settings are defined
// (k8s/create-topics.sh is generated from it: go generate ./libs/kafkax). Retention is explicit on every
// topic, never the broker's default (often 7 days): raw and enriched keep 30 days by default (rebuilds
// replay enriched from its start; older history lives in the archive), dead letters 90 days (time to
// look at them and replay), control commands forever (replays must see every erasure), the dedup
// changelog is compacted and expires with the dedup window (7 days), and the audit log's published heads
// are kept forever.
func PlatformTopics(c Config) []TopicSpec {
	t := c.Topics()
	ms := func(d, def time.Duration) string {
		if d == 0 {
			d = def
		}
		return strconv.FormatInt(d.Milliseconds(), 10)
	}
	return []TopicSpec{
		{Name: t.Raw, RetentionEnv: EnvRetentionRaw, Why: "Accepted records: kept 30 days by default; the archive keeps them longer.",
			Configs: map[string]string{"compression.type": "lz4", "retention.ms": ms(c.RetentionRaw, DefaultRetentionRaw)}},
		{Name: t.Enriched, RetentionEnv: EnvRetentionEnriched, Why: "Kept 30 days by default: a rebuild replays it from its start and refuses when that start is gone.",
			Configs: map[string]string{"compression.type": "lz4", "retention.ms": ms(c.RetentionEnriched, DefaultRetentionEnriched)}},
		{Name: t.DLQ, Why: "Dead letters: 90 days to look at and replay them.",
			Configs: map[string]string{"retention.ms": ms(90*24*time.Hour, 0)}},
		{Name: t.Control, Why: "Control commands are kept forever: a replay must see every erasure.",
			Configs: map[string]string{"retention.ms": "-1"}},
		{Name: t.Dedup, Why: "The dedup changelog is compacted and expires after the dedup window (7 days); co-partitioned with raw.",
			Configs: map[string]string{"cleanup.policy": "compact,delete", "retention.ms": ms(7*24*time.Hour, 0)}},
		{Name: t.AuditHeads, Why: "The audit log's published heads are kept forever: a removed tail of the log is found against them.",
			Configs: map[string]string{"retention.ms": "-1"}},
	}
}

// EnsureTopics creates the topics that do not exist yet. Existing topics are left alone.
func EnsureTopics(ctx context.Context, cl *kgo.Client, partitions, replication int, specs []TopicSpec) error {
	adm := kadm.NewClient(cl)
	for _, s := range specs {
		configs := make(map[string]*string, len(s.Configs))
		for k, v := range s.Configs {
			configs[k] = &v
		}
		resp, err := adm.CreateTopic(ctx, int32(partitions), int16(replication), configs, s.Name)
		if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
			return fmt.Errorf("creating topic %s: %w", s.Name, err)
		}
		if resp.Err != nil && !errors.Is(resp.Err, kerr.TopicAlreadyExists) {
			return fmt.Errorf("creating topic %s: %w", s.Name, resp.Err)
		}
	}
	return nil
}

// slogAdapter logs franz-go messages through slog.
type slogAdapter struct{ log *slog.Logger }

// franz-go logs every transaction and group step at info; those go to debug so an info-level service
// log shows what operators act on (warnings and errors), and debug shows everything.
func (a slogAdapter) Level() kgo.LogLevel {
	ctx := context.Background()
	switch {
	case a.log.Enabled(ctx, slog.LevelDebug):
		return kgo.LogLevelDebug
	case a.log.Enabled(ctx, slog.LevelWarn):
		return kgo.LogLevelWarn
	default:
		return kgo.LogLevelError
	}
}

func (a slogAdapter) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	lv := slog.LevelDebug
	switch level {
	case kgo.LogLevelError:
		lv = slog.LevelError
	case kgo.LogLevelWarn:
		lv = slog.LevelWarn
	}
	a.log.Log(context.Background(), lv, msg, keyvals...)
}
