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
	s.postRoster(w, r, key, "application/json", func(body []byte, meta ingest.Meta, mem roster.Memory) (*decoded, error) {
		acc, rej, err := roster.DecodeJSON(collection, body, meta, s.limits.Roster, mem)
		if err != nil {
			return nil, err
		}
		file := roster.FileInfo{Name: collection, Collection: collection, Mode: rosters.Delta, To: len(acc) + len(rej)}
		for _, rj := range rej {
			if id := sourcedIDOfRaw(rj.Raw); id != "" {
				file.Present = append(file.Present, id)
			}
		}
		return &decoded{kind: "oneroster-json", accepted: acc, rejected: rej, files: []roster.FileInfo{file}}, nil
	})
}

func (s *Server) postRosterCSV(w http.ResponseWriter, r *http.Request, key Key) {
	s.postRoster(w, r, key, "application/zip", func(body []byte, meta ingest.Meta, mem roster.Memory) (*decoded, error) {
		pkg, err := roster.DecodeCSVZip(body, meta, s.limits.Roster, mem)
		if err != nil {
			return nil, err
		}
		return &decoded{kind: "oneroster-csv", accepted: pkg.Accepted, rejected: pkg.Rejected, ignored: pkg.Ignored, files: pkg.Files}, nil
	})
}

// decoded is a decoded roster request.
type decoded struct {
	kind     string
	accepted []ingest.Accepted
	rejected []ingest.Rejected
	ignored  []string
	files    []roster.FileInfo
}

type rosterDecoder func(body []byte, meta ingest.Meta, mem roster.Memory) (*decoded, error)

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

func (s *Server) postRoster(w http.ResponseWriter, r *http.Request, key Key, ctype string, decode rosterDecoder) {
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
	d, err := decode(body, meta, mem)
	if err != nil {
		writeDecodeError(w, err)
		return
	}
	s.importRoster(w, r, key, meta, d, mem)
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
	Upload *rosters.Result `json:"upload"`
}

// importRoster passes a decoded request through the import step (libs/tenancy/rosters): it compares it
// with the district's ledger, then sends what changed, the tombstones of bulk files and the held records
// it completes, or stores the whole upload when it is over the district's thresholds. Rejected records
// are dead-lettered in both cases. The answer is 202 once Kafka acknowledged what was sent (or the held
// upload is stored).
func (s *Server) importRoster(w http.ResponseWriter, r *http.Request, key Key, meta ingest.Meta, d *decoded, mem *reservation) {
	ctx := r.Context()
	tenant := s.tenants.Settings(key.TenantID)
	var plan *rosters.Plan
	var enc, heldEnc []rosters.Encoded
	// A record Kafka could never take (larger than MaxRecordBytes) is rejected as that record's error and
	// the upload planned again without it: at most once more, as the other records were encoded already.
	for {
		up, err := roster.Upload(meta, d.kind, d.files, d.accepted, d.rejected)
		if err != nil {
			writeProblem(w, http.StatusInternalServerError, "internal", "Internal error", err.Error(), 0)
			return
		}
		if plan, err = s.rosters.Plan(context.WithoutCancel(ctx), up); err != nil {
			s.log.WarnContext(ctx, "planning roster upload", "tenant_id", key.TenantID, "err", err)
			writeProblem(w, http.StatusServiceUnavailable, "roster-store-unavailable", "Cannot accept the roster now",
				"the district's roster ledger did not answer; nothing was accepted; retry the same request", retryAfterBusy)
			return
		}
		defer plan.Rollback(ctx)
		send := make([]ingest.Accepted, 0, len(plan.Produce)+len(plan.Missing))
		for _, i := range plan.Produce {
			send = append(send, d.accepted[i])
		}
		for _, m := range plan.Missing {
			ev, err := roster.Tombstone(meta, m, plan.ID)
			if err != nil {
				writeProblem(w, http.StatusInternalServerError, "internal", "Internal error", err.Error(), 0)
				return
			}
			send = append(send, ingest.Accepted{Index: -1, Event: ev})
		}
		held := make([]ingest.Accepted, len(plan.Held))
		for j, h := range plan.Held {
			held[j] = d.accepted[h.Index]
		}
		var refused, heldRefused []ingest.Rejected
		var ok bool
		if enc, refused, ok = s.encodeRoster(w, ctx, key, tenant, send, mem); !ok {
			return
		}
		if heldEnc, heldRefused, ok = s.encodeRoster(w, ctx, key, tenant, held, mem); !ok {
			return
		}
		if refused = append(refused, heldRefused...); len(refused) == 0 {
			break
		}
		plan.Rollback(ctx)
		d.refuse(refused)
	}
	dlqDone := s.deadLetter(ctx, key, d.rejected, s.now(), "record")
	res, err := plan.Commit(context.WithoutCancel(ctx), "source "+key.SourceID, func(ctx context.Context, recs []rosters.Encoded) error {
		out := make([]kgo.Record, len(recs))
		for i, rec := range recs {
			out[i] = kgo.Record{Topic: s.topics.Raw, Key: rec.Key, Value: rec.Value, Context: ctx}
		}
		return s.produce(ctx, out)
	}, enc, heldEnc)
	if err != nil {
		s.log.WarnContext(ctx, "importing roster upload", "tenant_id", key.TenantID, "records", len(enc), "err", err)
		detail := "nothing was acknowledged; retry the same request (ids make retries safe)"
		if errors.Is(err, kgo.ErrMaxBuffered) {
			detail = "the Kafka producer's buffer is full; " + detail
		}
		writeProblem(w, http.StatusServiceUnavailable, "kafka-unavailable", "Cannot accept records now", detail, retryAfterBusy)
		return
	}
	dlqDone()
	s.accepted.Add(ctx, int64(len(d.accepted)))
	s.rejected.Add(ctx, int64(len(d.rejected)))
	rejected := d.rejected
	if rejected == nil {
		rejected = []ingest.Rejected{}
	}
	writeJSON(w, http.StatusAccepted, RosterResponse{EventsResponse: EventsResponse{Accepted: len(d.accepted), Rejected: rejected, Ignored: d.ignored}, Upload: res})
}

// refuse moves refused records from accepted to rejected.
func (d *decoded) refuse(refused []ingest.Rejected) {
	gone := make(map[int]bool, len(refused))
	for _, r := range refused {
		gone[r.Index] = true
	}
	d.accepted = slices.DeleteFunc(slices.Clone(d.accepted), func(a ingest.Accepted) bool { return gone[a.Index] })
	d.rejected = append(slices.Clone(d.rejected), refused...)
	slices.SortFunc(d.rejected, func(a, b ingest.Rejected) int { return a.Index - b.Index })
}

// encodeRoster seals and encodes records of an upload; refused are those Kafka could never take.
func (s *Server) encodeRoster(w http.ResponseWriter, ctx context.Context, key Key, tenant *tenants.Settings, accepted []ingest.Accepted, mem *reservation) ([]rosters.Encoded, []ingest.Rejected, bool) {
	recs, refused, err := s.encodeBatch(context.WithoutCancel(ctx), tenant, accepted, 0, mem)
	switch {
	case errors.Is(err, errKeys):
		s.log.WarnContext(ctx, "sealing roster upload", "tenant_id", key.TenantID, "records", len(accepted), "err", err)
		writeProblem(w, http.StatusServiceUnavailable, "keys-unavailable", "Cannot accept records now",
			"the key store did not answer; nothing was accepted; retry the same request (ids make retries safe)", retryAfterBusy)
		return nil, nil, false
	case err != nil:
		writeRosterLimit(w, fmt.Errorf("encoding the records: %w", err))
		return nil, nil, false
	}
	out := make([]rosters.Encoded, len(recs))
	for i, rec := range recs {
		out[i] = rosters.Encoded{Key: rec.Key, Value: rec.Value}
	}
	return out, refused, true
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
