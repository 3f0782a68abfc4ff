// Package server is the gateway's HTTP edge: authentication by API key, body and batch limits,
// per-event validation, and production to Kafka that is acknowledged to the client only after acks=all.
package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/propagation"
	"log/slog"
	"mime"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/edtech-analytics/platform/libs/kafkax"
	"github.com/edtech-analytics/platform/libs/keyring"
	"github.com/edtech-analytics/platform/libs/mapping"
	"github.com/edtech-analytics/platform/libs/records"
	"github.com/edtech-analytics/platform/libs/tenancy/mappings"
	"github.com/edtech-analytics/platform/libs/tenancy/rosters"
	"github.com/edtech-analytics/platform/libs/tenancy/statements"
	"github.com/edtech-analytics/platform/libs/ttlcache"
	"github.com/edtech-analytics/platform/services/gateway/api"
	"github.com/edtech-analytics/platform/services/gateway/internal/ingest"
	"github.com/edtech-analytics/platform/services/gateway/internal/roster"
	"github.com/edtech-analytics/platform/services/gateway/internal/tenants"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// Verbs a key may hold.
const (
	VerbEventsWrite = "events:write"
	VerbRosterWrite = "roster:write"
)

// Limits bound one request.
type Limits struct {
	MaxBodyBytes int64
	MaxEvents    int
	// MaxRosterBodyBytes bounds the body of one roster request (a JSON collection or a CSV package);
	// zero means 64 MiB.
	MaxRosterBodyBytes int64
	// Roster bounds what one roster request holds: records, a CSV file's columns, header and record
	// bytes, and a package's unzipped files. Zero fields take roster.DefaultLimits.
	Roster roster.Limits
	// RosterMemoryBudget is the memory all roster requests of the gateway may hold together while they
	// are read, decoded, encoded and produced; RosterRequestMemory what one request may hold. Zero means
	// 256 MiB and 128 MiB. A request over its own bound is answered 413; one the budget cannot hold
	// because other requests hold it, 503 with Retry-After.
	RosterMemoryBudget  int64
	RosterRequestMemory int64
	// BodyReadTimeout and RosterBodyReadTimeout bound the time from the start of the handler until the
	// whole body of an events or a roster request is read (a client that trickles its body holds a
	// connection and a buffer); zero means 10 s and 5 min.
	BodyReadTimeout       time.Duration
	RosterBodyReadTimeout time.Duration
	// MaxRecordBytes bounds the key and value of one record: an event or roster record that encodes to
	// more is rejected as that record's error, since Kafka would refuse it however often it was sent.
	// Zero means what fits in a producer batch of kafkax.MaxRecordBatchBytes.
	MaxRecordBytes int
}

// recordHeadroom is what a record batch needs beside one record's key and value: the batch and record
// framing and the trace context headers.
const recordHeadroom = 1 << 10

// Producer is the part of a Kafka client the server needs.
type Producer interface {
	TryProduce(ctx context.Context, r *kgo.Record, promise func(*kgo.Record, error))
	// Produce waits for room in the buffer: a roster upload streams its records, however many.
	Produce(ctx context.Context, r *kgo.Record, promise func(*kgo.Record, error))
}

// Server handles the gateway's public API.
type Server struct {
	log        *slog.Logger
	keys       KeyStore
	tenants    *tenants.Registry
	producer   Producer
	codec      *records.Codec
	sealer     Sealer
	rosters    *rosters.Store
	mappings   *mappings.Store
	spoolDir   string // roster requests' spool files (see Deps.SpoolDir)
	statements *statements.Store
	actorCache *ttlcache.Cache[[2]string, mapping.Actors] // sources' actor rules
	topics     Topics
	limits     Limits
	budget     *rosterBudget
	otelOpts   []otelhttp.Option // the request spans' tracer, propagator and meter
	now        func() time.Time

	draining  atomic.Bool
	accepted  metric.Int64Counter
	rejected  metric.Int64Counter
	throttled metric.Int64Counter
}

// Sealer gives each person's data key, creating those that do not exist yet (a *keyring.Keyring).
type Sealer interface {
	SubjectKeys(ctx context.Context, tenant string, sisIDs []string) (map[string]*keyring.DataKey, error)
	EnsureSubjectKeys(ctx context.Context, set *keyring.KeySet, sisIDs []string) error
	// Open opens a value sealed with a data key of the district (an xAPI statement read back).
	Open(ctx context.Context, tenant, v string) (string, error)
}

// errKeys marks a failure to get the data keys of a batch: nothing was produced, the client retries.
var errKeys = errors.New("data keys unavailable")

// Topics the gateway writes to.
type Topics struct{ Raw, DLQ string }

// Deps are the server's collaborators.
type Deps struct {
	Log      *slog.Logger
	Keys     KeyStore
	Tenants  *tenants.Registry
	Producer Producer
	Codec    *records.Codec
	// Sealer gives the data keys the identifying fields of each person's records are sealed with.
	Sealer Sealer
	// Rosters is the roster import step every roster request passes.
	Rosters *rosters.Store
	// Mappings holds the sources' mapping rules, for mapped uploads.
	Mappings *mappings.Store
	// Statements keeps the ids of the xAPI statements districts sent.
	Statements *statements.Store
	// SpoolDir is where roster requests keep their encoded records until the upload is decided (a file
	// per request, unlinked once created); empty means the system's temporary directory.
	SpoolDir string
	Tracer   trace.TracerProvider
	Meter    metric.MeterProvider
	// Propagator reads a client's trace context (W3C traceparent) from requests; nil reads none.
	Propagator propagation.TextMapPropagator
}

// New builds a server.
func New(deps Deps, topics Topics, limits Limits) (*Server, error) {
	if deps.Sealer == nil {
		return nil, errors.New("server: a Sealer is required: every record's identifying fields are sealed")
	}
	if deps.Rosters == nil || deps.Mappings == nil {
		return nil, errors.New("server: a roster store and a mapping rules store are required: every roster request passes the import step")
	}
	if deps.Statements == nil {
		return nil, errors.New("server: an xAPI statements store is required")
	}
	m := deps.Meter.Meter("gateway")
	if limits.MaxRosterBodyBytes <= 0 {
		limits.MaxRosterBodyBytes = 64 << 20
	}
	if limits.RosterMemoryBudget <= 0 {
		limits.RosterMemoryBudget = 256 << 20
	}
	if limits.RosterRequestMemory <= 0 {
		limits.RosterRequestMemory = min(128<<20, limits.RosterMemoryBudget)
	}
	if limits.RosterRequestMemory > limits.RosterMemoryBudget {
		return nil, fmt.Errorf("roster request memory %d is over the roster memory budget %d", limits.RosterRequestMemory, limits.RosterMemoryBudget)
	}
	if limits.BodyReadTimeout <= 0 {
		limits.BodyReadTimeout = 10 * time.Second
	}
	if limits.RosterBodyReadTimeout <= 0 {
		limits.RosterBodyReadTimeout = 5 * time.Minute
	}
	if limits.MaxRecordBytes <= 0 {
		limits.MaxRecordBytes = kafkax.MaxRecordBatchBytes - recordHeadroom
	}
	if deps.Propagator == nil {
		deps.Propagator = propagation.NewCompositeTextMapPropagator()
	}
	s := &Server{
		log: deps.Log, keys: deps.Keys, tenants: deps.Tenants, producer: deps.Producer, codec: deps.Codec, sealer: deps.Sealer, rosters: deps.Rosters, mappings: deps.Mappings,
		spoolDir: deps.SpoolDir, statements: deps.Statements, actorCache: newActorRules(),
		topics: topics, limits: limits, now: time.Now,
		otelOpts: []otelhttp.Option{otelhttp.WithTracerProvider(deps.Tracer), otelhttp.WithMeterProvider(deps.Meter),
			otelhttp.WithPropagators(deps.Propagator)},
		budget: newRosterBudget(limits.RosterMemoryBudget, limits.RosterRequestMemory),
	}
	for _, c := range []struct {
		counter    *metric.Int64Counter
		name, desc string
	}{
		{&s.accepted, "gateway_events_accepted", "events acknowledged to clients after Kafka acks, by tenant_id"},
		{&s.rejected, "gateway_events_rejected", "events rejected by validation, by tenant_id"},
		{&s.throttled, "gateway_events_throttled", "events of batches refused by a district's rate limit, by tenant_id"},
	} {
		var err error
		if *c.counter, err = m.Int64Counter(c.name, metric.WithDescription(c.desc)); err != nil {
			return nil, fmt.Errorf("creating metric %s: %w", c.name, err)
		}
	}
	return s, nil
}

// Drain makes the server refuse new work with 503 while in-flight requests finish.
func (s *Server) Drain() { s.draining.Store(true) }

// Handler returns the routes of the public API.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("POST /v1/events", s.route("gateway.post_events", VerbEventsWrite, s.postEvents))
	mux.HandleFunc("/v1/events", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", "POST")
		writeProblem(w, http.StatusMethodNotAllowed, "method-not-allowed", "Method not allowed", "use POST", 0)
	})
	mux.Handle("POST /v1/caliper", s.route("gateway.post_caliper", VerbEventsWrite, s.postCaliper))
	mux.Handle("POST /xapi/statements", s.route("gateway.post_statements", VerbEventsWrite, s.postStatements))
	mux.Handle("PUT /xapi/statements", s.route("gateway.put_statement", VerbEventsWrite, s.putStatement))
	mux.Handle("GET /xapi/statements", s.route("gateway.get_statement", VerbEventsWrite, s.getStatement))
	mux.Handle("POST /v1/roster/csv", s.route("gateway.post_roster", VerbRosterWrite, s.postRosterCSV))
	mux.Handle("POST /v1/roster/{collection}", s.route("gateway.post_roster", VerbRosterWrite, s.postRosterJSON))
	mux.Handle("POST /v1/sources/{source}/uploads", s.route("gateway.post_source_upload", VerbRosterWrite, s.postSourceUpload))
	mux.HandleFunc("GET /openapi.yaml", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/yaml")
		_, _ = w.Write(api.OpenAPI())
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, http.StatusNotFound, "not-found", "Not found", "no such endpoint: "+r.URL.Path, 0)
	})
	return mux
}

// route serves h under a server span named name, which continues a trace the client sent: it refuses
// new work while the server drains and requests without a key that holds verb.
func (s *Server) route(name, verb string, h func(http.ResponseWriter, *http.Request, Key)) http.Handler {
	guarded := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.draining.Load() {
			writeProblem(w, http.StatusServiceUnavailable, "draining", "Service draining", "this instance is shutting down; retry", retryAfterBusy)
			return
		}
		key, ok := s.authenticate(w, r, verb)
		if !ok {
			return
		}
		h(w, r, key)
	})
	named := otelhttp.WithSpanNameFormatter(func(string, *http.Request) string { return name })
	return otelhttp.NewHandler(guarded, name, append(slices.Clip(s.otelOpts), named)...)
}

// EventsResponse is the answer to a batch whose body could be read.
type EventsResponse struct {
	Accepted int               `json:"accepted"`
	Rejected []ingest.Rejected `json:"rejected"`
	// Ignored lists the files of a OneRoster CSV package the platform does not carry.
	Ignored []string `json:"ignored,omitempty"`
}

// retryAfterBusy is the hint given to clients when Kafka cannot take more.
const retryAfterBusy = 2 * time.Second

func (s *Server) postEvents(w http.ResponseWriter, r *http.Request, key Key) {
	ctx := r.Context()

	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	var split func([]byte, int) ([]json.RawMessage, []int, error)
	switch ct {
	case "application/json":
		split = func(body []byte, n int) ([]json.RawMessage, []int, error) {
			raw, err := ingest.SplitJSON(body, n)
			return raw, nil, err
		}
	case "application/x-ndjson":
		split = ingest.SplitNDJSON
	default:
		writeProblem(w, http.StatusUnsupportedMediaType, "unsupported-media-type", "Unsupported media type",
			"Content-Type must be application/json or application/x-ndjson", 0)
		return
	}
	body, ok := s.readBody(w, r, s.limits.MaxBodyBytes, s.limits.BodyReadTimeout)
	if !ok {
		return
	}
	raw, lines, err := split(body, s.limits.MaxEvents)
	if err != nil {
		var se *ingest.SyntaxError
		switch {
		case errors.Is(err, ingest.ErrTooManyEvents):
			writeProblem(w, http.StatusRequestEntityTooLarge, "too-many-events", "Too many events", err.Error(), 0)
		case errors.As(err, &se):
			p := Problem{Type: "/problems/malformed-body", Title: "Malformed body", Status: http.StatusBadRequest, Detail: se.Error()}
			p.Offset = &se.Offset
			writeProblemBody(w, p, 0)
		default:
			writeProblem(w, http.StatusBadRequest, "malformed-body", "Malformed body", err.Error(), 0)
		}
		return
	}

	// The whole batch counts against the district's rate limit, valid events or not, before any work.
	tenant, ok := s.admit(ctx, w, key, len(raw), "retry this batch later")
	if !ok {
		return
	}

	meta := ingest.Meta{TenantID: key.TenantID, SourceID: key.SourceID, ReceivedAt: s.now()}
	accepted, rejected := ingest.Validate(raw, meta)
	if lines != nil {
		ingest.SetLines(rejected, lines)
	}
	s.accept(ctx, w, key, tenant, accepted, rejected, len(body))
}

// admit counts n events against the district's rate limit and returns its settings, or answers 429
// (retry says when to resend) and returns false.
func (s *Server) admit(ctx context.Context, w http.ResponseWriter, key Key, n int, retry string) (*tenants.Settings, bool) {
	tenant := s.tenants.Settings(key.TenantID)
	if ok, wait := s.tenants.Admit(tenant, n); !ok {
		count(ctx, s.throttled, key.TenantID, n)
		writeProblem(w, http.StatusTooManyRequests, "rate-limited", "Rate limit exceeded",
			fmt.Sprintf("district %s may send %d events per second (bursts of %d); %s",
				key.TenantID, tenant.Limit.EventsPerSecond, tenant.Limit.Burst, retry), max(wait, time.Second))
		return nil, false
	}
	return tenant, true
}

// accept encodes the accepted records, dead-letters the rejected ones (and those that cannot be records),
// produces the rest and answers: 202 with the counts and every rejection once Kafka acknowledged all
// produced records, 503 at the first failure.
func (s *Server) accept(ctx context.Context, w http.ResponseWriter, key Key, tenant *tenants.Settings,
	accepted []ingest.Accepted, rejected []ingest.Rejected, sizeHint int) {
	n, rejected, ok := s.send(ctx, w, key, tenant, accepted, rejected, sizeHint)
	if !ok {
		return
	}
	if rejected == nil {
		rejected = []ingest.Rejected{}
	}
	writeJSON(w, http.StatusAccepted, EventsResponse{Accepted: n, Rejected: rejected})
}

// send is accept without its answer: it returns how many records Kafka acknowledged and every
// rejection, or answers the failure itself and returns false.
func (s *Server) send(ctx context.Context, w http.ResponseWriter, key Key, tenant *tenants.Settings,
	accepted []ingest.Accepted, rejected []ingest.Rejected, sizeHint int) (int, []ingest.Rejected, bool) {
	recs, refused, err := s.encodeBatch(context.WithoutCancel(ctx), tenant, accepted, sizeHint, nil, nil)
	if errors.Is(err, errKeys) {
		s.log.WarnContext(ctx, "sealing batch", "tenant_id", key.TenantID, "records", len(accepted), "err", err)
		writeProblem(w, http.StatusServiceUnavailable, "keys-unavailable", "Cannot accept records now",
			"the key store did not answer; nothing was accepted; retry the same request (ids make retries safe)", retryAfterBusy)
		return 0, nil, false
	}
	if err != nil {
		writeRosterLimit(w, fmt.Errorf("encoding the records: %w", err))
		return 0, nil, false
	}
	if len(refused) > 0 {
		rejected = append(rejected, refused...)
		slices.SortFunc(rejected, func(a, b ingest.Rejected) int { return a.Index - b.Index })
	}
	dlqDone := s.deadLetter(ctx, key, rejected, s.now(), "event")
	if err := s.produce(ctx, recs); err != nil { // the DLQ records go on in the background: a refusal does not wait for Kafka
		s.log.WarnContext(ctx, "producing batch", "tenant_id", key.TenantID, "records", len(accepted), "err", err)
		detail := "nothing was acknowledged; retry the same request (ids make retries safe)"
		if errors.Is(err, kgo.ErrMaxBuffered) {
			detail = "the Kafka producer's buffer is full; " + detail
		}
		writeProblem(w, http.StatusServiceUnavailable, "kafka-unavailable", "Cannot accept records now", detail, retryAfterBusy)
		return 0, nil, false
	}
	dlqDone()
	count(ctx, s.accepted, key.TenantID, len(recs))
	count(ctx, s.rejected, key.TenantID, len(rejected))
	return len(recs), rejected, true
}

// count adds n to one of the gateway's event counters under the district: a district's ingestion rate,
// and its drop, are then one series each.
func count(ctx context.Context, c metric.Int64Counter, tenantID string, n int) {
	if n > 0 {
		c.Add(ctx, int64(n), metric.WithAttributes(attribute.String("tenant_id", tenantID)))
	}
}

// readBody reads the whole body, at most limit bytes and within timeout, into a buffer sized from
// Content-Length. When it cannot, it answers (413, 408 or 400) and returns false.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request, limit int64, timeout time.Duration) ([]byte, bool) {
	rc := http.NewResponseController(w)
	if err := rc.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		s.log.WarnContext(r.Context(), "setting the body read deadline", "err", err)
	}
	size := int64(0)
	if r.ContentLength > 0 {
		size = min(r.ContentLength, limit)
	}
	buf := bytes.NewBuffer(make([]byte, 0, size+bytes.MinRead))
	_, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, limit))
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		writeProblem(w, http.StatusRequestEntityTooLarge, "body-too-large", "Request body too large",
			fmt.Sprintf("the body may hold at most %d bytes", limit), 0)
		return nil, false
	case errors.Is(err, os.ErrDeadlineExceeded):
		w.Header().Set("Connection", "close")
		writeProblem(w, http.StatusRequestTimeout, "body-timeout", "Request body too slow",
			fmt.Sprintf("the body was not received within %s; send it without pauses", timeout), 0)
		return nil, false
	case err != nil:
		writeProblem(w, http.StatusBadRequest, "unreadable-body", "Unreadable body", err.Error(), 0)
		return nil, false
	}
	if err := rc.SetReadDeadline(time.Time{}); err != nil {
		s.log.WarnContext(r.Context(), "clearing the body read deadline", "err", err)
	}
	return buf.Bytes(), true
}

// authenticate resolves the request's API key and checks it may use verb.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request, verb string) (Key, bool) {
	plaintext := r.Header.Get("X-API-Key")
	if auth := r.Header.Get("Authorization"); plaintext == "" && auth != "" {
		scheme, token, _ := strings.Cut(auth, " ")
		if strings.EqualFold(scheme, "Bearer") {
			plaintext = strings.TrimSpace(token)
		}
	}
	if plaintext == "" {
		writeProblem(w, http.StatusUnauthorized, "missing-api-key", "Missing API key", "send the key as Authorization: Bearer <key>", 0)
		return Key{}, false
	}
	key, err := s.keys.Lookup(r.Context(), plaintext)
	switch {
	case errors.Is(err, ErrInvalidKey):
		writeProblem(w, http.StatusUnauthorized, "invalid-api-key", "Invalid API key", "the key is unknown or revoked", 0)
		return Key{}, false
	case err != nil:
		s.log.ErrorContext(r.Context(), "looking up api key", "err", err)
		writeProblem(w, http.StatusServiceUnavailable, "auth-unavailable", "Cannot check the API key now", "retry later", retryAfterBusy)
		return Key{}, false
	case !key.Allows(verb):
		writeProblem(w, http.StatusForbidden, "forbidden", "Key not allowed", fmt.Sprintf("this key does not hold %s", verb), 0)
		return Key{}, false
	}
	return key, true
}

// produce writes records to raw and waits until Kafka has acknowledged every one (acks=all, idempotent
// producer). It returns at the first failure without waiting for the rest: the client gets 503 and
// resends the batch, and event_id makes that safe. When the producer's buffer is full TryProduce fails
// at once with kgo.ErrMaxBuffered.
func (s *Server) produce(ctx context.Context, recs []kgo.Record) error {
	if len(recs) == 0 {
		return nil
	}
	// A client that hangs up must not cancel records: franz-go fails a whole buffered batch (other
	// requests' records too) when its first record's context is canceled.
	pctx := context.WithoutCancel(ctx)
	w := newAcks(len(recs))
	for i := range recs {
		if w.failed.Load() {
			break
		}
		s.producer.TryProduce(pctx, &recs[i], w.promise)
	}
	<-w.done
	return w.err
}

// encodeBatch turns accepted events into raw records under the district's record keys. An event that
// cannot become a record Kafka takes (larger than MaxRecordBytes, or not encodable) is returned as
// refused: resending it could never succeed. The records and their values are allocated once per batch;
// the producer holds on to them until their promises run, so nothing here is pooled. Values are
// sub-slices of one buffer: if it grows, earlier values keep pointing into the old array, which nothing
// writes to again; a refused value's bytes are overwritten by the next one. A non-nil mem is charged
// with every array allocated, the old ones included (the earlier values keep them), before it is used.
//
// The data keys come from known when it holds them (a roster import's keys, created ahead), otherwise
// from the keyring.
func (s *Server) encodeBatch(ctx context.Context, tenant *tenants.Settings, accepted []ingest.Accepted, sizeHint int, mem grower,
	known *keyring.KeySet) ([]kgo.Record, []ingest.Rejected, error) {
	if mem != nil {
		if err := mem.Grow(int64(len(accepted))*int64(unsafe.Sizeof(kgo.Record{})) + int64(sizeHint)); err != nil {
			return nil, nil, err
		}
	}
	dataKeys, err := s.dataKeys(ctx, tenant.TenantID, accepted, known)
	if err != nil {
		return nil, nil, err
	}
	recs := make([]kgo.Record, 0, len(accepted))
	var refused []ingest.Rejected
	buf := make([]byte, 0, sizeHint)
	for _, a := range accepted {
		key := tenant.RecordKey(a.Event.Actor.SISID) // from the plain id, so a person's records keep their sub-key
		start := len(buf)
		if mem != nil && cap(buf)-len(buf) < encodeHeadroom {
			// Grow the buffer here, charged, so that an encoding into it does not grow it uncharged.
			grown := max(2*cap(buf), len(buf)+encodeHeadroom)
			if err := mem.Grow(int64(grown)); err != nil {
				return nil, nil, err
			}
			buf = append(make([]byte, 0, grown), buf...)
		}
		before := cap(buf)
		err := seal(a.Event, dataKeys[a.Event.Actor.SISID])
		out := buf
		if err == nil {
			out, err = s.codec.AppendEncode(buf, a.Event)
		}
		size := len(key) + len(out) - start
		switch {
		case err != nil:
			refused = append(refused, refuse(a, "cannot be encoded as a record: "+err.Error()))
		case size > s.limits.MaxRecordBytes:
			refused = append(refused, refuse(a, fmt.Sprintf("is %d bytes as a record; a record may hold at most %d", size, s.limits.MaxRecordBytes)))
		default:
			buf = out
			recs = append(recs, kgo.Record{Topic: s.topics.Raw, Key: key, Value: buf[start:len(buf):len(buf)], Context: ctx})
		}
		if mem != nil && cap(out) > before {
			// A record larger than the headroom grew the buffer after all: charge it after the fact.
			if err := mem.Grow(int64(cap(out))); err != nil {
				return nil, nil, err
			}
		}
	}
	return recs, refused, nil
}

// grower is charged with memory before it is held (a *reservation).
type grower interface{ Grow(n int64) error }

// dataKeys returns the data keys of the people the records are about (roster records about no person,
// actor role "system", carry nothing identifying): those known holds, and the others in one round trip
// for those not cached.
func (s *Server) dataKeys(ctx context.Context, tenant string, accepted []ingest.Accepted, known *keyring.KeySet) (map[string]*keyring.DataKey, error) {
	ids := make([]string, 0, len(accepted))
	var found map[string]*keyring.DataKey
	for _, a := range accepted {
		if a.Event.Actor.Role == roleSystem {
			continue
		}
		id := a.Event.Actor.SISID
		if known != nil {
			if _, done := found[id]; done {
				continue
			}
			k, err := known.Key(id)
			if err != nil {
				return nil, fmt.Errorf("%w: %w", errKeys, err)
			}
			if k != nil {
				if found == nil {
					found = make(map[string]*keyring.DataKey, len(accepted))
				}
				found[id] = k
				continue
			}
		}
		ids = append(ids, id)
	}
	if len(ids) == 0 {
		return found, nil
	}
	keys, err := s.sealer.SubjectKeys(ctx, tenant, ids)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errKeys, err)
	}
	for id, k := range found {
		keys[id] = k
	}
	return keys, nil
}

// seal seals the record's identifying fields under the person's data key (nil: the record is about no
// person), the fields that are not strings packed into one sealed field first.
func seal(ev *records.RawEvent, dk *keyring.DataKey) error {
	if dk == nil {
		return nil
	}
	if err := ev.PackSealed(); err != nil {
		return err
	}
	ev.IdentifyingStrings(func(_ string, p *string) { *p = dk.Seal(*p) })
	return nil
}

// roleSystem is the actor role of roster records about no person.
const roleSystem = "system"

// encodeHeadroom is the free space kept in a roster batch's buffer before each record is encoded: more
// than a usual record takes, so the buffer grows where it is charged.
const encodeHeadroom = 64 << 10

// refuse rejects an accepted record as a whole (the field "body", as for an event that is not an object).
func refuse(a ingest.Accepted, msg string) ingest.Rejected {
	return ingest.Rejected{Index: a.Index, EventID: a.Event.EventID, Errors: []ingest.FieldError{{Field: "body", Message: msg}}}
}

// acks waits for the promises of one batch: done closes when every record is acknowledged or at the first
// failure, whichever comes first.
type acks struct {
	mu      sync.Mutex
	pending int
	err     error
	failed  atomic.Bool
	done    chan struct{}
}

func newAcks(n int) *acks { return &acks{pending: n, done: make(chan struct{})} }

func (a *acks) promise(_ *kgo.Record, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.pending--
	switch {
	case err != nil && a.err == nil:
		a.err = err
		a.failed.Store(true)
		close(a.done)
	case a.pending == 0 && a.err == nil:
		close(a.done)
	}
}

// unattributed is the key subject of dead letters that name no person: their originals are sealed under
// a data key of the district's own, shredded with the district.
const unattributed = "\x00unattributed"

// deadLetterKeys returns the data keys the rejected events' originals are sealed with, by the actor SIS
// id each names ("" for none: the district's unattributed key). Without keys (the key store down) the
// originals are dropped rather than kept in clear: the answer to the client names every error anyway.
func (s *Server) deadLetterKeys(ctx context.Context, tenant string, rejected []ingest.Rejected) map[string]*keyring.DataKey {
	ids := []string{unattributed}
	for _, rj := range rejected {
		if id := sisIDOf(rj.Raw); id != "" {
			ids = append(ids, id)
		}
	}
	keys, err := s.sealer.SubjectKeys(ctx, tenant, ids)
	if err != nil {
		s.log.WarnContext(ctx, "no data keys for dead letters: their originals are left out", "tenant_id", tenant, "err", err)
		return nil
	}
	keys[""] = keys[unattributed]
	return keys
}

// sisIDOf returns the actor SIS id a rejected event's JSON names, or "".
func sisIDOf(raw []byte) string {
	var ev struct {
		Actor struct {
			SISID string `json:"sis_id"`
		} `json:"actor"`
	}
	if json.Unmarshal(raw, &ev) != nil {
		return ""
	}
	return ev.Actor.SISID
}

// deadLetter sends rejected events to the DLQ with their errors and returns a function that waits for
// their acks. A DLQ failure is logged, not returned: the client already gets every error in the answer and
// nothing it sent was acknowledged as accepted.
func (s *Server) deadLetter(ctx context.Context, key Key, rejected []ingest.Rejected, at time.Time, what string) (wait func()) {
	if len(rejected) == 0 {
		return func() {}
	}
	var wg sync.WaitGroup
	pctx := context.WithoutCancel(ctx)
	keys := s.deadLetterKeys(ctx, key.TenantID, rejected)
	for _, rj := range rejected {
		d := &records.DLQRecord{
			Reason: records.ReasonInvalidField, Stage: records.StageGateway, TenantID: &key.TenantID,
			Detail:   fmt.Sprintf("%s %d of a request from source %s failed validation", what, rj.Index, key.SourceID),
			Original: rj.Raw, FailedAt: at.UTC().Truncate(time.Millisecond), Headers: []records.Header{},
		}
		// The dead letter must fit in a record too: a huge original keeps its beginning.
		if limit := s.limits.MaxRecordBytes / 2; len(d.Original) > limit {
			d.Detail += fmt.Sprintf("; original truncated to its first %d of %d bytes", limit, len(d.Original))
			d.Original = d.Original[:limit]
		}
		// The original is sealed under the data key of the person it is about, so that erasing the person
		// (or the district) makes it unreadable; one naming nobody under the district's own.
		if dk := keys[sisIDOf(rj.Raw)]; dk != nil {
			d.Original = []byte(dk.Seal(string(d.Original)))
			d.Detail += "; original sealed under the data key of the person it names"
		}
		if rj.EventID != "" {
			id := rj.EventID
			d.EventID = &id
		}
		for _, e := range rj.Errors {
			d.Errors = append(d.Errors, records.FieldError{Field: e.Field, Message: e.Message})
		}
		val, err := s.codec.Encode(d)
		if err != nil {
			s.log.ErrorContext(ctx, "encoding dlq record", "tenant_id", key.TenantID, "err", err)
			continue
		}
		wg.Add(1)
		s.producer.TryProduce(pctx, &kgo.Record{Topic: s.topics.DLQ, Key: []byte(key.TenantID), Value: val, Context: pctx},
			func(_ *kgo.Record, err error) {
				if err != nil {
					s.log.ErrorContext(ctx, "producing dlq record", "tenant_id", key.TenantID, "err", err)
				}
				wg.Done()
			})
	}
	return wg.Wait
}
