package kafkax_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edtech-analytics/platform/libs/kafkax"
	"github.com/edtech-analytics/platform/libs/testenv/kafkatest"
	"github.com/twmb/franz-go/pkg/kgo"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// poisonStore refuses, atomically, every batch holding a record whose value starts with "P" (naming its
// offset, as a decode error can) or "Q" (without, as a database's refusal of one row of a batch does).
type poisonStore struct {
	mu       sync.Mutex
	next     map[int32]int64
	values   map[string]int // stored values, with how often
	standIns int
	dlq      map[string]int // dead-lettered values, with how often
	dlqDown  bool           // dead-letter calls fail
}

func (s *poisonStore) NextOffsets(_ context.Context, _ string, parts []int32) (map[int32]int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[int32]int64{}
	for _, p := range parts {
		if n, ok := s.next[p]; ok {
			out[p] = n
		}
	}
	return out, nil
}

func (s *poisonStore) Write(_ context.Context, _ string, p int32, recs []*kgo.Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range recs {
		switch v := string(r.Value); {
		case kafkax.DeadLettered(r):
		case strings.HasPrefix(v, "P"):
			return kafkax.Poison(r.Offset, "invalid_field", errors.New("bad value "+v))
		case strings.HasPrefix(v, "Q"):
			return kafkax.Poison(-1, "store_refused", errors.New("a row of the batch was refused"))
		}
	}
	for _, r := range recs {
		if r.Offset < s.next[p] {
			continue // stored before
		}
		if kafkax.DeadLettered(r) {
			s.standIns++
		} else {
			s.values[string(r.Value)]++
		}
		s.next[p] = r.Offset + 1
	}
	return nil
}

func (s *poisonStore) deadLetter(_ context.Context, r *kgo.Record, reason string, cause error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dlqDown {
		return errors.New("dlq unreachable")
	}
	if reason == "" || cause == nil {
		return fmt.Errorf("dead letter of %q without a reason", r.Value)
	}
	s.dlq[string(r.Value)]++
	return nil
}

func (s *poisonStore) stored() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.values) + s.standIns
}

// TestPoisonRecordsAreDeadLetteredAndThePartitionMovesOn: refused records of both kinds, one district's
// among several on the same partitions, are dead-lettered once each; every other record is stored
// exactly once, and a failing dead-letter topic stalls only until it answers again.
func TestPoisonRecordsAreDeadLetteredAndThePartitionMovesOn(t *testing.T) {
	_, cfg := kafkatest.New(t)
	topic := cfg.Topics().Enriched
	cl, err := kafkax.NewClient(cfg, kafkax.Deps{}, "", kafkax.ProducerOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := kafkax.EnsureTopics(t.Context(), cl.Client, 4, 1, []kafkax.TopicSpec{{Name: topic}}); err != nil {
		t.Fatal(err)
	}
	var recs []*kgo.Record
	var good, poison []string
	for i := range 600 {
		v := fmt.Sprintf("ok-%d", i)
		switch i % 100 {
		case 37:
			v = fmt.Sprintf("P-%d", i)
		case 71:
			v = fmt.Sprintf("Q-%d", i)
		}
		if v[0] == 'o' {
			good = append(good, v)
		} else {
			poison = append(poison, v)
		}
		recs = append(recs, &kgo.Record{Topic: topic, Key: []byte(fmt.Sprintf("district-%d", i%5)), Value: []byte(v)})
	}
	if err := cl.ProduceSync(t.Context(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}

	store := &poisonStore{next: map[int32]int64{}, values: map[string]int{}, dlq: map[string]int{}, dlqDown: true}
	reader := sdkmetric.NewManualReader()
	deps := kafkax.Deps{Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	c, err := kafkax.NewStoreConsumer(deps.Log, kafkax.ConsumerConfig{
		Group: "g", Topic: topic, MaxPollRecords: 250, RetryMin: 10 * time.Millisecond, RetryMax: 50 * time.Millisecond,
		DeadLetter: store.deadLetter, Meter: sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)),
	}, store, nil)
	if err != nil {
		t.Fatal(err)
	}
	gc, err := kafkax.NewGroupConsumer(cfg, deps, "g", topic, kafkax.Batching{}, c.Rebalance(), kafkatest.GroupOpts()...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(ctx, gc) }()
	// While the dead-letter topic cannot be written, the partitions with a refused record wait, and say so.
	var stalls []kafkax.Stall
	waitFor(t, "a stalled partition", func() bool { stalls = c.Stalls(); return len(stalls) > 0 })
	if s := stalls[0]; s.Failures < 1 || !strings.Contains(s.Err, "dead-lettering the record at offset") {
		t.Errorf("stall = %+v", s)
	}
	store.mu.Lock()
	store.dlqDown = false
	store.mu.Unlock()
	waitFor(t, "every record stored or dead-lettered", func() bool { return store.stored() == len(recs) })
	cancel()
	<-done

	store.mu.Lock()
	defer store.mu.Unlock()
	for _, v := range good {
		if store.values[v] != 1 {
			t.Errorf("%s stored %d times", v, store.values[v])
		}
	}
	for _, v := range poison {
		if store.dlq[v] != 1 || store.values[v] != 0 {
			t.Errorf("%s dead-lettered %d times, stored %d times", v, store.dlq[v], store.values[v])
		}
	}
	if store.standIns != len(poison) {
		t.Errorf("%d stand-ins for %d poison records", store.standIns, len(poison))
	}
	if s := c.Stalls(); len(s) != 0 {
		t.Errorf("stalls left after catching up: %+v", s)
	}
	// Each record sent to the dead-letter topic is counted once, by reason; the failed attempts are not.
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	counted := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if d, ok := m.Data.(metricdata.Sum[int64]); ok && m.Name == "consumer_dead_lettered" {
				for _, dp := range d.DataPoints {
					reason, _ := dp.Attributes.Value("reason")
					counted[reason.AsString()] += dp.Value
				}
			}
		}
	}
	var total int64
	for _, n := range counted {
		total += n
	}
	if total != int64(len(poison)) || len(counted) != 2 {
		t.Errorf("consumer_dead_lettered by reason %v, want %d records under 2 reasons", counted, len(poison))
	}
}
