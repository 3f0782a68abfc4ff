package kafkax

import (
	"context"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// The constructors below build every Kafka client of the platform, one per role. Each takes the shared
// config, the observability dependencies and options appended last: a caller's own settings, or a test's
// (shorter group timeouts, hooks). A service builds its clients in its app.Run and passes them to the code
// that uses them, so its wiring shows every client it has.

// NewProducer builds an idempotent producer with acks=all (ProducerOptions): the gateway's raw records, the
// stores' dead letters.
func NewProducer(cfg Config, deps Deps, opts ...kgo.Opt) (*Client, error) {
	return NewClient(cfg, deps, "", append(ProducerOptions(), opts...)...)
}

// NewAdmin builds a client that neither produces nor consumes: pings, metadata, topic creation, end
// offsets.
func NewAdmin(cfg Config, deps Deps, opts ...kgo.Opt) (*Client, error) {
	return NewClient(cfg, deps, "", opts...)
}

// NewReader builds a direct (group-less) reader with read_committed isolation that keeps transaction
// markers, so a read sees where a partition ends even when a marker is its last offset. It starts with no
// partitions: ReadToEnd adds the ones it reads, and a tailing reader adds its own (AddConsumePartitions).
func NewReader(cfg Config, deps Deps, opts ...kgo.Opt) (*Client, error) {
	return NewClient(cfg, deps, "", append([]kgo.Opt{
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(),
	}, opts...)...)
}

// Rebalance is what a group member is told of its assignment. Every field is optional.
type Rebalance struct {
	// Adjust replaces the offsets the group would resume newly assigned partitions at
	// (kgo.AdjustFetchOffsetsFn): the store consumers resume at the offsets their destination holds.
	Adjust func(ctx context.Context, offsets map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error)
	// Assigned runs when partitions are assigned, before their records are fetched.
	Assigned func(ctx context.Context, cl *kgo.Client, assigned map[string][]int32)
	// Revoked runs when partitions are revoked or lost.
	Revoked func(ctx context.Context, cl *kgo.Client, revoked map[string][]int32)
}

func (r Rebalance) opts() []kgo.Opt {
	var opts []kgo.Opt
	if r.Adjust != nil {
		opts = append(opts, kgo.AdjustFetchOffsetsFn(r.Adjust))
	}
	if r.Assigned != nil {
		opts = append(opts, kgo.OnPartitionsAssigned(r.Assigned))
	}
	if r.Revoked != nil {
		opts = append(opts, kgo.OnPartitionsRevoked(r.Revoked), kgo.OnPartitionsLost(r.Revoked))
	}
	return opts
}

// consumerOptions are what every group member of the platform shares: read_committed, a new group starts
// at the topic's beginning, and the member's rebalance callbacks.
func consumerOptions(group string, topics []string, rb Rebalance) []kgo.Opt {
	return append([]kgo.Opt{
		kgo.ConsumerGroup(group),
		kgo.ConsumeTopics(topics...),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	}, rb.opts()...)
}

// NewGroupConsumer builds a member of group consuming topic whose offsets the caller commits (auto-commit
// off) and that polls with rebalances blocked (kgo.BlockRebalanceOnPoll: the caller allows them between
// polls), whose fetches wait at the broker as fetch says (the zero Batching keeps franz-go's defaults).
// The store consumers (StoreConsumer) use it.
func NewGroupConsumer(cfg Config, deps Deps, group, topic string, fetch Batching, rb Rebalance, opts ...kgo.Opt) (*Client, error) {
	base := append(consumerOptions(group, []string{topic}, rb), kgo.DisableAutoCommit(), kgo.BlockRebalanceOnPoll())
	base = append(base, fetch.Options()...)
	return NewClient(cfg, deps, group, append(base, opts...)...)
}

// TransactConfig names a transactional read-process-write member.
type TransactConfig struct {
	Group           string
	Topic           string // consumed
	TransactionalID string
	// Timeout is the transaction timeout: the broker aborts a transaction open longer than this.
	Timeout time.Duration
}

// NewTransactionalSession builds a read-process-write member: a group consumer of tc.Topic with
// read_committed isolation and an idempotent transactional producer (ProducerOptions), whose produced
// records and consumed offsets commit together.
func NewTransactionalSession(cfg Config, deps Deps, tc TransactConfig, rb Rebalance, opts ...kgo.Opt) (*kgo.GroupTransactSession, error) {
	base, _, err := Options(cfg, deps, tc.Group)
	if err != nil {
		return nil, err
	}
	base = append(base, ProducerOptions()...)
	base = append(base, consumerOptions(tc.Group, []string{tc.Topic}, rb)...)
	base = append(base, kgo.TransactionalID(tc.TransactionalID))
	if tc.Timeout > 0 {
		base = append(base, kgo.TransactionTimeout(tc.Timeout))
	}
	sess, err := kgo.NewGroupTransactSession(append(base, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("creating transactional session: %w", err)
	}
	return sess, nil
}
