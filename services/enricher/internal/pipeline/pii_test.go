package pipeline_test

import (
	"context"
	"io"
	"log/slog"
	"maps"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/edtech-analytics/platform/libs/kafkax"
	"github.com/edtech-analytics/platform/libs/keyring/keyringtest"
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
	"github.com/edtech-analytics/platform/services/enricher/internal/quality"
	"github.com/edtech-analytics/platform/services/enricher/internal/roster"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestPersonalDataInFreeText runs the pipeline over four districts whose free-text rules differ: the
// default (mask) masks a phone number in an attendance reason, reject sends a result whose comment holds
// an SSN to the DLQ naming the field and kind, flag keeps the text, drop removes the field. Each committed
// detection is counted once (a client retry of the masked record is not counted again), in the batch's
// stats (the metric) and in the district's quality_pii_daily.
func TestPersonalDataInFreeText(t *testing.T) {
	ctx := context.Background()
	pool, _ := pgtest.New(t)
	if err := tenancy.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	instances := fleet.New(pool, os.Getenv)
	t.Cleanup(instances.Close)
	store := tenants.New(instances)
	policies := privacy.New(pool)
	for id, action := range map[string]string{"dmask": "", "dreject": privacy.ActionReject, "dflag": privacy.ActionFlag, "ddrop": privacy.ActionDrop} {
		if _, err := store.Create(ctx, id, id); err != nil {
			t.Fatal(err)
		}
		if action != "" {
			p, _ := privacy.Template(privacy.TemplateFERPA)
			p.FreeText = &privacy.FreeText{Action: action}
			if _, err := policies.SetPolicy(ctx, id, p, "test"); err != nil {
				t.Fatal(err)
			}
		}
	}
	registry, err := control.Load(ctx, pool)
	if err != nil {
		t.Fatal(err)
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
	if err := kafkax.EnsureTopics(ctx, admin.Client, 2, 1, kafkax.PlatformTopics(kcfg)); err != nil {
		t.Fatal(err)
	}
	codec, err := stream.NewCodec(ctx, kcfg)
	if err != nil {
		t.Fatal(err)
	}

	reason := func(tenant string, i int, text string) *records.RawEvent {
		ev := rawEvent(tenant, i)
		ev.Attendance.Status, ev.Attendance.Reason = "absent", &text
		return ev
	}
	at := time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC)
	comment := "SSN on file: 123-45-6789"
	result := &records.RawEvent{EventID: "00000000-0000-4000-8000-000000000900", TenantID: "dreject", SourceID: "sis",
		Type: records.TypeRosterResult, OccurredAt: at, ReceivedAt: at, SchemaVersion: 1,
		RosterResult: &records.RosterResult{SourcedID: "r1", Status: "active", DateLastModified: at, LineItemSourcedID: "li1",
			StudentSourcedID: "S1", ScoreStatus: "fully graded", ScoreDate: at, Comment: &comment}}
	var recs []*kgo.Record
	for _, ev := range []*records.RawEvent{
		reason("dmask", 1, "call mom at 555-123-4567"),
		reason("dmask", 1, "call mom at 555-123-4567"), // a client retry
		reason("dmask", 2, "sick, back on 2026-09-01"),
		result,
		reason("dflag", 3, "write to dad@example.org"),
		reason("ddrop", 4, "dad: (555) 987-6543, dad@example.org"),
	} {
		b, err := codec.Encode(ev)
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, &kgo.Record{Topic: topics.Raw, Key: []byte(ev.TenantID), Value: b})
	}
	if err := admin.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}

	var (
		mu    sync.Mutex
		total pipeline.Stats
	)
	reached := make(chan struct{})
	districts := fleet.NewDistrictPools(instances)
	enr := enrich.New(codec, enrich.Deps{Tenants: store, Policies: policy.Source{Store: policies}, Zones: timezones.New(pool), Identities: identity.New(districts, 1000),
		Context: roster.New(districts, 1000), Erased: registry, Keys: keyringtest.Over(t, pool)})
	p, sessions := wire(t, pipeline.Config{Group: "enricher", RetryBackoff: 10 * time.Millisecond, OnCommit: func(s pipeline.Stats) {
		mu.Lock()
		defer mu.Unlock()
		before := total.Enriched + total.Dead + total.Duplicates
		total.Enriched, total.Dead, total.Duplicates = total.Enriched+s.Enriched, total.Dead+s.Dead, total.Duplicates+s.Duplicates
		for k, n := range s.PII {
			if total.PII == nil {
				total.PII = map[pipeline.PIIKey]int{}
			}
			total.PII[k] += n
		}
		if before < len(recs) && total.Enriched+total.Dead+total.Duplicates >= len(recs) {
			close(reached)
		}
	}}, kcfg, deps, "enricher-pii", codec, enr, dedup.New(48*time.Hour), claims.New(pool, 48*time.Hour), quality.New(districts), nil,
		append(kafkatest.GroupOpts(), kgo.TransactionTimeout(5*time.Second))...)
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- p.Run(runCtx, sessions) }()
	select {
	case <-reached:
	case err := <-done:
		cancel()
		t.Fatalf("pipeline stopped: %v", err)
	case <-time.After(2 * time.Minute):
		cancel()
		t.Fatal("the records were not all committed")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	// Enriched and dead-lettered records, read committed.
	reasons := map[string]*string{}
	var dead []records.DLQRecord
	cl, err := kafkax.NewClient(kcfg, kafkax.Deps{}, "", kgo.ConsumeTopics(topics.Enriched, topics.DLQ),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	readCtx, stop := context.WithTimeout(ctx, time.Minute)
	defer stop()
	for len(reasons)+len(dead) < 5 {
		fetches := cl.PollFetches(readCtx)
		if err := readCtx.Err(); err != nil {
			t.Fatalf("read %d enriched and %d dead letters: %v", len(reasons), len(dead), err)
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
			reasons[ev.TenantID+"/"+ev.EventID[len(ev.EventID)-3:]] = ev.Attendance.Reason
		})
	}
	str := func(s *string) string {
		if s == nil {
			return "<nil>"
		}
		return *s
	}
	for k, want := range map[string]string{
		"dmask/001": "call mom at [phone]",
		"dmask/002": "sick, back on 2026-09-01",
		"dflag/003": "write to dad@example.org",
		"ddrop/004": "<nil>",
	} {
		if got := str(reasons[k]); got != want {
			t.Errorf("reason of %s = %q, want %q", k, got, want)
		}
	}
	if len(dead) != 1 || dead[0].Reason != records.ReasonPolicyViolation || len(dead[0].Errors) != 1 ||
		dead[0].Errors[0].Field != "roster_result.comment" || *dead[0].TenantID != "dreject" {
		t.Fatalf("dead letters = %+v", dead)
	}
	if want := "policy version 1 rejects free text holding personal data: ssn in roster_result.comment"; dead[0].Detail != want {
		t.Errorf("dead letter detail = %q, want %q", dead[0].Detail, want)
	}

	// Counted once per record, field and kind, as the metric counts them.
	wantPII := map[pipeline.PIIKey]int{
		{"dmask", "lms", "attendance.reason", "phone", "mask"}:       1,
		{"dreject", "sis", "roster_result.comment", "ssn", "reject"}: 1,
		{"dflag", "lms", "attendance.reason", "email", "flag"}:       1,
		{"ddrop", "lms", "attendance.reason", "phone", "drop"}:       1,
		{"ddrop", "lms", "attendance.reason", "email", "drop"}:       1,
	}
	mu.Lock()
	got := total.PII
	mu.Unlock()
	if !maps.Equal(got, wantPII) {
		t.Errorf("counted %v, want %v", got, wantPII)
	}
	// And in each district's daily counts, for the quality report.
	for k, n := range wantPII {
		var records int64
		err := pool.QueryRow(ctx, "SELECT records FROM district_"+k.Tenant+".quality_pii_daily WHERE source_id = $1 AND field = $2 AND kind = $3",
			k.Source, k.Field, k.Kind).Scan(&records)
		if err != nil || records != int64(n) {
			t.Errorf("quality_pii_daily of %v = %d, %v; want %d", k, records, err, n)
		}
	}
	var rows int
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM district_dmask.quality_pii_daily").Scan(&rows); err != nil || rows != 1 {
		t.Errorf("district_dmask.quality_pii_daily holds %d rows (%v), want 1", rows, err)
	}
}
