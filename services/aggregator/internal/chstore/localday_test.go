package chstore_test

import (
	"testing"
	"time"

	"github.com/edtech-analytics/platform/libs/chutil/chtest"
	"github.com/edtech-analytics/platform/libs/records"
	"github.com/edtech-analytics/platform/services/aggregator/internal/chstore"
	"github.com/edtech-analytics/platform/services/aggregator/internal/synth"
	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kgo"
)

// localEvent is a content view of student in district_1's school-1 at at, with the given local date.
func localEvent(student string, at time.Time, local *time.Time) records.EnrichedEvent {
	ev := records.EnrichedEvent{
		EventID: uuid.NewString(), TenantID: "district_1", SourceID: "lms", Type: records.TypeContentView,
		OccurredAt: at, ReceivedAt: at, EnrichedAt: at, LocalDate: local, PolicyVersion: 1,
		Actor:    records.EnrichedActor{InternalID: student, Pseudonym: "p-" + student[:4], Role: "student"},
		SchoolID: ptr("school-1"), ClassID: ptr("class-1"),
		ContentView: &records.ContentView{ContentID: "video-1", ContentType: "video", DurationSeconds: 60},
	}
	return ev
}

// An event carrying a local date counts on that day in every rollup; one without (enriched before local
// dates) counts on its UTC day.
func TestRollupsCountTheLocalDay(t *testing.T) {
	store, conn, codec := newStore(t)
	ctx := t.Context()
	at := time.Date(2026, 10, 6, 3, 30, 0, 0, time.UTC) // 10:30 p.m. on the 5th in Chicago
	local := time.Date(2026, 10, 5, 0, 0, 0, 0, time.UTC)
	a, b := uuid.NewString(), uuid.NewString()
	evs := []records.EnrichedEvent{localEvent(a, at, &local), localEvent(b, at, nil)}
	if err := store.Write(ctx, topic, 0, facts(t, codec, 0, 0, evs)); err != nil {
		t.Fatal(err)
	}
	for _, q := range []struct {
		query, student, want string
	}{
		{"SELECT toString(any(local_day)) FROM events WHERE student_id = toUUID(?)", a, "2026-10-05"},
		{"SELECT toString(any(local_day)) FROM events WHERE student_id = toUUID(?)", b, "2026-10-06"},
		{"SELECT toString(any(day)) FROM metrics_student_daily WHERE student_id = toUUID(?)", a, "2026-10-05"},
		{"SELECT toString(any(day)) FROM metrics_student_daily WHERE student_id = toUUID(?)", b, "2026-10-06"},
	} {
		var got string
		if err := conn.QueryRow(ctx, q.query, q.student).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != q.want {
			t.Errorf("%s (%s) = %s, want %s", q.query, q.student, got, q.want)
		}
	}
	for _, q := range []string{
		"SELECT toUInt64(uniqExactMerge(active_students)) FROM metrics_daily WHERE level = 'district' AND day = ?",
		"SELECT toUInt64(uniqExactMerge(active_students)) FROM metrics_daily WHERE level = 'school' AND entity_id = 'school-1' AND day = ?",
		"SELECT toUInt64(uniqExactMerge(active_students)) FROM metrics_daily WHERE level = 'class' AND entity_id = 'class-1' AND day = ?",
		"SELECT toUInt64(uniqExactMerge(active_students)) FROM school_daily WHERE school_id = 'school-1' AND day = ?",
	} {
		for _, day := range []string{"2026-10-05", "2026-10-06"} {
			if n := count(t, conn, q, day); n != 1 {
				t.Errorf("%s [%s] = %d, want 1", q, day, n)
			}
		}
	}
	assertRollups(t, ctx, evs, conn)
}

// Erasing a student whose event's local day is not its UTC day removes it from the rollups of the local
// day: the erasure derives again the days the rollups counted the student on.
func TestErasureOfAStudentOnALocalDay(t *testing.T) {
	store, conn, codec := newStore(t)
	ctx := t.Context()
	at := time.Date(2026, 10, 6, 3, 30, 0, 0, time.UTC)
	a, b := uuid.NewString(), uuid.NewString()
	evs := []records.EnrichedEvent{localEvent(a, at, synth.LocalDate(at, time.FixedZone("CDT", -5*60*60))),
		localEvent(b, at.Add(time.Minute), synth.LocalDate(at, time.FixedZone("CDT", -5*60*60)))}
	recs := facts(t, codec, 0, 0, evs)
	marker := records.NewStudentErased(uuid.NewString(), "district_1", a, time.Now())
	recs = append(recs, record(t, codec, 0, int64(len(recs)), marker))
	if err := store.Write(ctx, topic, 0, recs); err != nil {
		t.Fatal(err)
	}
	if n := count(t, conn, "SELECT toUInt64(uniqExactMerge(active_students)) FROM metrics_daily WHERE level = 'district' AND day = '2026-10-05'"); n != 1 {
		t.Errorf("the district's local day counts %d active students after the erasure, want 1", n)
	}
	assertRollups(t, ctx, without(evs, a), conn)
	assertNext(t, store, topic, []int32{0}, map[int32]int64{0: int64(len(recs))})
}

// The migration that adds local_day keeps the days of the rows written before it: they read as their
// UTC date, the day they were counted on, and a repair or erasure of those days still finds them.
func TestLocalDayMigrationKeepsOldRowsDays(t *testing.T) {
	conn, db, _ := chtest.New(t)
	ctx := t.Context()
	if err := chstore.MigrateTo(ctx, conn, db, 9); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 10, 6, 3, 30, 0, 0, time.UTC)
	old := uuid.New()
	batch, err := conn.PrepareBatch(ctx, "INSERT INTO events (tenant_id, event_id, type, occurred_at, school_id, class_id, student_id, role, "+
		"kafka_topic, kafka_partition, kafka_offset)")
	if err != nil {
		t.Fatal(err)
	}
	if err := batch.Append("district_1", uuid.New(), records.TypeContentView, at, "school-1", "class-1", old, "student", topic, uint32(0), uint64(0)); err != nil {
		t.Fatal(err)
	}
	if err := batch.Send(); err != nil {
		t.Fatal(err)
	}
	if err := chstore.Migrate(ctx, conn, db); err != nil {
		t.Fatal(err)
	}
	var day string
	if err := conn.QueryRow(ctx, "SELECT toString(local_day) FROM events WHERE student_id = ?", old).Scan(&day); err != nil {
		t.Fatal(err)
	}
	if day != "2026-10-06" {
		t.Errorf("an old row's local_day = %s, want its UTC date 2026-10-06", day)
	}
	codec, err := records.NewCodec(ctx, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	store, err := chstore.New(conn, codec, chstore.Config{Database: db}, chstore.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	// A new event of the same instant in a Chicago district counts on the 5th; the old row stays on the
	// 6th. Erasing the old row's student finds it on its UTC day.
	fresh := uuid.NewString()
	local := time.Date(2026, 10, 5, 0, 0, 0, 0, time.UTC)
	recs := []*kgo.Record{record(t, codec, 0, 1, ptr(localEvent(fresh, at, &local))),
		record(t, codec, 0, 2, records.NewStudentErased(uuid.NewString(), "district_1", old.String(), time.Now()))}
	if err := store.Write(ctx, topic, 0, recs); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		day  string
		want uint64
	}{{"2026-10-05", 1}, {"2026-10-06", 0}} {
		if n := count(t, conn, "SELECT toUInt64(uniqExactMerge(active_students)) FROM metrics_daily WHERE level = 'district' AND day = ?", tt.day); n != tt.want {
			t.Errorf("district active students on %s = %d, want %d", tt.day, n, tt.want)
		}
		if n := count(t, conn, "SELECT toUInt64(uniqExactMerge(active_students)) FROM school_daily WHERE day = ?", tt.day); n != tt.want {
			t.Errorf("school active students on %s = %d, want %d", tt.day, n, tt.want)
		}
	}
	if n := count(t, conn, "SELECT count() FROM metrics_student_daily WHERE student_id = ?", old); n != 0 {
		t.Errorf("metrics_student_daily keeps %d rows of the erased student of an old row", n)
	}
}
