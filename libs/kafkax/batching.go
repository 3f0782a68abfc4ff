package kafkax

import (
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/edtech-analytics/platform/libs/conf"
)

// Batching makes a store consumer's fetches wait at the broker until MinBytes of records are there or
// MaxWait has passed (Kafka's fetch.min.bytes and fetch.max.wait.ms). A consumer that keeps up then writes
// fewer, bigger batches: a ClickHouse insert feeds every materialized view and makes a part in each table,
// and an archive file costs a Parquet footer and an object write, whatever their size. A consumer that is
// behind gets full fetches at once, so the wait only ever adds up to MaxWait of freshness.
type Batching struct {
	MinBytes int
	MaxWait  time.Duration
}

// RegisterFlags binds b to <prefix>fetch.min-bytes and <prefix>fetch.max-wait, with the environment
// variables <envPrefix>FETCH_MIN_BYTES and <envPrefix>FETCH_MAX_WAIT.
func (b *Batching) RegisterFlags(fs *flag.FlagSet, prefix, envPrefix string, minBytes int, maxWait time.Duration) {
	conf.Int(fs, &b.MinBytes, prefix+"fetch.min-bytes", envPrefix+"FETCH_MIN_BYTES", minBytes,
		"bytes of records a fetch waits for at the broker (up to the fetch max wait); 1 returns as soon as there is any")
	conf.Duration(fs, &b.MaxWait, prefix+"fetch.max-wait", envPrefix+"FETCH_MAX_WAIT", maxWait,
		"longest a fetch waits at the broker for its minimum bytes")
}

// Validate reports settings the client would refuse or that would stall a consumer.
func (b Batching) Validate(prefix string) error {
	var errs []error
	if b.MinBytes < 1 || b.MinBytes > 64<<20 {
		errs = append(errs, fmt.Errorf("%sfetch.min-bytes: %d is not in [1, 64 MiB]", prefix, b.MinBytes))
	}
	if b.MaxWait < 10*time.Millisecond || b.MaxWait > 30*time.Second {
		errs = append(errs, fmt.Errorf("%sfetch.max-wait: %s is not in [10ms, 30s]", prefix, b.MaxWait))
	}
	return errors.Join(errs...)
}

// Options are the client options of b; a zero field keeps franz-go's default. A partition may return
// MinBytes in one fetch (franz-go's default is 1 MiB a partition), so a district-heavy partition alone
// can fill a fetch.
func (b Batching) Options() []kgo.Opt {
	var opts []kgo.Opt
	if b.MinBytes > 1 {
		opts = append(opts, kgo.FetchMinBytes(int32(b.MinBytes)), kgo.FetchMaxPartitionBytes(int32(max(b.MinBytes, 1<<20))))
	}
	if b.MaxWait > 0 {
		opts = append(opts, kgo.FetchMaxWait(b.MaxWait))
	}
	return opts
}
