package chstore_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/edtech-analytics/platform/libs/chutil"
	"github.com/edtech-analytics/platform/libs/chutil/chtest"
	"github.com/edtech-analytics/platform/libs/kafkax"
	"github.com/edtech-analytics/platform/libs/records"
	"github.com/edtech-analytics/platform/services/aggregator/internal/chstore"
	"github.com/edtech-analytics/platform/services/aggregator/internal/synth"
	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/trace"
)

const topic = "test.enriched"

// newStore migrates a fresh database (twice: the second run must be a no-op) and returns a store on it.
func newStore(t testing.TB) (*chstore.Store, driver.Conn, *records.Codec) {
	t.Helper()
	conn, db, _ := chtest.New(t)
	for range 2 {
		if err := chstore.Migrate(t.Context(), conn, db); err != nil {
			t.Fatal(err)
		}
	}
	codec, err := records.NewCodec(t.Context(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	prefix := db + "_analyst_"
	t.Cleanup(func() { dropDatabases(t, conn, prefix) })
	store, err := chstore.New(conn, codec, chstore.Config{Database: db, AnalystPrefix: prefix}, chstore.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	return store, conn, codec
}

// dropDatabases drops the databases whose name starts with prefix.
func dropDatabases(t testing.TB, conn driver.Conn, prefix string) {
	t.Helper()
	var dbs []struct {
		Name string `ch:"name"`
	}
	if err := conn.Select(context.Background(), &dbs, "SELECT name FROM system.databases WHERE startsWith(name, ?)", prefix); err != nil {
		t.Errorf("listing analyst databases: %v", err)
		return
	}
	for _, d := range dbs {
		if err := chutil.DropDatabase(context.Background(), conn, d.Name); err != nil {
			t.Errorf("dropping %s: %v", d.Name, err)
		}
	}
}

func record(t testing.TB, codec *records.Codec, partition int32, offset int64, ev *records.EnrichedEvent) *kgo.Record {
	t.Helper()
	b, err := codec.Encode(ev)
	if err != nil {
		t.Fatal(err)
	}
	return &kgo.Record{Topic: topic, Partition: partition, Offset: offset, Value: b, Context: context.Background()}
}

// facts returns n synthetic events as records of one partition from offset first on.
func facts(t testing.TB, codec *records.Codec, partition int32, first int64, evs []records.EnrichedEvent) []*kgo.Record {
	t.Helper()
	recs := make([]*kgo.Record, len(evs))
	for i := range evs {
		recs[i] = record(t, codec, partition, first+int64(i), &evs[i])
	}
	return recs
}

func count(t testing.TB, conn driver.Conn, query string, args ...any) uint64 {
	t.Helper()
	var n uint64
	if err := conn.QueryRow(t.Context(), query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

func assertNext(t *testing.T, store *chstore.Store, topic string, parts []int32, want map[int32]int64) {
	t.Helper()
	got, err := store.NextOffsets(t.Context(), topic, parts)
	if err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(got, want) {
		t.Fatalf("NextOffsets(%s, %v) = %v, want %v", topic, parts, got, want)
	}
}

// TestWriteFlattensEachEventType proves every payload type lands in its columns, with the record's trace
// id and Kafka coordinates, and that the rollups see the batch.
func TestWriteFlattensEachEventType(t *testing.T) {
	store, conn, codec := newStore(t)
	at := time.Date(2025, 9, 30, 23, 59, 58, 250e6, time.UTC)
	base := func(typ string, payload any) records.EnrichedEvent {
		ev := records.EnrichedEvent{
			EventID: uuid.NewString(), TenantID: "district_1", SourceID: "lms", OccurredAt: at, ReceivedAt: at.Add(time.Second),
			Actor:    records.EnrichedActor{InternalID: uuid.NewString(), Pseudonym: "p-1", Role: "student"},
			SchoolID: ptr("school-1"), PolicyVersion: 2, EnrichedAt: at.Add(2 * time.Second),
		}
		if err := ev.SetPayload(payload); err != nil || ev.Type != typ {
			t.Fatalf("SetPayload(%T) = %q, %v", payload, ev.Type, err)
		}
		return ev
	}
	evs := []records.EnrichedEvent{
		base(records.TypeAttendance, &records.Attendance{Status: "tardy", Date: time.Date(2025, 9, 30, 0, 0, 0, 0, time.UTC), MinutesPresent: ptr(300)}),
		base(records.TypeAssessmentResult, &records.AssessmentResult{AssessmentID: "quiz-1", Score: 17.5, MaxScore: 20, Attempt: 1}),
		base(records.TypeAssignmentSubmission, &records.AssignmentSubmission{AssignmentID: "hw-1", SubmittedAt: at, Status: "submitted"}),
		base(records.TypeSession, &records.SessionEvent{Action: records.SessionLogout}),
		base(records.TypeContentView, &records.ContentView{ContentID: "video-1", ContentType: "video", DurationSeconds: 95, PercentComplete: ptr(40.0)}),
		base(records.TypeCustom, &records.CustomEvent{Name: "quiz.hint_opened", PropertyKeys: []string{"hint", "step"}, PropertyValues: []string{"2", "checkout"}}),
		base(records.TypeGeneric, &records.GenericEvent{Standard: "caliper", Type: "ToolUseEvent", Action: "Used", ObjectID: "https://example.edu/t/1",
			ObjectType: "SoftwareApplication", StatementID: ptr("urn:uuid:1"), ExtensionKeys: []string{"level"}, ExtensionValues: []string{"4"}}),
	}
	evs[2].Derived.Late = ptr(true)
	evs[3].Derived.SessionSeconds = ptr(int64(1800))
	evs[0].Derived.AcademicSessionID = ptr("fall-2025")
	traceID := trace.TraceID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	recs := facts(t, codec, 3, 40, evs)
	for _, r := range recs {
		r.Context = trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
			TraceID: traceID, SpanID: trace.SpanID{1}, TraceFlags: trace.FlagsSampled}))
	}
	if err := store.Write(t.Context(), topic, 3, recs); err != nil {
		t.Fatal(err)
	}

	var rows []struct {
		Type       string    `ch:"type"`
		At         time.Time `ch:"occurred_at"`
		MS         uint16    `ch:"occurred_ms"`
		Detail     string    `ch:"detail"`
		Score      *float64  `ch:"score"`
		Late       *uint8    `ch:"late"`
		Percent    *float64  `ch:"percent_complete"`
		Trace      string    `ch:"trace_id"`
		Partition  uint32    `ch:"kafka_partition"`
		Offset     uint64    `ch:"kafka_offset"`
		Student    uuid.UUID `ch:"student_id"`
		Pseudonym  string    `ch:"pseudonym"`
		KafkaTopic string    `ch:"kafka_topic"`
	}
	if err := conn.Select(t.Context(), &rows, `SELECT type, occurred_at, occurred_ms,
		concat(attendance_status, if(type = 'attendance', toString(attendance_date), ''), toString(ifNull(minutes_present, 0)), '|', assessment_id, toString(ifNull(max_score, 0)), '|',
			assignment_id, submission_status, '|', session_action, toString(session_seconds), '|', content_id, content_type, toString(duration_seconds), '|', academic_session_id, '|',
			custom_name, generic_standard, generic_type, generic_action, generic_object_id, generic_object_type, generic_statement_id, '|',
			arrayStringConcat(arrayMap((k, v) -> concat(k, '=', v), prop_keys, prop_values), ',')) AS detail,
		score, late, percent_complete, trace_id, kafka_partition, kafka_offset, student_id, pseudonym, kafka_topic
		FROM events ORDER BY kafka_offset`); err != nil {
		t.Fatal(err)
	}
	wantDetail := []string{
		"tardy2025-09-30300|0||0|0|fall-2025||",
		"0|quiz-120||0|0|||",
		"0|0|hw-1submitted|0|0|||",
		"0|0||logout1800|0|||",
		"0|0||0|video-1video95|||",
		"0|0||0|0||quiz.hint_opened|hint=2,step=checkout",
		"0|0||0|0||caliperToolUseEventUsedhttps://example.edu/t/1SoftwareApplicationurn:uuid:1|level=4",
	}
	if len(rows) != len(evs) {
		t.Fatalf("stored %d rows, want %d", len(rows), len(evs))
	}
	for i, r := range rows {
		ev := evs[i]
		if r.Type != ev.Type || !r.At.Equal(at.Truncate(time.Second)) || r.MS != 250 || r.Detail != wantDetail[i] {
			t.Errorf("row %d: type %s at %s.%03d detail %q, want %s at %s.250 detail %q", i, r.Type, r.At, r.MS, r.Detail, ev.Type, at, wantDetail[i])
		}
		if r.Trace != traceID.String() || r.Partition != 3 || r.Offset != uint64(40+i) || r.KafkaTopic != topic {
			t.Errorf("row %d: trace %s at %s/%d@%d, want %s at %s/3@%d", i, r.Trace, r.KafkaTopic, r.Partition, r.Offset, traceID, topic, 40+i)
		}
		if r.Student.String() != ev.Actor.InternalID || r.Pseudonym != "p-1" {
			t.Errorf("row %d: student %s pseudonym %s, want %s p-1", i, r.Student, r.Pseudonym, ev.Actor.InternalID)
		}
	}
	if s := rows[1].Score; s == nil || *s != 17.5 {
		t.Errorf("assessment score = %v, want 17.5", s)
	}
	if rows[2].Score != nil || rows[2].Late == nil || *rows[2].Late != 1 || rows[0].Late != nil {
		t.Errorf("submission score %v late %v, attendance late %v; want nil, 1, nil", rows[2].Score, rows[2].Late, rows[0].Late)
	}
	if p := rows[4].Percent; p == nil || *p != 40 {
		t.Errorf("percent_complete = %v, want 40", p)
	}
	if diff := synth.Diff(synth.Want(evs), got(t, conn)); len(diff) > 0 {
		t.Errorf("rollups differ from the input:\n%s", strings.Join(diff, "\n"))
	}
	assertNext(t, store, topic, []int32{3}, map[int32]int64{3: 47})
}

func got(t *testing.T, conn driver.Conn) synth.Rollups {
	t.Helper()
	r, err := synth.Got(t.Context(), conn)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestWriteSkipsWhatIsNotAFact proves roster records are skipped and undecodable bytes and events
// ClickHouse cannot hold are refused, each dead-lettered once with its reason while the rest of the batch
// is stored; that no name or SIS id reaches any column; and that a batch ending in skipped records still
// moves the partition's stored offset past them.
func TestWriteSkipsWhatIsNotAFact(t *testing.T) {
	store, conn, codec := newStore(t)
	evs, _ := synth.Events(1, 1, 6)
	evs[0].Actor.SISID = ptr("SIS-SECRET-7")
	badID := evs[1]
	badID.EventID = "not-a-uuid"
	tooEarly := evs[2]
	tooEarly.OccurredAt = time.Date(1969, 12, 31, 0, 0, 0, 0, time.UTC)
	mismatch := evs[3]
	mismatch.Type, mismatch.Session = records.TypeSession, nil // a session without its payload
	roster := synth.Roster("district_1", 9)

	recs := []*kgo.Record{
		record(t, codec, 0, 0, &evs[0]),
		record(t, codec, 0, 1, &roster),
		{Topic: topic, Partition: 0, Offset: 2, Value: []byte("not avro")},
		record(t, codec, 0, 3, &badID),
		record(t, codec, 0, 4, &tooEarly),
		record(t, codec, 0, 5, &evs[4]),
		record(t, codec, 0, 6, &mismatch),
		record(t, codec, 0, 7, &roster),
	}
	dead := map[int64]string{}
	deadLetter := func(_ context.Context, r *kgo.Record, reason string, _ error) error {
		dead[r.Offset] = reason
		return nil
	}
	if err := kafkax.WriteDeadLettering(t.Context(), store, topic, 0, recs, deadLetter, nil); err != nil {
		t.Fatal(err)
	}
	want := map[int64]string{2: records.ReasonUndecodable, 3: records.ReasonInvalidField, 4: records.ReasonInvalidField, 6: records.ReasonInvalidField}
	if !maps.Equal(dead, want) {
		t.Errorf("dead-lettered %v, want %v", dead, want)
	}
	if n := count(t, conn, "SELECT count() FROM events"); n != 2 {
		t.Fatalf("stored %d events, want 2 (offsets 0 and 5)", n)
	}
	if n := count(t, conn, "SELECT max(kafka_offset) FROM events"); n != 5 {
		t.Fatalf("highest event offset %d, want 5", n)
	}
	assertNext(t, store, topic, []int32{0}, map[int32]int64{0: 8})

	// No string column of any table holds the SIS id or the roster user's names.
	var cols []struct {
		Table string `ch:"table"`
		Name  string `ch:"name"`
	}
	if err := conn.Select(t.Context(), &cols, `SELECT table, name FROM system.columns
		WHERE database = currentDatabase() AND type IN ('String', 'LowCardinality(String)') AND table NOT LIKE '%_mv'`); err != nil {
		t.Fatal(err)
	}
	for _, c := range cols {
		for _, secret := range []string{"SIS-", "Ada", "Lovelace"} {
			q := fmt.Sprintf("SELECT count() FROM %s WHERE position(toString(%s), '%s') > 0", c.Table, c.Name, secret)
			if n := count(t, conn, q); n != 0 {
				t.Errorf("%s.%s holds %q in %d rows", c.Table, c.Name, secret, n)
			}
		}
	}
	if len(cols) < 10 {
		t.Fatalf("found only %d string columns to check", len(cols))
	}
}

// TestNextOffsetsResumesAfterHighestStored proves NextOffsets reports, per partition and topic, the
// offset after the highest stored one, and leaves out partitions never stored.
func TestNextOffsetsResumesAfterHighestStored(t *testing.T) {
	store, conn, codec := newStore(t)
	assertNext(t, store, topic, []int32{0, 1}, map[int32]int64{})

	evs, _ := synth.Events(2, 2, 40)
	writes := []struct {
		topic     string
		partition int32
		first     int64
		evs       []records.EnrichedEvent
	}{
		{topic, 0, 0, evs[0:10]},
		{topic, 0, 10, evs[10:15]},
		{topic, 2, 1000, evs[15:18]}, // a partition whose early records were deleted by retention
		{"other.enriched", 1, 0, evs[18:40]},
	}
	for _, w := range writes {
		if err := store.Write(t.Context(), w.topic, w.partition, facts(t, codec, w.partition, w.first, w.evs)); err != nil {
			t.Fatal(err)
		}
	}
	assertNext(t, store, topic, []int32{0, 1, 2, 3}, map[int32]int64{0: 15, 2: 1003})
	assertNext(t, store, "other.enriched", []int32{0, 1}, map[int32]int64{1: 22})
	assertNext(t, store, topic, []int32{2}, map[int32]int64{2: 1003})
	// kafka_offsets agrees with the events rows themselves.
	if n := count(t, conn, "SELECT max(kafka_offset) FROM events WHERE kafka_topic = ? AND kafka_partition = 0", topic); n != 14 {
		t.Fatalf("max stored offset of partition 0 = %d, want 14", n)
	}
}

// TestWriteFencesRecordsAlreadyStored proves a batch overlapping what is stored (a consumer that lost the
// partition, or a re-delivery) stores only the records past the stored offset.
func TestWriteFencesRecordsAlreadyStored(t *testing.T) {
	store, conn, codec := newStore(t)
	evs, _ := synth.Events(3, 2, 15)
	recs := facts(t, codec, 1, 0, evs)
	for _, batch := range [][]*kgo.Record{recs[0:10], recs[5:15], recs[0:5], recs} {
		if err := store.Write(t.Context(), topic, 1, batch); err != nil {
			t.Fatal(err)
		}
	}
	if n := count(t, conn, "SELECT count() FROM events"); n != 15 {
		t.Fatalf("stored %d events, want 15", n)
	}
	if n := count(t, conn, "SELECT uniqExact(event_id) FROM events"); n != 15 {
		t.Fatalf("stored %d distinct events, want 15", n)
	}
	if diff := synth.Diff(synth.Want(evs), got(t, conn)); len(diff) > 0 {
		t.Errorf("rollups differ from the input:\n%s", strings.Join(diff, "\n"))
	}
	assertNext(t, store, topic, []int32{1}, map[int32]int64{1: 15})
}

func ptr[T any](v T) *T { return &v }

// TestWriteExcludesAnotherInsertOfThePartition plays a consumer that lost partition 0 but whose INSERT is
// still running on the server: a Write of that partition must refuse to insert beside it, NextOffsets
// must wait for it to finish, and what it stored fences the records it covered.
func TestWriteExcludesAnotherInsertOfThePartition(t *testing.T) {
	store, conn, codec := newStore(t)
	ctx := t.Context()
	evs, _ := synth.Events(4, 2, 10)
	zombie, err := conn.PrepareBatch(clickhouse.Context(ctx, clickhouse.WithQueryID("aggregator:"+topic+":0:zombie:offsets")),
		"INSERT INTO kafka_offsets (kafka_topic, kafka_partition, max_offset)")
	if err != nil {
		t.Fatal(err)
	}
	if err := zombie.Append(topic, uint32(0), uint64(99)); err != nil {
		t.Fatal(err)
	}

	if err := store.Write(ctx, topic, 0, facts(t, codec, 0, 0, evs[:5])); !errors.Is(err, chstore.ErrBusy) {
		t.Fatalf("Write beside a running insert of the partition: err = %v, want ErrBusy", err)
	}
	if err := store.Write(ctx, topic, 1, facts(t, codec, 1, 0, evs[5:])); err != nil {
		t.Fatalf("Write of another partition: %v", err)
	}
	type result struct {
		next map[int32]int64
		err  error
	}
	done := make(chan result, 1)
	go func() {
		next, err := store.NextOffsets(ctx, topic, []int32{0, 1})
		done <- result{next, err}
	}()
	select {
	case r := <-done:
		t.Fatalf("NextOffsets returned %v, %v while an insert of partition 0 runs", r.next, r.err)
	case <-time.After(300 * time.Millisecond):
	}
	if err := zombie.Send(); err != nil {
		t.Fatal(err)
	}
	if r := <-done; r.err != nil || !maps.Equal(r.next, map[int32]int64{0: 100, 1: 5}) {
		t.Fatalf("NextOffsets = %v, %v; want map[0:100 1:5]", r.next, r.err)
	}
	if err := store.Write(ctx, topic, 0, facts(t, codec, 0, 0, evs[:5])); err != nil {
		t.Fatal(err)
	}
	if n := count(t, conn, "SELECT count() FROM events WHERE kafka_partition = 0"); n != 0 {
		t.Fatalf("stored %d events the other insert had covered, want 0", n)
	}
}
