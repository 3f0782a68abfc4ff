package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"slices"

	"github.com/edtech-analytics/platform/services/gateway/internal/caliper"
	"github.com/edtech-analytics/platform/services/gateway/internal/ingest"
)

// postCaliper takes a Caliper 1.2 Sensor API envelope (POST /v1/caliper): each event is mapped onto the
// platform's own (package caliper) and then checked, sealed and sent like those of POST /v1/events,
// under the same key verb and rate limit. The answer is the events answer: 202 with the count accepted
// and every event refused, each error naming a JSON pointer into the envelope. A malformed envelope is
// 400, a dataVersion other than Caliper 1.2 422, a body that is not JSON 415.
func (s *Server) postCaliper(w http.ResponseWriter, r *http.Request, key Key) {
	ctx := r.Context()
	if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct != "application/json" && ct != "application/ld+json" {
		writeProblem(w, http.StatusUnsupportedMediaType, "unsupported-media-type", "Unsupported media type",
			"Content-Type must be application/json (or application/ld+json)", 0)
		return
	}
	body, ok := s.readBody(w, r, s.limits.MaxBodyBytes, s.limits.BodyReadTimeout)
	if !ok {
		return
	}
	env, err := caliper.DecodeEnvelope(body, s.limits.MaxEvents)
	switch {
	case errors.Is(err, caliper.ErrDataVersion):
		writeProblem(w, http.StatusUnprocessableEntity, "unsupported-data-version", "Unsupported Caliper version", err.Error(), 0)
		return
	case errors.Is(err, ingest.ErrTooManyEvents):
		writeProblem(w, http.StatusRequestEntityTooLarge, "too-many-events", "Too many events", err.Error(), 0)
		return
	case err != nil:
		writeProblem(w, http.StatusBadRequest, "malformed-body", "Malformed body", err.Error(), 0)
		return
	}

	rules, err := s.actorRules(ctx, key)
	if err != nil {
		s.log.WarnContext(ctx, "reading the source's actor rules", "tenant_id", key.TenantID, "source_id", key.SourceID, "err", err)
		writeProblem(w, http.StatusServiceUnavailable, "rules-unavailable", "Cannot take events now",
			"the source's rules could not be read; nothing was accepted; retry the same envelope", retryAfterBusy)
		return
	}
	tenant, ok := s.admit(ctx, w, key, len(env.Data), "retry this envelope later")
	if !ok {
		return
	}

	// Each event is mapped, then checked as a platform event; positions and field names go back to the
	// envelope's.
	var rejected []ingest.Rejected
	var mapped []json.RawMessage
	var from []int // envelope position of each mapped event
	for i, raw := range env.Data {
		ev, errs := caliper.Convert(i, raw, rules.Caliper)
		if errs != nil {
			rejected = append(rejected, ingest.Rejected{Index: i, Errors: errs, Raw: raw})
			continue
		}
		mapped, from = append(mapped, ev), append(from, i)
	}
	meta := ingest.Meta{TenantID: key.TenantID, SourceID: key.SourceID, ReceivedAt: s.now()}
	accepted, invalid := ingest.Validate(mapped, meta)
	for i := range accepted {
		accepted[i].Index = from[accepted[i].Index]
	}
	for _, rj := range invalid {
		i := from[rj.Index]
		for j, fe := range rj.Errors {
			rj.Errors[j].Field = fmt.Sprintf("/data/%d (mapped to %s)", i, fe.Field)
		}
		rj.Index, rj.Raw = i, env.Data[i]
		rejected = append(rejected, rj)
	}
	slices.SortFunc(rejected, func(a, b ingest.Rejected) int { return a.Index - b.Index })
	s.accept(ctx, w, key, tenant, accepted, rejected, len(body))
}
