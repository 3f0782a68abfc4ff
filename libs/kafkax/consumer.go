package kafkax

import (
	"context"
	"errors"
	"fmt"
	"github.com/cenkalti/backoff/v5"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
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
	// atomic unit. It returns only when the records are durable. A record the store refuses for its content,
	// which no retry can change, is reported as a *PoisonError; any other error is taken as transient. A
	// record for which DeadLettered is true was refused before and is in the dead-letter topic: the store
	// only moves its offset past it.
	Write(ctx context.Context, topic string, partition int32, recs []*kgo.Record) error
}

// A Releaser is a Store that wants to know when the consumer gives partitions up (revoked, lost, or the
// consumer leaving the group), for example to record what it knows of its last write for the next owner.
type Releaser interface {
	Release(ctx context.Context, topic string, partitions []int32)
}

// PoisonError is a store's refusal of a record for its content (a value the database rejects, a record
// that does not decode): writing it again can never succeed, so the consumer dead-letters it and moves on.
type PoisonError struct {
	Offset int64  // the refused record's offset, or -1 when the store cannot tell which of the batch
	Reason string // the dead-letter reason (records.Reason*)
	Err    error
}

func (e *PoisonError) Error() string {
	if e.Offset < 0 {
		return fmt.Sprintf("a record refused (%s): %v", e.Reason, e.Err)
	}
	return fmt.Sprintf("record at offset %d refused (%s): %v", e.Offset, e.Reason, e.Err)
}

func (e *PoisonError) Unwrap() error { return e.Err }

// Poison wraps err as the refusal of the record at offset (-1: unknown) for reason.
func Poison(offset int64, reason string, err error) error {
	return &PoisonError{Offset: offset, Reason: reason, Err: err}
}

// DeadLetterFunc sends a refused record to the dead-letter topic with the reason, returning once it is
// durable there. A crash after it and before the store moves past the record sends it again, with the
// same source topic, partition and offset, by which readers of the topic recognise the repeat.
type DeadLetterFunc func(ctx context.Context, r *kgo.Record, reason string, cause error) error

// headerDeadLettered marks the stand-in the consumer writes in place of a dead-lettered record.
const headerDeadLettered = "edtech-dead-lettered"

// DeadLettered reports whether r stands in for a record already sent to the dead-letter topic: a store
// stores nothing of it and only moves its offset past it.
func DeadLettered(r *kgo.Record) bool {
	for _, h := range r.Headers {
		if h.Key == headerDeadLettered {
			return true
		}
	}
	return false
}

// standIn is the record written in place of a dead-lettered one: same position, no content.
func standIn(r *kgo.Record) *kgo.Record {
	return &kgo.Record{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Key: r.Key, Timestamp: r.Timestamp,
		Headers: []kgo.RecordHeader{{Key: headerDeadLettered, Value: []byte("1")}}}
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
	// DeadLetter receives the records the store refuses for their content; without it such a record is
	// retried like a transient failure, and its partition stalls.
	DeadLetter DeadLetterFunc
	// Meter, when set, gets consumer_lag_records{group,topic,partition} (records of an assigned partition
	// past the last one the store holds, as of the partition's last fetch) and
	// consumer_record_age_seconds{group,topic} (for every record the store made durable, the time since
	// the platform received its event: ReceivedAt), and with DeadLetter,
	// consumer_dead_lettered{group,topic,reason} (records sent to the dead-letter topic).
	Meter metric.MeterProvider
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
	stalls   map[int32]Stall // partitions whose last write failed
	lag      map[int32]int64 // records past next as of the partition's last fetch
	ready    func(bool)

	age        metric.Float64Histogram // nil without a meter
	ageAttrs   metric.MeasurementOption
	unregister func() error
}

// receivedHeader names the header that carries when the platform first received a record's event (the
// raw record's timestamp, in Unix milliseconds), on records derived from it.
const receivedHeader = "received-ms"

// ReceivedHeader is the header saying that a derived record's event was received at t.
func ReceivedHeader(t time.Time) kgo.RecordHeader {
	return kgo.RecordHeader{Key: receivedHeader, Value: strconv.AppendInt(nil, t.UnixMilli(), 10)}
}

// ReceivedAt is when the platform first received r's event: its received-ms header, or else r's own
// timestamp.
func ReceivedAt(r *kgo.Record) time.Time {
	for _, h := range r.Headers {
		if h.Key == receivedHeader {
			if ms, err := strconv.ParseInt(string(h.Value), 10, 64); err == nil {
				return time.UnixMilli(ms)
			}
		}
	}
	return r.Timestamp
}

// ageBuckets are the bounds of consumer_record_age_seconds: from a consumer that keeps up to one that is
// an hour behind.
var ageBuckets = []float64{0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900, 3600}

// Stall is a partition whose records wait because writing them failed.
type Stall struct {
	Partition int32     `json:"partition"`
	Since     time.Time `json:"since"`    // the first failure in a row
	Failures  int       `json:"failures"` // failures in a row
	Offset    int64     `json:"offset"`   // the first offset waiting
	Err       string    `json:"error"`    // the last failure
}

// Stalls returns the partitions whose records wait on a failed write, oldest first.
func (c *StoreConsumer) Stalls() []Stall {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]Stall, 0, len(c.stalls))
	for _, s := range c.stalls {
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b Stall) int { return a.Since.Compare(b.Since) })
	return out
}

// NewStoreConsumer builds the consumer. Its client is a NewGroupConsumer of cfg.Group and cfg.Topic with the
// consumer's Rebalance, given to Run. ready, if non-nil, is told when the consumer has joined and can
// write (true) and when it stops (false).
func NewStoreConsumer(log *slog.Logger, cfg ConsumerConfig, store Store, ready func(bool)) (*StoreConsumer, error) {
	cfg.defaults()
	if cfg.Group == "" || cfg.Topic == "" {
		return nil, errors.New("store consumer: group and topic are required")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &StoreConsumer{
		cfg: cfg, store: store, log: log.With("group", cfg.Group, "topic", cfg.Topic),
		next: map[int32]int64{}, paused: map[int32]time.Time{}, failures: map[int32]int{}, stalls: map[int32]Stall{},
		lag: map[int32]int64{}, ready: ready, unregister: func() error { return nil },
	}
	if cfg.Meter != nil {
		if err := c.instrument(cfg.Meter); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// instrument registers the consumer's lag gauge, record age histogram and, with a dead-letter function,
// the count of records it dead-lettered (consumer_dead_lettered_total in Prometheus).
func (c *StoreConsumer) instrument(mp metric.MeterProvider) error {
	m := mp.Meter("kafkax")
	var err error
	c.age, err = m.Float64Histogram("consumer_record_age_seconds", metric.WithUnit("s"), metric.WithExplicitBucketBoundaries(ageBuckets...),
		metric.WithDescription("for each record a store consumer made durable, seconds since the gateway received its event"))
	if err != nil {
		return fmt.Errorf("creating metric consumer_record_age_seconds: %w", err)
	}
	group, topic := attribute.String("group", c.cfg.Group), attribute.String("topic", c.cfg.Topic)
	c.ageAttrs = metric.WithAttributeSet(attribute.NewSet(group, topic))
	lag, err := m.Int64ObservableGauge("consumer_lag_records",
		metric.WithDescription("records of an assigned partition past the last one the store holds, as of the partition's last fetch"))
	if err != nil {
		return fmt.Errorf("creating metric consumer_lag_records: %w", err)
	}
	reg, err := m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		c.mu.Lock()
		defer c.mu.Unlock()
		for p, n := range c.lag {
			o.ObserveInt64(lag, n, metric.WithAttributes(group, topic, attribute.Int("partition", int(p))))
		}
		return nil
	}, lag)
	if err != nil {
		return fmt.Errorf("registering consumer_lag_records: %w", err)
	}
	c.unregister = reg.Unregister
	if dead := c.cfg.DeadLetter; dead != nil {
		n, err := m.Int64Counter("consumer_dead_lettered",
			metric.WithDescription("records a store refused for their content and sent to the dead-letter topic, by group, topic and reason"))
		if err != nil {
			return fmt.Errorf("creating metric consumer_dead_lettered: %w", err)
		}
		c.cfg.DeadLetter = func(ctx context.Context, r *kgo.Record, reason string, cause error) error {
			if err := dead(ctx, r, reason, cause); err != nil {
				return err
			}
			n.Add(ctx, 1, metric.WithAttributes(group, topic, attribute.String("reason", reason)))
			return nil
		}
	}
	return nil
}

// Rebalance is what the consumer's client must tell it: it resumes assigned partitions at the store's
// offsets and commits what is durable when partitions go.
func (c *StoreConsumer) Rebalance() Rebalance {
	return Rebalance{Adjust: c.adjustOffsets, Revoked: c.onRevoked}
}

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
		delete(c.stalls, p)
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
		delete(c.stalls, p)
		delete(c.lag, p) // another member's now
	}
	c.mu.Unlock()
	c.commit(ctx, cl)
	if r, ok := c.store.(Releaser); ok && len(revoked[c.cfg.Topic]) > 0 {
		r.Release(ctx, c.cfg.Topic, revoked[c.cfg.Topic])
	}
}

// Run consumes with cl until ctx is done, then commits what is durable and leaves the group (closing cl).
// cl is a NewGroupConsumer of the consumer's group and topic with its Rebalance.
func (c *StoreConsumer) Run(ctx context.Context, cl *Client) error {
	c.cl = cl
	defer func() {
		_ = c.unregister() // fails only for a callback registered elsewhere
		if c.ready != nil {
			c.ready(false)
		}
		c.commit(context.WithoutCancel(ctx), cl.Client)
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
			c.commit(ctx, cl.Client)
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
			c.writePartition(ctx, fp.Partition, recs, fp.HighWatermark)
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

func (c *StoreConsumer) writePartition(ctx context.Context, p int32, recs []*kgo.Record, highWatermark int64) {
	err := c.write(ctx, p, recs)
	if err == nil && c.age != nil {
		now := time.Now()
		for _, r := range recs {
			c.age.Record(ctx, now.Sub(ReceivedAt(r)).Seconds(), c.ageAttrs)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err == nil {
		c.next[p] = recs[len(recs)-1].Offset + 1
		if c.age != nil {
			c.lag[p] = max(0, highWatermark-c.next[p])
		}
		c.failures[p] = 0
		delete(c.stalls, p)
		c.cl.MarkCommitRecords(recs[len(recs)-1])
		return
	}
	if ctx.Err() != nil {
		return
	}
	c.failures[p]++
	wait := pauseFor(c.cfg.RetryMin, c.cfg.RetryMax, c.failures[p])
	c.paused[p] = time.Now().Add(wait)
	st, ok := c.stalls[p]
	if !ok {
		st = Stall{Partition: p, Since: time.Now()}
	}
	st.Failures, st.Offset, st.Err = c.failures[p], recs[0].Offset, err.Error()
	c.stalls[p] = st
	c.cl.PauseFetchPartitions(map[string][]int32{c.cfg.Topic: {p}})
	c.log.Warn("store write failed; partition paused", "partition", p, "records", len(recs), "retry_in", wait, "err", err)
}

// write writes recs to the store, each attempt within the write timeout, dead-lettering refused records.
func (c *StoreConsumer) write(ctx context.Context, p int32, recs []*kgo.Record) error {
	return WriteDeadLettering(ctx, timedStore{c.store, c.cfg.WriteTimeout}, c.cfg.Topic, p, recs, c.cfg.DeadLetter, c.log)
}

// timedStore bounds each Write of a store.
type timedStore struct {
	Store
	timeout time.Duration
}

func (s timedStore) Write(ctx context.Context, topic string, p int32, recs []*kgo.Record) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	return s.Store.Write(ctx, topic, p, recs)
}

// WriteDeadLettering writes recs, records of one partition in offset order, to the store. A record the
// store refuses for its content is dead-lettered through dead and a stand-in written in its place, and
// the records around it are written as before: the partition moves past it once (a repeat after a crash
// between the two is recognisable in the dead-letter topic by its source offset). When the store cannot
// tell which record it refused, the batch is halved until it can. Without dead, a refusal is returned
// like any other error. The store consumer writes through it; so can a test of a store.
func WriteDeadLettering(ctx context.Context, store Store, topic string, p int32, recs []*kgo.Record, dead DeadLetterFunc, log *slog.Logger) error {
	if len(recs) == 0 {
		return nil
	}
	err := store.Write(ctx, topic, p, recs)
	var pe *PoisonError
	if err == nil || dead == nil || !errors.As(err, &pe) {
		return err
	}
	again := func(recs []*kgo.Record) error { return WriteDeadLettering(ctx, store, topic, p, recs, dead, log) }
	i := slices.IndexFunc(recs, func(r *kgo.Record) bool { return r.Offset == pe.Offset })
	if i < 0 && len(recs) == 1 {
		i = 0
	}
	if i < 0 {
		if pe.Offset >= 0 { // not a record of this batch: the store is confused, not the record
			return err
		}
		mid := len(recs) / 2
		if err := again(recs[:mid]); err != nil {
			return err
		}
		return again(recs[mid:])
	}
	if DeadLettered(recs[i]) {
		return err // a stand-in refused: never dead-letter it
	}
	if err := again(recs[:i]); err != nil {
		return err
	}
	if err := dead(ctx, recs[i], pe.Reason, pe.Err); err != nil {
		return fmt.Errorf("dead-lettering the record at offset %d: %w", recs[i].Offset, err)
	}
	if log != nil {
		log.Warn("record refused by the store; dead-lettered", "topic", topic, "partition", p, "offset", recs[i].Offset,
			"reason", pe.Reason, "err", pe.Err)
	}
	return again(append([]*kgo.Record{standIn(recs[i])}, recs[i+1:]...))
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
			c.paused[p] = time.Now().Add(pauseFor(c.cfg.RetryMin, c.cfg.RetryMax, c.failures[p]))
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
func (c *StoreConsumer) commit(ctx context.Context, cl *kgo.Client) {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := cl.CommitMarkedOffsets(cctx); err != nil && ctx.Err() == nil {
		c.log.Debug("committing offsets", "err", err)
	}
}

func pauseFor(lo, hi time.Duration, failures int) time.Duration {
	d := lo
	for i := 1; i < failures && d < hi; i++ {
		d *= 2
	}
	return min(d, hi)
}

// retry calls fn until it succeeds or ctx ends, backing off exponentially from lo to hi between attempts.
func retry(ctx context.Context, lo, hi time.Duration, fn func() error) error {
	_, err := backoff.Retry(ctx, func() (struct{}, error) { return struct{}{}, fn() },
		backoff.WithBackOff(&backoff.ExponentialBackOff{InitialInterval: lo, RandomizationFactor: 0.2, Multiplier: 2, MaxInterval: hi}),
		backoff.WithMaxElapsedTime(0))
	return err
}
