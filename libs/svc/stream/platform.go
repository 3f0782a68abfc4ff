// Package stream holds what the services that read and write Kafka share at start and run time: the
// record codec, waiting for the cluster, dead-lettering and stall reports. The process skeleton (package
// svc) stays free of Kafka and Avro, so a service that touches neither does not link them.
package stream

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/edtech-analytics/platform/libs/kafkax"
	"github.com/edtech-analytics/platform/libs/records"
	"github.com/edtech-analytics/platform/libs/svc"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"
)

// NewCodec builds the record codec: schema ids from the registry when one is configured, otherwise from
// the embedded catalog. Subjects follow the topic names (TopicNameStrategy).
func NewCodec(ctx context.Context, kcfg kafkax.Config) (*records.Codec, error) {
	var reg *sr.Client
	if kcfg.SchemaRegistryURL != "" {
		opts := []sr.ClientOpt{sr.URLs(kcfg.SchemaRegistryURL)}
		tlsCfg, err := kcfg.SchemaRegistryTLS.Config()
		if err != nil {
			return nil, fmt.Errorf("schema-registry.%w", err)
		}
		if tlsCfg != nil {
			opts = append(opts, sr.DialTLSConfig(tlsCfg))
		}
		if reg, err = sr.NewClient(opts...); err != nil {
			return nil, fmt.Errorf("creating schema registry client: %w", err)
		}
	}
	t := kcfg.Topics()
	codec, err := records.NewCodec(ctx, reg, map[records.Kind]string{
		records.KindRaw:      kafkax.Subject(t.Raw),
		records.KindEnriched: kafkax.Subject(t.Enriched),
		records.KindDLQ:      kafkax.Subject(t.DLQ),
		records.KindControl:  kafkax.Subject(t.Control),
	})
	if err != nil {
		return nil, fmt.Errorf("building record codec: %w", err)
	}
	return codec, nil
}

// WaitKafka pings the cluster until it answers, then creates the platform topics that are missing.
func WaitKafka(ctx context.Context, log *slog.Logger, cl *kgo.Client, kcfg kafkax.Config) error {
	attempt := 0
	_, err := backoff.Retry(ctx, func() (struct{}, error) {
		attempt++
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		err := kafkax.Ping(pctx, cl)
		if err == nil {
			err = kafkax.EnsureTopics(pctx, cl, kcfg.Partitions, kcfg.ReplicationFactor, kafkax.PlatformTopics(kcfg))
		}
		if err != nil {
			log.Warn("waiting for kafka", "attempt", attempt, "err", err)
		}
		return struct{}{}, err
	}, svc.WaitPolicy()...)
	if err != nil {
		return fmt.Errorf("waiting for kafka: %w", err)
	}
	return nil
}
