package archive_test

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/edtech-analytics/platform/libs/archive"
	"github.com/edtech-analytics/platform/libs/archive/archivetest"
	"github.com/edtech-analytics/platform/libs/records"
	"github.com/parquet-go/parquet-go"
	"github.com/twmb/franz-go/pkg/kgo"
)

// The enriched layer keeps each event's local date, in its column and in the record a rebuild replays;
// a file written before the column existed still reads, with no local date.
func TestEnrichedLayerKeepsTheLocalDate(t *testing.T) {
	ctx := t.Context()
	codec, err := records.NewCodec(ctx, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	bucket := archivetest.OpenDir(t, t.TempDir())
	st := archive.New(bucket, codec, archive.EnrichedLayer(), nil)
	evs := archivetest.EnrichedEvents(6)
	local := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC) // the day before the UTC date, as in a zone west of UTC
	evs[0].LocalDate = &local
	var recs []*kgo.Record
	for i, e := range evs {
		v, err := codec.Encode(e)
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, &kgo.Record{Partition: 0, Offset: int64(i), Value: v, Key: []byte(e.TenantID)})
	}
	if err := st.Write(ctx, "enriched", 0, recs); err != nil {
		t.Fatal(err)
	}
	files, err := archive.Files(ctx, bucket, archive.TenantPrefix("enriched", evs[0].TenantID))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no file archived")
	}
	// The column.
	var found bool
	for _, f := range files {
		data, err := bucket.ReadAll(ctx, f.Key)
		if err != nil {
			t.Fatal(err)
		}
		rows, err := parquet.Read[archive.EnrichedRow](bytes.NewReader(data), int64(len(data)))
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rows {
			switch {
			case r.EventID == evs[0].EventID:
				found = true
				if r.LocalDate == nil || *r.LocalDate != *archive.Days(local) {
					t.Errorf("local_date column = %v, want %d", r.LocalDate, *archive.Days(local))
				}
			case r.LocalDate != nil:
				t.Errorf("event %s without a local date has local_date %d", r.EventID, *r.LocalDate)
			}
		}
	}
	if !found {
		t.Fatal("the event with a local date is not in the tenant's files")
	}
	// The record a rebuild replays.
	rd := archive.NewReader(bucket, files, nil)
	found = false
	for {
		_, got, err := rd.Next(ctx, 100)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range got {
			var e records.EnrichedEvent
			if err := codec.Decode(r.Value, &e); err != nil {
				t.Fatal(err)
			}
			if e.EventID == evs[0].EventID {
				found = true
				if e.LocalDate == nil || !e.LocalDate.Equal(local) {
					t.Errorf("replayed local_date = %v, want %s", e.LocalDate, local.Format(time.DateOnly))
				}
			}
		}
	}
	if !found {
		t.Fatal("the event with a local date was not replayed")
	}
}

// oldEnrichedRow is an enriched row as files held it before local_date.
type oldEnrichedRow struct {
	archive.Envelope
	ActorInternalID string    `parquet:"actor_internal_id"`
	ActorPseudonym  string    `parquet:"actor_pseudonym"`
	ActorRole       string    `parquet:"actor_role"`
	PolicyVersion   int32     `parquet:"policy_version"`
	EnrichedAt      time.Time `parquet:"enriched_at,timestamp(millisecond)"`
	archive.Learning
	archive.Position
}

func TestEnrichedFileWithoutLocalDateReads(t *testing.T) {
	var buf bytes.Buffer
	at := time.Date(2026, 3, 2, 3, 0, 0, 0, time.UTC)
	if err := parquet.Write(&buf, []oldEnrichedRow{{
		Envelope:        archive.Envelope{EventID: "00000000-0000-4000-8000-000000000001", TenantID: "lakeside", Type: "session", OccurredAt: at, ReceivedAt: at},
		ActorInternalID: "6f1c1f4e-0d7a-4c59-9d0b-000000000001", ActorRole: "student", EnrichedAt: at,
		Position: archive.Position{Record: []byte{0}, KafkaKey: "lakeside", KafkaOffset: 7},
	}}); err != nil {
		t.Fatal(err)
	}
	// As compaction and erasure read a file.
	r := parquet.NewGenericReader[archive.EnrichedRow](bytes.NewReader(buf.Bytes()))
	rows := make([]archive.EnrichedRow, 2)
	n, err := r.Read(rows)
	if err != nil && !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if n != 1 || rows[0].EventID != "00000000-0000-4000-8000-000000000001" || rows[0].KafkaOffset != 7 || rows[0].LocalDate != nil {
		t.Fatalf("read %d rows: %+v", n, rows[0])
	}
}
