// Package archivetest generates events for the archiver's tests and reads an archive directory back,
// checking what every reader relies on: names match the offsets inside, each file holds one partition,
// tenant and day, and two files of a partition in a directory either do not overlap or one (compacted)
// covers the other.
package archivetest

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/edtech-analytics/platform/libs/archive"
	"github.com/edtech-analytics/platform/libs/records"
	"github.com/parquet-go/parquet-go"
	"gocloud.dev/blob/fileblob"
)

// Tenants are the districts of the generated events.
var Tenants = []string{"lakeside", "riverton", "hillcrest"}

// Day is the first day of the generated events; they span three days.
var Day = time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)

// RawEvents returns n raw events over Tenants and three days, of every learning type, with sealed
// identifying fields as the gateway writes them.
func RawEvents(n int) []*records.RawEvent {
	out := make([]*records.RawEvent, n)
	for i := range n {
		tenant := Tenants[i%len(Tenants)]
		at := Day.Add(time.Duration(i%3)*24*time.Hour + time.Duration(i)*time.Second + 123*time.Millisecond)
		school := fmt.Sprintf("%s-school-%d", tenant, i%4)
		e := &records.RawEvent{
			EventID: fmt.Sprintf("00000000-0000-4000-8000-%012d", i), TenantID: tenant, SourceID: "lms",
			OccurredAt: at, ReceivedAt: at.Add(time.Second), SchemaVersion: 1,
			Actor:    records.Actor{SISID: fmt.Sprintf("enc1.sealed-%d", i%50), Role: "student"},
			SchoolID: &school,
		}
		setPayload(i, at, e.SetPayload)
		out[i] = e
	}
	return out
}

// EnrichedEvents returns n enriched events over Tenants and three days, like RawEvents.
func EnrichedEvents(n int) []*records.EnrichedEvent {
	out := make([]*records.EnrichedEvent, n)
	for i, r := range RawEvents(n) {
		sis := r.Actor.SISID
		late := i%2 == 0
		e := &records.EnrichedEvent{
			EventID: r.EventID, TenantID: r.TenantID, SourceID: r.SourceID, Type: r.Type, OccurredAt: r.OccurredAt,
			ReceivedAt: r.ReceivedAt, SchemaVersion: 1, SchoolID: r.SchoolID, PolicyVersion: 3, EnrichedAt: r.ReceivedAt.Add(time.Second),
			Actor:   records.EnrichedActor{InternalID: fmt.Sprintf("6f1c1f4e-0d7a-4c59-9d0b-%012d", i%50), Pseudonym: fmt.Sprintf("p-%d", i%50), Role: "student", SISID: &sis},
			Derived: records.Derived{Late: &late},
		}
		e.SetPayloads(r.Payloads())
		out[i] = e
	}
	return out
}

func setPayload(i int, at time.Time, set func(any) error) {
	day := at.Truncate(24 * time.Hour)
	pct, score, maxScore := float64(i%101), float64(i%11), 10.0
	secs := int64(60 + i%900)
	var p any
	switch i % 5 {
	case 0:
		p = &records.Attendance{Status: []string{"present", "tardy", "absent"}[i%3], Date: day}
	case 1:
		p = &records.AssessmentResult{AssessmentID: fmt.Sprintf("quiz-%d", i%20), Score: float64(i % 101), MaxScore: 100, Attempt: 1}
	case 2:
		p = &records.AssignmentSubmission{AssignmentID: fmt.Sprintf("hw-%d", i%7), SubmittedAt: at, Status: "submitted", Score: &score, MaxScore: &maxScore}
	case 3:
		p = &records.SessionEvent{Action: "logout", DurationSeconds: &secs}
	default:
		p = &records.ContentView{ContentID: fmt.Sprintf("video-%d", i%30), ContentType: "video", DurationSeconds: secs, PercentComplete: &pct}
	}
	if err := set(p); err != nil {
		panic(err) // the generator's own payloads are valid
	}
}

// File is one published file read back.
type File[T any] struct {
	Key          string
	Tenant, Date string
	Partition    int32
	First, Last  int64
	Rows         []T
	Envelopes    []archive.Envelope
	Positions    []archive.Position
	// Rewritten is set when an erasure removed rows from the file (archive.RewrittenKey): its rows are
	// inside its name's range but need not reach its ends, and it may hold none.
	Rewritten bool
}

// ReadLayer reads every published file of layer in the file:// archive at dir, as ReadBucket does.
func ReadLayer[T any](t testing.TB, dir, layer string, parts func(T) (archive.Envelope, archive.Position)) []File[T] {
	t.Helper()
	b, err := fileblob.OpenBucket(dir, archive.FileOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := b.Close(); err != nil {
			t.Error(err)
		}
	}()
	return ReadBucket(t, archive.Blob{B: b}, layer, parts)
}

// ReadBucket reads every published file of layer in an archive's bucket (skipping _tmp/) with parquet-go
// and checks each file's name against its rows and that two files of a partition in one directory do not
// overlap unless one covers the other. It returns the files readers see (archive.Files): a file another
// covers is left out.
func ReadBucket[T any](t testing.TB, b archive.Bucket, layer string, parts func(T) (archive.Envelope, archive.Position)) []File[T] {
	t.Helper()
	ctx := context.Background()
	keys, err := b.List(ctx, layer+"/")
	if err != nil {
		t.Fatal(err)
	}
	var files []File[T]
	for _, key := range keys {
		if !strings.HasSuffix(key, ".parquet") {
			continue
		}
		elems := strings.Split(key, "/")
		if len(elems) != 4 || !strings.HasPrefix(elems[1], "tenant_id=") || !strings.HasPrefix(elems[2], "date=") {
			t.Errorf("%s: not <layer>/tenant_id=/date=/<file>", key)
			continue
		}
		tenant, _ := url.PathUnescape(strings.TrimPrefix(elems[1], "tenant_id="))
		f := File[T]{Key: key, Tenant: tenant, Date: strings.TrimPrefix(elems[2], "date=")}
		var ok bool
		if f.Partition, f.First, f.Last, ok = archive.ParseFileName(elems[3]); !ok {
			t.Errorf("%s: file name without offsets", key)
			continue
		}
		data, err := b.ReadAll(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		rows, err := parquet.Read[T](bytes.NewReader(data), int64(len(data)))
		if err != nil {
			t.Fatalf("reading %s: %v", key, err)
		}
		f.Rows = rows
		if f.Rewritten, err = rewritten(data); err != nil {
			t.Fatalf("reading %s: %v", key, err)
		}
		for _, r := range rows {
			env, pos := parts(r)
			f.Envelopes, f.Positions = append(f.Envelopes, env), append(f.Positions, pos)
		}
		checkFile(t, f)
		files = append(files, f)
	}
	return checkOverlaps(t, files)
}

// rewritten reports whether an erasure rewrote the file whose bytes are data (archive.RewrittenKey).
func rewritten(data []byte) (bool, error) {
	pf, err := parquet.OpenFile(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return false, err
	}
	v, ok := pf.Lookup(archive.RewrittenKey)
	return ok && v == "true", nil
}

func checkFile[T any](t testing.TB, f File[T]) {
	t.Helper()
	if len(f.Rows) == 0 {
		if !f.Rewritten {
			t.Errorf("%s: no rows", f.Key)
		}
		return
	}
	lo, hi := f.Positions[0].KafkaOffset, f.Positions[0].KafkaOffset
	for i, pos := range f.Positions {
		lo, hi = min(lo, pos.KafkaOffset), max(hi, pos.KafkaOffset)
		if pos.KafkaPartition != f.Partition {
			t.Errorf("%s: row of partition %d", f.Key, pos.KafkaPartition)
		}
		env := f.Envelopes[i]
		if f.Tenant == archive.UndecodableTenant {
			if pos.DecodeError == nil || env.TenantID != "" {
				t.Errorf("%s: offset %d is not an undecodable record", f.Key, pos.KafkaOffset)
			}
			continue
		}
		if env.TenantID != f.Tenant || env.OccurredAt.UTC().Format(time.DateOnly) != f.Date {
			t.Errorf("%s: offset %d is of tenant %q on %s", f.Key, pos.KafkaOffset, env.TenantID, env.OccurredAt.UTC().Format(time.DateOnly))
		}
	}
	if lo != f.First || hi != f.Last {
		if !f.Rewritten || lo < f.First || hi > f.Last {
			t.Errorf("%s: holds offsets %d to %d", f.Key, lo, hi)
		}
	}
}

// checkOverlaps checks that two files of a partition in a directory are apart or one covers the other,
// and returns the files no other covers.
func checkOverlaps[T any](t testing.TB, files []File[T]) []File[T] {
	t.Helper()
	byDir := map[string][]File[T]{}
	var dirs []string
	for _, f := range files {
		k := fmt.Sprintf("%s/%s/%d", f.Tenant, f.Date, f.Partition)
		if _, ok := byDir[k]; !ok {
			dirs = append(dirs, k)
		}
		byDir[k] = append(byDir[k], f)
	}
	var visible []File[T]
	for _, k := range dirs {
		fs := byDir[k]
		// By first offset, the wider first: a covering file comes before those it covers.
		slices.SortFunc(fs, func(a, b File[T]) int {
			if a.First != b.First {
				return cmp.Compare(a.First, b.First)
			}
			return cmp.Compare(b.Last, a.Last)
		})
		var kept []File[T]
		for _, f := range fs {
			if n := len(kept); n > 0 && f.First <= kept[n-1].Last {
				if f.Last > kept[n-1].Last {
					t.Errorf("%s overlaps %s", f.Key, kept[n-1].Key)
				}
				continue // covered: superseded by a compacted file
			}
			kept = append(kept, f)
		}
		visible = append(visible, kept...)
	}
	return visible
}

// Raw gives ReadLayer the shared parts of a raw row.
func Raw(r archive.RawRow) (archive.Envelope, archive.Position) { return r.Envelope, r.Position }

// Enriched gives ReadLayer the shared parts of an enriched row.
func Enriched(r archive.EnrichedRow) (archive.Envelope, archive.Position) {
	return r.Envelope, r.Position
}

// OpenDir opens the directory dir as an archive (the file driver, as archive.Open does), closed when the
// test ends.
func OpenDir(t testing.TB, dir string) archive.Blob {
	t.Helper()
	b, err := fileblob.OpenBucket(dir, archive.FileOptions())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Error(err)
		}
	})
	return archive.Blob{B: b}
}
