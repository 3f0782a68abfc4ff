package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/edtech-analytics/platform/libs/keyring"
	"github.com/edtech-analytics/platform/libs/keyring/keyringtest"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/edtech-analytics/platform/libs/kafkax"
	"github.com/edtech-analytics/platform/libs/obs"
	"github.com/edtech-analytics/platform/libs/pgutil/pgtest"
	"github.com/edtech-analytics/platform/libs/records"
	"github.com/edtech-analytics/platform/libs/svc/stream"
	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/edtech-analytics/platform/libs/tenancy/fleet"
	"github.com/edtech-analytics/platform/libs/tenancy/mappings"
	"github.com/edtech-analytics/platform/libs/tenancy/rosters"
	"github.com/edtech-analytics/platform/libs/tenancy/statements"
	tenantstore "github.com/edtech-analytics/platform/libs/tenancy/tenants"
	"github.com/edtech-analytics/platform/libs/testenv/kafkatest"
	"github.com/edtech-analytics/platform/services/gateway/internal/server"
	"github.com/edtech-analytics/platform/services/gateway/internal/tenants"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// keyMap is an in-memory KeyStore: the key model's own tests run against PostgreSQL in libs/tenancy/credentials.
type keyMap map[string]server.Key

func (m keyMap) Lookup(_ context.Context, plaintext string) (server.Key, error) {
	if k, ok := m[plaintext]; ok {
		return k, nil
	}
	return server.Key{}, server.ErrInvalidKey
}

type fixture struct {
	srv     *httptest.Server
	gw      *server.Server
	cl      *kafkax.Client
	kafka   *kfake.Cluster
	kcfg    kafkax.Config
	codec   *records.Codec
	tenants *tenants.Registry
	sealer  *keyring.Keyring
	pool    *pgxpool.Pool // the control database, where the districts' schemas live too
	rosters *rosters.Store
	pools   rosters.Pools
	metrics http.Handler // Prometheus exposition of the gateway's meter
}

// setup adjusts a fixture before it starts.
type setup struct {
	stored   []tenants.Stored // districts' stored settings
	producer []kgo.Opt        // extra producer options
	kafka    []kfake.Opt      // extra broker options
	keyCache int              // data keys the keyring caches (0: its default)
	limits   server.Limits
}

func newFixture(t testing.TB, opts ...func(*setup)) *fixture {
	t.Helper()
	st := setup{limits: server.Limits{MaxBodyBytes: 64 << 10, MaxEvents: 5}}
	for _, o := range opts {
		o(&st)
	}
	ctx := context.Background()
	kafka, kcfg := kafkatest.New(t, st.kafka...)
	tel, err := obs.Init(ctx, "test")
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kafkax.NewClient(kcfg, kafkax.Deps{Tracer: tel.Tracer, Propagator: tel.Propagator}, "", append(kafkax.ProducerOptions(), st.producer...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	if err := kafkax.EnsureTopics(ctx, cl.Client, 4, 1, kafkax.PlatformTopics(kcfg)); err != nil {
		t.Fatal(err)
	}
	codec, err := stream.NewCodec(ctx, kcfg)
	if err != nil {
		t.Fatal(err)
	}
	keys := keyMap{
		"good":   {ID: "k1", TenantID: "d1", SourceID: "lms", Verbs: []string{server.VerbEventsWrite}},
		"roster": {ID: "k2", TenantID: "d1", SourceID: "sis", Verbs: []string{server.VerbRosterWrite}},
		"hr":     {ID: "k5", TenantID: "d1", SourceID: "hr", Verbs: []string{server.VerbRosterWrite}},
		"hot":    {ID: "k3", TenantID: "hot", SourceID: "lms", Verbs: []string{server.VerbEventsWrite}},
		"small":  {ID: "k4", TenantID: "small", SourceID: "lms", Verbs: []string{server.VerbEventsWrite}},
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	pool, _ := pgtest.New(t)
	if err := tenancy.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	sealer := keyringtest.Over(t, pool)
	if st.keyCache > 0 {
		master, err := keyring.ParseLocalKeys(keyringtest.MasterKeys())
		if err != nil {
			t.Fatal(err)
		}
		sealer = keyring.New(pool, master, keyring.Options{CacheSize: st.keyCache})
	}
	districts := fleet.New(pool, os.Getenv)
	t.Cleanup(districts.Close)
	for _, id := range []string{"d1", "hot", "small"} {
		if _, err := tenantstore.New(districts).Create(ctx, id, id); err != nil {
			t.Fatal(err)
		}
	}
	pools := fleet.NewDistrictPools(districts)
	rosterStore := rosters.New(pools)
	reg, err := tenants.New(func(context.Context) ([]tenants.Stored, error) { return st.stored, nil },
		tenants.RateLimit{EventsPerSecond: 100_000, Burst: 100_000}, st.limits.MaxEvents, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := reg.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	gw, err := server.New(server.Deps{Log: log, Keys: keys, Tenants: reg, Producer: cl.Client, Codec: codec, Sealer: sealer, Rosters: rosterStore, Mappings: mappings.New(pool), Statements: statements.New(pools), Tracer: tel.Tracer, Meter: tel.Meter, Propagator: tel.Propagator},
		server.Topics{Raw: kcfg.Topics().Raw, DLQ: kcfg.Topics().DLQ}, st.limits)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(gw.Handler())
	t.Cleanup(srv.Close)
	return &fixture{srv: srv, gw: gw, cl: cl, kafka: kafka, kcfg: kcfg, codec: codec, tenants: reg, sealer: sealer, pool: pool, rosters: rosterStore, pools: pools,
		metrics: tel.Metrics}
}

func (f *fixture) post(t *testing.T, key, ctype, body string) (int, http.Header, map[string]any) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), "POST", f.srv.URL+"/v1/events", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	req.Header.Set("Content-Type", ctype)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := resp.Body.Close(); err != nil {
			t.Error(err)
		}
	}()
	var out map[string]any
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("answer is not JSON: %s", b)
	}
	return resp.StatusCode, resp.Header, out
}

func event(i int, status string) string {
	return fmt.Sprintf(`{"event_id":"6f1c2b7e-8a3d-4c1e-9f00-%012d","type":"attendance","occurred_at":"2026-11-20T08:00:00Z",`+
		`"actor":{"sis_id":"S%d","role":"student"},"school_id":"sch1","payload":{"status":%q,"date":"2026-11-20"}}`, i, i, status)
}

// readTopic returns every record of topic, reading each partition up to the end offset it had when
// called.
func (f *fixture) readTopic(t *testing.T, topic string) []*kgo.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl, err := kafkax.NewClient(f.kcfg, kafkax.Deps{}, "", kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl.Client).ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	left := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			left[o.Partition] = o.Offset
		}
	})
	var out []*kgo.Record
	for len(left) > 0 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("reading %s: partitions not read to the end: %v", topic, left)
		}
		fs.EachRecord(func(r *kgo.Record) {
			out = append(out, r)
			if end, ok := left[r.Partition]; ok && r.Offset+1 >= end {
				delete(left, r.Partition)
			}
		})
	}
	return out
}

func TestPartialAcceptanceProducesValidEventsAndDeadLettersTheRest(t *testing.T) {
	f := newFixture(t)
	body := `{"events":[` + event(1, "present") + `,` + event(2, "asleep") + `,` + event(3, "absent") + `]}`
	code, _, out := f.post(t, "good", "application/json", body)
	if code != http.StatusAccepted || out["accepted"] != 2.0 {
		t.Fatalf("answer %d %v", code, out)
	}
	rej := out["rejected"].([]any)
	first := rej[0].(map[string]any)
	errs := first["errors"].([]any)
	if first["index"] != 1.0 || errs[0].(map[string]any)["field"] != "payload.status" {
		t.Fatalf("rejected = %v", rej)
	}

	raw := f.readTopic(t, f.kcfg.Topics().Raw)
	if len(raw) != 2 {
		t.Fatalf("raw holds %d records, want 2", len(raw))
	}
	for _, r := range raw {
		var ev records.RawEvent
		if err := f.codec.Decode(r.Value, &ev); err != nil {
			t.Fatal(err)
		}
		if string(r.Key) != "d1" || ev.TenantID != "d1" || ev.SourceID != "lms" {
			t.Fatalf("record key %q event %+v", r.Key, ev)
		}
		if !hasHeader(r, "traceparent") {
			t.Fatalf("raw record carries no trace context: %v", r.Headers)
		}
	}
	dlq := f.readTopic(t, f.kcfg.Topics().DLQ)
	if len(dlq) != 1 {
		t.Fatalf("dlq holds %d records, want 1", len(dlq))
	}
	var d records.DLQRecord
	if err := f.codec.Decode(dlq[0].Value, &d); err != nil {
		t.Fatal(err)
	}
	if d.Reason != records.ReasonInvalidField || d.Errors[0].Field != "payload.status" || bytes.Contains(d.Original, []byte("asleep")) {
		t.Fatalf("dlq record = %+v (its original must be sealed)", d)
	}
	// Sealed under the data key of the person the event is about: readable with the keys, and gone with
	// the person's key.
	original, err := f.sealer.Open(t.Context(), "d1", string(d.Original))
	if err != nil || !strings.Contains(original, "asleep") {
		t.Fatalf("opening the dead letter's original: %q, %v", original, err)
	}
	var sent struct {
		Actor struct {
			SISID string `json:"sis_id"`
		} `json:"actor"`
	}
	if err := json.Unmarshal([]byte(original), &sent); err != nil || sent.Actor.SISID == "" {
		t.Fatalf("original %q: %v", original, err)
	}
	if _, err := f.sealer.ShredSubject(t.Context(), "d1", sent.Actor.SISID); err != nil {
		t.Fatal(err)
	}
	f.sealer.Forget()
	if _, err := f.sealer.Open(t.Context(), "d1", string(d.Original)); !errors.Is(err, keyring.ErrShredded) {
		t.Fatalf("the original opens after its person's key was shredded: %v", err)
	}
}

func hasHeader(r *kgo.Record, key string) bool {
	for _, h := range r.Headers {
		if h.Key == key {
			return true
		}
	}
	return false
}

func TestWholeRequestErrors(t *testing.T) {
	f := newFixture(t)
	five := make([]string, 6)
	for i := range five {
		five[i] = event(i, "present")
	}
	tests := []struct {
		name   string
		key    string
		ctype  string
		body   string
		status int
		slug   string
	}{
		{"no key", "", "application/json", `{"events":[]}`, 401, "missing-api-key"},
		{"unknown key", "nope", "application/json", `{"events":[]}`, 401, "invalid-api-key"},
		{"key without verb", "roster", "application/json", `{"events":[]}`, 403, "forbidden"},
		{"wrong content type", "good", "text/plain", `{"events":[]}`, 415, "unsupported-media-type"},
		{"malformed json", "good", "application/json", `{"events":[{"a":}]}`, 400, "malformed-body"},
		{"unbalanced event", "good", "application/json", `{"events":[{"a":[1}]}`, 400, "malformed-body"},
		{"repeated events member", "good", "application/json", `{"events":[],"events":[]}`, 400, "malformed-body"},
		{"too many events", "good", "application/json", `{"events":[` + strings.Join(five, ",") + `]}`, 413, "too-many-events"},
		{"body too large", "good", "application/json", `{"events":[` + strings.Repeat(" ", 70<<10) + `]}`, 413, "body-too-large"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, hdr, out := f.post(t, tt.key, tt.ctype, tt.body)
			if code != tt.status || out["type"] != "/problems/"+tt.slug || out["status"] != float64(tt.status) {
				t.Fatalf("got %d %v", code, out)
			}
			if ct := hdr.Get("Content-Type"); ct != "application/problem+json" {
				t.Fatalf("content type %q", ct)
			}
		})
	}
	if n := len(f.readTopic(t, f.kcfg.Topics().Raw)); n != 0 {
		t.Fatalf("rejected requests produced %d records", n)
	}
}

func TestNDJSONAndDrain(t *testing.T) {
	f := newFixture(t)
	code, _, out := f.post(t, "good", "application/x-ndjson", event(1, "present")+"\n"+event(2, "tardy")+"\n")
	if code != 202 || out["accepted"] != 2.0 {
		t.Fatalf("ndjson answer %d %v", code, out)
	}
	f.gw.Drain()
	code, hdr, _ := f.post(t, "good", "application/json", `{"events":[`+event(3, "present")+`]}`)
	if code != 503 || hdr.Get("Retry-After") == "" {
		t.Fatalf("draining answer %d, Retry-After %q", code, hdr.Get("Retry-After"))
	}
}

func TestKafkaUnavailableIs503(t *testing.T) {
	f := newFixture(t)
	f.cl.Close() // the producer is gone: nothing can be acknowledged
	code, hdr, out := f.post(t, "good", "application/json", `{"events":[`+event(1, "present")+`]}`)
	if code != 503 || hdr.Get("Retry-After") == "" || out["type"] != "/problems/kafka-unavailable" {
		t.Fatalf("got %d %v", code, out)
	}
}

// fieldErrors returns the errors of the answer's rejected events by index, as "field: message".
func fieldErrors(t *testing.T, out map[string]any) map[int][]string {
	t.Helper()
	got := map[int][]string{}
	rej, ok := out["rejected"].([]any)
	if !ok {
		t.Fatalf("answer has no rejected list: %v", out)
	}
	for _, r := range rej {
		r := r.(map[string]any)
		for _, e := range r["errors"].([]any) {
			e := e.(map[string]any)
			got[int(r["index"].(float64))] = append(got[int(r["index"].(float64))], e["field"].(string)+": "+e["message"].(string))
		}
	}
	return got
}

// TestControlCharactersAreFieldErrors: an escaped NUL in a SIS id or a school id (which PostgreSQL
// cannot store) rejects that event with an error naming the field; the rest of the batch is accepted.
func TestControlCharactersAreFieldErrors(t *testing.T) {
	f := newFixture(t)
	sis := strings.Replace(event(2, "present"), `"sis_id":"S2"`, `"sis_id":"seca-st9\u0000x"`, 1)
	school := strings.Replace(event(3, "present"), `"school_id":"sch1"`, `"school_id":"sch\u0000ool"`, 1)
	reason := strings.Replace(event(4, "excused"), `"date":"2026-11-20"`, `"date":"2026-11-20","reason":"flu\u0085"`, 1)
	code, _, out := f.post(t, "good", "application/json", batch(event(1, "present"), sis, school, reason))
	if code != http.StatusAccepted || out["accepted"] != 1.0 {
		t.Fatalf("answer %d %v", code, out)
	}
	want := map[int][]string{
		1: {"actor.sis_id: must not contain control characters"},
		2: {"school_id: must not contain control characters"},
		3: {"payload.reason: must not contain control characters"},
	}
	if got := fieldErrors(t, out); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("rejected %v, want %v", got, want)
	}
	if ids := f.rawEventIDs(t); len(ids) != 1 || ids[eventID(1)] != 1 {
		t.Fatalf("raw holds %v", ids)
	}
}

// TestOversizedFieldsAreFieldErrors: a megabyte in a free-text field is that event's field error (it
// used to reach Kafka, which refused the record, and the client was told to retry forever).
func TestOversizedFieldsAreFieldErrors(t *testing.T) {
	f := newFixture(t, func(s *setup) { s.limits = server.Limits{MaxBodyBytes: 8 << 20, MaxEvents: 10} })
	mb := strings.Repeat("x", 1<<20)
	header := func(i int, typ string) string {
		return fmt.Sprintf(`{"event_id":%q,"type":%q,"occurred_at":"2026-11-20T08:00:00Z","actor":{"sis_id":"S1","role":"student"},`, eventID(i), typ)
	}
	events := []string{
		strings.Replace(event(1, "excused"), `"date":"2026-11-20"`, `"date":"2026-11-20","reason":"`+mb+`"`, 1),
		header(2, "session") + `"payload":{"action":"login","device":"` + mb + `"}}`,
		header(3, "assessment_result") + `"payload":{"assessment_id":"a","score":1,"max_score":2,"scale":"` + mb + `","grade":"` + mb + `"}}`,
		event(4, "present"),
	}
	code, _, out := f.post(t, "good", "application/json", batch(events...))
	if code != http.StatusAccepted || out["accepted"] != 1.0 {
		t.Fatalf("answer %d %.500v", code, out)
	}
	want := map[int][]string{
		0: {"payload.reason: must be at most 4096 bytes"},
		1: {"payload.device: must be at most 1024 bytes"},
		2: {"payload.scale: must be at most 256 bytes", "payload.grade: must be at most 256 bytes"},
	}
	if got := fieldErrors(t, out); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("rejected %v, want %v", got, want)
	}
	// Their dead letters fit in a record: the originals are cut short.
	dlq := f.readTopic(t, f.kcfg.Topics().DLQ)
	if len(dlq) != 3 {
		t.Fatalf("dlq holds %d records, want 3", len(dlq))
	}
	var d records.DLQRecord
	if err := f.codec.Decode(dlq[0].Value, &d); err != nil {
		t.Fatal(err)
	}
	if len(d.Original) >= 1<<20 || !strings.Contains(d.Detail, "original truncated") {
		t.Fatalf("dead letter of %d bytes of original: %s", len(d.Original), d.Detail)
	}
}

// TestRecordTooLargeForKafkaIsTheEventsError: an event that is valid but encodes to a record larger than
// the producer takes is rejected as that event's error, never answered 503 (which asks for a resend that
// could never succeed); the other events are produced.
func TestRecordTooLargeForKafkaIsTheEventsError(t *testing.T) {
	f := newFixture(t, func(s *setup) {
		s.producer = []kgo.Opt{kgo.ProducerBatchMaxBytes(3000)}
		s.limits.MaxRecordBytes = 2000
	})
	big := strings.Replace(event(2, "excused"), `"date":"2026-11-20"`, `"date":"2026-11-20","reason":"`+strings.Repeat("x", 4000)+`"`, 1)
	code, _, out := f.post(t, "good", "application/json", batch(event(1, "present"), big, event(3, "present")))
	if code != http.StatusAccepted || out["accepted"] != 2.0 {
		t.Fatalf("answer %d %v", code, out)
	}
	got := fieldErrors(t, out)
	if len(got) != 1 || len(got[1]) != 1 || !strings.HasPrefix(got[1][0], "body: is ") || !strings.HasSuffix(got[1][0], "a record may hold at most 2000") {
		t.Fatalf("rejected %v", got)
	}
	if ids := f.rawEventIDs(t); len(ids) != 2 || ids[eventID(1)] != 1 || ids[eventID(3)] != 1 {
		t.Fatalf("raw holds %v", ids)
	}
}

// TestTimesOutsideWhatStoresHoldAreFieldErrors: timestamps and dates are checked once, here, against
// the range every store holds (ClickHouse's Date and DateTime: 1970 to 2105); the bounds themselves are
// accepted.
func TestTimesOutsideWhatStoresHoldAreFieldErrors(t *testing.T) {
	f := newFixture(t)
	at := func(i int, occurred, date string) string {
		return strings.Replace(strings.Replace(event(i, "present"), "2026-11-20T08:00:00Z", occurred, 1), `"date":"2026-11-20"`, `"date":"`+date+`"`, 1)
	}
	submission := func(i int, due string) string {
		return fmt.Sprintf(`{"event_id":%q,"type":"assignment_submission","occurred_at":"2026-11-20T08:00:00Z","actor":{"sis_id":"S1","role":"student"},`+
			`"payload":{"assignment_id":"hw","due_at":%q,"submitted_at":"2026-11-20T08:00:00Z","status":"submitted"}}`, eventID(i), due)
	}
	code, _, out := f.post(t, "good", "application/json", batch(
		at(0, "1970-01-01T00:00:00Z", "1970-01-01"),
		submission(1, "2105-12-31T23:59:59.999Z"),
		at(2, "1969-12-31T23:59:59.999Z", "2026-11-20"),
		at(3, "1900-01-01T00:00:00Z", "1950-06-01"),
		submission(4, "2106-01-01T00:00:00Z"),
	))
	if code != http.StatusAccepted || out["accepted"] != 2.0 {
		t.Fatalf("answer %d %v", code, out)
	}
	const oor = "is out of range (1970-01-01 to 2105-12-31)"
	want := map[int][]string{
		2: {"occurred_at: " + oor},
		3: {"occurred_at: " + oor, "payload.date: " + oor},
		4: {"payload.due_at: " + oor},
	}
	if got := fieldErrors(t, out); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("rejected %v, want %v", got, want)
	}
}

// TestMalformedEventsRejectOnlyThemselves: an event with invalid UTF-8, a raw NUL in a string or a
// repeated member, or an NDJSON line that is not JSON, is rejected on its own with the field (and, for
// NDJSON, the line) it is about; the good events of the same request are accepted.
func TestMalformedEventsRejectOnlyThemselves(t *testing.T) {
	f := newFixture(t)
	utf8 := strings.Replace(event(2, "present"), `"sis_id":"S2"`, "\"sis_id\":\"S\xff\xfe\"", 1)
	nul := strings.Replace(event(3, "present"), `"school_id":"sch1"`, "\"school_id\":\"sch\x00ool\"", 1)
	dup := strings.Replace(event(4, "present"), `"school_id":"sch1"`, `"school_id":"sch1","school_id":"sch2"`, 1)
	code, _, out := f.post(t, "good", "application/json", batch(event(1, "present"), utf8, nul, dup, event(5, "present")))
	if code != http.StatusAccepted || out["accepted"] != 2.0 {
		t.Fatalf("json batch: %d %v", code, out)
	}
	got := fieldErrors(t, out)
	if len(got) != 3 || !strings.HasPrefix(got[1][0], "actor.sis_id: ") || !strings.HasPrefix(got[2][0], "school_id: ") ||
		!strings.HasPrefix(got[3][0], "school_id: ") {
		t.Fatalf("json batch rejected %v", got)
	}

	body := event(6, "present") + "\n\n{nope\n" + nul + "\n" + event(7, "present") + "\n"
	code, _, out = f.post(t, "good", "application/x-ndjson", body)
	if code != http.StatusAccepted || out["accepted"] != 2.0 {
		t.Fatalf("ndjson: %d %v", code, out)
	}
	rej := out["rejected"].([]any)
	if len(rej) != 2 {
		t.Fatalf("ndjson rejected %v", rej)
	}
	for i, want := range []struct{ index, line float64 }{{1, 3}, {2, 4}} {
		r := rej[i].(map[string]any)
		if r["index"] != want.index || r["line"] != want.line {
			t.Errorf("ndjson rejection %d = %v, want index %v line %v", i, r, want.index, want.line)
		}
	}
	ids := f.rawEventIDs(t)
	for _, n := range []int{1, 5, 6, 7} {
		if ids[eventID(n)] != 1 {
			t.Errorf("good event %d is in raw %d times", n, ids[eventID(n)])
		}
	}
	if len(ids) != 4 {
		t.Errorf("raw holds %v", ids)
	}
}

// trickle is a request body that sends prefix, then blocks until release is closed: a client that
// stops sending in the middle of its body.
type trickle struct {
	prefix  []byte
	release <-chan struct{}
}

func (b *trickle) Read(p []byte) (int, error) {
	if len(b.prefix) > 0 {
		n := copy(p, b.prefix)
		b.prefix = b.prefix[n:]
		return n, nil
	}
	<-b.release
	return 0, io.EOF
}

// TestSlowBodyIs408: a client that stops sending its body gets 408 once the body read deadline passes,
// while it is still sending; nothing is produced.
func TestSlowBodyIs408(t *testing.T) {
	f := newFixture(t, func(s *setup) {
		s.limits.BodyReadTimeout = time.Millisecond
		s.limits.RosterBodyReadTimeout = time.Millisecond
	})
	for _, tt := range []struct{ path, key, ctype string }{
		{"/v1/events", "good", "application/json"},
		{"/v1/events", "good", "application/x-ndjson"},
		{"/v1/roster/users", "roster", "application/json"},
	} {
		t.Run(tt.path+" "+tt.ctype, func(t *testing.T) {
			release := make(chan struct{})
			defer close(release) // only once the server has answered: the body never ends before
			body := &trickle{prefix: []byte(`{"events":[` + event(1, "present")), release: release}
			req, err := http.NewRequestWithContext(t.Context(), "POST", f.srv.URL+tt.path, body)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Authorization", "Bearer "+tt.key)
			req.Header.Set("Content-Type", tt.ctype)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer func() {
				if err := resp.Body.Close(); err != nil {
					t.Error(err)
				}
			}()
			var p server.Problem
			if err := json.NewDecoder(resp.Body).Decode(&p); err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != http.StatusRequestTimeout || p.Type != "/problems/body-timeout" {
				t.Fatalf("answer %d %+v", resp.StatusCode, p)
			}
		})
	}
	if ids := f.rawEventIDs(t); len(ids) != 0 {
		t.Fatalf("raw holds %v", ids)
	}
}

// TestClientTraceIsContinued proves a product's trace continues through the gateway: the records of a
// request that carries a W3C traceparent belong to that trace.
func TestClientTraceIsContinued(t *testing.T) {
	f := newFixture(t)
	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	req, err := http.NewRequestWithContext(t.Context(), "POST", f.srv.URL+"/v1/events", strings.NewReader(`{"events":[`+event(1, "present")+`]}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer good")
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("traceparent", "00-"+traceID+"-00f067aa0ba902b7-01")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("status %d", resp.StatusCode)
	}
	raw := f.readTopic(t, f.kcfg.Topics().Raw)
	if len(raw) != 1 {
		t.Fatalf("raw holds %d records, want 1", len(raw))
	}
	for _, h := range raw[0].Headers {
		if h.Key == "traceparent" && strings.Contains(string(h.Value), traceID) {
			return
		}
	}
	t.Fatalf("the record's trace context is not the client's trace %s: %v", traceID, raw[0].Headers)
}

// rawEvent decodes a raw record and opens its sealed fields, as the enricher does.
func (f *fixture) rawEvent(t *testing.T, r *kgo.Record) records.RawEvent {
	t.Helper()
	var ev records.RawEvent
	if err := f.codec.Decode(r.Value, &ev); err != nil {
		t.Fatal(err)
	}
	ev.IdentifyingStrings(func(path string, p *string) {
		plain, err := f.sealer.Open(t.Context(), ev.TenantID, *p)
		if err != nil {
			t.Fatalf("opening %s of event %s: %v", path, ev.EventID, err)
		}
		*p = plain
	})
	if err := ev.UnpackSealed(); err != nil {
		t.Fatalf("unpacking the sealed fields of event %s: %v", ev.EventID, err)
	}
	return ev
}

func TestIdentifyingFieldsReachKafkaSealed(t *testing.T) {
	f := newFixture(t)
	code, _, out := f.post(t, "good", "application/json", `{"events":[`+
		`{"event_id":"4f2d1c1e-0000-4000-8000-000000000001","type":"attendance","occurred_at":"2026-09-01T08:00:00Z",`+
		`"actor":{"sis_id":"stu-secret-1","role":"student"},"school_id":"sch1","payload":{"status":"absent","date":"2026-09-01","reason":"dentist visit"}},`+
		`{"event_id":"4f2d1c1e-0000-4000-8000-000000000002","type":"content_view","occurred_at":"2026-09-01T09:00:00Z",`+
		`"actor":{"sis_id":"stu-secret-1","role":"student"},"payload":{"content_id":"c1","content_type":"video","duration_seconds":30}}]}`)
	if code != http.StatusAccepted || out["accepted"] != 2.0 {
		t.Fatalf("events answer %d %v", code, out)
	}
	code, out = f.postRaw(t, "/v1/roster/users", "roster", "application/json", []byte(`{"users":[{"sourcedId":"stu-secret-2",`+
		`"status":"active","dateLastModified":"2026-08-01T00:00:00Z","enabledUser":true,"givenName":"Hypatia","familyName":"Alexandrina",`+
		`"email":"hypatia@example.edu","roles":[{"roleType":"primary","role":"student","org":{"sourcedId":"sch1"}}]}]}`))
	if code != http.StatusAccepted || out["accepted"] != 1.0 {
		t.Fatalf("roster answer %d %v", code, out)
	}

	code, out = f.postRaw(t, "/v1/roster/demographics", "roster", "application/json", []byte(`{"demographics":[{"sourcedId":"stu-secret-2",`+
		`"status":"active","dateLastModified":"2026-08-01T00:00:00Z","birthDate":"2012-03-04","sex":"female"}]}`))
	if code != http.StatusAccepted || out["accepted"] != 1.0 {
		t.Fatalf("demographics answer %d %v", code, out)
	}

	raw := f.readTopic(t, f.kcfg.Topics().Raw)
	if len(raw) != 4 {
		t.Fatalf("raw holds %d records, want 4", len(raw))
	}
	plain := []string{"stu-secret-1", "dentist", "stu-secret-2", "Hypatia", "Alexandrina", "hypatia@", "female"}
	opened := map[string]records.RawEvent{}
	for _, r := range raw {
		for _, p := range plain {
			if bytes.Contains(r.Value, []byte(p)) {
				t.Errorf("a raw record holds %q in plain form", p)
			}
		}
		var asSent records.RawEvent
		if err := f.codec.Decode(r.Value, &asSent); err != nil {
			t.Fatal(err)
		}
		if d := asSent.RosterDemographics; d != nil && (d.BirthDate != nil || asSent.Sealed == nil || !keyring.IsSealed(*asSent.Sealed)) {
			t.Errorf("a demographics record carries its birth date outside the sealed field: %v, sealed %v", d.BirthDate, asSent.Sealed)
		}
		ev := f.rawEvent(t, r)
		opened[ev.Type] = ev
	}
	if a := opened[records.TypeAttendance]; a.Actor.SISID != "stu-secret-1" || *a.Attendance.Reason != "dentist visit" {
		t.Errorf("opened attendance: actor %q, reason %v", a.Actor.SISID, a.Attendance.Reason)
	}
	if u := opened[records.TypeRosterUser].RosterUser; u == nil || u.GivenName != "Hypatia" || u.SourcedID != "stu-secret-2" || *u.Email != "hypatia@example.edu" {
		t.Errorf("opened user: %+v", u)
	}
	if d := opened[records.TypeRosterDemographics].RosterDemographics; d == nil || d.BirthDate == nil ||
		d.BirthDate.Format(time.DateOnly) != "2012-03-04" || *d.Sex != "female" {
		t.Errorf("opened demographics: %+v", d)
	}
	if cv := opened[records.TypeContentView].ContentView; cv == nil || cv.ContentID != "c1" {
		t.Errorf("a field that identifies no one changed: %+v", cv)
	}
}

// TestEventCountsPerDistrict: the gateway's event counters carry the district, so each district's
// ingestion (and its drop) is a series of its own.
func TestEventCountsPerDistrict(t *testing.T) {
	f := newFixture(t)
	body := `{"events":[` + event(1, "present") + `,` + event(2, "asleep") + `]}`
	if code, _, out := f.post(t, "good", "application/json", body); code != http.StatusAccepted {
		t.Fatalf("batch: %d %v", code, out)
	}
	rec := httptest.NewRecorder()
	f.metrics.ServeHTTP(rec, httptest.NewRequestWithContext(t.Context(), http.MethodGet, "/metrics", nil))
	text := rec.Body.String()
	for _, want := range []string{`gateway_events_accepted_total{`, `gateway_events_rejected_total{`} {
		found := false
		for _, line := range strings.Split(text, "\n") {
			if strings.HasPrefix(line, want) && strings.Contains(line, `tenant_id="d1"`) && strings.HasSuffix(line, " 1") {
				found = true
			}
		}
		if !found {
			t.Errorf("no %s...tenant_id=\"d1\"} 1 in the metrics", want)
		}
	}
}
