package stack_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"testing"
	"time"

	"github.com/edtech-analytics/platform/libs/kafkax"
	"github.com/edtech-analytics/platform/libs/obs"
	"github.com/edtech-analytics/platform/libs/records"
	"github.com/edtech-analytics/platform/libs/svc/stream"
	"github.com/edtech-analytics/platform/libs/testenv/sampledata"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

// TestPoisonOfEveryKindKeepsEveryDistrictFlowing runs the whole platform and, between two halves of three
// districts' events sent through the gateway, puts on the topics what the gateway would refuse: a raw
// record with a NUL byte in the SIS id (which PostgreSQL's identity tables refuse), and on enriched a
// record with a NUL byte in the school id, one that does not decode and one that breaks the rules, each
// keyed to a district so that it shares a partition with that district's events. Every accepted event
// reaches both stores exactly once, every poison record is in the dead-letter topic once per stage that
// refused it, with its reason: every partition moved on past them.
func TestPoisonOfEveryKindKeepsEveryDistrictFlowing(t *testing.T) {
	ctx := context.Background()
	tel := &obs.Telemetry{Tracer: tracenoop.NewTracerProvider(), Meter: noop.NewMeterProvider(), Propagator: propagation.TraceContext{}}
	st, pgURL, chAddr, chDB := testStack(t, tel, slog.New(slog.NewTextHandler(io.Discard, nil)))

	admin := openPG(t, pgURL)
	districts := []string{"p1", "p2", "p3"}
	keys, all, bodies, owners := seedDistricts(t, admin, districts, 40, func(i int, id string) sampledata.Spec {
		return sampledata.Spec{TenantID: id, Schools: 2, ClassesPerSchool: 2, StudentsPerClass: 5, Days: 2, EventsPerStudent: 4,
			Start: time.Date(2026, 11, 16, 0, 0, 0, 0, time.UTC), Seed: uint64(10 + i)}
	})
	want := expect(all)
	send := func(from, to int) {
		for i := from; i < to; i++ {
			post(t, st.GatewayURL, keys[owners[i]], bodies[i])
		}
	}
	half := len(bodies) / 2
	send(0, half)

	codec, err := stream.NewCodec(ctx, st.Kafka)
	if err != nil {
		t.Fatal(err)
	}
	encode := func(v any) []byte {
		b, err := codec.Encode(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	at := time.Date(2026, 11, 16, 9, 0, 0, 0, time.UTC)
	rawNUL := &records.RawEvent{EventID: "7a7a7a7a-0000-4000-8000-000000000001", TenantID: "p1", SourceID: "lms",
		Type: records.TypeAttendance, OccurredAt: at, ReceivedAt: at, SchemaVersion: 1,
		Actor: records.Actor{SISID: "seca-st9\x00x", Role: "student"}, SchoolID: ptr("p1-school-000"),
		Attendance: &records.Attendance{Status: records.AttendancePresent, Date: at.Truncate(24 * time.Hour)}}
	enrichedNUL := &records.EnrichedEvent{EventID: "7a7a7a7a-0000-4000-8000-000000000002", TenantID: "p2", SourceID: "lms",
		Type: records.TypeAttendance, OccurredAt: at, ReceivedAt: at, EnrichedAt: at, SchemaVersion: 1,
		Actor:    records.EnrichedActor{InternalID: "7a7a7a7a-0000-4000-8000-0000000000aa", Pseudonym: "p", Role: "student"},
		SchoolID: ptr("sch\x00ool"), Attendance: &records.Attendance{Status: records.AttendancePresent, Date: at.Truncate(24 * time.Hour)}}
	badActor := *enrichedNUL
	badActor.EventID, badActor.TenantID, badActor.SchoolID, badActor.Actor.InternalID = "7a7a7a7a-0000-4000-8000-000000000003", "p3", nil, "not-a-uuid"
	topics := st.Kafka.Topics()
	poison := []*kgo.Record{
		{Topic: topics.Raw, Key: []byte("p1"), Value: encode(rawNUL)},
		{Topic: topics.Enriched, Key: []byte("p2"), Value: encode(enrichedNUL)},
		{Topic: topics.Enriched, Key: []byte("p3"), Value: encode(&badActor)},
		{Topic: topics.Enriched, Key: []byte("p1"), Value: []byte("not avro")},
	}
	producer, err := kafkax.NewClient(st.Kafka, kafkax.Deps{}, "", kafkax.ProducerOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	if err := producer.ProduceSync(ctx, poison...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	send(half, len(bodies))

	ch := openCH(t, chAddr, chDB)
	waitUntil(t, "both stores to hold every accepted event", func() bool {
		for _, id := range districts {
			if sumPG(t, admin, id) != int64(want.perTenant[id]) {
				return false
			}
		}
		return countCH(t, ch, "SELECT count() FROM events") == uint64(len(all["p1"])+len(all["p2"])+len(all["p3"]))
	})
	for _, id := range districts { // and not one more
		if n := countCH(t, ch, "SELECT count() FROM events WHERE tenant_id = '"+id+"'"); n != uint64(want.perTenant[id]) {
			t.Errorf("%s: ClickHouse holds %d events, want %d", id, n, want.perTenant[id])
		}
	}

	type letter struct{ stage, reason string }
	wantLetters := map[letter]int{
		{records.StageEnricher, records.ReasonInvalidField}:   1, // the NUL in the SIS id
		{records.StageSink, records.ReasonStoreRefused}:       1, // the NUL in the school id, refused by PostgreSQL
		{records.StageAggregator, records.ReasonInvalidField}: 2, // the same record, and the bad actor id
		{records.StageSink, records.ReasonInvalidField}:       1, // the bad actor id
		{records.StageSink, records.ReasonUndecodable}:        1,
		{records.StageAggregator, records.ReasonUndecodable}:  1,
	}
	// The stores moved past the poison records only after dead-lettering them: the letters are there. A
	// consumer whose write failed after it dead-lettered a record reads the record again and letters it
	// again, under the same source position (ctl dlq counts it once): count each position once.
	got := map[letter]int{}
	seen := map[string]bool{}
	for _, r := range readTopic(t, st.Kafka, topics.DLQ) {
		var d records.DLQRecord
		if err := codec.Decode(r.Value, &d); err != nil {
			t.Fatal(err)
		}
		pos := fmt.Sprintf("%s %s %v/%v/%v", d.Stage, d.Reason, deref(d.SourceTopic), deref(d.SourcePartition), deref(d.SourceOffset))
		if d.SourceOffset != nil && seen[pos] {
			t.Logf("a repeat letter: %s (%s)", pos, d.Detail)
			continue
		}
		seen[pos] = true
		got[letter{d.Stage, d.Reason}]++
	}
	if !maps.Equal(got, wantLetters) {
		t.Errorf("dead letters by stage and reason %v, want %v", got, wantLetters)
	}
}

func ptr[T any](v T) *T { return &v }

// deref is *p, or the zero value for nil.
func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}
