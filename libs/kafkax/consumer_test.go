package kafkax_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/edtech-analytics/platform/libs/kafkax"
	"github.com/edtech-analytics/platform/libs/testenv/kafkatest"
	"github.com/twmb/franz-go/pkg/kgo"
)

// memStore is a Store that remembers every offset it was given, fails on demand, and checks that no
// offset is ever written twice or out of order.
type memStore struct {
	mu      sync.Mutex
	next    map[int32]int64
	written map[int32][]int64
	down    bool
	calls   int
	refused int // calls refused while down
	failN   int // fail every failN-th write (0: never)
	dup     error
}

func newMemStore() *memStore {
	return &memStore{next: map[int32]int64{}, written: map[int32][]int64{}}
}

func (s *memStore) NextOffsets(_ context.Context, _ string, parts []int32) (map[int32]int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down {
		s.refused++
		return nil, errors.New("store down")
	}
	out := map[int32]int64{}
	for _, p := range parts {
		if n, ok := s.next[p]; ok {
			out[p] = n
		}
	}
	return out, nil
}

func (s *memStore) Write(_ context.Context, _ string, p int32, recs []*kgo.Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if s.down {
		s.refused++
	}
	if s.down || (s.failN > 0 && s.calls%s.failN == 0) {
		return errors.New("write failed")
	}
	for _, r := range recs {
		if n, ok := s.next[p]; ok && r.Offset < n && s.dup == nil {
			s.dup = fmt.Errorf("partition %d offset %d written again (next %d)", p, r.Offset, n)
		}
		s.written[p] = append(s.written[p], r.Offset)
		s.next[p] = r.Offset + 1
	}
	return nil
}

func (s *memStore) total() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, w := range s.written {
		n += len(w)
	}
	return n
}

func (s *memStore) setDown(v bool) { s.mu.Lock(); s.down = v; s.mu.Unlock() }

// refusals returns how many calls were refused while the store was down.
func (s *memStore) refusals() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.refused
}

func produce(t *testing.T, cfg kafkax.Config, topic string, n int) {
	t.Helper()
	cl, err := kafkax.NewClient(cfg, kafkax.Deps{}, "", kafkax.ProducerOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	recs := make([]*kgo.Record, n)
	for i := range recs {
		recs[i] = &kgo.Record{Topic: topic, Key: []byte(fmt.Sprintf("district-%d", i%17)), Value: []byte{byte(i)}}
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// createTopic creates topic with the given partitions.
func createTopic(t *testing.T, cfg kafkax.Config, topic string, partitions int) {
	t.Helper()
	admin, err := kafkax.NewClient(cfg, kafkax.Deps{}, "")
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if err := kafkax.EnsureTopics(context.Background(), admin.Client, partitions, 1, []kafkax.TopicSpec{{Name: topic}}); err != nil {
		t.Fatal(err)
	}
}

// startConsumer runs a store consumer of group g on topic into store until the returned function stops
// it; adjust changes its configuration.
func startConsumer(t *testing.T, cfg kafkax.Config, topic string, store kafkax.Store, adjust ...func(*kafkax.ConsumerConfig)) context.CancelFunc {
	t.Helper()
	deps := kafkax.Deps{Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	ccfg := kafkax.ConsumerConfig{Group: "g", Topic: topic, MaxPollRecords: 97, RetryMin: 10 * time.Millisecond, RetryMax: 50 * time.Millisecond}
	for _, a := range adjust {
		a(&ccfg)
	}
	c, err := kafkax.NewStoreConsumer(deps.Log, ccfg, store, nil)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kafkax.NewGroupConsumer(cfg, deps, "g", topic, kafkax.Batching{}, c.Rebalance(), kafkatest.GroupOpts()...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(ctx, cl) }()
	return func() { cancel(); <-done }
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestStoreConsumerExactlyOnceAcrossRestartsFailuresAndRebalances(t *testing.T) {
	_, cfg := kafkatest.New(t)
	topic := cfg.Topics().Enriched
	createTopic(t, cfg, topic, 4)
	const n = 3000
	produce(t, cfg, topic, n/2)

	store := newMemStore()
	store.failN = 5 // every fifth write fails: partitions pause, re-seek and resume
	stopA := startConsumer(t, cfg, topic, store)
	waitFor(t, "first consumer to write some records", func() bool { return store.total() > 200 })

	stopB := startConsumer(t, cfg, topic, store) // a second member: the group rebalances mid-stream
	produce(t, cfg, topic, n/2)
	waitFor(t, "half the records", func() bool { return store.total() >= n/2 })
	stopA() // the first member stops mid-stream; its partitions move to the second

	store.setDown(true) // the store goes away while records arrive; nothing may be skipped
	produce(t, cfg, topic, 17)
	waitFor(t, "the consumer to meet the store down, and retry", func() bool { return store.refusals() >= 3 })
	store.setDown(false)
	waitFor(t, "every record", func() bool { return store.total() >= n+17 })
	stopB()

	// A restart resumes from the store: it rewrites nothing, so the next record of each district, which
	// it writes, comes after what was stored.
	stopC := startConsumer(t, cfg, topic, store)
	produce(t, cfg, topic, 17)
	waitFor(t, "the restarted consumer to write the new records", func() bool { return store.total() >= n+34 })
	stopC()

	if store.dup != nil {
		t.Fatal(store.dup)
	}
	if got := store.total(); got != n+34 {
		t.Fatalf("stored %d records, want %d", got, n+34)
	}
	for p, offs := range store.written {
		for i := 1; i < len(offs); i++ {
			if offs[i] != offs[i-1]+1 {
				t.Fatalf("partition %d: offset %d follows %d", p, offs[i], offs[i-1])
			}
		}
	}
}

// releasingStore is a memStore that records the partitions it is told the consumer gave up.
type releasingStore struct {
	*memStore
	released []int32
}

func (s *releasingStore) Release(_ context.Context, _ string, parts []int32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.released = append(s.released, parts...)
}

// TestReleaserHearsOfPartitionsGivenUp proves a store that is a Releaser is told of every partition the
// consumer gives up when it leaves the group.
func TestReleaserHearsOfPartitionsGivenUp(t *testing.T) {
	_, cfg := kafkatest.New(t)
	topic := cfg.Topics().Enriched
	createTopic(t, cfg, topic, 4)
	produce(t, cfg, topic, 400)
	store := &releasingStore{memStore: newMemStore()}
	stop := startConsumer(t, cfg, topic, store)
	waitFor(t, "every record", func() bool { return store.total() >= 400 })
	stop()
	store.mu.Lock()
	defer store.mu.Unlock()
	slices.Sort(store.released)
	if !slices.Equal(store.released, []int32{0, 1, 2, 3}) {
		t.Fatalf("released %v, want every partition once", store.released)
	}
}
