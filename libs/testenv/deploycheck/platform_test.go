package deploycheck

import (
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/edtech-analytics/platform/libs/archive"
	"github.com/edtech-analytics/platform/libs/conf"
	"github.com/edtech-analytics/platform/libs/kafkax"
	"github.com/edtech-analytics/platform/libs/svc"
	aggregator "github.com/edtech-analytics/platform/services/aggregator/app"
	archiver "github.com/edtech-analytics/platform/services/archiver/app"
	connector "github.com/edtech-analytics/platform/services/connector/app"
	ctl "github.com/edtech-analytics/platform/services/ctl/ctltest"
	enricher "github.com/edtech-analytics/platform/services/enricher/app"
	gateway "github.com/edtech-analytics/platform/services/gateway/app"
	query "github.com/edtech-analytics/platform/services/query/app"
	sink "github.com/edtech-analytics/platform/services/sink/app"
)

// platformContract is the contract of this repository's services: what each reads is what libs/conf
// recorded while the flag set svc.Main parses was registered (svc.FlagSet, conf.Vars), and what the
// migrate command reads is ctl's own account of it. The archiver and the connector (its file drop) also
// read, through the storage SDKs they link, the credential variables libs/archive lists.
func platformContract() Contract {
	reads := func(name string, cfg svc.Config) []conf.Var { return conf.Vars(svc.FlagSet(name, cfg, new(string))) }
	archiverReads := reads("archiver", &archiver.Config{})
	connectorReads := reads("connector", &connector.Config{})
	for _, v := range archive.CredentialEnv {
		archiverReads = append(archiverReads, conf.Var{Env: v.Name, Secret: v.Secret})
		connectorReads = append(connectorReads, conf.Var{Env: v.Name, Secret: v.Secret})
	}
	k := NewContract(map[string][]conf.Var{
		"archiver":   archiverReads,
		"connector":  connectorReads,
		"gateway":    reads("gateway", &gateway.Config{}),
		"enricher":   reads("enricher", &enricher.Config{}),
		"aggregator": reads("aggregator", &aggregator.Config{}),
		"sink":       reads("sink", &sink.Config{}),
		"query":      reads("query", &query.Config{}),
	}, ctl.MigrateVars())
	// The operator overlays' second PostgreSQL instance (k8s-overlays/components/cloudnative-pg), named as
	// docs/runbooks/provision.md names its example; every process that builds a fleet (fleet.New) reads it.
	k.InstanceURLs, k.InstanceURLReaders = []string{"PG2_URL"}, []string{"gateway", "enricher", "sink", "query"}
	k.KafkaClients = kafkaClients()
	return k
}

// kafkaClients is what each workload does with Kafka, as its code does it: the topics from kafkax's
// names, the groups and transactional ids from the defaults of the services' flags.
//   - gateway (app.Run, server.Topics): produces raw and dead letters (kafkax.NewProducer).
//   - enricher (app.Run, pipeline): a transactional session consuming raw in its group, producing enriched,
//     dlq and the dedup changelog; readers of the changelog (dedup.Restore, backfill) and of control.
//   - aggregator, sink: a group consumer of enriched (kafkax.NewGroupConsumer), a dead-letter producer.
//   - archiver: a group consumer of raw and one of enriched, <ARCHIVER_GROUP>-raw and -enriched.
//   - ctl in the cluster (privacy-worker: jobs work; audit-head: audit head --publish): erase commands to
//     control, erasure markers to enriched (erase_student.go), heads written to and read from audit-heads.
//
// Every service calls stream.WaitKafka, which creates the platform topics when missing; ctl does not.
func kafkaClients() []KafkaClient {
	var kc kafkax.Config
	kc.RegisterFlags(flag.NewFlagSet("kafka", flag.ContinueOnError))
	t := kc.Topics()
	def := func(name string, cfg svc.Config, flagName string) string {
		if f := svc.FlagSet(name, cfg, new(string)).Lookup(flagName); f != nil {
			return f.DefValue
		}
		return "" // a flag gone: the groups no longer match the manifests, and the checks say so
	}
	host, _ := os.Hostname()
	archiverGroup := def("archiver", &archiver.Config{}, "group")
	return []KafkaClient{
		{User: "edtech-gateway", Workloads: []string{"gateway"}, Writes: []string{t.Raw, t.DLQ}, CreatesTopics: true},
		{User: "edtech-enricher", Workloads: []string{"enricher"}, Writes: []string{t.Enriched, t.DLQ, t.Dedup},
			Reads: []string{t.Raw, t.Dedup, t.Control}, Groups: map[string]string{def("enricher", &enricher.Config{}, "group"): t.Raw},
			TransactionalIDPrefix: strings.TrimSuffix(def("enricher", &enricher.Config{}, "transactional-id"), host), CreatesTopics: true},
		{User: "edtech-aggregator", Workloads: []string{"aggregator"}, Writes: []string{t.DLQ}, Reads: []string{t.Enriched},
			Groups: map[string]string{def("aggregator", &aggregator.Config{}, "group"): t.Enriched}, CreatesTopics: true},
		{User: "edtech-sink", Workloads: []string{"sink"}, Writes: []string{t.DLQ}, Reads: []string{t.Enriched},
			Groups: map[string]string{def("sink", &sink.Config{}, "sink.group"): t.Enriched}, CreatesTopics: true},
		{User: "edtech-archiver", Workloads: []string{"archiver"}, Reads: []string{t.Raw, t.Enriched},
			Groups: map[string]string{archiverGroup + "-raw": t.Raw, archiverGroup + "-enriched": t.Enriched}, CreatesTopics: true},
		{User: "edtech-ctl", Workloads: []string{"privacy-worker", "audit-head"}, Writes: []string{t.Control, t.Enriched, t.AuditHeads},
			Reads: []string{t.AuditHeads}},
	}
}

// sinkPlus is the sink's config plus a public listener, as if its flag registration bound one.
type sinkPlus struct {
	sink.Config
	httpAddr string
}

func (c *sinkPlus) RegisterFlags(fs *flag.FlagSet) {
	c.Config.RegisterFlags(fs)
	conf.String(fs, &c.httpAddr, "http.addr", "HTTP_ADDR", ":8082", "address of a public API")
}

// TestFilesFollowWhatServicesRead: when a service's flag registration binds a variable that the compose
// file or a k8s manifest does not set, the env checks of the real files fail naming the file, the service
// and the variable; and when a service stops reading a variable the files set explicitly (the archiver's
// S3 credentials among them), they fail too.
func TestFilesFollowWhatServicesRead(t *testing.T) {
	c, err := LoadCompose(filepath.Join(repoRoot, "docker-compose.yml"), true)
	if err != nil {
		t.Fatal(err)
	}
	m, err := LoadManifests(filepath.Join(repoRoot, "k8s"))
	if err != nil {
		t.Fatal(err)
	}
	k := platformContract()
	if len(checkComposeEnv(k, c))+len(checkK8sEnv(k, m)) != 0 {
		t.Fatal("the real files do not pass the env checks to begin with")
	}
	k.Services["sink"] = conf.Vars(svc.FlagSet("sink", &sinkPlus{}, new(string)))
	requireProblem(t, checkComposeEnv(k, c), "sink: env HTTP_ADDR is not set")
	requireProblem(t, checkK8sEnv(k, m), "Deployment sink (sink.yaml) container sink: env HTTP_ADDR is not set")

	k = platformContract()
	k.Services["sink"] = slices.DeleteFunc(k.Services["sink"], func(v conf.Var) bool { return v.Env == "DATABASE_URL" })
	requireProblem(t, checkComposeEnv(k, c), "sink: env DATABASE_URL is set, but sink does not read it")
	requireProblem(t, checkK8sEnv(k, m), "Deployment sink (sink.yaml) container sink: env DATABASE_URL is set, but sink does not read it")

	// The archiver: its storage SDKs' credentials may be set for it, and for no other service.
	k = platformContract()
	k.Services["archiver"] = slices.DeleteFunc(k.Services["archiver"], func(v conf.Var) bool { return v.Env == "AWS_SECRET_ACCESS_KEY" })
	requireProblem(t, checkComposeEnv(k, c), "archiver: env AWS_SECRET_ACCESS_KEY is set, but archiver does not read it")
	requireProblem(t, checkK8sEnv(k, m), "Deployment archiver (archiver.yaml) container archiver: env AWS_SECRET_ACCESS_KEY is set, but archiver does not read it")
}

// TestContractComesFromFlagRegistration: the contract holds what the services' flags bind, secrets marked.
func TestContractComesFromFlagRegistration(t *testing.T) {
	k := platformContract()
	for name, want := range map[string][]string{
		"gateway":    {"HTTP_ADDR", "ADMIN_ADDR", "DATABASE_URL", "KAFKA_BROKERS", "LOG_LEVEL", "GATEWAY_MAX_EVENTS"},
		"aggregator": {"CLICKHOUSE_ADDR", "CLICKHOUSE_PASSWORD", "KAFKA_BROKERS", "LOG_LEVEL"},
		"query":      {"HTTP_ADDR", "CLICKHOUSE_ADDR", "DATABASE_URL", "LOG_LEVEL"},
		"archiver":   {"ARCHIVE_URL", "ARCHIVER_GROUP", "KAFKA_BROKERS", "SCHEMA_REGISTRY_URL", "AWS_ACCESS_KEY_ID"},
	} {
		for _, key := range want {
			if !k.Reads(k.Services[name], key) {
				t.Errorf("%s: contract does not say it reads %s", name, key)
			}
		}
	}
	if k.Reads(k.Services["query"], "KAFKA_BROKERS") {
		t.Error("query has no Kafka settings, yet the contract says it reads KAFKA_BROKERS")
	}
	if k.Reads(k.Services["sink"], "AWS_ACCESS_KEY_ID") {
		t.Error("only the archiver links a storage SDK, yet the contract says the sink reads AWS_ACCESS_KEY_ID")
	}
	for _, key := range []string{"DATABASE_URL", "CLICKHOUSE_PASSWORD", "KAFKA_SASL_PASSWORD", "AWS_SECRET_ACCESS_KEY"} {
		if !k.IsSecret(key) {
			t.Errorf("%s is bound with conf.SecretVar, yet the contract does not mark it secret", key)
		}
	}
}
