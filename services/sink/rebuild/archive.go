package rebuild

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/edtech-analytics/platform/libs/archive"
	"github.com/edtech-analytics/platform/services/sink/internal/pgstore"
	"github.com/twmb/franz-go/pkg/kgo"
)

// ErrArchiveGap: the archive ends before the Kafka topic starts on a partition, so neither holds the
// records in between.
var ErrArchiveGap = errors.New("the archive and the topic do not meet")

// fromArchive is the part of a replay read from the archive's enriched layer (ADR 0014): the district's
// own files, up to the offset the archive's index says is published on each partition; the topic is
// read from the offset after.
type fromArchive struct {
	reader *archive.Reader
	upTo   map[int32]int64 // the last offset archived of each partition, by the index
	cur    int32           // the partition being read; -1 before the first
}

// archivedUpTo reads the archive's index of each partition: the last offset it has published. A
// partition absent from the result has nothing archived.
func archivedUpTo(ctx context.Context, b archive.Bucket, parts []int32) (map[int32]int64, error) {
	out := map[int32]int64{}
	for _, p := range parts {
		v, err := b.ReadAll(ctx, archive.IndexKey("enriched", p))
		if errors.Is(err, archive.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading the archive's index of partition %d: %w", p, err)
		}
		last, err := strconv.ParseInt(strings.TrimSpace(string(v)), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("the archive's index of partition %d: %w", p, err)
		}
		out[p] = last
	}
	return out, nil
}

// openArchive plans the replay of parts from the archive: it returns the offset each partition's replay
// starts at (0 for an archived partition: its files are read from the first; the topic's start for the
// others) and the reader of the district's files. A partition whose topic starts after the offset
// following its archive is a gap: ErrArchiveGap.
func openArchive(ctx context.Context, b archive.Bucket, tenant string, parts []int32, topicStarts map[int32]int64) (*fromArchive, map[int32]int64, error) {
	upTo, err := archivedUpTo(ctx, b, parts)
	if err != nil {
		return nil, nil, err
	}
	starts := map[int32]int64{}
	var gaps []string
	for _, p := range parts {
		last, ok := upTo[p]
		if !ok {
			starts[p] = topicStarts[p]
			continue
		}
		starts[p] = 0
		if topicStarts[p] > last+1 {
			gaps = append(gaps, fmt.Sprintf("partition %d: archived up to offset %d, the topic starts at %d", p, last, topicStarts[p]))
		}
	}
	if len(gaps) > 0 {
		return nil, nil, fmt.Errorf("%w: %s (is the archiver running? its lag alert says how far behind it is)", ErrArchiveGap, strings.Join(gaps, "; "))
	}
	files, err := archive.Files(ctx, b, archive.TenantPrefix("enriched", tenant))
	if err != nil {
		return nil, nil, fmt.Errorf("listing the archive of district %s: %w", tenant, err)
	}
	return &fromArchive{reader: archive.NewReader(b, files, upTo), upTo: upTo, cur: -1}, starts, nil
}

// archived reports whether the replay still reads partition p from the archive.
func (r *run) archived(p int32) bool {
	if r.arch == nil {
		return false
	}
	_, ok := r.arch.upTo[p]
	return ok
}

// pollArchive reads the next records of the district from the archive, as poll reads them from the
// topic. When a partition's files are read to the end, it is fetched from the topic from the offset after
// its archive; when all are, the archive is done with.
func (r *run) pollArchive(ctx context.Context) error {
	p, recs, err := r.arch.reader.Next(ctx, r.cfg.BatchRecords)
	if errors.Is(err, io.EOF) {
		r.endArchive(-1)
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading the archive: %w", err)
	}
	r.endArchive(p)
	st := r.parts[p]
	krecs := make([]*kgo.Record, len(recs))
	for i, rec := range recs {
		krecs[i] = &kgo.Record{Key: r.key, Topic: r.topic, Partition: p, Offset: rec.Offset, Value: rec.Value}
	}
	decoded, err := pgstore.Decode(ctx, r.codec, r.cfg.Keys, r.cfg.Log, krecs)
	if err != nil {
		return err
	}
	for _, d := range decoded {
		r.seen[recordType(d)]++
	}
	r.report.Scanned += int64(len(recs))
	r.report.FromArchive += int64(len(recs))
	st.pending = append(st.pending, decoded...)
	st.fetched = recs[len(recs)-1].Offset + 1
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
		r.arch = nil
	}
	r.resume()
}
