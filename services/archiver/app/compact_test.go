package app

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/edtech-analytics/platform/libs/archive"
	"github.com/edtech-analytics/platform/libs/archive/archivetest"
	"github.com/edtech-analytics/platform/libs/records"
	"github.com/twmb/franz-go/pkg/kgo"
	"gocloud.dev/blob/fileblob"
)

// TestCompactEveryTick archives small batches, then gives the compaction loop two ticks (the second is
// taken only once the first run is over) and checks that the closed days were merged, every record still
// there once, and that a layer whose compaction fails is logged and does not stop the other.
func TestCompactEveryTick(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	bb, err := fileblob.OpenBucket(dir, archive.FileOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := bb.Close(); err != nil {
			t.Error(err)
		}
	}()
	b := archive.Blob{B: bb}
	codec, err := records.NewCodec(ctx, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	const n = 300
	var recs []*kgo.Record
	for i, e := range archivetest.RawEvents(n) {
		v, err := codec.Encode(e)
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, &kgo.Record{Offset: int64(i), Value: v})
	}
	st := archive.New(b, codec, archive.RawLayer(), nil)
	for off := 0; off < n; off += 10 {
		if err := st.Write(ctx, "raw", 0, recs[off:off+10]); err != nil {
			t.Fatal(err)
		}
	}
	before := archivetest.ReadLayer(t, dir, "raw", archivetest.Raw)

	var logs bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	raw := archive.NewCompactor(b, archive.RawLayer(), archive.CompactOptions{Grace: time.Hour}, nil)
	failing := func(context.Context, time.Time) (archive.CompactStats, error) {
		return archive.CompactStats{}, errors.New("boom")
	}
	ticks := make(chan time.Time)
	lctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- compactEvery(lctx, log, ticks, []layerCompactor{{"enriched", failing}, {"raw", raw.Run}})
	}()
	now := archivetest.Day.Add(10 * 24 * time.Hour)
	ticks <- now
	ticks <- now // taken once the first run is over
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	after := archivetest.ReadLayer(t, dir, "raw", archivetest.Raw)
	if len(after) != 3 || len(before) <= 3 { // a file per tenant (each tenant's events are of one day)
		t.Fatalf("%d files before, %d after; want 3 after", len(before), len(after))
	}
	rows := 0
	for _, f := range after {
		rows += len(f.Rows)
	}
	if rows != n {
		t.Fatalf("%d rows after compaction, want %d", rows, n)
	}
	out := logs.String()
	if !strings.Contains(out, `"msg":"compacting the archive","layer":"enriched","err":"boom"`) ||
		!strings.Contains(out, `"msg":"compacted the archive","layer":"raw"`) {
		t.Fatalf("logs:\n%s", out)
	}
}
