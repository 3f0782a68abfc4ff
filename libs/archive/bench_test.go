package archive_test

import (
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edtech-analytics/platform/libs/archive"
	"github.com/edtech-analytics/platform/libs/archive/archivetest"
	"github.com/edtech-analytics/platform/libs/records"
	"github.com/twmb/franz-go/pkg/kgo"
)

// BenchmarkArchiveWrite measures the archiver's write path into a local directory (the file driver):
// batches of 8,334 enriched records of one partition (the default poll of 100,000 records over 12
// partitions), of one day, spread over 10 or 125 districts (125: 1,500 districts on 12 partitions). Each
// batch becomes one file per district. Reports records/s, files per batch and bytes per record on disk.
func BenchmarkArchiveWrite(b *testing.B) {
	for _, tenants := range []int{10, 125} {
		b.Run(fmt.Sprintf("districts=%d", tenants), func(b *testing.B) {
			codec, err := records.NewCodec(b.Context(), nil, nil)
			if err != nil {
				b.Fatal(err)
			}
			const batch = 8_334
			day := time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC)
			var recs []*kgo.Record
			for i, e := range archivetest.EnrichedEvents(batch) {
				e.TenantID = fmt.Sprintf("district-%03d", i%tenants)
				e.OccurredAt = day.Add(time.Duration(i) * time.Second)
				v, err := codec.Encode(e)
				if err != nil {
					b.Fatal(err)
				}
				recs = append(recs, &kgo.Record{Partition: 0, Value: v, Key: []byte(e.TenantID)})
			}
			dir := b.TempDir()
			st := archive.New(archivetest.OpenDir(b, dir), codec, archive.EnrichedLayer(), nil)
			b.ResetTimer()
			for n := range b.N {
				for i, r := range recs {
					r.Offset = int64(n*batch + i)
				}
				if err := st.Write(b.Context(), "enriched", 0, recs); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			files, size := 0, int64(0)
			_ = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
				if err == nil && !d.IsDir() && strings.HasSuffix(path, ".parquet") {
					info, _ := d.Info()
					files, size = files+1, size+info.Size()
				}
				return nil
			})
			b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "records/s")
			b.ReportMetric(float64(files)/float64(b.N), "files/batch")
			b.ReportMetric(float64(size)/float64(b.N*batch), "bytes/record")
		})
	}
}
