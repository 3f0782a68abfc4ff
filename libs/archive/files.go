package archive

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"
)

// File is a published data file of the archive, as its key describes it.
type File struct {
	Key         string
	Layer       string
	Tenant      string
	Day         time.Time // UTC
	Partition   int32
	First, Last int64 // the first and last offsets it holds
}

// TenantPrefix is the prefix of every file of a tenant in a layer.
func TenantPrefix(layer, tenant string) string {
	return fmt.Sprintf("%s/tenant_id=%s/", layer, url.PathEscape(tenant))
}

// ParseKey reads a data file's key back; ok is false for any other key (indexes, temporaries, foreign
// objects).
func ParseKey(key string) (f File, ok bool) {
	elems := strings.Split(key, "/")
	if len(elems) != 4 {
		return File{}, false
	}
	tenant, found := strings.CutPrefix(elems[1], "tenant_id=")
	date, found2 := strings.CutPrefix(elems[2], "date=")
	if !found || !found2 {
		return File{}, false
	}
	t, err := url.PathUnescape(tenant)
	if err != nil {
		return File{}, false
	}
	day, err := time.Parse(time.DateOnly, date)
	if err != nil {
		return File{}, false
	}
	p, first, last, ok := ParseFileName(elems[3])
	if !ok {
		return File{}, false
	}
	return File{Key: key, Layer: elems[0], Tenant: t, Day: day, Partition: p, First: first, Last: last}, true
}

// Files lists the data files under prefix (TenantPrefix, or a layer's "raw/"), ordered by directory,
// partition and first offset. A file whose offsets another file of the same partition and directory
// covers is left out: compaction publishes the merged file before it deletes the files merged, so for
// a moment (or after a crash, until the next compaction) both exist, and the merged one holds every row.
func Files(ctx context.Context, b Bucket, prefix string) ([]File, error) {
	keys, err := b.List(ctx, prefix)
	if err != nil {
		return nil, err
	}
	var files []File
	for _, k := range keys {
		if f, ok := ParseKey(k); ok {
			files = append(files, f)
		}
	}
	slices.SortFunc(files, func(a, b File) int {
		return cmp.Or(strings.Compare(path.Dir(a.Key), path.Dir(b.Key)), cmp.Compare(a.Partition, b.Partition),
			cmp.Compare(a.First, b.First), cmp.Compare(b.Last, a.Last))
	})
	out := files[:0]
	for _, f := range files {
		if n := len(out); n > 0 && Covers(out[n-1], f) {
			continue
		}
		out = append(out, f)
	}
	return out, nil
}

// Covers reports whether a holds every offset of b: same directory and partition, and b's range inside
// a's.
func Covers(a, b File) bool {
	return path.Dir(a.Key) == path.Dir(b.Key) && a.Partition == b.Partition && a.First <= b.First && b.Last <= a.Last
}

// Published reads the index of each of parts in layer: the last offset the archive has published of the
// partition. A partition absent from the result has nothing archived.
func Published(ctx context.Context, b Bucket, layer string, parts []int32) (map[int32]int64, error) {
	out := map[int32]int64{}
	for _, p := range parts {
		v, err := b.ReadAll(ctx, IndexKey(layer, p))
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading the archive's index of %s partition %d: %w", layer, p, err)
		}
		last, err := strconv.ParseInt(strings.TrimSpace(string(v)), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("the archive's index of %s partition %d: %w", layer, p, err)
		}
		out[p] = last
	}
	return out, nil
}

// ErrGap: the archive ends before the topic starts on a partition, so neither holds the records between.
var ErrGap = errors.New("the archive and the topic do not meet")

// History is where a tenant's history of a layer is, for a replay of partitions: its files, and the last
// offset the archive holds of each partition (its index). A partition absent from UpTo has nothing
// archived; the replay reads its topic alone.
type History struct {
	UpTo  map[int32]int64
	Files []File
}

// TenantHistory reads the archive's index of each of parts in layer and lists the tenant's files, for a
// replay that reads them and then the topic from the offset after each partition's index. topicStarts
// is where each partition of the topic starts now: a partition archived only up to before it is a gap
// (ErrGap, naming both offsets).
func TenantHistory(ctx context.Context, b Bucket, layer, tenant string, parts []int32, topicStarts map[int32]int64) (History, error) {
	upTo, err := Published(ctx, b, layer, parts)
	if err != nil {
		return History{}, err
	}
	var gaps []string
	for _, p := range parts {
		if last, ok := upTo[p]; ok && topicStarts[p] > last+1 {
			gaps = append(gaps, fmt.Sprintf("partition %d: archived up to offset %d, the topic starts at %d", p, last, topicStarts[p]))
		}
	}
	if len(gaps) > 0 {
		return History{}, fmt.Errorf("%w: %s (is the archiver running? its lag alert says how far behind it is)", ErrGap, strings.Join(gaps, "; "))
	}
	files, err := Files(ctx, b, TenantPrefix(layer, tenant))
	if err != nil {
		return History{}, fmt.Errorf("listing the archive of %s: %w", tenant, err)
	}
	return History{UpTo: upTo, Files: files}, nil
}
