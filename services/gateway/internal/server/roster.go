package server

import (
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strings"

	"github.com/edtech-analytics/platform/services/gateway/internal/ingest"
	"github.com/edtech-analytics/platform/services/gateway/internal/roster"
	"go.opentelemetry.io/otel/trace"
)

// Roster requests carry a district's OneRoster 1.2 data: one JSON collection per request
// (POST /v1/roster/{collection}) or a CSV package as a zip (POST /v1/roster/csv). They need the
// roster:write verb, are bounded by the roster limits, and are not counted against the district's event
// rate limit (a nightly roster sync is one large request, not a burst of learning events). Each record
// becomes one raw record; valid records are accepted beside invalid ones, which are named and
// dead-lettered, exactly as for events.

func (s *Server) postRosterJSON(w http.ResponseWriter, r *http.Request) {
	collection := r.PathValue("collection")
	s.postRoster(w, r, "application/json", func(body []byte, meta ingest.Meta) ([]ingest.Accepted, []ingest.Rejected, []string, error) {
		acc, rej, err := roster.DecodeJSON(collection, body, meta, s.limits.MaxRosterRecords)
		return acc, rej, nil, err
	})
}

func (s *Server) postRosterCSV(w http.ResponseWriter, r *http.Request) {
	s.postRoster(w, r, "application/zip", func(body []byte, meta ingest.Meta) ([]ingest.Accepted, []ingest.Rejected, []string, error) {
		pkg, err := roster.DecodeCSVZip(body, meta, s.limits.MaxRosterRecords)
		if err != nil {
			return nil, nil, nil, err
		}
		return pkg.Accepted, pkg.Rejected, pkg.Ignored, nil
	})
}

type rosterDecoder func(body []byte, meta ingest.Meta) ([]ingest.Accepted, []ingest.Rejected, []string, error)

func (s *Server) postRoster(w http.ResponseWriter, r *http.Request, ctype string, decode rosterDecoder) {
	if s.draining.Load() {
		writeProblem(w, http.StatusServiceUnavailable, "draining", "Service draining", "this instance is shutting down; retry", retryAfterBusy)
		return
	}
	key, ok := s.authenticate(w, r, VerbRosterWrite)
	if !ok {
		return
	}
	ctx, span := s.tracer.Start(r.Context(), "gateway.post_roster", trace.WithSpanKind(trace.SpanKindServer))
	defer span.End()
	if got, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); got != ctype {
		writeProblem(w, http.StatusUnsupportedMediaType, "unsupported-media-type", "Unsupported media type",
			"Content-Type must be "+ctype, 0)
		return
	}
	body, ok := s.readBody(w, r, s.limits.MaxRosterBodyBytes, s.limits.RosterBodyReadTimeout)
	if !ok {
		return
	}
	meta := ingest.Meta{TenantID: key.TenantID, SourceID: key.SourceID, ReceivedAt: s.now()}
	accepted, rejected, ignored, err := decode(body, meta)
	if err != nil {
		var se *ingest.SyntaxError
		switch {
		case errors.Is(err, roster.ErrUnknownCollection):
			writeProblem(w, http.StatusNotFound, "unknown-collection", "Unknown roster collection",
				fmt.Sprintf("%v; known: %s", err, strings.Join(roster.Collections(), ", ")), 0)
		case errors.Is(err, ingest.ErrTooManyEvents), errors.Is(err, roster.ErrPackageTooLarge):
			writeProblem(w, http.StatusRequestEntityTooLarge, "too-many-records", "Too many records", err.Error(), 0)
		case errors.As(err, &se):
			p := Problem{Type: "/problems/malformed-body", Title: "Malformed body", Status: http.StatusBadRequest, Detail: se.Error()}
			p.Offset = &se.Offset
			writeProblemBody(w, p, 0)
		default: // roster.ErrInvalidPackage and anything else about the body
			writeProblem(w, http.StatusBadRequest, "malformed-body", "Malformed body", err.Error(), 0)
		}
		return
	}
	s.accept(ctx, w, key, s.tenants.Settings(key.TenantID), accepted, rejected, len(body), "record", ignored)
}
