package archive_test

import (
	"errors"
	"io"
	"testing"
	"time"

	"github.com/edtech-analytics/platform/libs/archive"
	"github.com/edtech-analytics/platform/libs/archive/archivetest"
	"github.com/edtech-analytics/platform/libs/records"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestReaderReturnsATenantsRecordsInOffsetOrder archives the enriched records of two partitions in
// batches (each batch makes a file per tenant and day, so one partition's files of different days
// interleave in offsets), then reads one tenant back: every record of the tenant once, each partition's
// in offset order and all before the next partition's, up to the limit given.
func TestReaderReturnsATenantsRecordsInOffsetOrder(t *testing.T) {
	ctx := t.Context()
	codec, err := records.NewCodec(ctx, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	bucket := archivetest.OpenDir(t, t.TempDir())
	st := archive.New(bucket, codec, archive.EnrichedLayer(), nil)
	const tenant = "riverton"
	want := map[int32][]*kgo.Record{}
	ids := map[*kgo.Record]string{}
	for _, p := range []int32{3, 1} {
		var recs []*kgo.Record
		for i, e := range archivetest.EnrichedEvents(900) {
			e.OccurredAt = e.OccurredAt.AddDate(0, 0, (i/3)%2) // each tenant's records over two days, alternating
			v, err := codec.Encode(e)
			if err != nil {
				t.Fatal(err)
			}
			r := &kgo.Record{Partition: p, Offset: int64(i), Value: v, Key: []byte(e.TenantID)}
			recs = append(recs, r)
			if e.TenantID == tenant {
				want[p] = append(want[p], r)
				ids[r] = e.EventID
			}
		}
		for i := 0; i < len(recs); i += 250 {
			if err := st.Write(ctx, "enriched", p, recs[i:min(i+250, len(recs))]); err != nil {
				t.Fatal(err)
			}
		}
	}
	files, err := archive.Files(ctx, bucket, archive.TenantPrefix("enriched", tenant))
	if err != nil {
		t.Fatal(err)
	}
	days := map[string]bool{}
	for _, f := range files {
		days[f.Day.Format(time.DateOnly)] = true
	}
	if len(days) != 2 || len(files) != 2*4*2 {
		t.Fatalf("%d files over %d days: the test wants each batch's files to interleave", len(files), len(days))
	}
	read := func(limit map[int32]int64, n int) map[int32][]archive.Record {
		got := map[int32][]archive.Record{}
		rd := archive.NewReader(bucket, files, limit)
		var order []int32
		for {
			p, recs, err := rd.Next(ctx, n)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(order) == 0 || order[len(order)-1] != p {
				order = append(order, p)
			}
			got[p] = append(got[p], recs...)
		}
		if len(order) != len(got) {
			t.Fatalf("partitions read in the order %v: one came back after another began", order)
		}
		return got
	}
	check := func(got map[int32][]archive.Record, p int32, want []*kgo.Record) {
		t.Helper()
		if len(got[p]) != len(want) {
			t.Fatalf("partition %d: read %d records, want %d", p, len(got[p]), len(want))
		}
		for i, r := range got[p] {
			if r.Offset != want[i].Offset || string(r.Value) != string(want[i].Value) || r.Partition != p ||
				string(r.Key) != tenant || r.EventID != ids[want[i]] {
				t.Fatalf("partition %d record %d: offset %d, want %d (or other bytes)", p, i, r.Offset, want[i].Offset)
			}
		}
	}
	got := read(nil, 77)
	check(got, 1, want[1])
	check(got, 3, want[3])

	limited := read(map[int32]int64{3: 400}, 1000) // partition 1 not asked for, 3 up to offset 400
	if len(limited[1]) != 0 {
		t.Fatalf("read %d records of a partition the limit leaves out", len(limited[1]))
	}
	var upTo []*kgo.Record
	for _, r := range want[3] {
		if r.Offset <= 400 {
			upTo = append(upTo, r)
		}
	}
	check(limited, 3, upTo)
}
