package archive_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/edtech-analytics/platform/libs/archive"
)

func TestFileNamesSortByOffsetAndParseBack(t *testing.T) {
	names := []string{archive.FileName(3, 900, 1000), archive.FileName(3, 5, 80), archive.FileName(3, 81, 899)}
	if names[1] != "3-00000000000000000005-00000000000000000080.parquet" {
		t.Fatalf("FileName = %s", names[1])
	}
	sorted := slices.Sorted(slices.Values(names))
	if want := []string{names[1], names[2], names[0]}; !slices.Equal(sorted, want) {
		t.Fatalf("names sort as %v, want by offset %v", sorted, want)
	}
	p, first, last, ok := archive.ParseFileName("raw/tenant_id=a/date=2026-03-02/" + names[0])
	if !ok || p != 3 || first != 900 || last != 1000 {
		t.Fatalf("ParseFileName = %d %d %d %v", p, first, last, ok)
	}
	for _, bad := range []string{"3-5-4.parquet", "3-5.parquet", "x-1-2.parquet", "3-1-2.parquet.attrs", "3-1-2"} {
		if _, _, _, ok := archive.ParseFileName(bad); ok {
			t.Errorf("ParseFileName(%q) accepted a name FileName does not make", bad)
		}
	}
}

func TestDirIsHiveStyleByUTCDay(t *testing.T) {
	at := time.Date(2026, 3, 2, 23, 30, 0, 0, time.FixedZone("PST", -8*3600)) // 2026-03-03 07:30 UTC
	if got := archive.Dir("enriched", "lake side/1", at); got != "enriched/tenant_id=lake%20side%2F1/date=2026-03-03/" {
		t.Fatalf("Dir = %s", got)
	}
}

func TestFilesLeaveOutWhatACompactedFileCovers(t *testing.T) {
	dir := archive.Dir("enriched", "lakeside", time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC))
	other := archive.Dir("enriched", "lakeside", time.Date(2026, 3, 3, 0, 0, 0, 0, time.UTC))
	b := memBucket{
		dir + archive.FileName(1, 0, 9):     nil,
		dir + archive.FileName(1, 10, 19):   nil,
		dir + archive.FileName(1, 0, 19):    nil, // compacted: covers the two above
		dir + archive.FileName(1, 20, 29):   nil,
		dir + archive.FileName(2, 5, 6):     nil, // another partition
		other + archive.FileName(1, 3, 4):   nil, // another day
		"enriched/tenant_id=lakeside/x.txt": nil,
		archive.IndexKey("enriched", 1):     nil,
	}
	files, err := archive.Files(t.Context(), b, archive.TenantPrefix("enriched", "lakeside"))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range files {
		got = append(got, f.Key)
	}
	want := []string{dir + archive.FileName(1, 0, 19), dir + archive.FileName(1, 20, 29), dir + archive.FileName(2, 5, 6),
		other + archive.FileName(1, 3, 4)}
	if !slices.Equal(got, want) {
		t.Fatalf("Files = %v\nwant %v", got, want)
	}
	if f := files[0]; f.Tenant != "lakeside" || f.Layer != "enriched" || f.Partition != 1 || f.First != 0 || f.Last != 19 ||
		!f.Day.Equal(time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("Files[0] = %+v", f)
	}
}

// memBucket lists its keys; the other operations are not used by the tests that take it.
type memBucket map[string][]byte

func (m memBucket) WriteAll(context.Context, string, []byte) error { return errors.ErrUnsupported }
func (m memBucket) ReadAll(context.Context, string) ([]byte, error) {
	return nil, errors.ErrUnsupported
}
func (m memBucket) Copy(context.Context, string, string) error { return errors.ErrUnsupported }
func (m memBucket) Delete(context.Context, string) error       { return errors.ErrUnsupported }
func (m memBucket) ListObjects(context.Context, string) ([]archive.Object, error) {
	return nil, errors.ErrUnsupported
}
func (m memBucket) List(_ context.Context, prefix string) ([]string, error) {
	var keys []string
	for k := range m {
		if strings.HasPrefix(k, prefix) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys, nil
}
