package archive_test

import (
	"slices"
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
