package kafkax

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"
)

// Store is a destination that keeps the consumed offsets itself, written atomically with the data. The
// destination, not Kafka's committed offsets, decides where consumption resumes, so a crash at any point
// neither loses nor double-applies a record.
type Store interface {
	// NextOffsets returns, for each of the given partitions of topic that the store holds data of, the
	// offset after the last one it stored. Partitions it has never stored are left out.
	NextOffsets(ctx context.Context, topic string, partitions []int32) (map[int32]int64, error)
	// Write durably stores records of one partition, in offset order, together with their offsets, as one
	// atomic unit. It returns only when the records are durable.
	Write(ctx context.Context, topic string, partition int32, recs []*kgo.Record) error
}

// ConsumerConfig tunes a store consumer.
type ConsumerConfig struct {
	Group          string
	Topic          string
	MaxPollRecords int           // records per poll across partitions (default 10,000)
	WriteTimeout   time.Duration // one Write attempt; keep below the group's rebalance timeout (default 30s)
	RetryMin       time.Duration // first backoff after a failed write (default 200ms)
	RetryMax       time.Duration // backoff cap (default 10s)
	CommitInterval time.Duration // how often durable offsets are committed to Kafka for lag metrics (default 5s)
	Extra          []kgo.Opt     // extra client options (tests lower group timeouts here)
}

func (c *ConsumerConfig) defaults() {
	if c.MaxPollRecords <= 0 {
		c.MaxPollRecords = 10_000
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 30 * time.Second
	}
	if c.RetryMin <= 0 {
		c.RetryMin = 200 * time.Millisecond
	}
	if c.RetryMax <= 0 {
		c.RetryMax = 10 * time.Second
	}
	if c.CommitInterval <= 0 {
		c.CommitInterval = 5 * time.Second
	}
}

// StoreConsumer consumes one topic in a group into a Store. On assignment it resumes each partition after
// the last offset the store holds. Partitions are written concurrently, one batch per partition per poll.
// A failed write pauses only that partition: its in-hand records are dropped, and after a backoff the
// partition is re-sought to the store's own offset and resumed, so a slow or down store never blocks the
// group's rebalances and nothing is lost or written twice. Kafka commits only mirror what the store made
// durable (for lag monitoring); they are never used to resume.
type StoreConsumer struct {
	cfg   ConsumerConfig
	store Store
	log   *slog.Logger
	cl    *Client

	mu       sync.Mutex
	next     map[int32]int64     // next offset to write per assigned partition; records below it are stale
	paused   map[int32]time.Time // partitions waiting to be re-sought, with when to try
	failures map[int32]int
	ready    func(bool)
}

// NewStoreConsumer builds the consumer and its client. ready, if non-nil, is told when the consumer has
// joined and can write (true) and when it stops (false).
func NewStoreConsumer(kcfg Config, deps Deps, cfg ConsumerConfig, store Store, ready func(bool)) (*StoreConsumer, error) {
	cfg.defaults()
	if cfg.Group == "" || cfg.Topic == "" {
		return nil, errors.New("store consumer: group and topic are required")
	}
	c := &StoreConsumer{
		cfg: cfg, store: store, log: deps.Log.With("group", cfg.Group, "topic", cfg.Topic),
		next: map[int32]int64{}, paused: map[int32]time.Time{}, failures: map[int32]int{}, ready: ready,
	}
	opts := []kgo.Opt{
		kgo.ConsumerGroup(cfg.Group),
		kgo.ConsumeTopics(cfg.Topic),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.AdjustFetchOffsetsFn(c.adjustOffsets),
		kgo.OnPartitionsRevoked(c.onRevoked),
		kgo.OnPartitionsLost(c.onRevoked),
	}
	cl, err := NewClient(kcfg, deps, cfg.Group, append(opts, cfg.Extra...)...)
	if err != nil {
		return nil, err
	}
	c.cl = cl
	return c, nil
}

// Client exposes the underlying client (for readiness pings).
func (c *StoreConsumer) Client() *Client { return c.cl }

// adjustOffsets replaces the group's committed offsets with the store's own, retrying while the store is
// unreachable (the context ends if the assignment is revoked meanwhile).
func (c *StoreConsumer) adjustOffsets(ctx context.Context, offsets map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error) {
	parts := offsets[c.cfg.Topic]
	ids := make([]int32, 0, len(parts))
	for p := range parts {
		ids = append(ids, p)
	}
	var stored map[int32]int64
	err := retry(ctx, c.cfg.RetryMin, c.cfg.RetryMax, func() error {
		var err error
		stored, err = c.store.NextOffsets(ctx, c.cfg.Topic, ids)
		if err != nil {
			c.log.Warn("reading stored offsets", "err", err)
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("reading stored offsets: %w", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range ids {
		if next, ok := stored[p]; ok {
			parts[p] = kgo.NewOffset().At(next).WithEpoch(-1)
			c.next[p] = next
		} else {
			c.next[p] = 0
		}
		delete(c.paused, p)
		delete(c.failures, p)
	}
	c.log.Info("partitions assigned", "partitions", ids, "resume_at", stored)
	if c.ready != nil {
		c.ready(true)
	}
	return offsets, nil
}

func (c *StoreConsumer) onRevoked(ctx context.Context, cl *kgo.Client, revoked map[string][]int32) {
	c.mu.Lock()
	for _, p := range revoked[c.cfg.Topic] {
		delete(c.next, p)
		delete(c.paused, p)
		delete(c.failures, p)
	}
	c.mu.Unlock()
	c.commit(ctx)
}

// Run consumes until ctx is done, then commits what is durable and leaves the group.
func (c *StoreConsumer) Run(ctx context.Context) error {
	defer func() {
		if c.ready != nil {
			c.ready(false)
		}
		c.commit(context.WithoutCancel(ctx))
		c.cl.Close()
	}()
	lastCommit := time.Now()
	for ctx.Err() == nil {
		pctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		fetches := c.cl.PollRecords(pctx, c.cfg.MaxPollRecords)
		cancel()
		if fetches.IsClientClosed() {
			return nil
		}
		fetches.EachError(func(t string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
				c.log.Warn("fetch error", "partition", p, "err", err)
			}
		})
		c.writeFetches(ctx, fetches)
		c.cl.AllowRebalance()
		c.resumeDue(ctx)
		if time.Since(lastCommit) >= c.cfg.CommitInterval {
			c.commit(ctx)
			lastCommit = time.Now()
		}
	}
	return nil
}

// writeFetches writes each partition's records concurrently.
func (c *StoreConsumer) writeFetches(ctx context.Context, fetches kgo.Fetches) {
	var g errgroup.Group
	fetches.EachPartition(func(fp kgo.FetchTopicPartition) {
		recs := c.fresh(fp.Partition, fp.Records)
		if len(recs) == 0 {
			return
		}
		g.Go(func() error {
			c.writePartition(ctx, fp.Partition, recs)
			return nil
		})
	})
	_ = g.Wait()
}

// fresh drops records below the partition's next offset (left over from before a re-seek) and all
// records of paused or unassigned partitions.
func (c *StoreConsumer) fresh(p int32, recs []*kgo.Record) []*kgo.Record {
	c.mu.Lock()
	defer c.mu.Unlock()
	next, assigned := c.next[p]
	if _, paused := c.paused[p]; paused || !assigned {
		return nil
	}
	i := 0
	for i < len(recs) && recs[i].Offset < next {
		i++
	}
	return recs[i:]
}

func (c *StoreConsumer) writePartition(ctx context.Context, p int32, recs []*kgo.Record) {
	wctx, cancel := context.WithTimeout(ctx, c.cfg.WriteTimeout)
	err := c.store.Write(wctx, c.cfg.Topic, p, recs)
	cancel()
	c.mu.Lock()
	defer c.mu.Unlock()
	if err == nil {
		c.next[p] = recs[len(recs)-1].Offset + 1
		c.failures[p] = 0
		c.cl.MarkCommitRecords(recs[len(recs)-1])
		return
	}
	if ctx.Err() != nil {
		return
	}
	c.failures[p]++
	wait := backoff(c.cfg.RetryMin, c.cfg.RetryMax, c.failures[p])
	c.paused[p] = time.Now().Add(wait)
	c.cl.PauseFetchPartitions(map[string][]int32{c.cfg.Topic: {p}})
	c.log.Warn("store write failed; partition paused", "partition", p, "records", len(recs), "retry_in", wait, "err", err)
}

// resumeDue re-seeks paused partitions whose backoff has passed to the store's offsets and resumes them.
// It runs between polls, with rebalances blocked, as SetOffsets requires.
func (c *StoreConsumer) resumeDue(ctx context.Context) {
	c.mu.Lock()
	var due []int32
	for p, at := range c.paused {
		if time.Now().After(at) {
			due = append(due, p)
		}
	}
	c.mu.Unlock()
	if len(due) == 0 {
		return
	}
	stored, err := c.store.NextOffsets(ctx, c.cfg.Topic, due)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		for _, p := range due {
			c.failures[p]++
			c.paused[p] = time.Now().Add(backoff(c.cfg.RetryMin, c.cfg.RetryMax, c.failures[p]))
		}
		c.log.Warn("store still unavailable", "partitions", due, "err", err)
		return
	}
	set := map[int32]kgo.EpochOffset{}
	for _, p := range due {
		if _, assigned := c.next[p]; !assigned {
			delete(c.paused, p)
			continue
		}
		next := stored[p]
		set[p] = kgo.EpochOffset{Epoch: -1, Offset: next}
		c.next[p] = next
		delete(c.paused, p)
	}
	c.cl.SetOffsets(map[string]map[int32]kgo.EpochOffset{c.cfg.Topic: set})
	c.cl.ResumeFetchPartitions(map[string][]int32{c.cfg.Topic: due})
	c.log.Info("partitions resumed", "partitions", due)
}

// commit mirrors the durable offsets into the group's committed offsets.
func (c *StoreConsumer) commit(ctx context.Context) {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := c.cl.CommitMarkedOffsets(cctx); err != nil && ctx.Err() == nil {
		c.log.Debug("committing offsets", "err", err)
	}
}

func backoff(lo, hi time.Duration, failures int) time.Duration {
	d := lo
	for i := 1; i < failures && d < hi; i++ {
		d *= 2
	}
	return min(d, hi)
}

// retry calls fn until it succeeds or ctx ends, backing off between attempts.
func retry(ctx context.Context, lo, hi time.Duration, fn func() error) error {
	for n := 1; ; n++ {
		err := fn()
		if err == nil {
			return nil
		}
		t := time.NewTimer(backoff(lo, hi, n))
		select {
		case <-ctx.Done():
			t.Stop()
			return errors.Join(err, ctx.Err())
		case <-t.C:
		}
	}
}
