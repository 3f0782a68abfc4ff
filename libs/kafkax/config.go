// Package kafkax is the one place that builds Kafka clients and runs consume loops for every service:
// shared client options (seed brokers, SASL, tracing through kotel, slog logging), topic naming and
// creation, the partitioner, and the offsets-in-the-destination consume loop the stores use.
package kafkax

import (
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/edtech-analytics/platform/libs/conf"
)

// Config is the Kafka connection and topic configuration shared by every service.
type Config struct {
	Brokers           []string
	TopicPrefix       string
	ClientID          string
	SASLMechanism     string // "", "PLAIN", "SCRAM-SHA-256" or "SCRAM-SHA-512"
	SASLUser          string
	SASLPassword      conf.Secret
	TLS               conf.ClientTLS // TLS, with a custom CA and a client certificate for mutual TLS
	Partitions        int
	ReplicationFactor int
	SchemaRegistryURL string
	SchemaRegistryTLS conf.ClientTLS // for an https:// registry with a custom CA or mutual TLS
	// RetentionRaw and RetentionEnriched are how long the raw and enriched topics keep records
	// (retention.ms), set when a topic is created (PlatformTopics); 0 means the default, 30 days.
	RetentionRaw      time.Duration
	RetentionEnriched time.Duration
}

// Retention defaults and the environment variables that override them (Go durations, e.g. 720h). The
// generated k8s/create-topics.sh reads the same variables.
const (
	DefaultRetentionRaw      = 30 * 24 * time.Hour
	DefaultRetentionEnriched = 30 * 24 * time.Hour
	EnvRetentionRaw          = "KAFKA_RETENTION_RAW"
	EnvRetentionEnriched     = "KAFKA_RETENTION_ENRICHED"
)

// RegisterFlags binds the config to flags with env defaults.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	conf.List(fs, &c.Brokers, "kafka.brokers", "KAFKA_BROKERS", "127.0.0.1:9092", "Kafka seed brokers, comma separated")
	conf.String(fs, &c.TopicPrefix, "kafka.topic-prefix", "KAFKA_TOPIC_PREFIX", "edtech.", "prefix of every topic name (one per environment)")
	conf.String(fs, &c.ClientID, "kafka.client-id", "KAFKA_CLIENT_ID", "", "Kafka client id, which broker quotas and logs key on (empty: the service's name)")
	conf.String(fs, &c.SASLMechanism, "kafka.sasl-mechanism", "KAFKA_SASL_MECHANISM", "", "SASL mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (empty: none)")
	conf.String(fs, &c.SASLUser, "kafka.sasl-user", "KAFKA_SASL_USER", "", "SASL user")
	conf.SecretVar(fs, &c.SASLPassword, "kafka.sasl-password", "KAFKA_SASL_PASSWORD", "SASL password")
	c.TLS.RegisterFlags(fs, "kafka.", "KAFKA_", "Kafka")
	conf.Int(fs, &c.Partitions, "kafka.partitions", "KAFKA_PARTITIONS", 12, "partitions of topics this service creates when missing")
	conf.Int(fs, &c.ReplicationFactor, "kafka.replication-factor", "KAFKA_REPLICATION_FACTOR", -1, "replication factor of created topics (-1: broker default)")
	conf.Duration(fs, &c.RetentionRaw, "kafka.retention-raw", EnvRetentionRaw, DefaultRetentionRaw,
		"how long the raw topic keeps records, set when a topic is created (whole milliseconds)")
	conf.Duration(fs, &c.RetentionEnriched, "kafka.retention-enriched", EnvRetentionEnriched, DefaultRetentionEnriched,
		"how long the enriched topic keeps records, set when a topic is created; a rebuild replays from its start (whole milliseconds)")
	conf.String(fs, &c.SchemaRegistryURL, "schema-registry.url", "SCHEMA_REGISTRY_URL", "", "Confluent-compatible schema registry (empty: embedded schema catalog)")
	c.SchemaRegistryTLS.RegisterFlags(fs, "schema-registry.", "SCHEMA_REGISTRY_", "the schema registry")
}

// ForService returns the config with the client id the service's name, unless the operator set one.
func (c Config) ForService(name string) Config {
	if c.ClientID == "" {
		c.ClientID = name
	}
	return c
}

// Validate reports configuration errors.
func (c *Config) Validate() error {
	var errs []error
	if len(c.Brokers) == 0 {
		errs = append(errs, errors.New("kafka.brokers: at least one seed broker is required"))
	}
	switch strings.ToUpper(c.SASLMechanism) {
	case "", "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512":
	default:
		errs = append(errs, fmt.Errorf("kafka.sasl-mechanism: unknown mechanism %q", c.SASLMechanism))
	}
	if c.SASLMechanism != "" && c.SASLUser == "" {
		errs = append(errs, errors.New("kafka.sasl-user: required with a SASL mechanism"))
	}
	if c.Partitions < 1 {
		errs = append(errs, errors.New("kafka.partitions: must be at least 1"))
	}
	for _, r := range []struct {
		flag string
		d    time.Duration
	}{{"kafka.retention-raw", c.RetentionRaw}, {"kafka.retention-enriched", c.RetentionEnriched}} {
		if r.d < 0 || r.d%time.Millisecond != 0 {
			errs = append(errs, fmt.Errorf("%s: %v is not a positive whole number of milliseconds", r.flag, r.d))
		}
	}
	return errors.Join(errs...)
}

// Topics names the platform's topics.
type Topics struct {
	Raw      string // events and roster records accepted by the gateway
	Enriched string // canonical, policy-applied records every store consumes
	DLQ      string // rejected records with their reason
	Control  string // operator commands: erase, tenant lifecycle, policy changes
	Dedup    string // the enricher's dedup changelog, co-partitioned with Raw
	// AuditHeads holds the audit log's published heads, outside PostgreSQL (ctl audit head --publish).
	AuditHeads string
}

// Topics derives the topic names from the prefix.
func (c *Config) Topics() Topics {
	p := c.TopicPrefix
	return Topics{Raw: p + "raw", Enriched: p + "enriched", DLQ: p + "dlq", Control: p + "control", Dedup: p + "enricher-dedup",
		AuditHeads: p + "audit-heads"}
}

// Subject is the schema registry subject of a topic's values (TopicNameStrategy).
func Subject(topic string) string { return topic + "-value" }
