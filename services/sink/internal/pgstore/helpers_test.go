package pgstore_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/edtech-analytics/platform/libs/kafkatest"
	"github.com/edtech-analytics/platform/libs/kafkax"
	"github.com/edtech-analytics/platform/libs/pgutil/pgtest"
	"github.com/edtech-analytics/platform/libs/records"
	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/edtech-analytics/platform/services/sink/internal/pgstore"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kgo"
)

const group = "sink-test"

var testTenants = []string{"north", "south", "east"}

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// setup returns a fresh database with the control schema and the test tenants, and a codec.
func setup(t *testing.T) (*pgxpool.Pool, *records.Codec) {
	t.Helper()
	pool, _ := pgtest.New(t)
	if err := tenancy.Migrate(t.Context(), pool); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	for _, id := range testTenants {
		if _, err := tenancy.NewStore(pool).CreateTenant(t.Context(), id, "District "+id); err != nil {
			t.Fatalf("CreateTenant %s: %v", id, err)
		}
	}
	codec, err := records.NewCodec(t.Context(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return pool, codec
}

func newStore(t *testing.T, pool *pgxpool.Pool, codec *records.Codec) *pgstore.Store {
	t.Helper()
	s, err := pgstore.New(group, pgstore.Deps{Pool: pool, Codec: codec, Log: discard()})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func ptr[T any](v T) *T { return &v }

func uuidFrom(rng *rand.Rand) string {
	var b [16]byte
	for i := range b {
		b[i] = byte(rng.UintN(256))
	}
	b[6], b[8] = b[6]&0x0f|0x40, b[8]&0x3f|0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// genEvents returns n events of the five learning types for the given tenants, 12 students each. Times
// fall on whole minutes of one morning so that many events of a student tie.
func genEvents(rng *rand.Rand, tenants []string, n int) []*records.EnrichedEvent {
	students := map[string][]string{}
	for _, tn := range tenants {
		for range 12 {
			students[tn] = append(students[tn], uuidFrom(rng))
		}
	}
	base := time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC)
	minute := func() time.Time { return base.Add(time.Duration(rng.IntN(90)) * time.Minute) }
	types := []string{records.TypeAttendance, records.TypeAssessmentResult, records.TypeAssignmentSubmission,
		records.TypeSession, records.TypeContentView}
	statuses := []string{records.AttendancePresent, records.AttendanceAbsent, records.AttendanceTardy, records.AttendanceExcused}
	out := make([]*records.EnrichedEvent, n)
	for i := range out {
		tn := tenants[rng.IntN(len(tenants))]
		ev := &records.EnrichedEvent{
			EventID: uuidFrom(rng), TenantID: tn, SourceID: "lms", Type: types[rng.IntN(len(types))],
			OccurredAt: minute(), ReceivedAt: base.Add(2 * time.Hour), SchemaVersion: 1,
			Actor:      records.EnrichedActor{InternalID: students[tn][rng.IntN(12)], Pseudonym: "p", Role: "student"},
			EnrichedAt: base.Add(2 * time.Hour),
		}
		if rng.IntN(2) == 0 {
			ev.SchoolID, ev.ClassID = ptr(fmt.Sprintf("school-%d", rng.IntN(3))), ptr(fmt.Sprintf("class-%d", rng.IntN(5)))
		}
		switch ev.Type {
		case records.TypeAttendance:
			ev.Attendance = &records.Attendance{Status: statuses[rng.IntN(len(statuses))], Date: base.AddDate(0, 0, rng.IntN(3)).Truncate(24 * time.Hour)}
		case records.TypeAssessmentResult:
			ev.AssessmentResult = &records.AssessmentResult{AssessmentID: fmt.Sprintf("quiz-%d", rng.IntN(4)),
				Score: float64(rng.IntN(41)) / 2, MaxScore: 20, Attempt: 1}
		case records.TypeAssignmentSubmission:
			sub := &records.AssignmentSubmission{AssignmentID: fmt.Sprintf("essay-%d", rng.IntN(4)),
				SubmittedAt: minute(), Status: "submitted"}
			if rng.IntN(3) > 0 {
				sub.DueAt = ptr(base.Add(45 * time.Minute))
			}
			if rng.IntN(2) == 0 {
				sub.Score = ptr(float64(rng.IntN(11)))
			}
			if rng.IntN(3) == 0 {
				ev.Derived.Late = ptr(rng.IntN(2) == 0) // the enricher's word wins over the due time
			}
			ev.AssignmentSubmission = sub
		case records.TypeSession:
			ev.Session = &records.SessionEvent{Action: records.SessionLogin}
		case records.TypeContentView:
			ev.ContentView = &records.ContentView{ContentID: "video-1", ContentType: "video", DurationSeconds: 60}
		}
		out[i] = ev
	}
	return out
}

// state is a district state flattened to comparable strings: table/tenant/key -> columns.
type state map[string]string

func ts(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

func optStr[T any](p *T) string {
	if p == nil {
		return "null"
	}
	return fmt.Sprint(*p)
}

func fl(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

// expected applies events, in the order they were produced (the order of each tenant's partition), the
// way the sink must: counts add up, the latest by time wins with ties going to the later record, and
// attendance keeps the last mark that arrived.
func expected(evs []*records.EnrichedEvent) state {
	type act struct {
		n    int
		at   time.Time
		last string
	}
	acts := map[string]*act{}
	times := map[string]time.Time{}
	st := state{}
	for _, ev := range evs {
		sk := ev.TenantID + "/" + ev.Actor.InternalID
		a := acts[sk]
		if a == nil {
			a = &act{at: ev.OccurredAt}
			acts[sk] = a
		}
		a.n++
		if !ev.OccurredAt.Before(a.at) {
			a.at, a.last = ev.OccurredAt, ev.Type
		}
		switch ev.Type {
		case records.TypeAttendance:
			p := ev.Attendance
			st["attendance/"+sk+"/"+p.Date.Format(time.DateOnly)] = fmt.Sprint(p.Status, "|", optStr(ev.SchoolID), "|", optStr(ev.ClassID), "|", ev.EventID)
		case records.TypeAssessmentResult:
			p := ev.AssessmentResult
			k := "result/" + sk + "/" + p.AssessmentID
			if prev, ok := times[k]; !ok || !ev.OccurredAt.Before(prev) {
				times[k] = ev.OccurredAt
				st[k] = fmt.Sprint(fl(p.Score), "|", fl(p.MaxScore), "|", ts(ev.OccurredAt), "|", ev.EventID)
			}
		case records.TypeAssignmentSubmission:
			p := ev.AssignmentSubmission
			k := "submission/" + sk + "/" + p.AssignmentID
			if prev, ok := times[k]; !ok || !p.SubmittedAt.Before(prev) {
				times[k] = p.SubmittedAt
				late := ev.Derived.Late
				if late == nil && p.DueAt != nil {
					late = ptr(p.DueAt.Before(p.SubmittedAt))
				}
				score := "null"
				if p.Score != nil {
					score = fl(*p.Score)
				}
				st[k] = fmt.Sprint(ts(p.SubmittedAt), "|", optStr(late), "|", score, "|", ev.EventID)
			}
		}
	}
	for k, a := range acts {
		st["activity/"+k] = fmt.Sprint(a.n, "|", ts(a.at), "|", a.last)
	}
	return st
}

// readState reads the district tables of the given tenants in the same form as expected.
func readState(t *testing.T, pool *pgxpool.Pool, tenants []string) state {
	t.Helper()
	st := state{}
	read := func(tenant, table, cols, prefix string, format func(vals []any) (string, string)) {
		schema, err := tenancy.SchemaName(tenant)
		if err != nil {
			t.Fatal(err)
		}
		rows, err := pool.Query(t.Context(), "SELECT internal_id::text, "+cols+" FROM "+pgx.Identifier{schema, table}.Sanitize())
		if err != nil {
			t.Fatalf("reading %s.%s: %v", schema, table, err)
		}
		defer rows.Close()
		for rows.Next() {
			vals, err := rows.Values()
			if err != nil {
				t.Fatal(err)
			}
			key, val := format(vals[1:])
			st[prefix+"/"+tenant+"/"+vals[0].(string)+key] = val
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
	}
	null := func(v any) string {
		switch v := v.(type) {
		case nil:
			return "null"
		case float64:
			return fl(v)
		case time.Time:
			return ts(v)
		}
		return fmt.Sprint(v)
	}
	for _, tn := range tenants {
		read(tn, "student_activity", "event_count, last_event_at, last_event_type", "activity", func(v []any) (string, string) {
			return "", fmt.Sprint(v[0], "|", ts(v[1].(time.Time)), "|", v[2])
		})
		read(tn, "attendance_daily", "day, status, school_id, class_id, event_id::text", "attendance", func(v []any) (string, string) {
			return "/" + v[0].(time.Time).Format(time.DateOnly), fmt.Sprint(v[1], "|", null(v[2]), "|", null(v[3]), "|", v[4])
		})
		read(tn, "assessment_results_latest", "assessment_id, score, max_score, occurred_at, event_id::text", "result", func(v []any) (string, string) {
			return "/" + v[0].(string), fmt.Sprint(null(v[1]), "|", null(v[2]), "|", null(v[3]), "|", v[4])
		})
		read(tn, "submissions", "assignment_id, submitted_at, late, score, event_id::text", "submission", func(v []any) (string, string) {
			return "/" + v[0].(string), fmt.Sprint(null(v[1]), "|", null(v[2]), "|", null(v[3]), "|", v[4])
		})
	}
	return st
}

// assertState fails the test with the first differences when the database does not hold want.
func assertState(t *testing.T, pool *pgxpool.Pool, want state) {
	t.Helper()
	got := readState(t, pool, testTenants)
	if maps.Equal(got, want) {
		return
	}
	var diffs []string
	for _, k := range slices.Sorted(maps.Keys(want)) {
		if got[k] != want[k] {
			diffs = append(diffs, fmt.Sprintf("%s: got %q, want %q", k, got[k], want[k]))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(got)) {
		if _, ok := want[k]; !ok {
			diffs = append(diffs, fmt.Sprintf("%s: got %q, want no row", k, got[k]))
		}
	}
	t.Fatalf("state differs in %d rows (of %d expected), e.g.:\n%v", len(diffs), len(want), diffs[:min(len(diffs), 8)])
}

// encode turns events into records keyed by tenant.
func encode(t *testing.T, codec *records.Codec, topic string, evs []*records.EnrichedEvent) []*kgo.Record {
	t.Helper()
	recs := make([]*kgo.Record, len(evs))
	for i, ev := range evs {
		b, err := codec.Encode(ev)
		if err != nil {
			t.Fatal(err)
		}
		recs[i] = &kgo.Record{Topic: topic, Key: []byte(ev.TenantID), Value: b}
	}
	return recs
}

// produce creates the topic of recs (4 partitions) if needed, writes recs and returns the end offset (last + 1) of every partition written.
func produce(t *testing.T, kcfg kafkax.Config, recs []*kgo.Record) map[int32]int64 {
	t.Helper()
	cl, err := kafkax.NewClient(kcfg, kafkax.Deps{}, "", kafkax.ProducerOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := kafkax.EnsureTopics(t.Context(), cl.Client, 4, 1, []kafkax.TopicSpec{{Name: recs[0].Topic}}); err != nil {
		t.Fatal(err)
	}
	if err := cl.ProduceSync(t.Context(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	ends := map[int32]int64{}
	for _, r := range recs {
		ends[r.Partition] = max(ends[r.Partition], r.Offset+1)
	}
	return ends
}

// startConsumer runs a store consumer in the test group, polling up to maxPoll records at a time, until
// the returned stop is called (or ctx ends).
func startConsumer(t *testing.T, ctx context.Context, kcfg kafkax.Config, store kafkax.Store, maxPoll int) (stop func()) {
	t.Helper()
	c, err := kafkax.NewStoreConsumer(kcfg, kafkax.Deps{Log: discard()}, kafkax.ConsumerConfig{
		Group: group, Topic: kcfg.Topics().Enriched, MaxPollRecords: maxPoll,
		RetryMin: 10 * time.Millisecond, RetryMax: 50 * time.Millisecond, Extra: kafkatest.GroupOpts(),
	}, store, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(ctx) }()
	return func() { cancel(); <-done }
}

// caughtUp reports whether the store's offsets reached ends.
func caughtUp(t *testing.T, store kafkax.Store, topic string, ends map[int32]int64) bool {
	t.Helper()
	got, err := store.NextOffsets(t.Context(), topic, slices.Collect(maps.Keys(ends)))
	if err != nil {
		t.Fatal(err)
	}
	return maps.Equal(got, ends)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
