package app_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/edtech-analytics/platform/libs/conf"
	"github.com/edtech-analytics/platform/libs/kafkax"
	"github.com/edtech-analytics/platform/libs/obs"
	"github.com/edtech-analytics/platform/libs/obs/obstest"
	"github.com/edtech-analytics/platform/libs/pgutil/pgtest"
	"github.com/edtech-analytics/platform/libs/records"
	"github.com/edtech-analytics/platform/libs/svc"
	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/edtech-analytics/platform/libs/tenancy/fleet"
	tenantstore "github.com/edtech-analytics/platform/libs/tenancy/tenants"
	"github.com/edtech-analytics/platform/libs/testenv/kafkatest"
	"github.com/edtech-analytics/platform/services/sink/app"
	"github.com/edtech-analytics/platform/services/sink/internal/sinktest"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestPoisonRecordsKeepEveryOtherDistrictFlowing: in the middle of a stream of six districts on four
// partitions come a record PostgreSQL refuses (a NUL byte in a school id), one that does not decode and
// one that breaks the rules. Each goes to the dead-letter topic once, with the sink's stage and its
// reason, and every other record of every district is applied exactly once; nothing stays stalled.
func TestPoisonRecordsKeepEveryOtherDistrictFlowing(t *testing.T) {
	pool, dbURL := pgtest.New(t)
	if err := tenancy.Migrate(t.Context(), pool); err != nil {
		t.Fatal(err)
	}
	tenants, districts := []string{"ash", "birch", "cedar", "dogwood", "elm", "fir"}, tenantstore.New(fleet.New(pool, os.Getenv))
	for _, id := range tenants {
		if _, err := districts.Create(t.Context(), id, id); err != nil {
			t.Fatal(err)
		}
	}
	_, kcfg := kafkatest.New(t)
	tel, err := obs.Init(t.Context(), "sink")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	logs := obstest.NewLog()
	done := make(chan error, 1)
	go func() {
		done <- app.Run(ctx, app.Config{AdminAddr: "127.0.0.1:0", DatabaseURL: conf.Secret(dbURL), Group: "sink", MaxPollRecords: 500,
			Kafka: kcfg, Keys: testKeys}, svc.Runtime{Log: slog.New(slog.NewJSONHandler(logs, nil)), Tel: tel}, kafkatest.GroupOpts()...)
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	admin := "http://" + logs.Addr(t, "admin listening", nil)

	codec, err := records.NewCodec(t.Context(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(21, 21))
	good := sinktest.GenEvents(rng, tenants, 900)
	at := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	refusedByPostgres := &records.EnrichedEvent{EventID: "0f0f0f0f-0000-4000-8000-000000000001", TenantID: "cedar", SourceID: "lms",
		Type: records.TypeAttendance, OccurredAt: at, ReceivedAt: at, EnrichedAt: at, SchemaVersion: 1,
		Actor:    records.EnrichedActor{InternalID: "0f0f0f0f-0000-4000-8000-0000000000aa", Pseudonym: "p", Role: "student"},
		SchoolID: sinktest.Ptr("sch\x00ool"), Attendance: &records.Attendance{Status: records.AttendancePresent, Date: at.Truncate(24 * time.Hour)}}
	breaksRules := *refusedByPostgres
	breaksRules.TenantID, breaksRules.SchoolID, breaksRules.Actor.InternalID = "elm", nil, "not-a-uuid"

	topic := kcfg.Topics().Enriched
	recs := sinktest.Encode(t, codec, topic, good[:450])
	poison := sinktest.Encode(t, codec, topic, []*records.EnrichedEvent{refusedByPostgres, &breaksRules})
	poison = append(poison, &kgo.Record{Topic: topic, Key: []byte("ash"), Value: []byte("not avro")})
	recs = append(recs, poison...)
	recs = append(recs, sinktest.Encode(t, codec, topic, good[450:])...)
	ends := sinktest.Produce(t, kcfg, recs)

	want := sinktest.Expected(good)
	poolOf := func(string) *pgxpool.Pool { return pool }
	sinktest.WaitFor(t, "every good record in its district", func() bool {
		return maps.Equal(sinktest.ReadState(t, poolOf, tenants), want)
	})
	letters := readDLQ(t, kcfg, codec, len(poison))
	var reasons []string
	for _, d := range letters {
		if d.Stage != records.StageSink || d.SourceOffset == nil || *d.SourceOffset >= ends[int32(*d.SourcePartition)] {
			t.Errorf("dead letter %+v", d)
		}
		reasons = append(reasons, d.Reason)
	}
	slices.Sort(reasons)
	if want := []string{records.ReasonInvalidField, records.ReasonStoreRefused, records.ReasonUndecodable}; !slices.Equal(reasons, want) {
		t.Errorf("dead letters for %v, want %v", reasons, want)
	}
	sinktest.WaitFor(t, "readiness without stalled partitions", func() bool { return readyStatus(t, admin) == "ready" })
	sinktest.AssertState(t, poolOf, tenants, want)
}

// readDLQ reads n dead letters (failing if more arrive while it reads them).
func readDLQ(t *testing.T, kcfg kafkax.Config, codec *records.Codec, n int) []records.DLQRecord {
	t.Helper()
	cl, err := kafkax.NewClient(kcfg, kafkax.Deps{}, "", kgo.ConsumeTopics(kcfg.Topics().DLQ),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var out []records.DLQRecord
	deadline := time.Now().Add(time.Minute)
	for len(out) < n && time.Now().Before(deadline) {
		pctx, cancel := context.WithTimeout(t.Context(), time.Second)
		fetches := cl.PollFetches(pctx)
		cancel()
		for _, r := range fetches.Records() {
			var d records.DLQRecord
			if err := codec.Decode(r.Value, &d); err != nil {
				t.Fatal(err)
			}
			out = append(out, d)
		}
	}
	if len(out) != n {
		t.Fatalf("the dead-letter topic holds %d records, want %d", len(out), n)
	}
	return out
}

// readyStatus is the status /readyz answers.
func readyStatus(t *testing.T, admin string) string {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, admin+"/readyz", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return ""
	}
	defer func() { _ = resp.Body.Close() }()
	var body struct {
		Status string `json:"status"`
	}
	b, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(b, &body)
	return body.Status
}
