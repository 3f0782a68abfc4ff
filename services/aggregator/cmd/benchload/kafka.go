package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"time"

	"github.com/edtech-analytics/platform/libs/kafkax"
	"github.com/edtech-analytics/platform/libs/records"
	"github.com/edtech-analytics/platform/services/aggregator/internal/chstore"
	"github.com/edtech-analytics/platform/services/aggregator/internal/synth"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

// kafkaThroughput produces n synthetic enriched events of 50 districts into an in-process Kafka (4
// partitions), then runs the aggregator's consume loop and store into a fresh database and reports how
// fast it stored them (rows per second, from the consumer's start until every partition is stored).
func kafkaThroughput(ctx context.Context, addr string, n int) (err error) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.DefaultNumPartitions(4))
	if err != nil {
		return fmt.Errorf("starting kfake: %w", err)
	}
	defer cluster.Close()
	kcfg := kafkax.Config{Brokers: cluster.ListenAddrs(), TopicPrefix: "bench.", ClientID: "benchload", Partitions: 4, ReplicationFactor: 1}
	deps := kafkax.Deps{Log: slog.New(slog.DiscardHandler), Tracer: tracenoop.NewTracerProvider()}
	topic := kcfg.Topics().Enriched
	codec, err := records.NewCodec(ctx, nil, nil)
	if err != nil {
		return err
	}
	cl, err := kafkax.NewClient(kcfg, deps, "", kafkax.ProducerOptions()...)
	if err != nil {
		return err
	}
	defer cl.Close()
	if err := kafkax.EnsureTopics(ctx, cl.Client, 4, 1, []kafkax.TopicSpec{{Name: topic}}); err != nil {
		return err
	}
	evs, _ := synth.Events(1, 50, n)
	ends := map[int32]int64{}
	for i := 0; i < len(evs); i += 10_000 {
		var recs []*kgo.Record
		for j := i; j < min(i+10_000, len(evs)); j++ {
			b, err := codec.Encode(&evs[j])
			if err != nil {
				return err
			}
			recs = append(recs, &kgo.Record{Topic: topic, Key: []byte(evs[j].TenantID), Value: b})
		}
		results := cl.ProduceSync(ctx, recs...)
		if err := results.FirstErr(); err != nil {
			return err
		}
		for _, r := range results {
			ends[r.Record.Partition] = max(ends[r.Record.Partition], r.Record.Offset+1)
		}
	}
	fmt.Printf("produced %d events into %d partitions\n", n, len(ends))

	const database = "bench_kafka"
	conn, err := prepare(ctx, addr, database, true)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, conn.Close()) }()
	store, err := chstore.New(conn, codec, chstore.Config{Database: database}, chstore.Deps{})
	if err != nil {
		return err
	}
	consumer, err := kafkax.NewStoreConsumer(deps.Log, kafkax.ConsumerConfig{Group: "bench", Topic: topic}, store, nil)
	if err != nil {
		return err
	}
	member, err := kafkax.NewGroupConsumer(kcfg, deps, "bench", topic, kafkax.Batching{}, consumer.Rebalance())
	if err != nil {
		return err
	}
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- consumer.Run(cctx, member) }()
	parts := []int32{0, 1, 2, 3}
	for {
		next, err := store.NextOffsets(ctx, topic, parts)
		if err == nil && maps.Equal(next, ends) {
			break
		}
		if ctx.Err() != nil {
			cancel()
			return ctx.Err()
		}
		time.Sleep(50 * time.Millisecond)
	}
	elapsed := time.Since(start)
	cancel()
	if err := <-done; err != nil {
		return err
	}
	fmt.Printf("aggregator stored %d events in %.1f s: %.0f rows/s (4 partitions, batches of up to 10,000 records)\n",
		n, elapsed.Seconds(), float64(n)/elapsed.Seconds())
	return nil
}
