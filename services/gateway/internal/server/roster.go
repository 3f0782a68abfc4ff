package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/edtech-analytics/platform/libs/tenancy/rosters"
	"github.com/edtech-analytics/platform/services/gateway/internal/ingest"
	"github.com/edtech-analytics/platform/services/gateway/internal/roster"
	"github.com/edtech-analytics/platform/services/gateway/internal/tenants"
)

// Roster requests carry a district's OneRoster 1.2 data: one JSON collection per request
// (POST /v1/roster/{collection}) or a CSV package as a zip (POST /v1/roster/csv). They need the
// roster:write verb, are bounded by the roster limits, and are not counted against the district's event
// rate limit (a nightly roster sync is one large request, not a burst of learning events). Each record
// becomes one raw record; valid records are accepted beside invalid ones, which are named and
// dead-lettered, exactly as for events.
//
// A request is decoded whole before anything is produced: an error of the whole request (a file over a
// bound, an unreadable file, memory over the request's bound or the gateway's budget) produces nothing,
// not even the records of the package's good files.
//
// Every request passes the import step (libs/tenancy/rosters, see importRoster): unchanged records are
// not sent again, a bulk file's missing records are tombstoned, an upload over the district's
// thresholds is held whole, and records whose references are unknown are held until they arrive. The
// answer's "upload" says what was done.
//
// Memory: every roster request holds a reservation of the gateway's roster budget, charged before the
// memory is held: the body by its Content-Length (the body limit when it has none) before it is read,
// a package's files by their declared unzipped sizes before they are unzipped, each record as it is
// decoded, and the encoded records as they are encoded. The reservation is released when the answer is
// written (after Kafka acknowledged the records). Requests never wait for the budget.

func (s *Server) postRosterJSON(w http.ResponseWriter, r *http.Request, key Key) {
	collection := r.PathValue("collection")
	s.postRoster(w, r, key, "application/json", func(body []byte, meta ingest.Meta, mem roster.Memory, each func(ingest.Accepted) error) (*decoded, error) {
		acc, rej, err := roster.DecodeJSON(collection, body, meta, s.limits.Roster, mem)
		if err != nil {
			return nil, err
		}
		for _, a := range acc {
			if err := each(a); err != nil {
				return nil, err
			}
		}
		file := roster.FileInfo{Name: collection, Collection: collection, Mode: rosters.Delta, To: len(acc) + len(rej)}
		for _, rj := range rej {
			if id := sourcedIDOfRaw(rj.Raw); id != "" {
				file.Present = append(file.Present, id)
			}
		}
		return &decoded{kind: "oneroster-json", rejected: rej, files: []roster.FileInfo{file}}, nil
	}, func(ingest.Accepted) string { return collection })
}

func (s *Server) postRosterCSV(w http.ResponseWriter, r *http.Request, key Key) {
	s.postRoster(w, r, key, "application/zip", func(body []byte, meta ingest.Meta, mem roster.Memory, each func(ingest.Accepted) error) (*decoded, error) {
		pkg, err := roster.DecodeCSVZipEach(body, meta, s.limits.Roster, mem, each)
		if err != nil {
			return nil, err
		}
		return &decoded{kind: "oneroster-csv", rejected: pkg.Rejected, ignored: pkg.Ignored, files: pkg.Files}, nil
	}, func(a ingest.Accepted) string { return roster.CollectionOf(a.Event) + ".csv" })
}

// decoded is a decoded roster request, its accepted records passed on as they came.
type decoded struct {
	kind     string
	findings json.RawMessage // data-quality findings of the upload, recorded with it
	rejected []ingest.Rejected
	ignored  []string
	files    []roster.FileInfo
}

// rosterDecoder decodes a roster request, passing each accepted record to each in order.
type rosterDecoder func(body []byte, meta ingest.Meta, mem roster.Memory, each func(ingest.Accepted) error) (*decoded, error)

// sourcedIDOfRaw returns the sourcedId of a rejected JSON record, when it has a string one.
func sourcedIDOfRaw(raw []byte) string {
	var v struct {
		SourcedID string `json:"sourcedId"`
	}
	if json.Unmarshal(raw, &v) != nil {
		return ""
	}
	return v.SourcedID
}

func (s *Server) postRoster(w http.ResponseWriter, r *http.Request, key Key, ctype string, decode rosterDecoder, fileOf func(ingest.Accepted) string) {
	ctx := r.Context()
	if got, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); got != ctype {
		writeProblem(w, http.StatusUnsupportedMediaType, "unsupported-media-type", "Unsupported media type",
			"Content-Type must be "+ctype, 0)
		return
	}
	mem := s.budget.reserve()
	defer mem.release()
	declared := s.limits.MaxRosterBodyBytes
	if r.ContentLength >= 0 {
		declared = min(r.ContentLength, declared)
	}
	if err := mem.Grow(declared); err != nil {
		writeRosterLimit(w, fmt.Errorf("a body of %d bytes: %w", declared, err))
		return
	}
	body, ok := s.readBody(w, r, s.limits.MaxRosterBodyBytes, s.limits.RosterBodyReadTimeout)
	if !ok {
		return
	}
	if err := mem.Grow(int64(cap(body)) - declared); err != nil { // a body without Content-Length grows its buffer
		writeRosterLimit(w, fmt.Errorf("a body of %d bytes: %w", len(body), err))
		return
	}
	meta := ingest.Meta{TenantID: key.TenantID, SourceID: key.SourceID, ReceivedAt: s.now()}
	im, err := s.rosters.Begin(context.WithoutCancel(ctx), &rosters.Upload{TenantID: key.TenantID, SourceID: key.SourceID, ReceivedAt: meta.ReceivedAt})
	if err != nil {
		s.log.WarnContext(ctx, "starting roster import", "tenant_id", key.TenantID, "err", err)
		writeProblem(w, http.StatusServiceUnavailable, "roster-store-unavailable", "Cannot accept the roster now",
			"the district's roster ledger did not answer; nothing was accepted; retry the same request", retryAfterBusy)
		return
	}
	defer im.Rollback(ctx)
	ri := &rosterImport{s: s, ctx: context.WithoutCancel(ctx), tenant: s.tenants.Settings(key.TenantID), im: im, mem: mem, fileOf: fileOf}
	d, err := decode(body, meta, ri, ri.add)
	if ferr := ri.finish(); err == nil {
		err = ferr
	}
	if err != nil {
		var ie importError
		if errors.As(err, &ie) {
			ri.writeError(w, key, ie.err)
			return
		}
		writeDecodeError(w, err)
		return
	}
	d.rejected = append(d.rejected, ri.refused...)
	slices.SortFunc(d.rejected, func(a, b ingest.Rejected) int { return a.Index - b.Index })
	s.commitRoster(w, r, key, meta, d, ri, nil)
}

// writeDecodeError answers a roster request that could not be decoded.
func writeDecodeError(w http.ResponseWriter, err error) {
	var se *ingest.SyntaxError
	switch {
	case errors.Is(err, roster.ErrUnknownCollection):
		writeProblem(w, http.StatusNotFound, "unknown-collection", "Unknown roster collection",
			fmt.Sprintf("%v; known: %s", err, strings.Join(roster.Collections(), ", ")), 0)
	case errors.Is(err, ingest.ErrTooManyEvents):
		writeProblem(w, http.StatusRequestEntityTooLarge, "too-many-records", "Too many records", err.Error(), 0)
	case errors.Is(err, roster.ErrPackageTooLarge), errors.Is(err, errRequestMemory), errors.Is(err, errBudgetBusy):
		writeRosterLimit(w, err)
	case errors.As(err, &se):
		p := Problem{Type: "/problems/malformed-body", Title: "Malformed body", Status: http.StatusBadRequest, Detail: se.Error()}
		p.Offset = &se.Offset
		writeProblemBody(w, p, 0)
	default: // roster.ErrInvalidPackage and anything else about the body
		writeProblem(w, http.StatusBadRequest, "malformed-body", "Malformed body", err.Error(), 0)
	}
}

// RosterResponse answers a roster request: the records accepted and rejected, as for events, and what
// the import step did with the accepted ones.
type RosterResponse struct {
	EventsResponse
	Upload *rosters.Result `json:"upload,omitempty"`
}

// rosterChunk is how many decoded records are compared with the ledger, and those to send sealed and
// encoded, at a time; only the encoded records outlive their chunk.
const rosterChunk = 2048

// rosterImport passes a roster request's records through the import step (libs/tenancy/rosters) as they
// are decoded: each chunk is compared with the district's ledger, the records to send (or to hold) are
// sealed and encoded at once, and the decoded records are let go. A worker goroutine does that for one
// chunk while the next is decoded (at most one chunk waits between them). It is the decoder's roster.Memory:
// a chunk's charges are given back once the chunk is encoded, and the encoded records charged instead.
type rosterImport struct {
	s      *Server
	ctx    context.Context
	tenant *tenants.Settings
	im     *rosters.Import
	mem    *reservation
	fileOf func(ingest.Accepted) string

	chunk    []ingest.Accepted // being decoded
	pending  int64             // charged by the decoder for chunk
	jobs     chan chunkJob     // chunks for the pipeline
	wg       sync.WaitGroup
	failed   atomic.Bool // the pipeline had an error (err)
	mu       sync.Mutex  // guards err and results
	err      error
	results  []encoded // by chunk
	finished bool
	enc      []rosters.Encoded // records to send, in order
	held     []rosters.Encoded // records held for references, in order
	refused  []ingest.Rejected // records Kafka could never take
	accepted int
}

// importError marks an error of the import step or of encoding, not of the request's body.
type importError struct{ err error }

func (e importError) Error() string { return e.err.Error() }
func (e importError) Unwrap() error { return e.err }

func (ri *rosterImport) Grow(n int64) error {
	if err := ri.mem.Grow(n); err != nil {
		return err
	}
	ri.pending += n
	return nil
}

func (ri *rosterImport) add(a ingest.Accepted) error {
	ri.accepted++
	ri.chunk = append(ri.chunk, a)
	if len(ri.chunk) >= rosterChunk {
		return ri.handOff()
	}
	return nil
}

// handOff passes the chunk to the pipeline, which compares and encodes it while the next one is
// decoded; it returns the pipeline's error, if it had one.
func (ri *rosterImport) handOff() error {
	ri.send()
	if ri.failed.Load() {
		return ri.finish()
	}
	return nil
}

// rosterEncoders is how many chunks are sealed and encoded at once: creating a district's first data
// keys waits on PostgreSQL, so two chunks' keys are created together.
const rosterEncoders = 2

// send passes the chunk to the pipeline, started on first use: one goroutine compares chunks with the
// ledger in order, rosterEncoders goroutines seal and encode what the comparison sends or holds.
func (ri *rosterImport) send() {
	if ri.jobs == nil {
		ri.jobs = make(chan chunkJob, 1)
		encode := make(chan encodeJob, rosterEncoders)
		ri.wg.Go(func() {
			defer close(encode)
			seq := 0
			for job := range ri.jobs {
				if ri.failed.Load() {
					continue
				}
				ej, err := ri.compare(job)
				if err != nil {
					ri.fail(err)
					continue
				}
				ej.seq = seq
				seq++
				encode <- ej
			}
		})
		for range rosterEncoders {
			ri.wg.Go(func() {
				for ej := range encode {
					if ri.failed.Load() {
						continue
					}
					if err := ri.encodeJob(ej); err != nil {
						ri.fail(err)
					}
				}
			})
		}
	}
	ri.jobs <- chunkJob{records: ri.chunk, charged: ri.pending}
	ri.chunk, ri.pending = make([]ingest.Accepted, 0, rosterChunk), 0
}

// fail records the pipeline's first error.
func (ri *rosterImport) fail(err error) {
	ri.mu.Lock()
	defer ri.mu.Unlock()
	if ri.err == nil {
		ri.err = err
	}
	ri.failed.Store(true)
}

// finish hands the last chunk off, waits for the pipeline, and puts the encoded records in order; it
// returns the pipeline's error. Records Kafka could never take are taken back from the import here.
func (ri *rosterImport) finish() error {
	if ri.finished {
		return ri.err
	}
	ri.finished = true
	if len(ri.chunk) > 0 {
		ri.send()
	}
	if ri.jobs != nil {
		close(ri.jobs)
		ri.wg.Wait()
	}
	if ri.err != nil {
		return ri.err
	}
	for _, r := range ri.results {
		ri.enc, ri.held = append(ri.enc, r.enc...), append(ri.held, r.held...)
		ri.im.Refuse(r.refusedItems)
		ri.refused = append(ri.refused, r.refused...)
	}
	ri.results = nil
	return nil
}

// chunkJob is a chunk of decoded records and the memory they were charged.
type chunkJob struct {
	records []ingest.Accepted
	charged int64
}

// encodeJob is what a chunk sends and holds, to be sealed and encoded.
type encodeJob struct {
	seq                  int
	send, hold           []ingest.Accepted
	sendItems, holdItems []rosters.Item
	charged              int64
}

// encoded is an encoded chunk.
type encoded struct {
	enc, held    []rosters.Encoded
	refused      []ingest.Rejected
	refusedItems []rosters.Item
}

// compare compares a chunk with the ledger, in order.
func (ri *rosterImport) compare(job chunkJob) (encodeJob, error) {
	items := make([]rosters.Item, len(job.records))
	for i, a := range job.records {
		it, err := roster.Describe(a)
		if err != nil {
			return encodeJob{}, importError{err}
		}
		it.File = ri.fileOf(a)
		items[i] = it
	}
	decisions, _, err := ri.im.Add(ri.ctx, items)
	if err != nil {
		return encodeJob{}, importError{fmt.Errorf("%w: %w", errLedger, err)}
	}
	ej := encodeJob{charged: job.charged}
	for i, dec := range decisions {
		switch dec {
		case rosters.Send:
			ej.send, ej.sendItems = append(ej.send, job.records[i]), append(ej.sendItems, items[i])
		case rosters.HoldRefs:
			ej.hold, ej.holdItems = append(ej.hold, job.records[i]), append(ej.holdItems, items[i])
		}
	}
	return ej, nil
}

// encodeJob seals and encodes what a chunk sends and holds, and keeps the result under its sequence.
func (ri *rosterImport) encodeJob(ej encodeJob) error {
	var out encoded
	var err error
	if out.enc, err = ri.encode(ej.send, ej.sendItems, &out); err != nil {
		return err
	}
	if out.held, err = ri.encode(ej.hold, ej.holdItems, &out); err != nil {
		return err
	}
	ri.mem.shrink(ej.charged) // the chunk's decoded records are let go; what is encoded was charged
	ri.mu.Lock()
	defer ri.mu.Unlock()
	for len(ri.results) <= ej.seq {
		ri.results = append(ri.results, encoded{})
	}
	ri.results[ej.seq] = out
	return nil
}

// encode seals and encodes records; one Kafka could never take is refused: noted in out, to be taken
// back from the import and rejected as its own error.
func (ri *rosterImport) encode(accepted []ingest.Accepted, items []rosters.Item, out *encoded) ([]rosters.Encoded, error) {
	if len(accepted) == 0 {
		return nil, nil
	}
	recs, refused, err := ri.s.encodeBatch(ri.ctx, ri.tenant, accepted, 0, ri.mem)
	if err != nil {
		return nil, importError{err}
	}
	if len(refused) > 0 {
		gone := map[int]bool{}
		for _, r := range refused {
			gone[r.Index] = true
		}
		for i, a := range accepted {
			if gone[a.Index] {
				out.refusedItems = append(out.refusedItems, items[i])
			}
		}
		out.refused = append(out.refused, refused...)
	}
	enc := make([]rosters.Encoded, len(recs))
	for i, rec := range recs {
		enc[i] = rosters.Encoded{Key: rec.Key, Value: rec.Value}
	}
	return enc, nil
}

// errLedger marks a failure of the district's roster ledger.
var errLedger = errors.New("roster ledger unavailable")

// writeError answers an error of the import step or of encoding.
func (ri *rosterImport) writeError(w http.ResponseWriter, key Key, err error) {
	switch {
	case errors.Is(err, errKeys):
		ri.s.log.WarnContext(ri.ctx, "sealing roster upload", "tenant_id", key.TenantID, "err", err)
		writeProblem(w, http.StatusServiceUnavailable, "keys-unavailable", "Cannot accept records now",
			"the key store did not answer; nothing was accepted; retry the same request (ids make retries safe)", retryAfterBusy)
	case errors.Is(err, errLedger):
		ri.s.log.WarnContext(ri.ctx, "importing roster upload", "tenant_id", key.TenantID, "err", err)
		writeProblem(w, http.StatusServiceUnavailable, "roster-store-unavailable", "Cannot accept the roster now",
			"the district's roster ledger did not answer; nothing was accepted; retry the same request", retryAfterBusy)
	case errors.Is(err, errRequestMemory), errors.Is(err, errBudgetBusy):
		writeRosterLimit(w, fmt.Errorf("encoding the records: %w", err))
	default:
		ri.s.log.ErrorContext(ri.ctx, "importing roster upload", "tenant_id", key.TenantID, "err", err)
		writeProblem(w, http.StatusInternalServerError, "internal", "Internal error", err.Error(), 0)
	}
}

// commitRoster finishes the import: the tombstones of what bulk files lack are encoded, and the upload
// is sent (or stored, when held); rejected records are dead-lettered in both cases. The answer is 202
// once Kafka acknowledged what was sent (or the held upload is stored).
func (s *Server) commitRoster(w http.ResponseWriter, r *http.Request, key Key, meta ingest.Meta, d *decoded, ri *rosterImport, respond func(RosterResponse) any) {
	ctx := r.Context()
	plan, err := ri.im.Finish(ri.ctx, roster.Files(d.files, d.rejected))
	if err != nil {
		ri.writeError(w, key, fmt.Errorf("%w: %w", errLedger, err))
		return
	}
	plan.Upload.Kind, plan.Upload.Findings = d.kind, d.findings
	if len(plan.Missing) > 0 {
		tombs := make([]ingest.Accepted, len(plan.Missing))
		for i, m := range plan.Missing {
			ev, err := roster.Tombstone(meta, m, plan.ID)
			if err != nil {
				ri.writeError(w, key, err)
				return
			}
			tombs[i] = ingest.Accepted{Index: -1 - i, Event: ev}
		}
		recs, refused, err := s.encodeBatch(ri.ctx, ri.tenant, tombs, 0, ri.mem)
		if err == nil && len(refused) > 0 {
			err = fmt.Errorf("tombstone %s: %s", refused[0].EventID, refused[0].Errors[0].Message)
		}
		if err != nil {
			ri.writeError(w, key, err)
			return
		}
		for _, rec := range recs {
			ri.enc = append(ri.enc, rosters.Encoded{Key: rec.Key, Value: rec.Value})
		}
	}
	dlqDone := s.deadLetter(ctx, key, d.rejected, s.now(), "record")
	res, err := plan.Commit(ri.ctx, "source "+key.SourceID, func(ctx context.Context, recs []rosters.Encoded) error {
		out := make([]kgo.Record, len(recs))
		for i, rec := range recs {
			out[i] = kgo.Record{Topic: s.topics.Raw, Key: rec.Key, Value: rec.Value, Context: ctx}
		}
		return s.produce(ctx, out)
	}, ri.enc, ri.held)
	if err != nil {
		s.log.WarnContext(ctx, "importing roster upload", "tenant_id", key.TenantID, "records", len(ri.enc), "err", err)
		detail := "nothing was acknowledged; retry the same request (ids make retries safe)"
		if errors.Is(err, kgo.ErrMaxBuffered) {
			detail = "the Kafka producer's buffer is full; " + detail
		}
		writeProblem(w, http.StatusServiceUnavailable, "kafka-unavailable", "Cannot accept records now", detail, retryAfterBusy)
		return
	}
	dlqDone()
	accepted := ri.accepted - len(ri.refused)
	s.accepted.Add(ctx, int64(accepted))
	s.rejected.Add(ctx, int64(len(d.rejected)))
	rejected := d.rejected
	if rejected == nil {
		rejected = []ingest.Rejected{}
	}
	rr := RosterResponse{EventsResponse: EventsResponse{Accepted: accepted, Rejected: rejected, Ignored: d.ignored}, Upload: res}
	if respond != nil {
		writeJSON(w, http.StatusAccepted, respond(rr))
		return
	}
	writeJSON(w, http.StatusAccepted, rr)
}

// writeRosterLimit answers a roster request over a bound: 503 with Retry-After when the gateway's roster
// budget is held by other requests, 413 when the request is over a bound of its own.
func writeRosterLimit(w http.ResponseWriter, err error) {
	if errors.Is(err, errBudgetBusy) {
		writeProblem(w, http.StatusServiceUnavailable, "roster-busy", "Too many roster requests at once",
			err.Error()+"; retry later", retryAfterBusy)
		return
	}
	writeProblem(w, http.StatusRequestEntityTooLarge, "roster-too-large", "Roster request too large", err.Error(), 0)
}
