package app_test

import (
	"archive/zip"
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/edtech-analytics/platform/libs/keyring/keyringtest"
	"github.com/edtech-analytics/platform/libs/pgutil/pgtest"
	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/edtech-analytics/platform/libs/tenancy/fleet"
	"github.com/edtech-analytics/platform/libs/tenancy/mappings"
	"github.com/edtech-analytics/platform/libs/tenancy/rosters"
	"github.com/edtech-analytics/platform/libs/tenancy/statements"
	tenantstore "github.com/edtech-analytics/platform/libs/tenancy/tenants"
	"github.com/jackc/pgx/v5/pgxpool"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edtech-analytics/platform/libs/kafkax"
	"github.com/edtech-analytics/platform/libs/obs"
	"github.com/edtech-analytics/platform/libs/svc/stream"
	"github.com/edtech-analytics/platform/libs/testenv/kafkatest"
	"github.com/edtech-analytics/platform/libs/testenv/sampledata"
	"github.com/edtech-analytics/platform/services/gateway/api"
	"github.com/edtech-analytics/platform/services/gateway/app"
	"github.com/edtech-analytics/platform/services/gateway/internal/ingest"
	"github.com/edtech-analytics/platform/services/gateway/internal/roster"
	"github.com/edtech-analytics/platform/services/gateway/internal/server"
	"github.com/edtech-analytics/platform/services/gateway/internal/tenants"
	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
)

// keyMap is an in-memory server.KeyStore.
type keyMap map[string]server.Key

func (m keyMap) Lookup(_ context.Context, plaintext string) (server.Key, error) {
	if k, ok := m[plaintext]; ok {
		return k, nil
	}
	return server.Key{}, server.ErrInvalidKey
}

// gateway is the gateway's full HTTP surface (public API, health, metrics) over kfake, with the
// documented default limits.
type gateway struct {
	url    string
	srv    *server.Server
	health *obs.Health
	pool   *pgxpool.Pool // the control database
}

func newGateway(t *testing.T, opts ...func(*server.Limits)) *gateway {
	t.Helper()
	ctx := t.Context()
	_, kcfg := kafkatest.New(t)
	tel, err := obs.Init(ctx, "test")
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kafkax.NewClient(kcfg, kafkax.Deps{Tracer: tel.Tracer, Propagator: tel.Propagator}, "", kafkax.ProducerOptions()...)
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
	log := slog.New(slog.DiscardHandler)
	limited := []tenants.Stored{{TenantID: "small", RateLimit: &tenants.RateLimit{EventsPerSecond: 1, Burst: 1}}}
	reg, err := tenants.New(func(context.Context) ([]tenants.Stored, error) { return limited, nil },
		tenants.RateLimit{EventsPerSecond: 100_000, Burst: 100_000}, 1000, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := reg.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	keys := keyMap{
		"good":   {ID: "k1", TenantID: "d1", SourceID: "lms", Verbs: []string{server.VerbEventsWrite}},
		"roster": {ID: "k2", TenantID: "d1", SourceID: "sis", Verbs: []string{server.VerbRosterWrite}},
		"small":  {ID: "k3", TenantID: "small", SourceID: "lms", Verbs: []string{server.VerbEventsWrite}},
	}
	limits := server.Limits{MaxBodyBytes: 5 << 20, MaxEvents: 1000, Roster: roster.Limits{MaxRecords: 10}}
	for _, o := range opts {
		o(&limits)
	}
	pool, _ := pgtest.New(t)
	if err := tenancy.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	districts := fleet.New(pool, os.Getenv)
	t.Cleanup(districts.Close)
	if _, err := tenantstore.New(districts).Create(ctx, "d1", "d1"); err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(server.Deps{Log: log, Keys: keys, Tenants: reg, Producer: cl.Client, Codec: codec, Sealer: keyringtest.Over(t, pool),
		Rosters: rosters.New(fleet.NewDistrictPools(districts)), Mappings: mappings.New(pool),
		Statements: statements.New(fleet.NewDistrictPools(districts)), Tracer: tel.Tracer, Meter: tel.Meter},
		server.Topics{Raw: kcfg.Topics().Raw, DLQ: kcfg.Topics().DLQ}, limits)
	if err != nil {
		t.Fatal(err)
	}
	health := obs.NewHealth("kafka", "serving")
	health.SetReady("kafka", true)
	health.SetReady("serving", true)
	hs := httptest.NewServer(app.Routes(srv, health, tel.Metrics))
	t.Cleanup(hs.Close)
	return &gateway{url: hs.URL, srv: srv, health: health, pool: pool}
}

func loadDocument(t *testing.T) *openapi3.T {
	t.Helper()
	doc, err := openapi3.NewLoader().LoadFromData(api.OpenAPI())
	if err != nil {
		t.Fatalf("loading openapi.yaml: %v", err)
	}
	if err := doc.Validate(t.Context()); err != nil {
		t.Fatalf("openapi.yaml is not a valid OpenAPI 3 document: %v", err)
	}
	return doc
}

// decodeNDJSON lets the validator read NDJSON bodies: one JSON value per non-blank line, as an array.
func decodeNDJSON(body io.Reader, _ http.Header, _ *openapi3.SchemaRef, _ openapi3filter.EncodingFn) (any, error) {
	var out []any
	sc := bufio.NewScanner(body)
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var v any
		if err := json.Unmarshal(line, &v); err != nil {
			return nil, fmt.Errorf("ndjson line %d: %w", len(out)+1, err)
		}
		out = append(out, v)
	}
	return out, sc.Err()
}

// authenticate accepts a request that carries credentials in the scheme's place; the gateway itself
// decides whether they are any good.
func authenticate(_ context.Context, in *openapi3filter.AuthenticationInput) error {
	h := in.RequestValidationInput.Request.Header
	switch in.SecuritySchemeName {
	case "bearer":
		if strings.HasPrefix(h.Get("Authorization"), "Bearer ") {
			return nil
		}
	case "apiKey":
		if h.Get("X-API-Key") != "" {
			return nil
		}
	}
	return errors.New("no credentials")
}

type exchange struct {
	name         string
	method, path string
	key, header  string // key goes in header ("Authorization" as Bearer, or "X-API-Key")
	ctype        string
	body         []byte
	before       func(g *gateway)
	status       int
	problem      string            // expected problem type, for errors
	requestValid bool              // whether the request itself conforms to the document
	slow         bool              // the client sends body, then stops until the gateway answered
	extra        map[string]string // more request headers
}

func events(n int, mutate func(i int, e *sampledata.Event)) []sampledata.Event {
	spec := sampledata.Spec{TenantID: "d1", Schools: 1, ClassesPerSchool: 2, StudentsPerClass: 10, Days: 10, EventsPerStudent: 6,
		Start: time.Now().UTC().Truncate(24*time.Hour).AddDate(0, 0, -12), Seed: 3}
	evs := spec.Events()
	if len(evs) < n {
		panic("not enough sample events")
	}
	evs = evs[:n]
	if mutate != nil {
		for i := range evs {
			mutate(i, &evs[i])
		}
	}
	return evs
}

func jsonBatch(t *testing.T, evs []sampledata.Event) []byte {
	t.Helper()
	b, err := json.Marshal(map[string]any{"events": evs})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func ndjson(t *testing.T, evs []sampledata.Event) []byte {
	t.Helper()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	for _, e := range evs {
		if err := enc.Encode(e); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

// mappingRules map a students CSV export into OneRoster users.
const mappingRules = `version: 1
exports:
  - name: students
    match: "students*.csv"
    format: csv
    collection: users
    fields:
      - {target: sourcedId, from: Student_Number, required: true}
      - {target: givenName, from: First_Name, required: true}
      - {target: familyName, from: Last_Name, required: true}
      - {target: enabledUser, const: "true"}
      - {target: "roles[0].roleType", const: primary}
      - {target: "roles[0].role", const: student}
      - {target: "roles[0].org.sourcedId", from: School_ID, required: true}
`

// TestOpenAPIDocumentDescribesTheGateway sends real requests through the gateway's handler (success,
// partial acceptance, every error status, health, metrics and the document itself) and checks each request
// and answer against openapi.yaml: answers must conform, requests must conform exactly when the test
// means them to, and every response the document lists must be exercised.
func TestOpenAPIDocumentDescribesTheGateway(t *testing.T) {
	doc := loadDocument(t)
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	openapi3filter.RegisterBodyDecoder("application/x-ndjson", decodeNDJSON)
	t.Cleanup(func() { openapi3filter.UnregisterBodyDecoder("application/x-ndjson") })
	g := newGateway(t)
	slowGW := newGateway(t, func(l *server.Limits) {
		l.BodyReadTimeout, l.RosterBodyReadTimeout = time.Millisecond, time.Millisecond
	})
	valid := func(e exchange) exchange { e.requestValid = true; return e }
	slow := func(e exchange) exchange {
		e.name, e.slow, e.status, e.problem, e.requestValid = e.name+" sent too slowly", true, 408, "/problems/body-timeout", false
		return e
	}

	partial := events(6, func(i int, e *sampledata.Event) {
		switch i {
		case 1:
			e.Payload = map[string]any{"status": "asleep"}
		case 4:
			e.EventID = "not-a-uuid"
		}
	})
	dup := events(3, nil)
	dup = append(dup, dup[0])
	const json, nd = "application/json", "application/x-ndjson"
	tooMany := make([]string, 1001)
	for i := range tooMany {
		tooMany[i] = "{}"
	}
	empties := []byte(`{"events":[` + strings.Repeat("{},", 599) + `{}]}`)
	post := func(name, key, ctype string, body []byte, status int, problem string, valid bool) exchange {
		return exchange{name: name, method: "POST", path: "/v1/events", key: key, header: "Authorization", ctype: ctype, body: body,
			status: status, problem: problem, requestValid: valid}
	}
	roster := func(name, key, ctype string, body []byte, status int, problem string, valid bool) exchange {
		return exchange{name: name, method: "POST", path: "/v1/roster/users", key: key, header: "Authorization", ctype: ctype, body: body,
			status: status, problem: problem, requestValid: valid}
	}
	upload := func(name, key, path, ctype string, body []byte, status int, problem string, valid bool) exchange {
		return exchange{name: name, method: "POST", path: path, key: key, header: "Authorization", ctype: ctype, body: body,
			status: status, problem: problem, requestValid: valid}
	}
	const students = "/v1/sources/sis/uploads?file=students.csv"
	studentRows := func(n int) []byte {
		var b strings.Builder
		b.WriteString("Student_Number,First_Name,Last_Name,School_ID\n")
		for i := range n {
			fmt.Fprintf(&b, "S%d,Given,Family,SCH-1\n", i)
		}
		b.WriteString(",No,Number,SCH-1\n") // rejected: its sourcedId is required
		return []byte(b.String())
	}
	withRules := upload("mapped students", "roster", students, "text/csv", studentRows(3), 202, "", true)
	withRules.before = func(g *gateway) {
		if _, err := mappings.New(g.pool).Set(t.Context(), "d1", "sis", []byte(mappingRules), "test"); err != nil {
			t.Fatal(err)
		}
	}
	calip := func(name, key, ctype string, body []byte, status int, problem string, valid bool) exchange {
		return exchange{name: name, method: "POST", path: "/v1/caliper", key: key, header: "Authorization", ctype: ctype, body: body,
			status: status, problem: problem, requestValid: valid}
	}
	envelope := func(version string, data ...string) []byte {
		return []byte(`{"sensor":"https://example.edu/sensors/1","sendTime":"` + time.Now().UTC().Format(time.RFC3339) + `","dataVersion":"` + version +
			`","data":[` + strings.Join(data, ",") + `]}`)
	}
	const caliper12 = "http://purl.imsglobal.org/ctx/caliper/v1p2"
	viewed := func(id string) string {
		return `{"@context":"` + caliper12 + `","id":"urn:uuid:` + id + `","type":"ViewEvent","actor":{"id":"https://example.edu/users/554433","type":"Person"},` +
			`"action":"Viewed","object":{"id":"https://example.edu/etexts/201.epub","type":"Document"},"eventTime":"` + time.Now().UTC().Format(time.RFC3339) + `"}`
	}
	statement := func(id string) string {
		s := `{"actor":{"account":{"homePage":"https://sis.example.org","name":"stu-01"}},"verb":{"id":"http://adlnet.gov/expapi/verbs/experienced"},` +
			`"object":{"id":"http://example.org/courses/1/video"},"timestamp":"` + time.Now().UTC().Format(time.RFC3339) + `"`
		if id != "" {
			s += `,"id":"` + id + `"`
		}
		return s + "}"
	}
	xapiEx := func(name, method, query, key, version, ctype, body string, status int, problem string, valid bool) exchange {
		e := exchange{name: name, method: method, path: "/xapi/statements" + query, key: key, header: "Authorization", ctype: ctype, body: []byte(body),
			status: status, problem: problem, requestValid: valid}
		if version != "" {
			e.extra = map[string]string{"X-Experience-API-Version": version}
		}
		return e
	}
	const st1, st2 = "9e1b2a44-0c57-4c2f-8d3e-1a2b3c4d5e01", "9e1b2a44-0c57-4c2f-8d3e-1a2b3c4d5e02"
	csv := func(name, key, ctype string, body []byte, status int, problem string, valid bool) exchange {
		return exchange{name: name, method: "POST", path: "/v1/roster/csv", key: key, header: "Authorization", ctype: ctype, body: body,
			status: status, problem: problem, requestValid: valid}
	}
	tests := []exchange{
		post("json batch", "good", json, jsonBatch(t, events(100, nil)), 202, "", true),
		post("ndjson batch", "good", nd, ndjson(t, events(20, nil)), 202, "", true),
		post("partial acceptance", "good", json, jsonBatch(t, partial), 202, "", true),
		post("duplicate in batch", "good", json, jsonBatch(t, dup), 202, "", true),
		{name: "x-api-key header", method: "POST", path: "/v1/events", key: "good", header: "X-API-Key", ctype: json,
			body: jsonBatch(t, events(2, nil)), status: 202, requestValid: true},
		post("malformed json", "good", json, []byte(`{"events":[{"a":}]}`), 400, "/problems/malformed-body", false),
		post("ndjson with a malformed line", "good", nd, append(ndjson(t, events(2, nil)), "{nope\n"...), 202, "", false),
		post("json with a malformed event", "good", json, []byte(`{"events":[{"event_id":"x\u0000","a":1,"a":2}]}`), 202, "", true),
		post("not an events object", "good", json, []byte(`[1,2]`), 400, "/problems/malformed-body", false),
		post("no key", "", json, []byte(`{"events":[]}`), 401, "/problems/missing-api-key", false),
		post("unknown key", "nope", json, []byte(`{"events":[]}`), 401, "/problems/invalid-api-key", true),
		post("key without the verb", "roster", json, []byte(`{"events":[]}`), 403, "/problems/forbidden", true),
		post("too many events", "good", json, []byte(`{"events":[`+strings.Join(tooMany, ",")+`]}`), 413, "/problems/too-many-events", false),
		post("body too large", "good", json, []byte(`{"events":[`+strings.Repeat(" ", 5<<20)+`]}`), 413, "/problems/body-too-large", true),
		post("wrong content type", "good", "text/plain", []byte(`{"events":[]}`), 415, "/problems/unsupported-media-type", false),
		post("within the limit", "small", json, empties, 202, "", true),
		post("over the limit", "small", json, empties, 429, "/problems/rate-limited", true),
		calip("caliper envelope", "good", json, envelope(caliper12, viewed("c2b0c6a4-3f0e-4c83-9e3b-6b3c2f3f4a01"),
			viewed("c2b0c6a4-3f0e-4c83-9e3b-6b3c2f3f4a02")), 202, "", true),
		calip("caliper with a bad event", "good", "application/ld+json", envelope(caliper12, viewed("c2b0c6a4-3f0e-4c83-9e3b-6b3c2f3f4a03"),
			strings.Replace(viewed("c2b0c6a4-3f0e-4c83-9e3b-6b3c2f3f4a04"), `"Viewed"`, `"Graded"`, 1)), 202, "", true),
		calip("caliper malformed envelope", "good", json, []byte(`{"events":[]}`), 400, "/problems/malformed-body", false),
		calip("caliper 1.1", "good", json, envelope("http://purl.imsglobal.org/ctx/caliper/v1p1", viewed("c2b0c6a4-3f0e-4c83-9e3b-6b3c2f3f4a05")),
			422, "/problems/unsupported-data-version", false),
		calip("caliper without a key", "", json, envelope(caliper12), 401, "/problems/missing-api-key", false),
		calip("caliper with a roster key", "roster", json, envelope(caliper12), 403, "/problems/forbidden", true),
		calip("caliper too many", "good", json, envelope(caliper12, tooMany...), 413, "/problems/too-many-events", false),
		calip("caliper as text", "good", "text/plain", envelope(caliper12), 415, "/problems/unsupported-media-type", false),
		xapiEx("xapi statements", "POST", "", "good", "1.0.3", json, "["+statement(st1)+","+statement("")+"]", 200, "", true),
		xapiEx("xapi statement again, other content", "POST", "", "good", "1.0.3", json,
			strings.Replace(statement(st1), "video", "slides", 1), 409, "/problems/statement-conflict", true),
		xapiEx("xapi invalid statement", "POST", "", "good", "1.0.3", json, `{"verb":{"id":"x"}}`, 400, "/problems/invalid-statements", true),
		xapiEx("xapi without a key", "POST", "", "", "1.0.3", json, statement(""), 401, "/problems/missing-api-key", false),
		xapiEx("xapi with a roster key", "POST", "", "roster", "1.0.3", json, statement(""), 403, "/problems/forbidden", true),
		xapiEx("xapi as text", "POST", "", "good", "1.0.3", "text/plain", statement(""), 415, "/problems/unsupported-media-type", false),
		xapiEx("xapi get", "GET", "?statementId="+st1, "good", "1.0.3", "", "", 200, "", true),
		xapiEx("xapi get unknown", "GET", "?statementId=9e1b2a44-0c57-4c2f-8d3e-1a2b3c4d5eff", "good", "1.0.3", "", "", 404, "/problems/not-found", true),
		xapiEx("xapi get without the version", "GET", "?statementId="+st1, "good", "", "", "", 400, "/problems/xapi-version", false),
		xapiEx("xapi get without a key", "GET", "?statementId="+st1, "", "1.0.3", "", "", 401, "/problems/missing-api-key", false),
		xapiEx("xapi get with a roster key", "GET", "?statementId="+st1, "roster", "1.0.3", "", "", 403, "/problems/forbidden", true),
		xapiEx("xapi put", "PUT", "?statementId="+st2, "good", "1.0.3", json, statement(""), 204, "", true),
		xapiEx("xapi put other content", "PUT", "?statementId="+st2, "good", "1.0.3", json,
			strings.Replace(statement(""), "video", "slides", 1), 409, "/problems/statement-conflict", true),
		xapiEx("xapi put without the version", "PUT", "?statementId="+st2, "good", "", json, statement(""), 400, "/problems/xapi-version", false),
		xapiEx("xapi put without a key", "PUT", "?statementId="+st2, "", "1.0.3", json, statement(""), 401, "/problems/missing-api-key", false),
		xapiEx("xapi put with a roster key", "PUT", "?statementId="+st2, "roster", "1.0.3", json, statement(""), 403, "/problems/forbidden", true),
		xapiEx("xapi put as text", "PUT", "?statementId="+st2, "good", "1.0.3", "text/plain", statement(""), 415, "/problems/unsupported-media-type", false),
		roster("users", "roster", json, rosterUsers(2, true), 202, "", true),
		roster("users with a bad record", "roster", json, rosterUsers(3, false), 202, "", true),
		roster("malformed users", "roster", json, []byte(`{"users":[{]}`), 400, "/problems/malformed-body", false),
		roster("users without a key", "", json, rosterUsers(1, true), 401, "/problems/missing-api-key", false),
		roster("users with an events key", "good", json, rosterUsers(1, true), 403, "/problems/forbidden", true),
		{name: "unknown collection", method: "POST", path: "/v1/roster/pets", key: "roster", header: "Authorization", ctype: json,
			body: []byte(`{"pets":[]}`), status: 404, problem: "/problems/unknown-collection", requestValid: false},
		roster("too many users", "roster", json, rosterUsers(11, true), 413, "/problems/too-many-records", true),
		roster("users as text", "roster", "text/plain", rosterUsers(1, true), 415, "/problems/unsupported-media-type", false),
		csv("csv package", "roster", "application/zip", rosterZip(t), 202, "", true),
		csv("not a zip", "roster", "application/zip", []byte("PK not a zip"), 400, "/problems/malformed-body", true),
		csv("csv without a key", "", "application/zip", rosterZip(t), 401, "/problems/missing-api-key", false),
		csv("csv with an events key", "good", "application/zip", rosterZip(t), 403, "/problems/forbidden", true),
		csv("csv too many rows", "roster", "application/zip", rosterZipRows(t, 11), 413, "/problems/too-many-records", true),
		csv("csv with too many columns", "roster", "application/zip", rosterZipWide(t), 413, "/problems/roster-too-large", true),
		csv("csv as json", "roster", json, rosterZip(t), 415, "/problems/unsupported-media-type", false),
		upload("mapped before any rules", "roster", students, "text/csv", studentRows(1), 409, "/problems/no-mapping-rules", true),
		withRules,
		upload("mapped dry run", "roster", students+"&dry_run=true&rows=1", "text/csv", studentRows(2), 200, "", true),
		upload("mapped file no export matches", "roster", "/v1/sources/sis/uploads?file=grades.csv", "text/csv", studentRows(1), 400, "/problems/malformed-body", true),
		upload("mapped without a key", "", students, "text/csv", studentRows(1), 401, "/problems/missing-api-key", false),
		upload("mapped for another source", "roster", "/v1/sources/lms/uploads?file=students.csv", "text/csv", studentRows(1), 403, "/problems/forbidden", true),
		upload("mapped too many rows", "roster", students, "text/csv", studentRows(11), 413, "/problems/too-many-records", true),
		upload("mapped as text", "roster", students, "text/plain", studentRows(1), 415, "/problems/unsupported-media-type", false),
		slow(post("events", "good", json, []byte(`{"events":[`), 0, "", false)),
		slow(roster("users", "roster", json, []byte(`{"users":[`), 0, "", false)),
		valid(slow(csv("csv", "roster", "application/zip", rosterZip(t)[:100], 0, "", false))), // any bytes are a binary body
		{name: "healthz", method: "GET", path: "/healthz", status: 200, requestValid: true},
		{name: "ready", method: "GET", path: "/readyz", status: 200, requestValid: true},
		{name: "metrics", method: "GET", path: "/metrics", status: 200, requestValid: true},
		{name: "openapi document", method: "GET", path: "/openapi.yaml", status: 200, requestValid: true},
	}
	// Last, the instance drains: readiness goes false and new batches get 503.
	draining := post("draining", "good", json, jsonBatch(t, events(1, nil)), 503, "/problems/draining", true)
	draining.before = func(g *gateway) { g.srv.Drain(); g.health.SetReady("serving", false) }
	tests = append(tests, draining,
		roster("roster while draining", "roster", json, rosterUsers(1, true), 503, "/problems/draining", true),
		calip("caliper while draining", "good", json, envelope(caliper12), 503, "/problems/draining", true),
		csv("csv while draining", "roster", "application/zip", rosterZip(t), 503, "/problems/draining", true),
		upload("mapped while draining", "roster", students, "text/csv", studentRows(1), 503, "/problems/draining", true),
		exchange{name: "not ready", method: "GET", path: "/readyz", status: 503, requestValid: true})

	covered := map[string]bool{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.before != nil {
				tt.before(g)
			}
			gw := g
			if tt.slow {
				gw = slowGW
			}
			status, hdr, body := gw.do(t, tt)
			if status != tt.status {
				t.Fatalf("status %d, want %d: %s", status, tt.status, body)
			}
			if tt.problem != "" {
				var p server.Problem
				if err := jsonUnmarshal(body, &p); err != nil || p.Type != tt.problem || p.Status != status {
					t.Fatalf("problem = %+v (%v), want type %s", p, err, tt.problem)
				}
			}
			req := tt.request(t, g.url)
			route, params, err := router.FindRoute(req)
			if err != nil {
				t.Fatalf("the document has no route for %s %s: %v", tt.method, tt.path, err)
			}
			in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route,
				Options: &openapi3filter.Options{AuthenticationFunc: authenticate, MultiError: true}}
			reqErr := openapi3filter.ValidateRequest(t.Context(), in)
			if (reqErr == nil) != tt.requestValid {
				t.Errorf("request conforms to the document: %v, want %v (%v)", reqErr == nil, tt.requestValid, reqErr)
			}
			out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: status, Header: hdr,
				Body: io.NopCloser(bytes.NewReader(body)), Options: &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true}}
			if err := openapi3filter.ValidateResponse(t.Context(), out); err != nil {
				t.Errorf("answer does not conform to the document: %v\nbody: %.300s", err, body)
			}
			covered[responseKey(route, status)] = true
			if tt.path == "/openapi.yaml" && !bytes.Equal(body, api.OpenAPI()) {
				t.Error("GET /openapi.yaml does not serve the embedded document")
			}
		})
	}
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			for code := range op.Responses.Map() {
				if key := method + " " + path + " " + code; !covered[key] {
					t.Errorf("documented response %s is not exercised by this test", key)
				}
			}
		}
	}
}

// rosterUsers is a OneRoster users collection of n records; unless valid, the second lacks its sourcedId.
func rosterUsers(n int, valid bool) []byte {
	users := make([]map[string]any, n)
	for i := range users {
		users[i] = map[string]any{"sourcedId": fmt.Sprintf("stu-%d", i), "status": "active", "dateLastModified": "2026-09-01T08:00:00Z",
			"enabledUser": true, "givenName": "Ada", "familyName": "L",
			"roles": []any{map[string]any{"roleType": "primary", "role": "student", "org": map[string]any{"sourcedId": "sch1"}}}}
	}
	if !valid && n > 1 {
		users[1]["sourcedId"] = ""
	}
	b, _ := json.Marshal(map[string]any{"users": users})
	return b
}

func rosterZip(t *testing.T) []byte { return rosterZipRows(t, 2) }

// rosterZipRows is a CSV package with an enrollments.csv of n rows.
func rosterZipRows(t *testing.T, n int) []byte {
	t.Helper()
	var csv strings.Builder
	csv.WriteString("sourcedId,status,dateLastModified,classSourcedId,schoolSourcedId,userSourcedId,role,primary,beginDate,endDate\n")
	for i := range n {
		fmt.Fprintf(&csv, "enr-%d,active,2026-09-01T08:00:00Z,cls-1,sch1,stu-%d,student,false,,\n", i, i)
	}
	return zipOf(t, "enrollments.csv", csv.String())
}

// rosterZipWide is a CSV package whose enrollments.csv has more columns than a file may have.
func rosterZipWide(t *testing.T) []byte {
	t.Helper()
	var csv strings.Builder
	csv.WriteString("sourcedId,classSourcedId,schoolSourcedId,userSourcedId,role")
	for i := range roster.DefaultLimits().MaxColumns {
		fmt.Fprintf(&csv, ",metadata.m%d", i)
	}
	csv.WriteString("\n")
	return zipOf(t, "enrollments.csv", csv.String())
}

func zipOf(t *testing.T, name, content string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	fw, err := zw.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fw.Write([]byte(content)); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func responseKey(route *routers.Route, status int) string {
	return route.Method + " " + route.Path + " " + strconv.Itoa(status)
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

// request builds the request of tt (a fresh one, so its body can be read again).
func (tt exchange) request(t *testing.T, base string) *http.Request {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), tt.method, base+tt.path, bytes.NewReader(tt.body))
	if err != nil {
		t.Fatal(err)
	}
	if tt.body == nil {
		req.Body = http.NoBody
	}
	switch {
	case tt.key == "":
	case tt.header == "X-API-Key":
		req.Header.Set("X-API-Key", tt.key)
	default:
		req.Header.Set("Authorization", "Bearer "+tt.key)
	}
	if tt.ctype != "" {
		req.Header.Set("Content-Type", tt.ctype)
	}
	for k, v := range tt.extra {
		req.Header.Set(k, v)
	}
	return req
}

func (g *gateway) do(t *testing.T, tt exchange) (int, http.Header, []byte) {
	t.Helper()
	req := tt.request(t, g.url)
	if tt.slow {
		release := make(chan struct{})
		defer close(release) // after the answer is read: the body does not end before
		req.Body, req.ContentLength, req.GetBody = io.NopCloser(io.MultiReader(bytes.NewReader(tt.body), blockUntil(release))), -1, nil
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := resp.Body.Close(); err != nil {
			t.Error(err)
		}
	}()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, body
}

// TestEventSchemaAgreesWithTheValidator: every event the gateway accepts conforms to the document's
// Event schema, and events the schema can tell are wrong are also rejected by the gateway.
func TestEventSchemaAgreesWithTheValidator(t *testing.T) {
	doc := loadDocument(t)
	schema := doc.Components.Schemas["Event"].Value
	meta := ingest.Meta{TenantID: "d1", SourceID: "lms", ReceivedAt: time.Now()}

	var accepted []json.RawMessage
	for _, e := range events(600, nil) {
		b, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		accepted = append(accepted, b)
	}
	types := map[string]bool{}
	extra := []string{ // optional fields, nulls and every payload field
		`{"event_id":"6F1C2B7E-8A3D-4C1E-9F00-000000000001","type":"attendance","occurred_at":"2026-11-20T08:00:00.123+01:00","schema_version":1,
		  "actor":{"sis_id":"S1","role":"teacher"},"school_id":"sch1","class_id":null,"session_id":"",
		  "payload":{"status":"excused","date":"2026-11-20","minutes_present":0,"reason":"doctor:\r\n\tflu"}}`,
		`{"event_id":"6f1c2b7e-8a3d-4c1e-9f00-000000000002","type":"assessment_result","occurred_at":"2026-11-20T08:00:00Z","schema_version":null,
		  "actor":{"sis_id":"S1","role":"student"},"payload":{"assessment_id":"a","score":0,"max_score":0.5,"scale":"pct","grade":"B","attempt":2,"completed_at":null}}`,
		`{"event_id":"6f1c2b7e-8a3d-4c1e-9f00-000000000003","type":"assignment_submission","occurred_at":"2026-11-20T08:00:00Z",
		  "actor":{"sis_id":"S1","role":"student"},"payload":{"assignment_id":"hw","submitted_at":"2026-11-20T08:00:00Z","status":"missing","score":null,"max_score":null,"due_at":null}}`,
		`{"event_id":"6f1c2b7e-8a3d-4c1e-9f00-000000000004","type":"session","occurred_at":"2026-11-20T08:00:00Z",
		  "actor":{"sis_id":"S1","role":"proctor"},"payload":{"action":"logout","session_id":"x","device":"ipad","app":"lms","duration_seconds":604800}}`,
		`{"event_id":"6f1c2b7e-8a3d-4c1e-9f00-000000000005","type":"content_view","occurred_at":"2026-11-20T08:00:00Z",
		  "actor":{"sis_id":"S1","role":"student"},"payload":{"content_id":"v","content_type":"video","duration_seconds":86400,"percent_complete":null}}`,
		`{"event_id":"6f1c2b7e-8a3d-4c1e-9f00-000000000006","type":"custom","occurred_at":"2026-11-20T08:00:00Z",
		  "actor":{"sis_id":"S1","role":"student"},"payload":{"name":"checkout:step-2.done","properties":{"plan":"pro","step":"2"}}}`,
		`{"event_id":"6f1c2b7e-8a3d-4c1e-9f00-000000000007","type":"generic","occurred_at":"2026-11-20T08:00:00Z",
		  "actor":{"sis_id":"S1","role":"student"},"payload":{"standard":"xapi","type":"http://adlnet.gov/expapi/verbs/experienced",
		  "action":"experienced","object_id":"http://example.edu/a/1","object_type":null,"statement_id":"x-1","extensions":{"http://example.edu/ext/level":"4"}}}`,
	}
	for _, e := range extra {
		accepted = append(accepted, json.RawMessage(e))
	}
	acc, rej := ingest.Validate(accepted, meta)
	if len(rej) != 0 {
		t.Fatalf("the sample events were rejected: %+v", rej[0])
	}
	for _, a := range acc {
		var v any
		if err := json.Unmarshal(accepted[a.Index], &v); err != nil {
			t.Fatal(err)
		}
		types[a.Event.Type] = true
		if err := schema.VisitJSON(v, openapi3.MultiErrors()); err != nil {
			t.Fatalf("accepted event %s does not match the Event schema: %v", accepted[a.Index], err)
		}
	}
	if want := []string{"assessment_result", "assignment_submission", "attendance", "content_view", "custom", "generic", "session"}; !slices.Equal(sortedKeys(types), want) {
		t.Fatalf("event types covered: %v", sortedKeys(types))
	}

	valid := string(accepted[len(accepted)-7])
	custom := string(accepted[len(accepted)-2])
	generic := string(accepted[len(accepted)-1])
	wrong := map[string]string{
		"unknown type":          strings.Replace(valid, `"attendance"`, `"telepathy"`, 1),
		"bad status":            strings.Replace(valid, `"excused"`, `"asleep"`, 1),
		"bad role":              strings.Replace(valid, `"teacher"`, `"wizard"`, 1),
		"bad uuid":              strings.Replace(valid, `6F1C2B7E-8A3D`, `6F1C2B7E8A3D`, 1),
		"unknown field":         strings.Replace(valid, `"school_id"`, `"nickname":"x","school_id"`, 1),
		"unknown payload field": strings.Replace(valid, `"reason"`, `"mood":"ok","reason"`, 1),
		"no school":             strings.Replace(valid, `"school_id":"sch1",`, ``, 1),
		"bad timestamp":         strings.Replace(valid, `2026-11-20T08:00:00.123+01:00`, `yesterday`, 1),
		"minutes out of range":  strings.Replace(valid, `"minutes_present":0`, `"minutes_present":2000`, 1),
		"schema version 2":      strings.Replace(valid, `"schema_version":1`, `"schema_version":2`, 1),
		"empty sis id":          strings.Replace(valid, `"sis_id":"S1"`, `"sis_id":""`, 1),
		"nul in sis id":         strings.Replace(valid, `"sis_id":"S1"`, `"sis_id":"S\u00001"`, 1),
		"line break in school":  strings.Replace(valid, `"school_id":"sch1"`, `"school_id":"sch\n1"`, 1),
		"escape in reason":      strings.Replace(valid, `"reason":"doctor`, `"reason":"\u001bdoctor`, 1),
		"c1 in reason":          strings.Replace(valid, `"reason":"doctor`, `"reason":"\u0085doctor`, 1),
		"oversized reason":      strings.Replace(valid, `"reason":"doctor`, `"reason":"`+strings.Repeat("x", 4097), 1),
		"oversized sis id":      strings.Replace(valid, `"sis_id":"S1"`, `"sis_id":"`+strings.Repeat("x", 257)+`"`, 1),
		"number property":       strings.Replace(custom, `"step":"2"`, `"step":2`, 1),
		"space in custom name":  strings.Replace(custom, `"checkout:step-2.done"`, `"checkout step"`, 1),
		"oversized property":    strings.Replace(custom, `"step":"2"`, `"step":"`+strings.Repeat("x", 1025)+`"`, 1),
		"unknown standard":      strings.Replace(generic, `"xapi"`, `"scorm"`, 1),
		"bool extension":        strings.Replace(generic, `"4"}`, `true}`, 1),
	}
	for name, e := range wrong {
		if e == valid {
			t.Fatalf("%s: the replacement did not apply", name)
		}
		var v any
		if err := json.Unmarshal([]byte(e), &v); err != nil {
			t.Fatal(err)
		}
		if err := schema.VisitJSON(v); err == nil {
			t.Errorf("%s: the Event schema accepts it", name)
		}
		if acc, _ := ingest.Validate([]json.RawMessage{json.RawMessage(e)}, meta); len(acc) != 0 {
			t.Errorf("%s: the gateway accepts it", name)
		}
	}
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// blockUntil is a reader that blocks until release is closed, then ends.
type blockUntil <-chan struct{}

func (b blockUntil) Read([]byte) (int, error) {
	<-b
	return 0, io.EOF
}
