package kafkax_test

import (
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/edtech-analytics/platform/libs/kafkax"
	"github.com/edtech-analytics/platform/libs/testenv/kafkatest"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestReadToEndWaitsForTransactionsInFlight proves where ReadToEnd's end is: records committed before the
// call are read; a transaction still open when the end is taken is waited for and read once it commits;
// aborted records are never passed on, even when their abort marker ends a partition.
func TestReadToEndWaitsForTransactionsInFlight(t *testing.T) {
	ctx := t.Context()
	_, cfg := kafkatest.New(t)
	const topic = "read-to-end"
	newClient := func(opts ...kgo.Opt) (*kgo.Client, error) {
		cl, err := kafkax.NewClient(cfg, kafkax.Deps{}, "", opts...)
		if err != nil {
			return nil, err
		}
		return cl.Client, nil
	}
	admin, err := newClient()
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if err := kafkax.EnsureTopics(ctx, admin, 2, 1, []kafkax.TopicSpec{{Name: topic}}); err != nil {
		t.Fatal(err)
	}
	txn := func(id string) *kgo.Client {
		cl, err := newClient(kgo.TransactionalID(id), kgo.RecordPartitioner(kgo.ManualPartitioner()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(cl.Close)
		return cl
	}
	produce := func(cl *kgo.Client, p int32, values ...string) {
		t.Helper()
		for _, v := range values {
			if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Partition: p, Value: []byte(v)}).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
	}
	end := func(cl *kgo.Client, commit kgo.TransactionEndTry) {
		t.Helper()
		if err := cl.EndTransaction(ctx, commit); err != nil {
			t.Fatal(err)
		}
	}
	a, b := txn("a"), txn("b")
	for _, cl := range []*kgo.Client{a, b} {
		if err := cl.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
	}
	produce(a, 0, "committed-0", "committed-1")
	end(a, kgo.TryCommit)
	if err := a.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	produce(a, 0, "aborted-0")
	produce(a, 1, "aborted-1")
	end(a, kgo.TryAbort) // partition 1 now ends with an abort marker
	produce(b, 0, "in-flight-0", "in-flight-1")

	// The open transaction commits only once the reader has its end offsets.
	var (
		once      sync.Once
		commitErr error
	)
	reader, err := kafkax.NewReader(cfg, kafkax.Deps{}, kgo.WithHooks(afterListOffsets(func() {
		once.Do(func() { commitErr = b.EndTransaction(ctx, kgo.TryCommit) })
	})))
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	var got []string
	if err := kafkax.ReadToEnd(ctx, reader.Client, topic, nil, func(r *kgo.Record) error {
		got = append(got, fmt.Sprintf("%d:%s", r.Partition, r.Value))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if commitErr != nil {
		t.Fatal(commitErr)
	}
	want := []string{"0:committed-0", "0:committed-1", "0:in-flight-0", "0:in-flight-1"}
	if !slices.Equal(got, want) {
		t.Fatalf("read %v, want %v", got, want)
	}

	// From an offset, and with nothing left to read.
	got = nil
	if err := kafkax.ReadToEnd(ctx, reader.Client, topic, map[int32]int64{0: 1, 1: 0}, func(r *kgo.Record) error {
		got = append(got, string(r.Value))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, []string{"committed-1", "in-flight-0", "in-flight-1"}) {
		t.Fatalf("read from offset 1: %v", got)
	}
	if err := kafkax.ReadToEnd(ctx, reader.Client, topic, map[int32]int64{0: 100}, func(*kgo.Record) error { return nil }); err != nil {
		t.Fatalf("nothing to read: %v", err)
	}
}

// afterListOffsets is a client hook calling fn after each ListOffsets response is read.
type afterListOffsets func()

func (f afterListOffsets) OnBrokerE2E(_ kgo.BrokerMetadata, key int16, _ kgo.BrokerE2E) {
	if key == kmsg.ListOffsets.Int16() {
		f()
	}
}

// TestReadRangeReadsExactlyTheRange reads offset ranges of one partition: inside, at the edges, past the
// end, and empty.
func TestReadRangeReadsExactlyTheRange(t *testing.T) {
	ctx := t.Context()
	_, cfg := kafkatest.New(t)
	const topic = "read-range"
	cl, err := kafkax.NewClient(cfg, kafkax.Deps{}, "", kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := kafkax.EnsureTopics(ctx, cl.Client, 2, 1, []kafkax.TopicSpec{{Name: topic}}); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		for p := range int32(2) {
			if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Partition: p, Value: fmt.Appendf(nil, "%d-%d", p, i)}).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
	}
	reader, err := kafkax.NewReader(cfg, kafkax.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	for _, tc := range []struct {
		from, through int64
		want          []string
	}{
		{3, 5, []string{"1-3", "1-4", "1-5"}},
		{0, 0, []string{"1-0"}},
		{8, 20, []string{"1-8", "1-9"}},
		{5, 4, nil},
		{10, 12, nil},
	} {
		recs, err := kafkax.ReadRange(ctx, reader.Client, topic, 1, tc.from, tc.through)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, r := range recs {
			got = append(got, string(r.Value))
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("ReadRange(%d, %d) = %v, want %v", tc.from, tc.through, got, tc.want)
		}
	}
}
