package server

import (
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strings"

	"github.com/edtech-analytics/platform/services/gateway/internal/ingest"
	"github.com/edtech-analytics/platform/services/gateway/internal/roster"
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
// Memory: every roster request holds a reservation of the gateway's roster budget, charged before the
// memory is held: the body by its Content-Length (the body limit when it has none) before it is read,
// a package's files by their declared unzipped sizes before they are unzipped, each record as it is
// decoded, and the encoded records as they are encoded. The reservation is released when the answer is
// written (after Kafka acknowledged the records). Requests never wait for the budget.

func (s *Server) postRosterJSON(w http.ResponseWriter, r *http.Request, key Key) {
	collection := r.PathValue("collection")
	s.postRoster(w, r, key, "application/json", func(body []byte, meta ingest.Meta, mem roster.Memory) ([]ingest.Accepted, []ingest.Rejected, []string, error) {
		acc, rej, err := roster.DecodeJSON(collection, body, meta, s.limits.Roster, mem)
		return acc, rej, nil, err
	})
}

func (s *Server) postRosterCSV(w http.ResponseWriter, r *http.Request, key Key) {
	s.postRoster(w, r, key, "application/zip", func(body []byte, meta ingest.Meta, mem roster.Memory) ([]ingest.Accepted, []ingest.Rejected, []string, error) {
		pkg, err := roster.DecodeCSVZip(body, meta, s.limits.Roster, mem)
		if err != nil {
			return nil, nil, nil, err
		}
		return pkg.Accepted, pkg.Rejected, pkg.Ignored, nil
	})
}

type rosterDecoder func(body []byte, meta ingest.Meta, mem roster.Memory) ([]ingest.Accepted, []ingest.Rejected, []string, error)

func (s *Server) postRoster(w http.ResponseWriter, r *http.Request, key Key, ctype string, decode rosterDecoder) {
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
	accepted, rejected, ignored, err := decode(body, meta, mem)
	if err != nil {
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
		return
	}
	// The encoding buffer starts empty and grows as charged: the size of a zip says little about its
	// records'.
	s.accept(ctx, w, key, s.tenants.Settings(key.TenantID), accepted, rejected, 0, "record", ignored, mem)
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
