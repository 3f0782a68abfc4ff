package app_test

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edtech-analytics/platform/libs/archive"
	"github.com/edtech-analytics/platform/libs/archive/archivetest"
	"github.com/edtech-analytics/platform/libs/kafkax"
	"github.com/edtech-analytics/platform/libs/obs"
	"github.com/edtech-analytics/platform/libs/obs/obstest"
	"github.com/edtech-analytics/platform/libs/records"
	"github.com/edtech-analytics/platform/libs/svc"
	"github.com/edtech-analytics/platform/libs/svc/stream"
	"github.com/edtech-analytics/platform/libs/testenv/kafkatest"
	"github.com/edtech-analytics/platform/libs/testenv/s3test"
	"github.com/edtech-analytics/platform/services/archiver/app"
	"github.com/twmb/franz-go/pkg/kgo"
)

func TestConfig(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr string // "" for valid
	}{
		{name: "defaults need an archive", args: nil, wantErr: "archive.url"},
		{name: "valid", args: []string{"-archive.url", "file:///var/lib/edtech/archive"}},
		{name: "not a url", args: []string{"-archive.url", "/var/lib/edtech/archive"}, wantErr: "archive.url"},
		{name: "driver not built in", args: []string{"-archive.url", "ftp://host/archive"}, wantErr: "archive.url"},
		{name: "s3", args: []string{"-archive.url", "s3://edtech-archive?region=eu-west-1"}},
		{name: "gcs", args: []string{"-archive.url", "gs://edtech-archive"}},
		{name: "azure", args: []string{"-archive.url", "azblob://edtech-archive"}},
		{name: "empty group", args: []string{"-archive.url", "file:///a", "-group", ""}, wantErr: "group"},
		{name: "poll size", args: []string{"-archive.url", "file:///a", "-max-poll-records", "0"}, wantErr: "max-poll-records"},
		{name: "compaction interval", args: []string{"-archive.url", "file:///a", "-compact.interval", "-1s"}, wantErr: "compact.interval"},
		{name: "compaction target", args: []string{"-archive.url", "file:///a", "-compact.target-bytes", "0"}, wantErr: "compact.target-bytes"},
		{name: "compaction grace", args: []string{"-archive.url", "file:///a", "-compact.grace", "-1h"}, wantErr: "compact.grace"},
		{name: "kafka checked too", args: []string{"-archive.url", "file:///a", "-kafka.partitions", "0"}, wantErr: "kafka.partitions"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("ARCHIVE_URL", "")
			var cfg app.Config
			fs := flag.NewFlagSet("archiver", flag.ContinueOnError)
			cfg.RegisterFlags(fs)
			if err := fs.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			err := cfg.Validate()
			if tt.wantErr == "" && err != nil {
				t.Fatalf("Validate: %v", err)
			}
			if tt.wantErr != "" && (err == nil || !strings.HasPrefix(err.Error(), tt.wantErr+":")) {
				t.Fatalf("Validate = %v, want an error about %s", err, tt.wantErr)
			}
			if tt.wantErr == "archive.url" && !strings.Contains(err.Error(), "ARCHIVE_URL") {
				t.Errorf("Validate = %v, want it to name ARCHIVE_URL", err)
			}
			if tt.wantErr == "" && (cfg.Group != "edtech-archiver" || cfg.MaxPollRecords != 100_000 || cfg.CompactInterval != 15*time.Minute ||
				cfg.CompactTargetBytes != 128<<20 || cfg.CompactGrace != 24*time.Hour) {
				t.Errorf("defaults: %+v", cfg)
			}
		})
	}
}

type pos struct {
	p   int32
	off int64
}

// TestRunArchivesBothLayers produces raw and enriched records of several districts and days (and a few
// raw values that are not Avro), runs the archiver until its index reaches the end of every partition,
// and reads every file back: each record is in exactly one file, of its tenant and day, named by the
// offsets inside; the typed columns hold the event's values; the record column decodes to the original.
// It runs against a file:// archive and an s3:// one (s3test's server on loopback).
func TestRunArchivesBothLayers(t *testing.T) {
	for _, tt := range []struct {
		name string
		url  func(t *testing.T) string
	}{
		{"file", func(t *testing.T) string { return "file://" + t.TempDir() }},
		{"s3", func(t *testing.T) string { return s3test.New(t) }},
	} {
		t.Run(tt.name, func(t *testing.T) { runArchivesBothLayers(t, tt.url(t)) })
	}
}

func runArchivesBothLayers(t *testing.T, archiveURL string) {
	_, kcfg := kafkatest.New(t)
	bucket, err := archive.Open(t.Context(), archiveURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := bucket.Close(); err != nil {
			t.Error(err)
		}
	})
	arch := archive.Blob{B: bucket}
	cfg := app.Config{ArchiveURL: archiveURL, AdminAddr: "127.0.0.1:0", Group: "archiver", MaxPollRecords: 700, Kafka: kcfg}
	tel, err := obs.Init(t.Context(), "archiver")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	logs := obstest.NewLog()
	done := make(chan error, 1)
	go func() {
		done <- app.Run(ctx, cfg, svc.Runtime{Log: slog.New(slog.NewJSONHandler(logs, nil)), Tel: tel}, kafkatest.GroupOpts()...)
	}()
	admin := logs.Addr(t, "admin listening", nil)
	waitFor(t, "/readyz", func() bool {
		status, _ := get(t, "http://"+admin+"/readyz")
		return status == http.StatusOK
	})

	codec, err := stream.NewCodec(t.Context(), kcfg)
	if err != nil {
		t.Fatal(err)
	}
	producer, err := kafkax.NewClient(kcfg, kafkax.Deps{}, "", append(kafkax.ProducerOptions(), kgo.RecordPartitioner(kgo.ManualPartitioner()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	scfg := kcfg.ForService("archiver")
	topics := scfg.Topics()
	const n = 3000
	raws, enricheds := archivetest.RawEvents(n), archivetest.EnrichedEvents(n)
	var batch []*kgo.Record
	for i := range n {
		for _, e := range []any{raws[i], enricheds[i]} {
			b, err := codec.Encode(e)
			if err != nil {
				t.Fatal(err)
			}
			topic := topics.Raw
			if _, ok := e.(*records.EnrichedEvent); ok {
				topic = topics.Enriched
			}
			// Spread over the partitions whatever the keys hash to: each partition holds every tenant.
			batch = append(batch, &kgo.Record{Topic: topic, Partition: int32(i % 4), Key: []byte(raws[i].TenantID), Value: b})
		}
	}
	for i := range 5 {
		batch = append(batch, &kgo.Record{Topic: topics.Raw, Partition: int32(i % 4), Key: []byte("lakeside"), Value: []byte(fmt.Sprintf("not avro %d", i))})
	}
	produced := map[string]map[pos]*kgo.Record{topics.Raw: {}, topics.Enriched: {}}
	end := map[string]map[int32]int64{topics.Raw: {}, topics.Enriched: {}}
	for _, r := range producer.ProduceSync(t.Context(), batch...) {
		if r.Err != nil {
			t.Fatal(r.Err)
		}
		rec := r.Record
		produced[rec.Topic][pos{rec.Partition, rec.Offset}] = rec
		end[rec.Topic][rec.Partition] = max(end[rec.Topic][rec.Partition], rec.Offset+1)
	}

	waitFor(t, "the index at the end of every partition", func() bool {
		for topic, layer := range map[string]string{topics.Raw: "raw", topics.Enriched: "enriched"} {
			for p, e := range end[topic] {
				b, err := arch.ReadAll(t.Context(), archive.IndexKey(layer, p))
				if err != nil {
					return false
				}
				if last, err := strconv.ParseInt(string(b), 10, 64); err != nil || last+1 < e {
					return false
				}
			}
		}
		return true
	})
	byID := map[string]*records.RawEvent{}
	for _, e := range raws {
		byID[e.EventID] = e
	}
	rawFiles := archivetest.ReadBucket(t, arch, "raw", archivetest.Raw)
	undecodable := 0
	seen := map[pos]int{}
	for _, f := range rawFiles {
		for _, row := range f.Rows {
			at := pos{row.KafkaPartition, row.KafkaOffset}
			seen[at]++
			orig := produced[topics.Raw][at]
			if orig == nil || string(orig.Value) != string(row.Record) {
				t.Fatalf("%s: offset %d is not the record produced there", f.Key, row.KafkaOffset)
			}
			if row.DecodeError != nil {
				undecodable++
				continue
			}
			var got records.RawEvent
			if err := codec.Decode(row.Record, &got); err != nil {
				t.Fatalf("%s: record column: %v", f.Key, err)
			}
			want := byID[row.EventID]
			if want == nil || got.EventID != want.EventID {
				t.Fatalf("%s: record column holds event %q, row %q", f.Key, got.EventID, row.EventID)
			}
			checkRaw(t, f.Key, row, want)
		}
	}
	if undecodable != 5 {
		t.Errorf("%d undecodable records archived, want 5", undecodable)
	}
	for at := range produced[topics.Raw] {
		if seen[at] != 1 {
			t.Errorf("raw %v archived %d times", at, seen[at])
		}
	}

	enrichedByID := map[string]*records.EnrichedEvent{}
	for _, e := range enricheds {
		enrichedByID[e.EventID] = e
	}
	seen = map[pos]int{}
	for _, f := range archivetest.ReadBucket(t, arch, "enriched", archivetest.Enriched) {
		for _, row := range f.Rows {
			at := pos{row.KafkaPartition, row.KafkaOffset}
			seen[at]++
			var got records.EnrichedEvent
			if err := codec.Decode(row.Record, &got); err != nil {
				t.Fatalf("%s: record column: %v", f.Key, err)
			}
			want := enrichedByID[row.EventID]
			if want == nil || got.EventID != want.EventID || string(produced[topics.Enriched][at].Value) != string(row.Record) {
				t.Fatalf("%s: offset %d does not hold event %q as produced", f.Key, row.KafkaOffset, row.EventID)
			}
			if row.ActorInternalID != want.Actor.InternalID || row.ActorPseudonym != want.Actor.Pseudonym || *row.ActorSISID != *want.Actor.SISID ||
				row.PolicyVersion != 3 || !row.EnrichedAt.Equal(want.EnrichedAt.Truncate(time.Millisecond)) ||
				row.DerivedLate == nil || *row.DerivedLate != *want.Derived.Late || row.DerivedAgeBand != nil {
				t.Errorf("%s: enriched columns of %s: %+v", f.Key, row.EventID, row)
			}
		}
	}
	for at := range produced[topics.Enriched] {
		if seen[at] != 1 {
			t.Errorf("enriched %v archived %d times", at, seen[at])
		}
	}
	_, body := get(t, "http://"+admin+"/metrics")
	if !strings.Contains(body, "archiver_records_archived") {
		t.Error("/metrics has no archiver_records_archived")
	}
	for _, name := range []string{"archiver_lag_records", "archiver_lag_seconds"} {
		var lags []string
		for _, line := range strings.Split(body, "\n") {
			if strings.HasPrefix(line, name+"{") {
				lags = append(lags, line)
			}
		}
		if len(lags) != 8 {
			t.Errorf("%s has %d series, want one per layer and partition (8): %q", name, len(lags), lags)
		}
		for _, l := range lags {
			if !strings.HasSuffix(l, " 0") {
				t.Errorf("lag after everything is archived: %s", l)
			}
		}
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

// checkRaw compares a raw row's typed columns with the event it was made of.
func checkRaw(t *testing.T, key string, row archive.RawRow, want *records.RawEvent) {
	t.Helper()
	ms := func(tm time.Time) time.Time { return tm.UTC().Truncate(time.Millisecond) }
	if row.TenantID != want.TenantID || row.Type != want.Type || !row.OccurredAt.Equal(ms(want.OccurredAt)) ||
		!row.ReceivedAt.Equal(ms(want.ReceivedAt)) || row.ActorSISID != want.Actor.SISID || !strings.HasPrefix(row.ActorSISID, "enc1.") ||
		row.SchoolID == nil || *row.SchoolID != *want.SchoolID || row.ClassID != nil {
		t.Errorf("%s: envelope of %s: %+v", key, want.EventID, row.Envelope)
	}
	l := row.Learning
	switch {
	case want.Attendance != nil:
		if l.AttendanceStatus == nil || *l.AttendanceStatus != want.Attendance.Status || l.AttendanceDate == nil ||
			*l.AttendanceDate != int32(want.Attendance.Date.Unix()/86400) || l.ContentID != nil {
			t.Errorf("%s: attendance columns of %s: %+v", key, want.EventID, l)
		}
	case want.AssessmentResult != nil:
		a := want.AssessmentResult
		if l.AssessmentID == nil || *l.AssessmentID != a.AssessmentID || *l.AssessmentScore != a.Score || *l.AssessmentMaxScore != a.MaxScore ||
			l.AttendanceStatus != nil {
			t.Errorf("%s: assessment columns of %s: %+v", key, want.EventID, l)
		}
	case want.AssignmentSubmission != nil:
		s := want.AssignmentSubmission
		if l.AssignmentID == nil || *l.AssignmentID != s.AssignmentID || !l.SubmissionSubmittedAt.Equal(ms(s.SubmittedAt)) ||
			*l.SubmissionStatus != s.Status || *l.SubmissionScore != *s.Score || *l.SubmissionMaxScore != *s.MaxScore || l.SubmissionDueAt != nil {
			t.Errorf("%s: submission columns of %s: %+v", key, want.EventID, l)
		}
	case want.Session != nil:
		if l.SessionAction == nil || *l.SessionAction != want.Session.Action || *l.SessionDurationSeconds != *want.Session.DurationSeconds {
			t.Errorf("%s: session columns of %s: %+v", key, want.EventID, l)
		}
	case want.ContentView != nil:
		c := want.ContentView
		if l.ContentID == nil || *l.ContentID != c.ContentID || *l.ContentType != c.ContentType ||
			*l.ContentDurationSeconds != c.DurationSeconds || *l.ContentPercentComplete != *c.PercentComplete {
			t.Errorf("%s: content view columns of %s: %+v", key, want.EventID, l)
		}
	default:
		t.Errorf("%s: event %s of no learning type", key, want.EventID)
	}
}

// get returns the status and body of url; status 0 when nothing answers.
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, ""
	}
	defer func() {
		if err := resp.Body.Close(); err != nil {
			t.Error(err)
		}
	}()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// waitFor checks cond every 20 ms until it holds, failing the test after 60 seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(60 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline.C:
			t.Fatalf("timed out waiting for %s", what)
		case <-tick.C:
		}
	}
}
