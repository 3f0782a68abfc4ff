// Package kafkatest starts an in-process Kafka cluster (franz-go's kfake, which speaks the real protocol:
// consumer groups, idempotent and transactional producers, read_committed) for tests.
package kafkatest

import (
	"testing"
	"time"

	"github.com/edtech-analytics/platform/libs/kafkax"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Options are the kfake options tests want: one broker on a loopback port, short group timeouts.
func Options() []kfake.Opt {
	return []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.DefaultNumPartitions(4),
		kfake.GroupMinSessionTimeout(100 * time.Millisecond),
	}
}

// New starts a cluster for the test, closed when the test ends, and returns it with a kafkax.Config that
// points at it (4 partitions per created topic, topic prefix "test.").
func New(t testing.TB, opts ...kfake.Opt) (*kfake.Cluster, kafkax.Config) {
	t.Helper()
	c, err := kfake.NewCluster(append(Options(), opts...)...)
	if err != nil {
		t.Fatalf("starting kfake: %v", err)
	}
	t.Cleanup(c.Close)
	return c, kafkax.Config{Brokers: c.ListenAddrs(), TopicPrefix: "test.", ClientID: "test", Partitions: 4, ReplicationFactor: 1}
}

// GroupOpts shortens group timeouts so rebalances in tests take milliseconds, not seconds.
//
// A test that SIGKILLs a group member must not kill it while its JoinGroup waits for a rebalance: kfake
// starts a member's session timer only when its join answer is delivered, and an answer to a closed
// connection may be dropped, so such a member can stay in the group for good, holding partitions that
// no one consumes. Kill a member once it works (it has stored or committed something).
func GroupOpts() []kgo.Opt {
	return []kgo.Opt{
		kgo.SessionTimeout(2 * time.Second),
		kgo.HeartbeatInterval(100 * time.Millisecond),
		kgo.RebalanceTimeout(3 * time.Second),
		kgo.FetchMaxWait(100 * time.Millisecond),
	}
}
