package pipeline_test

import (
	"context"
	"fmt"
	"github.com/edtech-analytics/platform/libs/keyring/keyringtest"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"testing"
	"time"

	"github.com/edtech-analytics/platform/libs/kafkax"
	"github.com/edtech-analytics/platform/libs/pgutil/pgtest"
	"github.com/edtech-analytics/platform/libs/records"
	"github.com/edtech-analytics/platform/libs/svc/stream"
	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/edtech-analytics/platform/libs/tenancy/fleet"
	"github.com/edtech-analytics/platform/libs/tenancy/privacy"
	"github.com/edtech-analytics/platform/libs/tenancy/tenants"
	"github.com/edtech-analytics/platform/libs/tenancy/timezones"
	"github.com/edtech-analytics/platform/libs/testenv/kafkatest"
	"github.com/edtech-analytics/platform/services/enricher/internal/claims"
	"github.com/edtech-analytics/platform/services/enricher/internal/control"
	"github.com/edtech-analytics/platform/services/enricher/internal/dedup"
	"github.com/edtech-analytics/platform/services/enricher/internal/enrich"
	"github.com/edtech-analytics/platform/services/enricher/internal/identity"
	"github.com/edtech-analytics/platform/services/enricher/internal/pipeline"
	"github.com/edtech-analytics/platform/services/enricher/internal/policy"
	"github.com/edtech-analytics/platform/services/enricher/internal/roster"
	"github.com/twmb/franz-go/pkg/kgo"
)

func rawEvent(tenant string, i int) *records.RawEvent {
	at := time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Second)
	school := "sch1"
	return &records.RawEvent{
		EventID: fmt.Sprintf("00000000-0000-4000-8000-%012d", i), TenantID: tenant, SourceID: "lms", Type: records.TypeAttendance,
		OccurredAt: at, ReceivedAt: at, SchemaVersion: 1, Actor: records.Actor{SISID: fmt.Sprintf("S%d", i%25), Role: "student"},
		SchoolID: &school, Attendance: &records.Attendance{Status: "present", Date: at.Truncate(24 * time.Hour)},
	}
}

// TestExactlyOnceAcrossRestartsWithRetriesAndRejects runs the transactional pipeline, stopping and
// restarting it at random points while client retries (same event_id) and bad records arrive, and proves
// enriched (read_committed) holds each accepted event exactly once, with stable ids and typed dead letters.
func TestExactlyOnceAcrossRestartsWithRetriesAndRejects(t *testing.T) {
	ctx := context.Background()
	pool, _ := pgtest.New(t)
	if err := tenancy.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	store := tenants.New(fleet.New(pool, os.Getenv))
	registry, err := control.Load(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"d1", "d2"} {
		if _, err := store.Create(ctx, id, "District "+id); err != nil {
			t.Fatal(err)
		}
	}
	_, kcfg := kafkatest.New(t)
	topics := kcfg.Topics()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	deps := kafkax.Deps{Log: log}
	admin, err := kafkax.NewClient(kcfg, deps, "", kafkax.ProducerOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if err := kafkax.EnsureTopics(ctx, admin.Client, 4, 1, kafkax.PlatformTopics(kcfg)); err != nil {
		t.Fatal(err)
	}
	codec, err := stream.NewCodec(ctx, kcfg)
	if err != nil {
		t.Fatal(err)
	}

	// 600 distinct events over two districts (the same SIS ids in both), every tenth sent twice (a client
	// retry), one undecodable record and one event of an unknown district.
	const distinct = 600
	var recs []*kgo.Record
	add := func(ev *records.RawEvent) {
		b, err := codec.Encode(ev)
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, &kgo.Record{Topic: topics.Raw, Key: []byte(ev.TenantID), Value: b, Timestamp: received})
	}
	for i := 0; i < distinct; i++ {
		add(rawEvent([]string{"d1", "d2"}[i%2], i))
	}
	for i := 0; i < distinct; i += 10 {
		add(rawEvent([]string{"d1", "d2"}[i%2], i))
	}
	add(rawEvent("nowhere", 99999))
	recs = append(recs, &kgo.Record{Topic: topics.Raw, Key: []byte("d1"), Value: []byte("not avro")})
	half := len(recs) / 2
	if err := admin.ProduceSync(ctx, recs[:half]...).FirstErr(); err != nil {
		t.Fatal(err)
	}

	run := func(d time.Duration) {
		enr := enrich.New(codec, enrich.Deps{Tenants: store, Policies: policy.Source{Store: privacy.New(pool)}, Zones: timezones.New(pool), Identities: identity.New(fleet.NewDistrictPools(fleet.New(pool, os.Getenv)), 1000),
			Context: roster.New(fleet.NewDistrictPools(fleet.New(pool, os.Getenv)), 1000), Erased: registry, Keys: keyringtest.Over(t, pool)})
		p, sessions := wire(t, pipeline.Config{Group: "enricher", MaxPollRecords: 37, RetryBackoff: 50 * time.Millisecond},
			kcfg, deps, fmt.Sprintf("enricher-%d", rand.Int()), codec, enr, dedup.New(48*time.Hour), claims.New(pool, 48*time.Hour), nil, nil,
			append(kafkatest.GroupOpts(), kgo.TransactionTimeout(2*time.Second))...)
		rctx, cancel := context.WithTimeout(ctx, d)
		defer cancel()
		if err := p.Run(rctx, sessions); err != nil {
			t.Fatalf("pipeline: %v", err)
		}
	}
	for trial := 0; trial < 4; trial++ {
		run(time.Duration(150+rand.IntN(400)) * time.Millisecond)
		if trial == 1 {
			if err := admin.ProduceSync(ctx, recs[half:]...).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
	}

	// Run to completion, then read what committed.
	counts := map[string]int{}
	ids := map[string]string{}
	var dead []records.DLQRecord
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		run(1500 * time.Millisecond)
		counts, ids, dead = readBack(t, kcfg, codec)
		if len(counts) == distinct && len(dead) == 2 {
			break
		}
	}
	if len(counts) != distinct {
		t.Fatalf("enriched holds %d distinct events, want %d", len(counts), distinct)
	}
	for id, n := range counts {
		if n != 1 {
			t.Fatalf("event %s enriched %d times", id, n)
		}
	}
	reasons := map[string]bool{}
	for _, d := range dead {
		reasons[d.Reason] = true
	}
	if len(dead) != 2 || !reasons[records.ReasonUndecodable] || !reasons[records.ReasonOther] {
		t.Fatalf("dead letters = %+v", dead)
	}
	// Same SIS id in two districts: two students, two unjoinable pseudonyms; within a district, stable.
	if ids["d1/S0"] == "" || ids["d1/S0"] == ids["d2/S1"] {
		t.Fatalf("identities = %v", ids)
	}
}

// readBack reads enriched and dlq with read_committed and returns per-event counts, the internal id
// per tenant/SIS id (failing if one SIS id got two ids), and the dead letters.
// received is the raw records' Kafka timestamp (the gateway's time of receipt), which enriched records
// carry in a header.
var received = time.Now().Truncate(time.Millisecond)

func readBack(t *testing.T, kcfg kafkax.Config, codec *records.Codec) (map[string]int, map[string]string, []records.DLQRecord) {
	t.Helper()
	topics := kcfg.Topics()
	cl, err := kafkax.NewClient(kcfg, kafkax.Deps{}, "", kgo.ConsumeTopics(topics.Enriched, topics.DLQ),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	counts, ids := map[string]int{}, map[string]string{}
	var dead []records.DLQRecord
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
		fetches := cl.PollFetches(ctx)
		cancel()
		if fetches.NumRecords() == 0 {
			return counts, ids, dead
		}
		fetches.EachRecord(func(r *kgo.Record) {
			if r.Topic == topics.DLQ {
				var d records.DLQRecord
				if err := codec.Decode(r.Value, &d); err != nil {
					t.Fatal(err)
				}
				dead = append(dead, d)
				return
			}
			var ev records.EnrichedEvent
			if err := codec.Decode(r.Value, &ev); err != nil {
				t.Fatal(err)
			}
			if got := kafkax.ReceivedAt(r); !got.Equal(received) {
				t.Fatalf("enriched record of %s was received at %v, want the raw record's timestamp %v", ev.EventID, got, received)
			}
			counts[ev.TenantID+"/"+ev.EventID]++
			k := ev.TenantID + "/" + *ev.Actor.SISID
			if prev, ok := ids[k]; ok && prev != ev.Actor.InternalID {
				t.Fatalf("%s has two internal ids: %s and %s", k, prev, ev.Actor.InternalID)
			}
			ids[k] = ev.Actor.InternalID
			if ev.Actor.Pseudonym == "" || ev.PolicyVersion != 0 { // the default FERPA policy
				t.Fatalf("enriched actor = %+v", ev.Actor)
			}
		})
	}
}
