package archive_test

import (
	"bytes"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edtech-analytics/platform/libs/archive"
	"github.com/edtech-analytics/platform/libs/archive/archivetest"
	"github.com/edtech-analytics/platform/libs/records"
	"github.com/parquet-go/parquet-go"
	"github.com/twmb/franz-go/pkg/kgo"
)

// enrichedRecords encodes n enriched events as the records of partition p.
func enrichedRecords(t *testing.T, codec *records.Codec, p int32, n int) ([]*kgo.Record, []*records.EnrichedEvent) {
	t.Helper()
	events := archivetest.EnrichedEvents(n)
	out := make([]*kgo.Record, 0, n)
	for i, e := range events {
		v, err := codec.Encode(e)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, &kgo.Record{Partition: p, Offset: int64(i), Value: v, Key: []byte(e.TenantID), Timestamp: e.ReceivedAt})
	}
	return out, events
}

// TestEraseStudentRewritesTheDistrictsFiles archives enriched events (part of them compacted, one file
// holding only the student's record), erases a student of one district and checks: the student's rows
// are gone from every file of the district, compacted or not, and only theirs; the other district's
// rows of the same internal id are untouched; a file left empty stays as a file of no rows; and a
// replay of the partition from an earlier offset archives none of the erased rows again.
func TestEraseStudentRewritesTheDistrictsFiles(t *testing.T) {
	codec, err := records.NewCodec(t.Context(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	dir, bb := openDir(t)
	b := archive.Blob{B: bb}
	const p = 0
	recs, events := enrichedRecords(t, codec, p, 600)
	st := archive.New(b, codec, archive.EnrichedLayer(), nil)
	rng := rand.New(rand.NewPCG(3, 3))
	// The first 300 compacted; then the student of event 300 (lakeside) alone in a file, a batch of one.
	student, other := events[300].Actor.InternalID, events[303].Actor.InternalID
	if events[300].TenantID != "lakeside" || events[303].TenantID != "lakeside" || student == other {
		t.Fatal("events 300 and 303 are not of two students of lakeside")
	}
	writeBatches(t, st, "enriched", recs[:300], rng, 30)
	if _, err := archive.NewCompactor(b, archive.EnrichedLayer(), archive.CompactOptions{}, nil).Run(ctx, closedAt); err != nil {
		t.Fatal(err)
	}
	writeBatches(t, st, "enriched", recs[300:301], rng, 1)
	writeBatches(t, st, "enriched", recs[301:], rng, 30)
	count := func(tenant, id string) int64 {
		t.Helper()
		c, err := archive.CountStudent(ctx, b, tenant, id)
		if err != nil {
			t.Fatal(err)
		}
		return c.Rows
	}
	want := map[string]int64{}
	for _, e := range events {
		want[e.TenantID+"/"+e.Actor.InternalID]++
	}
	if got := count("lakeside", student); got != want["lakeside/"+student] || got == 0 {
		t.Fatalf("CountStudent before = %d, want %d", got, want["lakeside/"+student])
	}
	tenantBefore, err := archive.CountTenant(ctx, b, "lakeside")
	if err != nil {
		t.Fatal(err)
	}

	res, err := archive.EraseStudent(ctx, b, "lakeside", student)
	if err != nil {
		t.Fatal(err)
	}
	if res.RowsRemoved != want["lakeside/"+student] || res.FilesRewritten == 0 || res.FilesEmptied != 1 {
		t.Fatalf("EraseStudent = %+v, want %d rows removed and one file emptied", res, want["lakeside/"+student])
	}
	if got := count("lakeside", student); got != 0 {
		t.Fatalf("CountStudent after = %d", got)
	}
	for _, k := range []string{"riverton/" + student, "hillcrest/" + student, "lakeside/" + other} {
		tenant, id, _ := strings.Cut(k, "/")
		if got := count(tenant, id); got != want[k] {
			t.Errorf("%s: %d rows, want %d", k, got, want[k])
		}
	}
	tenantAfter, err := archive.CountTenant(ctx, b, "lakeside")
	if err != nil {
		t.Fatal(err)
	}
	if tenantAfter.Rows != tenantBefore.Rows-res.RowsRemoved || tenantAfter.Files != tenantBefore.Files+1 { // + the erasure record
		t.Fatalf("district before %+v, after %+v", tenantBefore, tenantAfter)
	}
	// The emptied file is there, of no rows, and covers its offset.
	emptied := archive.Dir("enriched", "lakeside", events[300].OccurredAt) + archive.FileName(p, 300, 300)
	files := archivetest.ReadLayer(t, dir, "enriched", archivetest.Enriched)
	i := slices.IndexFunc(files, func(f archivetest.File[archive.EnrichedRow]) bool { return f.Key == emptied })
	if i < 0 || len(files[i].Rows) != 0 || !files[i].Rewritten {
		t.Fatalf("%s: not kept as a rewritten file of no rows", emptied)
	}

	// A replay from offset 100 (the index rewound, as a crash before its write leaves it) writes nothing.
	before := dataKeys(t, b, "enriched")
	if err := b.WriteAll(ctx, archive.IndexKey("enriched", p), []byte(strconv.Itoa(99))); err != nil {
		t.Fatal(err)
	}
	st = archive.New(b, codec, archive.EnrichedLayer(), nil)
	if _, err := st.NextOffsets(ctx, "enriched", []int32{p}); err != nil {
		t.Fatal(err)
	}
	writeBatches(t, st, "enriched", recs[100:], rng, 40)
	if got := dataKeys(t, b, "enriched"); !slices.Equal(got, before) {
		t.Fatalf("the replay wrote files: %v", got)
	}
	if got := count("lakeside", student); got != 0 {
		t.Fatalf("the replay archived %d rows of the erased student again", got)
	}

	// A later compaction of the rest (every day closed now) keeps them out, and merges the empty file.
	if _, err := archive.NewCompactor(b, archive.EnrichedLayer(), archive.CompactOptions{}, nil).Run(ctx, closedAt.Add(48*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if got := count("lakeside", student); got != 0 {
		t.Fatalf("compaction brought back %d rows", got)
	}
	seen := 0
	for _, f := range archivetest.ReadLayer(t, dir, "enriched", archivetest.Enriched) {
		seen += len(f.Rows)
	}
	if want := len(recs) - int(res.RowsRemoved); seen != want {
		t.Fatalf("%d rows in the archive, want %d", seen, want)
	}

	// Again: nothing to do.
	if res, err := archive.EraseStudent(ctx, b, "lakeside", student); err != nil || res.FilesRewritten != 0 {
		t.Fatalf("erasing again: %+v, %v", res, err)
	}
}

// TestEraseTenantDeletesEveryObjectOfTheDistrict archives both layers, erases a student (so that an
// erasure record exists) and then the district, and checks the counts before and after and that the
// other districts keep all their files.
func TestEraseTenantDeletesEveryObjectOfTheDistrict(t *testing.T) {
	codec, err := records.NewCodec(t.Context(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	_, bb := openDir(t)
	b := archive.Blob{B: bb}
	rng := rand.New(rand.NewPCG(4, 4))
	raw := rawRecords(t, codec, 1, 300)
	enriched, events := enrichedRecords(t, codec, 1, 300)
	writeBatches(t, archive.New(b, codec, archive.RawLayer(), nil), "raw", raw, rng, 50)
	writeBatches(t, archive.New(b, codec, archive.EnrichedLayer(), nil), "enriched", enriched, rng, 50)
	if _, err := archive.EraseStudent(ctx, b, "riverton", events[1].Actor.InternalID); err != nil {
		t.Fatal(err)
	}
	counts := map[string]archive.Count{}
	for _, tenant := range archivetest.Tenants {
		if counts[tenant], err = archive.CountTenant(ctx, b, tenant); err != nil {
			t.Fatal(err)
		}
	}
	if c := counts["riverton"]; c.Files == 0 || c.Rows < 190 { // a third of each layer, less the student's
		t.Fatalf("riverton before: %+v", c)
	}
	removed, err := archive.EraseTenant(ctx, b, "riverton")
	if err != nil {
		t.Fatal(err)
	}
	if int64(removed) != counts["riverton"].Files {
		t.Fatalf("EraseTenant removed %d objects, counted %d", removed, counts["riverton"].Files)
	}
	for _, tenant := range archivetest.Tenants {
		c, err := archive.CountTenant(ctx, b, tenant)
		if err != nil {
			t.Fatal(err)
		}
		if tenant == "riverton" && c != (archive.Count{}) || tenant != "riverton" && c != counts[tenant] {
			t.Errorf("%s after: %+v, before %+v", tenant, c, counts[tenant])
		}
	}
	keys, err := b.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if strings.Contains(k, "riverton") {
			t.Errorf("left: %s", k)
		}
	}
}

// TestErasuresAndCompactionAtOnce starts an erasure in the middle of a compaction (after it read its
// first run, before it publishes it), and, in another district, an erasure in the middle of another
// (just before its first rewrite is copied over the file): in the end none of the three students has a
// row left, and every other row is there.
func TestErasuresAndCompactionAtOnce(t *testing.T) {
	codec, err := records.NewCodec(t.Context(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	_, bb := openDir(t)
	b := archive.Blob{B: bb}
	recs, events := enrichedRecords(t, codec, 0, 450)
	writeBatches(t, archive.New(b, codec, archive.EnrichedLayer(), nil), "enriched", recs, rand.New(rand.NewPCG(9, 9)), 20)
	// A student of lakeside, two of riverton.
	first, second, third := events[0].Actor.InternalID, events[1].Actor.InternalID, events[4].Actor.InternalID
	erased := map[string]bool{"lakeside/" + first: true, "riverton/" + second: true, "riverton/" + third: true}
	want := int64(len(recs))
	for _, e := range events {
		if erased[e.TenantID+"/"+e.Actor.InternalID] {
			want--
		}
	}

	h := &hooked{Bucket: b, match: func(op, key string) bool { return op == "write" && strings.HasPrefix(key, "_tmp/compact/") },
		hook: func() {
			if _, err := archive.EraseStudent(ctx, b, "lakeside", first); err != nil {
				t.Error(err)
			}
		}}
	if _, err := archive.NewCompactor(h, archive.EnrichedLayer(), archive.CompactOptions{}, nil).Run(ctx, closedAt); err != nil {
		t.Fatal(err)
	}
	h = &hooked{Bucket: b, match: func(op, key string) bool { return op == "copy" && strings.HasPrefix(key, "enriched/") },
		hook: func() {
			if _, err := archive.EraseStudent(ctx, b, "riverton", third); err != nil {
				t.Error(err)
			}
		}}
	if _, err := archive.EraseStudent(ctx, h, "riverton", second); err != nil {
		t.Fatal(err)
	}
	if !h.done {
		t.Fatal("the second erasure did not run")
	}
	check := func(when string) {
		t.Helper()
		for k := range erased {
			tenant, id, _ := strings.Cut(k, "/")
			if c, err := archive.CountStudent(ctx, b, tenant, id); err != nil || c.Rows != 0 {
				t.Errorf("%s: student %s: %+v left (%v)", when, k, c, err)
			}
		}
		var rows int64
		for _, f := range readVisibleEnriched(t, b) {
			rows += int64(len(f))
		}
		if rows != want {
			t.Errorf("%s: %d rows in the archive, want %d", when, rows, want)
		}
	}
	check("after the erasures")
	// And a compaction of every day after them.
	if _, err := archive.NewCompactor(b, archive.EnrichedLayer(), archive.CompactOptions{}, nil).Run(ctx, closedAt.Add(48*time.Hour)); err != nil {
		t.Fatal(err)
	}
	check("after a compaction")
}

// readVisibleEnriched reads the enriched files archive.Files lists and returns their rows by key.
func readVisibleEnriched(t *testing.T, b archive.Bucket) map[string][]archive.EnrichedRow {
	t.Helper()
	files, err := archive.Files(t.Context(), b, "enriched/")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]archive.EnrichedRow{}
	for _, f := range files {
		data, err := b.ReadAll(t.Context(), f.Key)
		if err != nil {
			t.Fatal(err)
		}
		if out[f.Key], err = parquet.Read[archive.EnrichedRow](bytes.NewReader(data), int64(len(data))); err != nil {
			t.Fatalf("reading %s: %v", f.Key, err)
		}
	}
	return out
}
