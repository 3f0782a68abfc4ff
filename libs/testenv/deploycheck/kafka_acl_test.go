package deploycheck

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/edtech-analytics/platform/libs/conf"
	"github.com/edtech-analytics/platform/libs/kafkax"
	"github.com/edtech-analytics/platform/libs/testenv/kafkatest"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// kfakeACLs converts a KafkaUser's ACLs into the broker's.
func kfakeACLs(t *testing.T, u kafkaUser) (out []kfake.ACL) {
	t.Helper()
	for _, a := range u.Spec.Authorization.ACLs {
		typ, err := kmsg.ParseACLResourceType(strings.ToLower(a.Resource.Type))
		if err != nil {
			t.Fatal(err)
		}
		pattern, err := kmsg.ParseACLResourcePatternType(map[string]string{"": "literal", "literal": "literal", "prefix": "prefixed"}[a.Resource.PatternType])
		if err != nil {
			t.Fatal(err)
		}
		for _, op := range a.Operations {
			o, err := kmsg.ParseACLOperation(strings.ToLower(op))
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, kfake.ACL{Resource: typ, Name: a.Resource.Name, Pattern: pattern, Operation: o, Allow: true})
		}
	}
	return out
}

// TestKafkaUsersWorkOnABroker: on a broker (kfake) that authenticates the Strimzi overlay's KafkaUsers with
// SCRAM-SHA-512 and enforces their ACLs, each workload's user, through kafkax's own client options, can
// do what the workload does: create the missing platform topics (they exist: the request finds them),
// write its topics (idempotently, as every producer of the platform; in a transaction for the enricher),
// consume and commit in its groups, read its topics without a group; and is refused a topic it does not
// write, and the topics' creation when it has no Create.
func TestKafkaUsersWorkOnABroker(t *testing.T) {
	m, err := LoadManifests(filepath.Join(repoRoot, "k8s-overlays", "strimzi"))
	if err != nil {
		t.Fatal(err)
	}
	users, problems := custom[kafkaUser](m, "KafkaUser")
	cfg, _, more := kafkaSettings(m)
	if problems = append(problems, more...); len(problems) > 0 || len(users) == 0 {
		t.Fatalf("%d users: %q", len(users), problems)
	}
	var topics []string
	for _, spec := range kafkax.PlatformTopics(cfg) {
		topics = append(topics, spec.Name)
	}
	opts := []kfake.Opt{kfake.EnableSASL(), kfake.EnableACLs(), kfake.Superuser("SCRAM-SHA-512", "admin", "pw-admin"), kfake.SeedTopics(2, topics...)}
	for _, u := range users {
		opts = append(opts, kfake.User("SCRAM-SHA-512", u.Metadata.Name, "pw-"+u.Metadata.Name, kfakeACLs(t, u)...))
	}
	_, base := kafkatest.New(t, opts...)
	base.TopicPrefix = cfg.TopicPrefix
	// A safety net only: a refused request answers at once, so nothing waits on it unless the test is broken.
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()

	client := func(t *testing.T, user string, extra ...kgo.Opt) *kgo.Client {
		t.Helper()
		kc := base
		kc.SASLMechanism, kc.SASLUser, kc.SASLPassword = "SCRAM-SHA-512", user, conf.Secret("pw-"+user)
		opts, _, err := kafkax.Options(kc, kafkax.Deps{}, "")
		if err != nil {
			t.Fatal(err)
		}
		cl, err := kgo.NewClient(append(opts, extra...)...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(cl.Close)
		return cl
	}
	// One record in partition 0 of every topic, for the readers.
	admin := client(t, "admin", kgo.RecordPartitioner(kgo.ManualPartitioner()))
	for _, topic := range topics {
		if err := admin.ProduceSync(ctx, &kgo.Record{Topic: topic, Key: []byte("k"), Value: []byte("v")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}

	for _, c := range platformContract().KafkaClients {
		t.Run(c.User, func(t *testing.T) {
			err := kafkax.EnsureTopics(ctx, client(t, c.User), 2, -1, kafkax.PlatformTopics(cfg))
			if c.CreatesTopics && err != nil {
				t.Errorf("creating the missing platform topics: %v", err)
			}
			if !c.CreatesTopics && !errors.Is(err, kerr.TopicAuthorizationFailed) {
				t.Errorf("creating topics without Create: %v, want TOPIC_AUTHORIZATION_FAILED", err)
			}
			producer := client(t, c.User)
			for _, topic := range c.Writes {
				if err := producer.ProduceSync(ctx, &kgo.Record{Topic: retopic(cfg, topic), Key: []byte("k"), Value: []byte("v")}).FirstErr(); err != nil {
					t.Errorf("writing %s: %v", topic, err)
				}
			}
			if i := slices.IndexFunc(topics, func(topic string) bool { return !slices.Contains(c.Writes, topic) }); i >= 0 {
				err := client(t, c.User).ProduceSync(ctx, &kgo.Record{Topic: topics[i], Key: []byte("k"), Value: []byte("v")}).FirstErr()
				// A user that writes nothing cannot even start an idempotent producer (its id needs Write on some topic).
				refused := errors.Is(err, kerr.TopicAuthorizationFailed) || (len(c.Writes) == 0 && errors.Is(err, kerr.ClusterAuthorizationFailed))
				if !refused {
					t.Errorf("writing %s, which it does not write: %v, want an authorization failure", topics[i], err)
				}
			}
			for group, topic := range c.Groups {
				cl := client(t, c.User, append(kafkatest.GroupOpts(), kgo.ConsumerGroup(group), kgo.ConsumeTopics(retopic(cfg, topic)),
					kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.DisableAutoCommit())...)
				fs := cl.PollFetches(ctx)
				if err := fs.Err(); err != nil || fs.NumRecords() == 0 {
					t.Errorf("consuming %s in group %s: %v, %d records", topic, group, err, fs.NumRecords())
				}
				if err := cl.CommitUncommittedOffsets(ctx); err != nil {
					t.Errorf("committing group %s: %v", group, err)
				}
			}
			for _, topic := range c.Reads {
				cl := client(t, c.User, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{retopic(cfg, topic): {0: kgo.NewOffset().AtStart()}}))
				fs := cl.PollFetches(ctx)
				if err := fs.Err(); err != nil || fs.NumRecords() == 0 {
					t.Errorf("reading %s: %v, %d records", topic, err, fs.NumRecords())
				}
			}
			if c.TransactionalIDPrefix != "" {
				cl := client(t, c.User, kgo.TransactionalID(c.TransactionalIDPrefix+"test"))
				if err := cl.BeginTransaction(); err != nil {
					t.Fatal(err)
				}
				err := cl.ProduceSync(ctx, &kgo.Record{Topic: retopic(cfg, c.Writes[0]), Key: []byte("k"), Value: []byte("v")}).FirstErr()
				if err == nil {
					err = cl.EndTransaction(ctx, kgo.TryCommit)
				}
				if err != nil {
					t.Errorf("writing %s in transaction %stest: %v", c.Writes[0], c.TransactionalIDPrefix, err)
				}
			}
		})
	}
}
