package stack_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/edtech-analytics/platform/libs/archive"
	"github.com/edtech-analytics/platform/libs/archive/archivetest"
	"github.com/edtech-analytics/platform/libs/chutil"
	"github.com/edtech-analytics/platform/libs/kafkax"
	"github.com/edtech-analytics/platform/libs/keyring"
	"github.com/edtech-analytics/platform/libs/obs"
	"github.com/edtech-analytics/platform/libs/pgutil"
	"github.com/edtech-analytics/platform/libs/records"
	"github.com/edtech-analytics/platform/libs/svc/stream"
	"github.com/edtech-analytics/platform/libs/tenancy/credentials"
	"github.com/edtech-analytics/platform/libs/tenancy/fleet"
	"github.com/edtech-analytics/platform/libs/tenancy/tenants"
	"github.com/edtech-analytics/platform/libs/testenv/sampledata"
	"github.com/edtech-analytics/platform/services/ctl/ctltest"
	"github.com/edtech-analytics/platform/services/devstack/internal/stack"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

type answer struct {
	Accepted int `json:"accepted"`
	Rejected []struct {
		Index   int    `json:"index"`
		EventID string `json:"event_id"`
		Errors  []struct {
			Field   string `json:"field"`
			Message string `json:"message"`
		} `json:"errors"`
	} `json:"rejected"`
}

func post(t *testing.T, url, key string, body []byte) answer {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, url+"/v1/events", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := resp.Body.Close(); err != nil {
			t.Error(err)
		}
	}()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("gateway answered %d: %s", resp.StatusCode, b)
	}
	var a answer
	if err := json.Unmarshal(b, &a); err != nil {
		t.Fatal(err)
	}
	return a
}

// expected is what the stores must show for the accepted events.
type expected struct {
	schoolDay map[string]map[string]bool // tenant/school/day -> distinct students
	events    map[string]int             // tenant/school/day -> events
	perTenant map[string]int
}

func expect(events map[string][]sampledata.Event) expected {
	e := expected{schoolDay: map[string]map[string]bool{}, events: map[string]int{}, perTenant: map[string]int{}}
	for tenant, evs := range events {
		for _, ev := range evs {
			at, _ := time.Parse(time.RFC3339, ev.OccurredAt)
			k := tenant + "/" + ev.SchoolID + "/" + at.Format(time.DateOnly)
			if e.schoolDay[k] == nil {
				e.schoolDay[k] = map[string]bool{}
			}
			e.schoolDay[k][ev.Actor.SISID] = true
			e.events[k]++
			e.perTenant[tenant]++
		}
	}
	return e
}

// TestEndToEnd posts events through the gateway of the whole in-process platform (kfake, real
// PostgreSQL and ClickHouse, a file:// archive), with a client retry of a whole batch, an invalid event,
// and the two store consumers and the archiver stopped and restarted mid-stream; then it proves the exact
// counts in the ClickHouse rollup and the PostgreSQL state, every record of raw and enriched archived
// once, the invalid event in the DLQ, and one trace from the gateway into both stores.
func TestEndToEnd(t *testing.T) {
	ctx := context.Background()
	spans := tracetest.NewSpanRecorder()
	tel := &obs.Telemetry{
		Tracer:     sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans)),
		Meter:      noop.NewMeterProvider(),
		Propagator: propagation.TraceContext{},
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	st, pgURL, chAddr, chDB := testStack(t, tel, log)

	// Two districts and their keys.
	admin := openPG(t, pgURL)
	keys, all, bodies, owners := seedDistricts(t, admin, []string{"d1", "d2"}, 50, func(i int, id string) sampledata.Spec {
		return sampledata.Spec{TenantID: id, Schools: 2, ClassesPerSchool: 2, StudentsPerClass: 6, Days: 3, EventsPerStudent: 6,
			Start: time.Date(2026, 11, 16, 0, 0, 0, 0, time.UTC), Seed: uint64(i + 1)}
	})
	want := expect(all)
	total := want.perTenant["d1"] + want.perTenant["d2"]

	half := len(bodies) / 2
	accepted := 0
	for i := 0; i < half; i++ {
		accepted += post(t, st.GatewayURL, keys[owners[i]], bodies[i]).Accepted
	}
	// A client retry: the same batch again, same event ids. Accepted by the gateway, counted once.
	if a := post(t, st.GatewayURL, keys[owners[0]], bodies[0]); a.Accepted == 0 {
		t.Fatal("retried batch not accepted")
	}
	// An invalid event beside a valid one: the valid one is accepted, the invalid one named and dead-lettered.
	extra := sampledata.Event{EventID: "6f1c2b7e-8a3d-4c1e-9f00-0000000000aa", Type: "assessment_result", OccurredAt: "2026-11-16T09:00:00Z",
		Actor: sampledata.Actor{SISID: "d1-late-1", Role: "student"}, SchoolID: "d1-school-000",
		Payload: map[string]any{"assessment_id": "q1", "score": 5.0, "max_score": 10.0}}
	bad := extra
	bad.EventID, bad.Payload = "6f1c2b7e-8a3d-4c1e-9f00-0000000000bb", map[string]any{"assessment_id": "q1", "score": 50.0, "max_score": 10.0}
	mixed, _ := json.Marshal(map[string]any{"events": []sampledata.Event{extra, bad}})
	a := post(t, st.GatewayURL, keys["d1"], mixed)
	if a.Accepted != 1 || len(a.Rejected) != 1 || a.Rejected[0].Index != 1 || a.Rejected[0].Errors[0].Field != "payload.score" {
		t.Fatalf("mixed batch answer = %+v", a)
	}
	all["d1"] = append(all["d1"], extra)
	want = expect(all)
	total++
	// A product's custom event and a generic (Caliper) event: stored in ClickHouse with their properties
	// and extensions, counted like any event in both stores.
	custom := sampledata.Event{EventID: "6f1c2b7e-8a3d-4c1e-9f00-0000000000cc", Type: "custom", OccurredAt: "2026-11-16T09:05:00Z",
		Actor: extra.Actor, SchoolID: extra.SchoolID,
		Payload: map[string]any{"name": "quiz.hint_opened", "properties": map[string]any{"step": "2", "hint": "fractions"}}}
	generic := sampledata.Event{EventID: "6f1c2b7e-8a3d-4c1e-9f00-0000000000dd", Type: "generic", OccurredAt: "2026-11-16T09:06:00Z",
		Actor: extra.Actor, SchoolID: extra.SchoolID,
		Payload: map[string]any{"standard": "caliper", "type": "ToolUseEvent", "action": "Used", "object_id": "https://example.edu/tools/1",
			"object_type": "SoftwareApplication", "extensions": map[string]any{"level": "4"}}}
	productBatch, _ := json.Marshal(map[string]any{"events": []sampledata.Event{custom, generic}})
	if a := post(t, st.GatewayURL, keys["d1"], productBatch); a.Accepted != 2 || len(a.Rejected) != 0 {
		t.Fatalf("custom and generic batch answer = %+v", a)
	}
	post(t, st.GatewayURL, keys["d1"], productBatch) // a client retry: counted once
	all["d1"] = append(all["d1"], custom, generic)
	want = expect(all)
	total += 2

	// The stores and the archiver crash mid-stream (stopped while records flow) and come back.
	time.Sleep(300 * time.Millisecond)
	for _, s := range []string{stack.Aggregator, stack.Sink, stack.Archiver} {
		if err := st.StopService(s); err != nil {
			t.Fatal(err)
		}
	}
	for i := half; i < len(bodies); i++ {
		accepted += post(t, st.GatewayURL, keys[owners[i]], bodies[i]).Accepted
	}
	for _, s := range []string{stack.Aggregator, stack.Sink, stack.Archiver} {
		if err := st.StartService(s); err != nil {
			t.Fatal(err)
		}
	}
	if accepted+3 != total {
		t.Fatalf("accepted %d of %d events", accepted+3, total)
	}

	ch := openCH(t, chAddr, chDB)
	waitUntil(t, "stores to hold every event", func() bool {
		chN, pgN := countCH(t, ch, "SELECT count() FROM events"), sumPG(t, admin, "d1")+sumPG(t, admin, "d2")
		if chN > uint64(total) || pgN > int64(total) {
			t.Fatalf("double counted: ClickHouse holds %d events, PostgreSQL %d, of %d", chN, pgN, total)
		}
		return chN == uint64(total) && pgN == int64(total)
	})
	time.Sleep(500 * time.Millisecond) // nothing more may arrive: a double count would show now

	if n := countCH(t, ch, `SELECT count() FROM events WHERE tenant_id = 'd1' AND type = 'custom' AND custom_name = 'quiz.hint_opened'
		AND prop_keys = ['hint', 'step'] AND prop_values = ['fractions', '2']`); n != 1 {
		t.Fatalf("ClickHouse holds the custom event %d times with its properties, want once", n)
	}
	if n := countCH(t, ch, `SELECT count() FROM events WHERE tenant_id = 'd1' AND type = 'generic' AND generic_standard = 'caliper'
		AND generic_type = 'ToolUseEvent' AND generic_action = 'Used' AND generic_object_id = 'https://example.edu/tools/1'
		AND generic_object_type = 'SoftwareApplication' AND prop_keys = ['level'] AND prop_values = ['4']`); n != 1 {
		t.Fatalf("ClickHouse holds the generic event %d times with its extensions, want once", n)
	}

	// ClickHouse rollup: distinct active students and events per tenant, school and day, exactly.
	rows, err := ch.Query(ctx, `SELECT tenant_id, school_id, toString(day), toUInt64(uniqExactMerge(active_students)), toUInt64(countMerge(events))
		FROM school_daily GROUP BY tenant_id, school_id, day`)
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	for rows.Next() {
		var tenant, school, day string
		var active, events uint64
		if err := rows.Scan(&tenant, &school, &day, &active, &events); err != nil {
			t.Fatal(err)
		}
		k := tenant + "/" + school + "/" + day
		if int(active) != len(want.schoolDay[k]) || int(events) != want.events[k] {
			t.Errorf("%s: active %d events %d, want %d and %d", k, active, events, len(want.schoolDay[k]), want.events[k])
		}
		seen++
	}
	if seen != len(want.events) {
		t.Fatalf("rollup has %d school-days, want %d", seen, len(want.events))
	}
	// The dashboard API answers from the rollup, scoped to the caller's district.
	dash, _, err := credentials.New(admin).CreateAPIKey(ctx, "d1", "dashboard", []string{credentials.VerbDashboardsRead})
	if err != nil {
		t.Fatal(err)
	}
	var daily struct {
		Days []struct {
			Day            string `json:"day"`
			ActiveStudents int    `json:"active_students"`
			Events         int    `json:"events"`
		} `json:"days"`
	}
	if code := getJSON(t, st.QueryURL+"/v1/schools/d1-school-000/daily?from=2026-11-16&to=2026-11-18", dash, &daily); code != 200 || len(daily.Days) != 3 {
		t.Fatalf("dashboard answered %d with %d days", code, len(daily.Days))
	}
	for _, d := range daily.Days {
		k := "d1/d1-school-000/" + d.Day
		if d.ActiveStudents != len(want.schoolDay[k]) || d.Events != want.events[k] {
			t.Fatalf("dashboard %s: %+v, want %d active and %d events", k, d, len(want.schoolDay[k]), want.events[k])
		}
	}
	daily.Days = nil
	if code := getJSON(t, st.QueryURL+"/v1/schools/d2-school-000/daily?from=2026-11-16&to=2026-11-18", dash, &daily); code != 200 || len(daily.Days) != 0 {
		t.Fatalf("a d1 key read %d days of a d2 school (status %d)", len(daily.Days), code)
	}
	if code := getJSON(t, st.QueryURL+"/v1/schools/d1-school-000/daily?from=2026-11-16&to=2026-11-18", keys["d1"], &daily); code != 403 {
		t.Fatalf("an events:write key read dashboards (status %d)", code)
	}
	// A district admin's dashboard token reads the district summary from the metrics rollups (every
	// sample actor is a student, so it counts every event); a school admin's token of another school is
	// refused this school.
	token, _, err := credentials.New(admin).CreateDashboardToken(ctx, credentials.DashboardToken{TenantID: "d1", Role: credentials.RoleDistrictAdmin})
	if err != nil {
		t.Fatal(err)
	}
	var summary struct {
		TenantID string `json:"tenant_id"`
		Totals   struct {
			Events         int `json:"events"`
			ActiveStudents int `json:"active_students"`
		} `json:"totals"`
	}
	if code := getJSON(t, st.QueryURL+"/v1/district/summary?from=2026-11-01&to=2026-11-30", token, &summary); code != 200 ||
		summary.TenantID != "d1" || summary.Totals.Events != want.perTenant["d1"] {
		t.Fatalf("district summary answered %d: %+v, want %d events of d1", code, summary, want.perTenant["d1"])
	}
	other, _, err := credentials.New(admin).CreateDashboardToken(ctx, credentials.DashboardToken{TenantID: "d1", Role: credentials.RoleSchoolAdmin, SchoolIDs: []string{"d1-school-001"}})
	if err != nil {
		t.Fatal(err)
	}
	if code := getJSON(t, st.QueryURL+"/v1/schools/d1-school-000/summary?from=2026-11-01&to=2026-11-30", other, &summary); code != 403 {
		t.Fatalf("a school admin of d1-school-001 read d1-school-000 (status %d)", code)
	}

	// PostgreSQL state: events per district and per student, exactly.
	for tenant, n := range want.perTenant {
		if got := sumPG(t, admin, tenant); got != int64(n) {
			t.Fatalf("%s: student_activity holds %d events, want %d", tenant, got, n)
		}
	}

	// The archiver holds every record of both layers exactly once, as Kafka holds them, in Parquet files.
	arch, err := archive.Open(ctx, st.ArchiveURL)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := arch.Close(); err != nil {
			t.Error(err)
		}
	}()
	topics := st.Kafka.Topics()
	checkArchived(t, archive.Blob{B: arch}, "raw", archivetest.Raw, readTopic(t, st.Kafka, topics.Raw))
	checkArchived(t, archive.Blob{B: arch}, "enriched", archivetest.Enriched, readTopic(t, st.Kafka, topics.Enriched))

	// Both stores rebuilt from the archive (and the topic after it) come out identical to what the stores
	// hold, ClickHouse's swapped in by the running aggregator; a replay of the raw layer republishes only
	// what the enricher did not pass on, and every count stays exact.
	t.Setenv(keyring.EnvMasterKeys, stackKeys) // the audit entries are signed with them
	kafkaFlags := []string{"--database-url", pgURL, "--kafka.brokers", strings.Join(st.Kafka.Brokers, ","), "--kafka.topic-prefix", st.Kafka.TopicPrefix,
		"--archive.url", st.ArchiveURL}
	if out, err := ctltest.RunErr(ctx, append([]string{"rebuild", "--tenant", "d1"}, kafkaFlags...)...); err != nil ||
		!strings.Contains(out, "from the archive)") || !strings.Contains(out, "identical to the live one") {
		t.Fatalf("rebuild of d1's schema from the archive: %v\n%s", err, out)
	}
	out, err := ctltest.RunErr(ctx, append([]string{"rebuild", "--tenant", "d1", "--store", "clickhouse", "--clickhouse.addr", chAddr,
		"--clickhouse.database", chDB}, kafkaFlags...)...)
	if err != nil || !strings.Contains(out, "identical to the live ones") || !strings.Contains(out, "swapped in and verified") {
		t.Fatalf("rebuild of d1 in clickhouse from the archive: %v\n%s", err, out)
	}
	out, err = ctltest.RunErr(ctx, append([]string{"replay", "--tenant", "d1", "--from", "2026-11-01", "--to", "2026-11-30"}, kafkaFlags...)...)
	if err != nil || !strings.Contains(out, "republished") {
		t.Fatalf("replay of d1's raw records: %v\n%s", err, out)
	}
	t.Log(out)
	waitUntil(t, "the stores to pass the rebuild's marker and the replay", func() bool {
		return sumPG(t, admin, "d1") == int64(want.perTenant["d1"]) && countCH(t, ch, "SELECT count() FROM events") == uint64(total)
	})
	if code := getJSON(t, st.QueryURL+"/v1/district/summary?from=2026-11-01&to=2026-11-30", token, &summary); code != 200 ||
		summary.Totals.Events != want.perTenant["d1"] {
		t.Fatalf("after the rebuilds and the replay the district summary answered %d: %+v, want %d events of d1", code, summary, want.perTenant["d1"])
	}

	// The invalid event is in the DLQ with its field.
	dlq := readTopic(t, st.Kafka, st.Kafka.Topics().DLQ)
	codec, err := stream.NewCodec(ctx, st.Kafka)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, r := range dlq {
		var d records.DLQRecord
		if err := codec.Decode(r.Value, &d); err != nil {
			t.Fatal(err)
		}
		if d.EventID != nil && *d.EventID == bad.EventID && d.Errors[0].Field == "payload.score" {
			found = true
		}
	}
	if !found {
		t.Fatalf("invalid event not in the DLQ (%d records there)", len(dlq))
	}

	// One trace: the gateway's request span, continued by the consume spans of the enricher, the
	// aggregator and the sink (trace context travels in record headers).
	byTrace := map[string]map[string]bool{}
	for _, s := range spans.Ended() {
		tid := s.SpanContext().TraceID().String()
		if byTrace[tid] == nil {
			byTrace[tid] = map[string]bool{}
		}
		if s.Name() == "gateway.post_events" {
			byTrace[tid]["gateway"] = true
		}
		for _, kv := range s.Attributes() {
			if kv.Key == attribute.Key("messaging.consumer.group") || kv.Key == attribute.Key("messaging.kafka.consumer.group") {
				byTrace[tid][kv.Value.AsString()] = true
			}
		}
	}
	complete := 0
	for _, groups := range byTrace {
		if groups["gateway"] && groups["edtech-enricher"] && groups["edtech-aggregator"] && groups["edtech-sink"] {
			complete++
		}
	}
	if complete == 0 {
		t.Fatalf("no trace runs from the gateway through the enricher into both stores; traces: %d", len(byTrace))
	}
}

// seedDistricts creates the districts, each with a key that may write events, and their sample events
// (spec gives each district's), cut into request bodies of batch events: the districts' keys, events,
// and the bodies in order with the district each belongs to.
func seedDistricts(t *testing.T, control *pgxpool.Pool, ids []string, batch int, spec func(i int, id string) sampledata.Spec) (
	keys map[string]string, all map[string][]sampledata.Event, bodies [][]byte, owners []string) {
	t.Helper()
	keys, all = map[string]string{}, map[string][]sampledata.Event{}
	districts, creds := tenants.New(fleet.New(control, os.Getenv)), credentials.New(control)
	for i, id := range ids {
		if _, err := districts.Create(t.Context(), id, "District "+id); err != nil {
			t.Fatal(err)
		}
		key, _, err := creds.CreateAPIKey(t.Context(), id, "lms", []string{credentials.VerbEventsWrite})
		if err != nil {
			t.Fatal(err)
		}
		keys[id] = key
		all[id] = spec(i, id).Events()
		bs, err := sampledata.Batches(all[id], batch)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range bs {
			bodies = append(bodies, b)
			owners = append(owners, id)
		}
	}
	return keys, all, bodies, owners
}

func getJSON(t *testing.T, url, key string, v any) int {
	t.Helper()
	return call(t, http.MethodGet, url, key, "", v)
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// checkArchived waits until the archive's index of layer reaches the last of recs in every partition,
// then checks that the layer's files hold each of recs exactly once, with its bytes, and nothing else.
func checkArchived[T any](t *testing.T, arch archive.Bucket, layer string, parts func(T) (archive.Envelope, archive.Position), recs []*kgo.Record) {
	t.Helper()
	type at struct {
		p   int32
		off int64
	}
	want, last := map[at]string{}, map[int32]int64{}
	for _, r := range recs {
		want[at{r.Partition, r.Offset}] = string(r.Value)
		last[r.Partition] = max(last[r.Partition], r.Offset)
	}
	if len(want) == 0 {
		t.Fatalf("%s: no records to archive", layer)
	}
	waitUntil(t, "the archive's index of "+layer, func() bool {
		for p, off := range last {
			b, err := arch.ReadAll(context.Background(), archive.IndexKey(layer, p))
			if err != nil {
				return false
			}
			if n, err := strconv.ParseInt(string(b), 10, 64); err != nil || n < off {
				return false
			}
		}
		return true
	})
	seen := map[at]int{}
	for _, f := range archivetest.ReadBucket(t, arch, layer, parts) {
		for _, pos := range f.Positions {
			k := at{pos.KafkaPartition, pos.KafkaOffset}
			seen[k]++
			if v, ok := want[k]; !ok || v != string(pos.Record) {
				t.Errorf("%s: %s holds offset %d of partition %d, which Kafka does not hold so", layer, f.Key, k.off, k.p)
			}
		}
	}
	for k := range want {
		if seen[k] != 1 {
			t.Errorf("%s: offset %d of partition %d archived %d times", layer, k.off, k.p, seen[k])
		}
	}
}

// readTopic reads the topic from its start to the end offsets it has now (read committed), whatever
// the time each fetch takes.
func readTopic(t *testing.T, kcfg kafkax.Config, topic string) []*kgo.Record {
	t.Helper()
	cl, err := kafkax.NewClient(kcfg, kafkax.Deps{}, "", kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.KeepControlRecords())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl.Client).ListEndOffsets(t.Context(), topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		t.Fatal(err)
	}
	remaining := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			remaining[o.Partition] = o.Offset
		}
	})
	var out []*kgo.Record
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	for len(remaining) > 0 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("reading %s: %v (partitions left: %v)", topic, ctx.Err(), remaining)
		}
		fs.EachRecord(func(r *kgo.Record) {
			if end, ok := remaining[r.Partition]; ok && r.Offset+1 >= end {
				delete(remaining, r.Partition)
			}
			if !r.Attrs.IsControl() {
				out = append(out, r)
			}
		})
	}
	return out
}

func openPG(t *testing.T, url string) *pgxpool.Pool {
	t.Helper()
	pool, err := pgutil.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

func openCH(t *testing.T, addr, database string) driver.Conn {
	t.Helper()
	conn, err := chutil.Open(context.Background(), chutil.Options{Addr: addr, Database: database})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

func countCH(t *testing.T, conn driver.Conn, query string) uint64 {
	t.Helper()
	var n uint64
	if err := conn.QueryRow(context.Background(), query).Scan(&n); err != nil {
		return 0 // the aggregator may not have created its tables yet
	}
	return n
}

// sumPG is the number of events the sink applied for a district.
func sumPG(t *testing.T, pool *pgxpool.Pool, tenant string) int64 {
	t.Helper()
	var n int64
	err := pool.QueryRow(context.Background(), fmt.Sprintf("SELECT coalesce(sum(event_count), 0)::bigint FROM district_%s.student_activity", tenant)).Scan(&n)
	if err != nil {
		return 0
	}
	return n
}
