package stream

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/edtech-analytics/platform/libs/kafkax"
	"github.com/edtech-analytics/platform/libs/records"
	"github.com/twmb/franz-go/pkg/kgo"
)

// DeadLetters returns the dead-letter function of a store consumer at stage: it sends each refused record
// to the topic dlq through producer, as a DLQRecord with the reason, the cause, where it came from, its
// original bytes and headers, and waits until the topic has it. Its key is the record's, so a district's
// dead letters stay together.
func DeadLetters(codec *records.Codec, producer *kgo.Client, dlq, stage string) kafkax.DeadLetterFunc {
	return func(ctx context.Context, r *kgo.Record, reason string, cause error) error {
		topic, part, off := r.Topic, int(r.Partition), r.Offset
		d := &records.DLQRecord{
			Reason: reason, Detail: cause.Error(), Errors: []records.FieldError{}, Stage: stage,
			SourceTopic: &topic, SourcePartition: &part, SourceOffset: &off,
			Original: r.Value, Headers: make([]records.Header, 0, len(r.Headers)),
			FailedAt: time.Now().UTC().Truncate(time.Millisecond),
		}
		if tenant, _, _ := strings.Cut(string(r.Key), "/"); tenant != "" { // tenant_id or tenant_id/shard
			d.TenantID = &tenant
		}
		for _, h := range r.Headers {
			d.Headers = append(d.Headers, records.Header{Key: h.Key, Value: h.Value})
		}
		b, err := codec.Encode(d)
		if err != nil {
			return fmt.Errorf("encoding the dead letter: %w", err)
		}
		if err := producer.ProduceSync(ctx, &kgo.Record{Topic: dlq, Key: r.Key, Value: b}).FirstErr(); err != nil {
			return fmt.Errorf("producing the dead letter: %w", err)
		}
		return nil
	}
}
