package rebuild

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/edtech-analytics/platform/libs/archive"
	"github.com/edtech-analytics/platform/services/sink/internal/pgstore"
	"github.com/twmb/franz-go/pkg/kgo"
)

// ErrArchiveGap: the archive ends before the Kafka topic starts on a partition, so neither holds the
// records in between.
var ErrArchiveGap = archive.ErrGap

// fromArchive is the part of a replay read from the archive's enriched layer (ADR 0014): the district's
// own files, up to the offset the archive's index says is published on each partition; the topic is
// read from the offset after.
type fromArchive struct {
	reader *archive.Reader
	upTo   map[int32]int64 // the last offset archived of each partition, by the index
	// batches carries what a goroutine read and decoded ahead, so that reading the files and decoding
	// run beside the transactions that apply what came before.
	batches chan archiveBatch
	stop    context.CancelFunc
	done    chan struct{}
}

// archiveBatch is the next records of a partition read from the archive and decoded; eof: no more.
type archiveBatch struct {
	p       int32
	decoded []pgstore.Record
	last    int64
	err     error
	eof     bool
}

// start reads and decodes batches of n records ahead, one batch in hand beside the one being applied.
func (a *fromArchive) start(ctx context.Context, r *run, n int) {
	ctx, a.stop = context.WithCancel(ctx)
	a.batches, a.done = make(chan archiveBatch, 1), make(chan struct{})
	go func() {
		defer close(a.done)
		for {
			b := a.read(ctx, r, n)
			select {
			case a.batches <- b:
			case <-ctx.Done():
				return
			}
			if b.eof || b.err != nil {
				return
			}
		}
	}()
}

func (a *fromArchive) read(ctx context.Context, r *run, n int) archiveBatch {
	p, recs, err := a.reader.Next(ctx, n)
	if errors.Is(err, io.EOF) {
		return archiveBatch{eof: true}
	}
	if err != nil {
		return archiveBatch{err: fmt.Errorf("reading the archive: %w", err)}
	}
	krecs := make([]*kgo.Record, len(recs))
	for i, rec := range recs {
		krecs[i] = &kgo.Record{Key: r.key, Topic: r.topic, Partition: p, Offset: rec.Offset, Value: rec.Value}
	}
	decoded, err := pgstore.Decode(ctx, r.codec, r.cfg.Keys, r.cfg.Log, krecs)
	return archiveBatch{p: p, decoded: decoded, last: recs[len(recs)-1].Offset, err: err}
}

// close stops the reading goroutine and waits for it.
func (a *fromArchive) close() {
	if a.stop != nil {
		a.stop()
		<-a.done
	}
}

// openArchive plans the replay of parts from the archive: it returns the offset each partition's replay
// starts at (0 for an archived partition: its files are read from the first; the topic's start for the
// others) and the reader of the district's files. A partition whose topic starts after the offset
// following its archive is a gap: ErrArchiveGap.
func openArchive(ctx context.Context, b archive.Bucket, tenant string, parts []int32, topicStarts map[int32]int64) (*fromArchive, map[int32]int64, error) {
	h, err := archive.TenantHistory(ctx, b, "enriched", tenant, parts, topicStarts)
	if err != nil {
		return nil, nil, err
	}
	starts := map[int32]int64{}
	for _, p := range parts {
		if _, ok := h.UpTo[p]; ok {
			starts[p] = 0
		} else {
			starts[p] = topicStarts[p]
		}
	}
	return &fromArchive{reader: archive.NewReader(b, h.Files, h.UpTo), upTo: h.UpTo}, starts, nil
}

// archived reports whether the replay still reads partition p from the archive.
func (r *run) archived(p int32) bool {
	if r.arch == nil {
		return false
	}
	_, ok := r.arch.upTo[p]
	return ok
}

// pollArchive takes the next records of the district read from the archive, as poll takes them from
// the topic. When a partition's files are read to the end, it is fetched from the topic from the offset
// after its archive; when all are, the archive is done with.
func (r *run) pollArchive(ctx context.Context) error {
	if r.arch.batches == nil {
		r.arch.start(ctx, r, r.cfg.BatchRecords)
	}
	var b archiveBatch
	select {
	case b = <-r.arch.batches:
	case <-ctx.Done():
		return ctx.Err()
	}
	switch {
	case b.err != nil:
		return b.err
	case b.eof:
		r.endArchive(-1)
		return nil
	}
	r.endArchive(b.p)
	st := r.parts[b.p]
	for _, d := range b.decoded {
		r.seen[recordType(d)]++
	}
	r.report.Scanned += int64(len(b.decoded))
	r.report.FromArchive += int64(len(b.decoded))
	st.pending = append(st.pending, b.decoded...)
	st.fetched = b.last + 1
	r.resume()
	return nil
}

// endArchive ends the archive's part of every partition read before p (p < 0: of all): each is caught up
// to the offset after its archive and fetched from the topic from there.
func (r *run) endArchive(p int32) {
	consume := map[int32]kgo.Offset{}
	for q, last := range r.arch.upTo {
		if p >= 0 && q >= p {
			continue
		}
		st := r.parts[q]
		st.fetched = max(st.fetched, last+1)
		consume[q] = kgo.NewOffset().At(last + 1)
		delete(r.arch.upTo, q)
	}
	if len(consume) > 0 {
		r.cl.AddConsumePartitions(map[string]map[int32]kgo.Offset{r.topic: consume})
	}
	if p < 0 {
		r.arch.close()
		r.arch = nil
	}
	r.resume()
}
