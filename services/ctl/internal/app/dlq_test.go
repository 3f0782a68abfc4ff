package app

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/edtech-analytics/platform/libs/kafkax"
	"github.com/edtech-analytics/platform/libs/records"
	"github.com/edtech-analytics/platform/libs/svc/stream"
	"github.com/edtech-analytics/platform/libs/testenv/kafkatest"
	"github.com/twmb/franz-go/pkg/kgo"
)

func ptr[T any](v T) *T { return &v }

// dlqEnv is a kfake cluster whose DLQ holds dead letters of several districts, stages and reasons.
func dlqEnv(t *testing.T) (kafkax.Config, []string) {
	t.Helper()
	ctx := t.Context()
	_, kcfg := kafkatest.New(t)
	codec, err := stream.NewCodec(ctx, kcfg)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kafkax.NewClient(kcfg, kafkax.Deps{}, "", kafkax.ProducerOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := kafkax.EnsureTopics(ctx, cl.Client, 4, 1, kafkax.PlatformTopics(kcfg)); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC)
	letters := []struct {
		key, stage, reason string
		tenant             *string
		original           string
		source             *int64 // the source record's offset in enriched, partition 2
	}{
		{"d1", records.StageEnricher, records.ReasonInvalidField, ptr("d1"), "d1-invalid-1", nil},
		{"d1", records.StageEnricher, records.ReasonInvalidField, ptr("d1"), "d1-invalid-2", nil},
		{"d1/3", records.StageEnricher, records.ReasonUndecodable, nil, "d1-garbage", nil}, // tenant from the key
		{"d1", records.StageEnricher, records.ReasonPolicyViolation, ptr("d1"), "d1-policy", nil},
		{"d1", records.StageGateway, records.ReasonInvalidField, ptr("d1"), `{"json":"from a client"}`, nil},
		{"d2", records.StageEnricher, records.ReasonOther, ptr("d2"), "d2-unknown-tenant", nil},
		// The sink sent one twice (it crashed before moving past the record): listed once.
		{"d3", records.StageSink, records.ReasonStoreRefused, ptr("d3"), "d3-nul", ptr(int64(40))},
		{"d3", records.StageSink, records.ReasonStoreRefused, ptr("d3"), "d3-nul", ptr(int64(40))},
		{"d3", records.StageSink, records.ReasonStoreRefused, ptr("d3"), "d3-other", ptr(int64(41))},
	}
	var originals []string
	for i, l := range letters {
		errs := []records.FieldError{}
		if l.reason == records.ReasonInvalidField {
			errs = append(errs, records.FieldError{Field: "attendance.status", Message: "unknown status"})
		}
		d := records.DLQRecord{Reason: l.reason, Detail: "detail " + l.original, Errors: errs, Stage: l.stage,
			TenantID: l.tenant, Original: []byte(l.original), FailedAt: at.Add(time.Duration(i) * time.Second),
			Headers: []records.Header{{Key: "traceparent", Value: []byte("tp-" + l.original)}}}
		if l.source != nil {
			topic, part := kcfg.Topics().Enriched, 2
			d.SourceTopic, d.SourcePartition, d.SourceOffset = &topic, &part, l.source
		}
		b, err := codec.Encode(&d)
		if err != nil {
			t.Fatal(err)
		}
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: kcfg.Topics().DLQ, Key: []byte(l.key), Value: b}).FirstErr(); err != nil {
			t.Fatal(err)
		}
		originals = append(originals, l.original)
	}
	return kcfg, originals
}

func kafkaArgs(kcfg kafkax.Config) []string {
	return []string{"--kafka.brokers", strings.Join(kcfg.Brokers, ","), "--kafka.topic-prefix", kcfg.TopicPrefix}
}

// rawRecords reads what the raw topic holds.
func rawRecords(t *testing.T, kcfg kafkax.Config) []*kgo.Record {
	t.Helper()
	cl, err := kafkax.NewClient(kcfg, kafkax.Deps{}, "", kgo.ConsumeTopics(kcfg.Topics().Raw), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var out []*kgo.Record
	for {
		ctx, cancel := context.WithTimeout(t.Context(), 700*time.Millisecond)
		fs := cl.PollFetches(ctx)
		cancel()
		if fs.NumRecords() == 0 {
			return out
		}
		out = append(out, fs.Records()...)
	}
}

func TestDLQListAndReplay(t *testing.T) {
	_, url := migratedDB(t)
	kcfg, _ := dlqEnv(t)
	k := kafkaArgs(kcfg)

	out := mustCtl(t, url, append([]string{"dlq", "list", "--tenant", "d1"}, k...)...)
	if rows := strings.Count(strings.TrimSpace(out), "\n"); rows != 5 || strings.Contains(out, "d2-unknown") {
		t.Fatalf("dlq list --tenant d1 shows %d rows:\n%s", rows, out)
	}
	var listed []deadLetter
	out = mustCtl(t, url, append([]string{"dlq", "list", "--reason", "invalid_field", "--limit", "2", "--output", "json"}, k...)...)
	if err := json.Unmarshal([]byte(out), &listed); err != nil {
		t.Fatal(err)
	}
	// Lower-case keys, as in every other JSON of the platform.
	var keyed []struct {
		Errors []map[string]string `json:"errors"`
	}
	if err := json.Unmarshal([]byte(out), &keyed); err != nil {
		t.Fatal(err)
	}
	if len(keyed) == 0 || !maps.Equal(keyed[0].Errors[0], map[string]string{"field": "attendance.status", "message": "unknown status"}) {
		t.Errorf("dlq list --output json writes field errors as:\n%s", out)
	}
	// A stage's repeat of a dead letter (same source record) is listed once.
	out = mustCtl(t, url, append([]string{"dlq", "list", "--reason", "store_refused"}, k...)...)
	if rows := strings.Count(strings.TrimSpace(out), "\n"); rows != 2 || strings.Count(out, "d3-nul") != 1 {
		t.Errorf("dlq list --reason store_refused shows %d rows, want 2:\n%s", rows, out)
	}
	// The last two of the three invalid_field letters, oldest first.
	if len(listed) != 2 || listed[0].Detail != "detail d1-invalid-2" || listed[1].Stage != records.StageGateway || listed[0].ReplayedAt != nil {
		t.Fatalf("dlq list --reason invalid_field --limit 2 = %+v", listed)
	}

	// Replay d1's enricher dead letters: original bytes, headers and keys go back to raw; the gateway's
	// reject (JSON from a client) is not replayable.
	out = mustCtl(t, url, append([]string{"dlq", "replay", "--tenant", "d1", "--dry-run"}, k...)...)
	if !strings.Contains(out, "would replay 4 of 5") || len(rawRecords(t, kcfg)) != 0 {
		t.Fatalf("dry run: %q", out)
	}
	out = mustCtl(t, url, append([]string{"dlq", "replay", "--tenant", "d1"}, k...)...)
	if !strings.Contains(out, "replayed 4 of 5") || !strings.Contains(out, "1 not replayable") {
		t.Fatalf("replay printed %q", out)
	}
	raw := rawRecords(t, kcfg)
	var values []string
	for _, r := range raw {
		values = append(values, string(r.Value))
		if len(r.Headers) != 1 || string(r.Headers[0].Value) != "tp-"+string(r.Value) {
			t.Errorf("replayed %s with headers %+v", r.Value, r.Headers)
		}
		if string(r.Value) == "d1-garbage" && string(r.Key) != "d1/3" {
			t.Errorf("replayed with key %q, want the original d1/3", r.Key)
		}
	}
	slices.Sort(values)
	if want := []string{"d1-garbage", "d1-invalid-1", "d1-invalid-2", "d1-policy"}; !slices.Equal(values, want) {
		t.Fatalf("raw holds %v, want %v", values, want)
	}

	// Each dead letter is replayed once: again, nothing; --again replays the chosen ones anew.
	out = mustCtl(t, url, append([]string{"dlq", "replay", "--tenant", "d1"}, k...)...)
	if !strings.Contains(out, "replayed 0 of 5") || !strings.Contains(out, "4 replayed before") || len(rawRecords(t, kcfg)) != 4 {
		t.Fatalf("second replay: %q", out)
	}
	mustCtl(t, url, append([]string{"dlq", "replay", "--tenant", "d1", "--reason", "policy_violation", "--again"}, k...)...)
	if n := len(rawRecords(t, kcfg)); n != 5 {
		t.Fatalf("raw holds %d records after --again, want 5", n)
	}
	if err := json.Unmarshal([]byte(mustCtl(t, url, append([]string{"dlq", "list", "--tenant", "d1", "--output", "json"}, k...)...)), &listed); err != nil {
		t.Fatal(err)
	}
	for _, d := range listed {
		if (d.ReplayedAt != nil) != (d.Stage == records.StageEnricher) {
			t.Errorf("%s/%s replayed at %v", d.Stage, d.Detail, d.ReplayedAt)
		}
	}

	for _, args := range [][]string{
		{"dlq", "list", "--reason", "bogus"},
		{"dlq", "list", "--limit", "0"},
		{"dlq", "replay", "--kafka.brokers", ""},
	} {
		if _, _, err := ctl(t, url, append(args, "--kafka.topic-prefix", kcfg.TopicPrefix)...); !errors.Is(err, ErrUsage) {
			t.Errorf("ctl %s: %v, want a usage error", strings.Join(args, " "), err)
		}
	}
}
