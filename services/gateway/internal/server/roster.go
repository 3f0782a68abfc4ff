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

	"github.com/edtech-analytics/platform/libs/keyring"
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
// Every request passes the import step (libs/tenancy/rosters): one pass over its body, then the
// decision. The pass decodes every record and compares it with the district's ledger, chunk by chunk:
// unchanged records are not sent again, a bulk file's missing records are tombstoned, records whose
// references are unknown are held until they arrive. What it sends or holds is sealed and encoded at
// once, while the next chunks are decoded and compared, and appended to the request's spool file
// (rosterSpool). Once the whole upload is compared the plan decides: an upload over the district's
// thresholds or its quality gate is held whole, its spooled records stored in the district's schema;
// otherwise they are read back and streamed in order to Kafka. The ledger changes only once Kafka
// acknowledged every record. An error of the whole request (a file over a bound, an unreadable file,
// memory over the request's bound or the gateway's budget) is found by the pass, before anything is
// produced. The answer's "upload" says what was done.
//
// Memory: every roster request holds a reservation of the gateway's roster budget, charged before the
// memory is held: the body by its Content-Length (the body limit when it has none) before it is read,
// a package's files by their declared unzipped sizes before they are unzipped, and each record as it is
// decoded; a chunk's charges are given back once it is spooled, and a chunk read back once it is handed
// to Kafka. What outlives a chunk is the ledger's view of each record sent or held (about 200 bytes),
// the key material of their people (about 130 bytes) and the encoded records held for references. The
// reservation is released when the answer is written. Requests never wait for the budget.

func (s *Server) postRosterJSON(w http.ResponseWriter, r *http.Request, key Key) {
	src := &jsonRoster{collection: r.PathValue("collection"), lim: s.limits.Roster}
	s.postRoster(w, r, key, "application/json", "oneroster-json", src)
}

func (s *Server) postRosterCSV(w http.ResponseWriter, r *http.Request, key Key) {
	s.postRoster(w, r, key, "application/zip", "oneroster-csv", &csvRoster{lim: s.limits.Roster})
}

// rosterSource decodes a roster request: pass calls each, in order, for every accepted record, and
// says what was rejected and which files the request holds.
type rosterSource interface {
	pass(body []byte, meta ingest.Meta, mem roster.Memory, each func(ingest.Accepted) error) (*decoded, error)
	// fileOf names the file (or collection) an accepted record came from.
	fileOf(a ingest.Accepted) string
}

// decoded is what the first pass over a request found besides its accepted records.
type decoded struct {
	rejected []ingest.Rejected
	ignored  []string
	files    []roster.FileInfo
	findings json.RawMessage // data-quality findings of the upload, recorded with it
}

// csvRoster is a OneRoster CSV package.
type csvRoster struct {
	lim roster.Limits
}

func (c *csvRoster) pass(body []byte, meta ingest.Meta, mem roster.Memory, each func(ingest.Accepted) error) (*decoded, error) {
	pkg, err := roster.DecodeCSVZipEach(body, meta, c.lim, mem, each)
	if err != nil {
		return nil, err
	}
	return &decoded{rejected: pkg.Rejected, ignored: pkg.Ignored, files: pkg.Files}, nil
}

func (c *csvRoster) fileOf(a ingest.Accepted) string { return roster.CollectionOf(a.Event) + ".csv" }

// jsonRoster is a OneRoster JSON collection: at most the roster limits' MaxRecords records.
type jsonRoster struct {
	collection string
	lim        roster.Limits
}

func (j *jsonRoster) pass(body []byte, meta ingest.Meta, mem roster.Memory, each func(ingest.Accepted) error) (*decoded, error) {
	acc, rej, err := roster.DecodeJSON(j.collection, body, meta, j.lim, mem)
	if err != nil {
		return nil, err
	}
	file := roster.FileInfo{Name: j.collection, Collection: j.collection, Mode: rosters.Delta, To: len(acc) + len(rej)}
	for _, rj := range rej {
		if id := sourcedIDOfRaw(rj.Raw); id != "" {
			file.Present = append(file.Present, id)
		}
	}
	for _, a := range acc {
		if err := each(a); err != nil {
			return nil, err
		}
	}
	return &decoded{rejected: rej, files: []roster.FileInfo{file}}, nil
}

func (j *jsonRoster) fileOf(ingest.Accepted) string { return j.collection }

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

func (s *Server) postRoster(w http.ResponseWriter, r *http.Request, key Key, ctype, kind string, src rosterSource) {
	if got, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); got != ctype {
		writeProblem(w, http.StatusUnsupportedMediaType, "unsupported-media-type", "Unsupported media type",
			"Content-Type must be "+ctype, 0)
		return
	}
	mem := s.budget.reserve()
	defer mem.release()
	body, ok := s.readRosterBody(w, r, mem)
	if !ok {
		return
	}
	s.importRoster(w, r, key, kind, body, src, mem, nil)
}

// readRosterBody reads a roster request's body, charged to mem by its Content-Length (the body limit
// when it has none) before it is read; when it cannot, it answers and returns false.
func (s *Server) readRosterBody(w http.ResponseWriter, r *http.Request, mem *reservation) ([]byte, bool) {
	declared := s.limits.MaxRosterBodyBytes
	if r.ContentLength >= 0 {
		declared = min(r.ContentLength, declared)
	}
	if err := mem.Grow(declared); err != nil {
		writeRosterLimit(w, fmt.Errorf("a body of %d bytes: %w", declared, err))
		return nil, false
	}
	body, ok := s.readBody(w, r, s.limits.MaxRosterBodyBytes, s.limits.RosterBodyReadTimeout)
	if !ok {
		return nil, false
	}
	if err := mem.Grow(int64(cap(body)) - declared); err != nil { // a body without Content-Length grows its buffer
		writeRosterLimit(w, fmt.Errorf("a body of %d bytes: %w", len(body), err))
		return nil, false
	}
	return body, true
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

// itemBytes is what the import step keeps of a record it sends or holds, as charged.
const itemBytes = 256

// rosterChunk is how many decoded records are compared with the ledger, or sealed and encoded, at a time.
const rosterChunk = 2048

// importError marks an error of the import step or of encoding, not of the request's body.
type importError struct{ err error }

func (e importError) Error() string { return e.err.Error() }
func (e importError) Unwrap() error { return e.err }

// errLedger marks a failure of the district's roster ledger.
var errLedger = errors.New("roster ledger unavailable")

// importRoster passes a request through the import step: the pass compares and spools, the plan
// decides, and the spooled records are sent (or stored). respond, when set, shapes the 202 answer.
func (s *Server) importRoster(w http.ResponseWriter, r *http.Request, key Key, kind string, body []byte, src rosterSource, mem *reservation,
	respond func(RosterResponse, *decoded) any) {
	ctx := context.WithoutCancel(r.Context())
	meta := ingest.Meta{TenantID: key.TenantID, SourceID: key.SourceID, ReceivedAt: s.now()}
	im, err := s.rosters.Begin(ctx, &rosters.Upload{TenantID: key.TenantID, SourceID: key.SourceID, Kind: kind, ReceivedAt: meta.ReceivedAt})
	if err != nil {
		s.writeImportError(w, ctx, key, fmt.Errorf("%w: %w", errLedger, err))
		return
	}
	defer im.Rollback(ctx)
	ri := &rosterImport{s: s, ctx: ctx, tenant: s.tenants.Settings(key.TenantID), im: im, mem: mem, src: src, body: body, meta: meta}
	defer ri.closeSpool()
	d, err := ri.compareAll()
	if err != nil {
		var ie importError
		if errors.As(err, &ie) {
			s.writeImportError(w, ctx, key, ie.err)
			return
		}
		writeDecodeError(w, err)
		return
	}
	plan, err := im.Finish(ctx, roster.Files(d.files, d.rejected))
	if err != nil {
		s.writeImportError(w, ctx, key, fmt.Errorf("%w: %w", errLedger, err))
		return
	}
	plan.Upload.Findings = d.findings
	dlqDone := s.deadLetter(ctx, key, d.rejected, s.now(), "record")
	var res *rosters.Result
	if plan.Hold != nil {
		res, err = plan.Store(ctx, ri.spool(plan))
	} else {
		res, err = plan.Apply(ctx, "source "+key.SourceID, ri.stream(plan))
	}
	if err != nil {
		var ie importError
		if errors.As(err, &ie) {
			s.writeImportError(w, ctx, key, ie.err)
			return
		}
		s.log.WarnContext(ctx, "importing roster upload", "tenant_id", key.TenantID, "err", err)
		detail := "nothing was acknowledged; retry the same request (ids make retries safe)"
		if errors.Is(err, kgo.ErrMaxBuffered) {
			detail = "the Kafka producer's buffer is full; " + detail
		}
		writeProblem(w, http.StatusServiceUnavailable, "kafka-unavailable", "Cannot accept records now", detail, retryAfterBusy)
		return
	}
	dlqDone()
	accepted := ri.accepted - len(ri.refused)
	count(ctx, s.accepted, key.TenantID, accepted)
	count(ctx, s.rejected, key.TenantID, len(d.rejected))
	rejected := d.rejected
	if rejected == nil {
		rejected = []ingest.Rejected{}
	}
	rr := RosterResponse{EventsResponse: EventsResponse{Accepted: accepted, Rejected: rejected, Ignored: d.ignored}, Upload: res}
	if respond != nil {
		writeJSON(w, http.StatusAccepted, respond(rr, d))
		return
	}
	writeJSON(w, http.StatusAccepted, rr)
}

// writeImportError answers an error of the import step or of encoding.
func (s *Server) writeImportError(w http.ResponseWriter, ctx context.Context, key Key, err error) {
	switch {
	case errors.Is(err, errKeys):
		s.log.WarnContext(ctx, "sealing roster upload", "tenant_id", key.TenantID, "err", err)
		writeProblem(w, http.StatusServiceUnavailable, "keys-unavailable", "Cannot accept records now",
			"the key store did not answer; nothing was accepted; retry the same request (ids make retries safe)", retryAfterBusy)
	case errors.Is(err, errLedger):
		s.log.WarnContext(ctx, "importing roster upload", "tenant_id", key.TenantID, "err", err)
		writeProblem(w, http.StatusServiceUnavailable, "roster-store-unavailable", "Cannot accept the roster now",
			"the district's roster ledger did not answer; nothing was accepted; retry the same request", retryAfterBusy)
	case errors.Is(err, errRequestMemory), errors.Is(err, errBudgetBusy):
		writeRosterLimit(w, fmt.Errorf("encoding the records: %w", err))
	case errors.Is(err, errRefused):
		writeProblem(w, http.StatusRequestEntityTooLarge, "roster-too-large", "Roster request too large", err.Error(), 0)
	default:
		s.log.ErrorContext(ctx, "importing roster upload", "tenant_id", key.TenantID, "err", err)
		writeProblem(w, http.StatusInternalServerError, "internal", "Internal error", err.Error(), 0)
	}
}

// errRefused marks a record Kafka could never take found when it is encoded (refuseLarge rejects those
// it can tell before; a record that grows past the bound only when sealed lands here).
var errRefused = errors.New("a record cannot be sent")

// rosterImport is one request's passage through the import step.
type rosterImport struct {
	s      *Server
	ctx    context.Context
	tenant *tenants.Settings
	im     *rosters.Import
	mem    *reservation
	src    rosterSource
	body   []byte
	meta   ingest.Meta

	accepted   int
	refused    []ingest.Rejected // records too large for Kafka, found by the pass
	keys       *keyring.KeySet   // the data keys of the people of what the pass sends or holds
	spooled    *rosterSpool      // what the pass encoded, to send or hold
	refusedIDs []refusedID

	chunk   []ingest.Accepted
	pending int64  // charged by the decoder for chunk
	hand    func() // hands the chunk to the pass's pipeline
}

// Grow charges the reservation for what the decoder holds, counting it against the chunk. A chunk
// charged rosterChunkBytes goes to the pipeline early, so a chunk of large records holds no more.
func (ri *rosterImport) Grow(n int64) error {
	if err := ri.mem.Grow(n); err != nil {
		return err
	}
	ri.pending += n
	if ri.pending > rosterChunkBytes && ri.hand != nil {
		ri.hand()
	}
	return nil
}

// keyBytes is what the import's key set holds per person: the key material and the SIS id.
const keyBytes = keyring.KeySetEntryBytes + 32

// rosterChunkBytes bounds what a chunk is charged before it goes to the pipeline.
const rosterChunkBytes = 4 << 20

// pipeline runs work on chunks in a goroutine (or workers goroutines) while the decoder goes on.
type pipeline struct {
	jobs   chan chunkJob
	wg     sync.WaitGroup
	failed atomic.Bool
	mu     sync.Mutex
	err    error
}

// chunkJob is a chunk of decoded records, the memory they were charged and their place in order.
type chunkJob struct {
	seq     int
	records []ingest.Accepted
	charged int64
	// For the encoder: which records are held for references, the SIS ids whose data keys they need,
	// and those refuseLarge encoded already.
	held    []bool
	people  []string
	encoded map[int]rosters.Encoded
}

func newPipeline(workers int, work func(chunkJob) error) *pipeline {
	p := &pipeline{jobs: make(chan chunkJob)} // at most workers chunks in work and one being decoded
	for range workers {
		p.wg.Go(func() {
			for job := range p.jobs {
				if p.failed.Load() {
					continue
				}
				if err := work(job); err != nil {
					p.fail(err)
				}
			}
		})
	}
	return p
}

func (p *pipeline) fail(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err == nil {
		p.err = err
	}
	p.failed.Store(true)
}

// wait closes the pipeline and returns its first error.
func (p *pipeline) wait() error {
	close(p.jobs)
	p.wg.Wait()
	return p.err
}

// feed returns the decoder's callback for a pass: records gather into chunks handed to p.
func (ri *rosterImport) feed(p *pipeline) (each func(ingest.Accepted) error, flush func()) {
	seq := 0
	hand := func() {
		p.jobs <- chunkJob{seq: seq, records: ri.chunk, charged: ri.pending}
		seq++
		ri.chunk, ri.pending = make([]ingest.Accepted, 0, rosterChunk), 0
	}
	ri.hand = hand
	each = func(a ingest.Accepted) error {
		ri.chunk = append(ri.chunk, a)
		if len(ri.chunk) >= rosterChunk {
			hand()
			if p.failed.Load() {
				return errPipeline
			}
		}
		return nil
	}
	flush = func() {
		if len(ri.chunk) > 0 || ri.pending > 0 {
			hand()
		}
		ri.hand = nil
	}
	return each, flush
}

// errPipeline stops a decoder whose pipeline failed; the pipeline's own error is reported.
var errPipeline = errors.New("roster import stopped")

// compareAll is the pass, in four stages that run at once, each on its own chunk, in order: the decoder
// decodes the upload into chunks; the comparison compares each chunk with the ledger and keeps what it
// sends or holds; the keys stage gets the data keys of their people (creating the keys of new people in
// PostgreSQL); the encoder seals and encodes them and appends them to the request's spool file. Once
// the upload is decided, replay reads them back.
func (ri *rosterImport) compareAll() (*decoded, error) {
	ri.keys = keyring.NewKeySet(ri.tenant.TenantID)
	spool, err := newRosterSpool(ri.s.spoolDir)
	if err != nil {
		return nil, importError{err}
	}
	ri.spooled = spool
	enc := newPipeline(1, func(job chunkJob) error {
		defer ri.mem.shrink(job.charged) // the chunk's records are done with once spooled
		var send, hold []ingest.Accepted
		for i, a := range job.records {
			if job.held[i] {
				hold = append(hold, a)
			} else {
				send = append(send, a)
			}
		}
		for _, part := range []struct {
			records []ingest.Accepted
			held    bool
		}{{send, false}, {hold, true}} {
			recs, charged, err := ri.encode(part.records, job.encoded)
			if err != nil {
				return err
			}
			err = spool.write(recs, part.held)
			ri.mem.shrink(charged)
			if err != nil {
				return importError{err}
			}
		}
		return nil
	})
	// Creating keys waits on PostgreSQL: a stage of its own, so that encoding the chunk before goes on.
	keys := newPipeline(1, func(job chunkJob) error {
		before := ri.keys.Len()
		if err := ri.s.sealer.EnsureSubjectKeys(ri.ctx, ri.keys, job.people); err != nil {
			ri.mem.shrink(job.charged)
			return importError{fmt.Errorf("%w: %w", errKeys, err)}
		}
		if err := ri.mem.Grow(int64(ri.keys.Len()-before) * keyBytes); err != nil {
			ri.mem.shrink(job.charged)
			return importError{err}
		}
		if enc.failed.Load() {
			ri.mem.shrink(job.charged)
			return errPipeline
		}
		enc.jobs <- job
		return nil
	})
	p := newPipeline(1, func(job chunkJob) error {
		items := make([]rosters.Item, len(job.records))
		for i, a := range job.records {
			it, err := roster.Describe(a)
			if err != nil {
				ri.mem.shrink(job.charged)
				return importError{err}
			}
			it.File = ri.src.fileOf(a)
			items[i] = it
		}
		records, items, encoded, err := ri.refuseLarge(job.records, items)
		if err != nil {
			ri.mem.shrink(job.charged)
			return err
		}
		decisions, err := ri.im.Add(ri.ctx, items)
		if err != nil {
			ri.mem.shrink(job.charged)
			return importError{fmt.Errorf("%w: %w", errLedger, err)}
		}
		// What the import keeps of each record it sends or holds until the end: the ledger's view
		// (about 200 bytes) and its place in the maps of references.
		next := chunkJob{charged: job.charged, encoded: encoded}
		for i, a := range records {
			if decisions[i] == rosters.Skip {
				continue
			}
			next.records = append(next.records, a)
			next.held = append(next.held, decisions[i] == rosters.HoldRefs)
			if a.Event.Actor.Role != roleSystem {
				next.people = append(next.people, a.Event.Actor.SISID)
			}
		}
		if err := ri.mem.Grow(int64(len(next.records)) * itemBytes); err != nil {
			ri.mem.shrink(job.charged)
			return importError{err}
		}
		if keys.failed.Load() {
			ri.mem.shrink(job.charged)
			return errPipeline
		}
		keys.jobs <- next
		return nil
	})
	each, flush := ri.feed(p)
	d, err := ri.src.pass(ri.body, ri.meta, ri, func(a ingest.Accepted) error {
		ri.accepted++
		return each(a)
	})
	if err == nil {
		flush()
	}
	ri.hand = nil
	// The first error of the stages, in order: a stage that stopped because the next one failed says
	// errPipeline.
	var perr error
	for _, stage := range []*pipeline{p, keys, enc} {
		if serr := stage.wait(); perr == nil || errors.Is(perr, errPipeline) {
			perr = serr
		}
	}
	if perr != nil {
		return nil, perr
	}
	if err == nil && len(ri.refused) > 0 {
		d.refuse(ri.refused, ri.refusedIDs)
	}
	return d, err
}

// refuseLarge takes out of a chunk (its records and their ledger items) the records Kafka could never
// take: those whose content could make them larger than a record may be are sealed and encoded now,
// and those over the bound rejected as their own error (their records count as present in a bulk
// file). Those within the bound keep their encoding, by position, so they are not sealed twice.
func (ri *rosterImport) refuseLarge(records []ingest.Accepted, items []rosters.Item) ([]ingest.Accepted, []rosters.Item, map[int]rosters.Encoded, error) {
	var big []ingest.Accepted
	for _, a := range records {
		if 2*a.Size+recordHeadroom > ri.s.limits.MaxRecordBytes {
			big = append(big, a)
		}
	}
	if big == nil {
		return records, items, nil, nil
	}
	recs, refused, err := ri.s.encodeBatch(ri.ctx, ri.tenant, big, 0, nil, nil)
	if err != nil {
		return nil, nil, nil, importError{err}
	}
	gone := map[int]bool{}
	for _, r := range refused {
		gone[r.Index] = true
	}
	encoded := map[int]rosters.Encoded{}
	next := 0
	for _, a := range big {
		if !gone[a.Index] {
			encoded[a.Index] = rosters.Encoded{Key: recs[next].Key, Value: recs[next].Value}
			next++
		}
	}
	if len(refused) == 0 {
		return records, items, encoded, nil
	}
	keptRecords, keptItems := make([]ingest.Accepted, 0, len(records)), make([]rosters.Item, 0, len(items))
	for i, a := range records {
		if gone[a.Index] {
			ri.refusedIDs = append(ri.refusedIDs, refusedID{pos: a.Index, id: roster.SourcedIDOf(a.Event)})
			continue
		}
		keptRecords, keptItems = append(keptRecords, a), append(keptItems, items[i])
	}
	ri.refused = append(ri.refused, refused...)
	return keptRecords, keptItems, encoded, nil
}

// refusedID is the sourcedId of a record refused at its position.
type refusedID struct {
	pos int
	id  string
}

// refuse adds records refused as too large to the rejections, and their ids to their files' present ones.
func (d *decoded) refuse(refused []ingest.Rejected, ids []refusedID) {
	d.rejected = append(d.rejected, refused...)
	slices.SortFunc(d.rejected, func(a, b ingest.Rejected) int { return a.Index - b.Index })
	for _, r := range ids {
		for i := range d.files {
			if f := &d.files[i]; r.pos >= f.From && r.pos < f.To && r.id != "" {
				f.Present = append(f.Present, r.id)
			}
		}
	}
}

// closeSpool deletes the request's spool file, if the pass made one.
func (ri *rosterImport) closeSpool() {
	if ri.spooled != nil {
		ri.spooled.close()
	}
}

// replay is the second step: the spooled records to send are handed to out in order, in chunks; the
// held ones are returned, in order.
func (ri *rosterImport) replay(out func([]rosters.Encoded) error) ([]rosters.Encoded, error) {
	held, err := ri.spooled.replay(rosterChunk, rosterChunkBytes, ri.mem.Grow, ri.mem.shrink, out)
	if err != nil && !errors.As(err, new(importError)) {
		err = importError{err}
	}
	return held, err
}

// encode seals and encodes records into one buffer sized from their contents, so that it rarely grows
// (a grown buffer leaves its old arrays to the garbage collector, and the records point into them). It
// returns what the records were charged. A record Kafka could never take fails the upload: the first
// pass rejects records over the roster bounds, so this is a record sealing grew past it.
// Records already encoded (by position; refuseLarge's) are taken as they are.
func (ri *rosterImport) encode(accepted []ingest.Accepted, encoded map[int]rosters.Encoded) ([]rosters.Encoded, int64, error) {
	if len(accepted) == 0 {
		return nil, 0, nil
	}
	hint := 0
	todo := accepted
	if len(encoded) > 0 {
		todo = nil
		for _, a := range accepted {
			if _, ok := encoded[a.Index]; !ok {
				todo = append(todo, a)
			}
		}
	}
	for _, a := range todo {
		hint += a.Size*3/2 + 256 // sealed fields grow by a third, and the envelope
	}
	charged := &counted{r: ri.mem}
	recs, refused, err := ri.s.encodeBatch(ri.ctx, ri.tenant, todo, hint, charged, ri.keys)
	if err != nil {
		ri.mem.shrink(charged.n)
		return nil, 0, importError{err}
	}
	if len(refused) > 0 {
		ri.mem.shrink(charged.n)
		return nil, 0, importError{fmt.Errorf("%w: record %d: %s", errRefused, refused[0].Index, refused[0].Errors[0].Message)}
	}
	enc := make([]rosters.Encoded, 0, len(accepted))
	next := 0
	for _, a := range accepted {
		if e, ok := encoded[a.Index]; ok {
			enc = append(enc, e)
			continue
		}
		enc = append(enc, rosters.Encoded{Key: recs[next].Key, Value: recs[next].Value})
		next++
	}
	return enc, charged.n, nil
}

// counted passes charges on to a reservation and counts them.
type counted struct {
	r *reservation
	n int64
}

func (c *counted) Grow(n int64) error {
	if err := c.r.Grow(n); err != nil {
		return err
	}
	c.n += n
	return nil
}

// tombstones encodes the tombstones of what the plan's bulk files lack.
func (ri *rosterImport) tombstones(plan *rosters.Plan) ([]rosters.Encoded, error) {
	tombs := make([]ingest.Accepted, len(plan.Missing))
	for i, m := range plan.Missing {
		ev, err := roster.Tombstone(ri.meta, m, plan.ID)
		if err != nil {
			return nil, importError{err}
		}
		tombs[i] = ingest.Accepted{Index: -1 - i, Event: ev}
	}
	enc, _, err := ri.encode(tombs, nil)
	return enc, err
}

// stream is the plan's Stream: the spooled records go to Kafka in order, then the tombstones, then the
// released records; it returns once Kafka acknowledged every one.
func (ri *rosterImport) stream(plan *rosters.Plan) rosters.Stream {
	return func(ctx context.Context, released []rosters.Encoded) (int, []rosters.Encoded, error) {
		acks := newStreamAcks(ri.mem, int(min(rosterWindow, ri.mem.b.perRequest/4)))
		sent := 0
		send := func(recs []rosters.Encoded) error {
			for _, r := range recs {
				if err := acks.err(); err != nil {
					return err
				}
				if err := acks.add(len(r.Key) + len(r.Value)); err != nil {
					return importError{err}
				}
				ri.s.producer.Produce(ctx, &kgo.Record{Topic: ri.s.topics.Raw, Key: r.Key, Value: r.Value, Context: ctx}, acks.promise)
				sent++
			}
			return nil
		}
		held, err := ri.replay(send)
		if err == nil {
			var tombs []rosters.Encoded
			if tombs, err = ri.tombstones(plan); err == nil {
				err = send(tombs)
			}
		}
		if err == nil {
			err = send(released)
		}
		if werr := acks.wait(); err == nil {
			err = werr
		}
		return sent, held, err
	}
}

// spool is the plan's Spool for a held upload: the spooled records are stored in order, then the
// tombstones.
func (ri *rosterImport) spool(plan *rosters.Plan) rosters.Spool {
	return func(ctx context.Context, put func([]rosters.Encoded) error) ([]rosters.Encoded, error) {
		held, err := ri.replay(put)
		if err != nil {
			return nil, err
		}
		tombs, err := ri.tombstones(plan)
		if err != nil {
			return nil, err
		}
		return held, put(tombs)
	}
}

// streamAcks counts the records (and their bytes) of a stream Kafka has not acknowledged yet and keeps
// the first failure. At most window bytes are in flight, charged to the request as the stream first
// needs them; a record waits for acknowledgements when the window is full.
type streamAcks struct {
	mu      sync.Mutex
	mem     *reservation
	window  int
	charged int // of the window
	pending int
	bytes   int
	first   error
	cond    *sync.Cond
}

// rosterWindow is what one upload may have in Kafka's producer, unacknowledged (at most a quarter of
// what a request may hold).
const rosterWindow = 8 << 20

func newStreamAcks(mem *reservation, window int) *streamAcks {
	a := &streamAcks{mem: mem, window: window}
	a.cond = sync.NewCond(&a.mu)
	return a
}

// add counts a record of n bytes about to be produced, once the window has room for it.
func (a *streamAcks) add(n int) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	for a.bytes > 0 && a.bytes+n > a.window && a.first == nil {
		a.cond.Wait()
	}
	if need := a.bytes + n - a.charged; need > 0 {
		if err := a.mem.Grow(int64(need)); err != nil {
			return err
		}
		a.charged += need
	}
	a.pending++
	a.bytes += n
	return nil
}

func (a *streamAcks) promise(r *kgo.Record, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.pending--
	a.bytes -= len(r.Key) + len(r.Value)
	if err != nil && a.first == nil {
		a.first = err
	}
	a.cond.Broadcast()
}

func (a *streamAcks) err() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.first
}

// wait returns once every record is acknowledged (or failed), with the first failure.
func (a *streamAcks) wait() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	for a.pending > 0 {
		a.cond.Wait()
	}
	return a.first
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
