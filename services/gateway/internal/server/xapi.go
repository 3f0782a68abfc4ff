package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/edtech-analytics/platform/libs/keyring"
	"github.com/edtech-analytics/platform/libs/tenancy/statements"
	"github.com/edtech-analytics/platform/services/gateway/internal/ingest"
	"github.com/edtech-analytics/platform/services/gateway/internal/xapi"
)

// The xAPI statements resource (ADL Experience API 1.0.3): POST /xapi/statements takes a statement or
// an array of them and answers 200 with their ids; PUT /xapi/statements?statementId= takes one statement
// under that id and answers 204. Each statement is mapped onto the platform's events (package xapi) and
// sent like those of POST /v1/events, under the same key verb and rate limit. As the resource says, a
// request is taken or refused whole: a statement that is not valid refuses the request (400, every
// error named), and a statement id the district already has with other content is a 409 Conflict; the
// same statement sent again is taken again and adds nothing.

// xapiVersion checks the request's X-Experience-API-Version, answering 400 when it is not one taken.
func xapiVersion(w http.ResponseWriter, r *http.Request) bool {
	if v := r.Header.Get("X-Experience-API-Version"); !slices.Contains(xapi.Versions, v) {
		writeProblem(w, http.StatusBadRequest, "xapi-version", "Unsupported xAPI version",
			fmt.Sprintf("X-Experience-API-Version must be one of %s, not %q", strings.Join(xapi.Versions, ", "), v), 0)
		return false
	}
	return true
}

// xapiStatements reads a request's statements: the body is one statement or an array of them.
func (s *Server) xapiStatements(w http.ResponseWriter, r *http.Request) ([]json.RawMessage, int, bool) {
	if !xapiVersion(w, r) {
		return nil, 0, false
	}
	if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct != "application/json" {
		writeProblem(w, http.StatusUnsupportedMediaType, "unsupported-media-type", "Unsupported media type", "Content-Type must be application/json", 0)
		return nil, 0, false
	}
	body, ok := s.readBody(w, r, s.limits.MaxBodyBytes, s.limits.BodyReadTimeout)
	if !ok {
		return nil, 0, false
	}
	var raws []json.RawMessage
	if t := bytes.TrimSpace(body); len(t) > 0 && t[0] == '[' {
		if err := json.Unmarshal(t, &raws); err != nil {
			writeProblem(w, http.StatusBadRequest, "malformed-body", "Malformed body", "not a JSON array of statements: "+err.Error(), 0)
			return nil, 0, false
		}
	} else {
		if !json.Valid(t) {
			writeProblem(w, http.StatusBadRequest, "malformed-body", "Malformed body", "not a JSON statement or array of statements", 0)
			return nil, 0, false
		}
		raws = []json.RawMessage{t}
	}
	if len(raws) > s.limits.MaxEvents {
		writeProblem(w, http.StatusRequestEntityTooLarge, "too-many-events", "Too many statements",
			fmt.Sprintf("at most %d statements a request", s.limits.MaxEvents), 0)
		return nil, 0, false
	}
	return raws, len(body), true
}

func (s *Server) postStatements(w http.ResponseWriter, r *http.Request, key Key) {
	raws, size, ok := s.xapiStatements(w, r)
	if !ok {
		return
	}
	ids, ok := s.takeStatements(w, r, key, raws, "", size)
	if ok {
		writeJSON(w, http.StatusOK, ids)
	}
}

func (s *Server) putStatement(w http.ResponseWriter, r *http.Request, key Key) {
	id := strings.ToLower(r.URL.Query().Get("statementId"))
	if !ingest.IsUUID(id) {
		writeProblem(w, http.StatusBadRequest, "malformed-request", "Malformed request", "statementId must be the statement's UUID", 0)
		return
	}
	raws, size, ok := s.xapiStatements(w, r)
	if !ok {
		return
	}
	if len(raws) != 1 || bytes.HasPrefix(raws[0], []byte("[")) {
		writeProblem(w, http.StatusBadRequest, "malformed-body", "Malformed body", "PUT takes one statement", 0)
		return
	}
	if _, ok := s.takeStatements(w, r, key, raws, id, size); ok {
		w.WriteHeader(http.StatusNoContent)
	}
}

// takeStatements checks, maps and sends statements (put: the id of a PUT), answering a refusal itself.
func (s *Server) takeStatements(w http.ResponseWriter, r *http.Request, key Key, raws []json.RawMessage, put string, size int) ([]string, bool) {
	ctx := r.Context()
	now := s.now()
	rules, err := s.actorRules(ctx, key)
	if err != nil {
		s.log.WarnContext(ctx, "reading the source's actor rules", "tenant_id", key.TenantID, "source_id", key.SourceID, "err", err)
		writeProblem(w, http.StatusServiceUnavailable, "rules-unavailable", "Cannot take statements now",
			"the source's rules could not be read; nothing was stored; retry the same request", retryAfterBusy)
		return nil, false
	}
	var errs []ingest.FieldError
	converted := make([]xapi.Converted, len(raws))
	seen := map[string]int{}
	for i, raw := range raws {
		where := ""
		if put == "" {
			where = fmt.Sprintf("/%d", i)
		}
		c, cerrs := xapi.Convert(where, raw, now, rules.XAPI)
		if put != "" {
			c, cerrs = xapi.ConvertWithID(raw, put, now, rules.XAPI)
		}
		errs = append(errs, cerrs...)
		if cerrs != nil {
			continue
		}
		if first, dup := seen[c.ID]; dup {
			errs = append(errs, ingest.FieldError{Field: where + "/id", Message: fmt.Sprintf("repeats the id of statement %d", first)})
			continue
		}
		seen[c.ID] = i
		converted[i] = c
	}
	// Each mapped event passes the platform's own checks too.
	if errs == nil {
		events := make([]json.RawMessage, len(converted))
		for i, c := range converted {
			events[i] = c.Event
		}
		meta := ingest.Meta{TenantID: key.TenantID, SourceID: key.SourceID, ReceivedAt: now}
		if _, invalid := ingest.Validate(events, meta); invalid != nil {
			for _, rj := range invalid {
				for _, fe := range rj.Errors {
					errs = append(errs, ingest.FieldError{Field: fmt.Sprintf("/%d (mapped to %s)", rj.Index, fe.Field), Message: fe.Message})
				}
			}
		}
	}
	if errs != nil {
		writeProblemBody(w, Problem{Type: "/problems/invalid-statements", Title: "Invalid statements", Status: http.StatusBadRequest,
			Detail: fmt.Sprintf("%d errors; nothing was stored", len(errs)), Errors: errs}, 0)
		return nil, false
	}

	ids := make([]string, len(converted))
	for i, c := range converted {
		ids[i] = c.ID
	}
	stored, err := s.statements.Hashes(ctx, key.TenantID, ids)
	if err != nil {
		s.log.WarnContext(ctx, "reading xAPI statement ids", "tenant_id", key.TenantID, "err", err)
		writeProblem(w, http.StatusServiceUnavailable, "statements-unavailable", "Cannot take statements now",
			"the district's statement ids did not answer; nothing was stored; retry the same request", retryAfterBusy)
		return nil, false
	}
	var fresh []json.RawMessage
	var freshIDs []string
	hashes := map[string][]byte{}
	statementOf := map[string]int{} // id -> position in raws
	for _, c := range converted {
		h, had := stored[c.ID]
		switch {
		case had && !bytes.Equal(h, c.Hash):
			writeProblem(w, http.StatusConflict, "statement-conflict", "Statement id taken",
				fmt.Sprintf("statement %s exists with other content; nothing was stored", c.ID), 0)
			return nil, false
		case had: // the same statement again: nothing new
		default:
			fresh, freshIDs = append(fresh, c.Event), append(freshIDs, c.ID)
			hashes[c.ID] = c.Hash
			statementOf[c.ID] = seen[c.ID]
		}
	}
	tenant, ok := s.admit(ctx, w, key, len(fresh), "retry later")
	if !ok {
		return nil, false
	}
	accepted, _ := ingest.Validate(fresh, ingest.Meta{TenantID: key.TenantID, SourceID: key.SourceID, ReceivedAt: now})
	_, refused, ok := s.send(ctx, w, key, tenant, accepted, nil, size)
	if !ok {
		return nil, false
	}
	for _, rj := range refused { // larger than a record: dead-lettered, and not recorded as taken
		delete(hashes, freshIDs[rj.Index])
	}
	taken := map[string]statementToRecord{}
	for id, h := range hashes {
		c := converted[statementOf[id]]
		taken[id] = statementToRecord{hash: h, raw: raws[statementOf[id]], actor: c.Actor}
	}
	if len(refused) > 0 {
		s.recordStatements(ctx, key, now, taken)
		writeProblemBody(w, Problem{Type: "/problems/invalid-statements", Title: "Invalid statements", Status: http.StatusBadRequest,
			Detail: "a statement is too large to be a record; the others were stored", Errors: refused[0].Errors}, 0)
		return nil, false
	}
	s.recordStatements(ctx, key, now, taken)
	return ids, true
}

// statementToRecord is a statement Kafka has, to record.
type statementToRecord struct {
	hash  []byte
	raw   json.RawMessage
	actor string
}

// recordStatements records the statements Kafka has, each sealed under its actor's data key, so that
// one sent again with other content is a conflict and each can be read back. A failure is logged: the
// statements are in raw, and one sent again is taken again (the enricher drops the retry).
func (s *Server) recordStatements(ctx context.Context, key Key, stored time.Time, taken map[string]statementToRecord) {
	if len(taken) == 0 {
		return
	}
	actors := make([]string, 0, len(taken))
	for _, st := range taken {
		actors = append(actors, st.actor)
	}
	keys, err := s.sealer.SubjectKeys(ctx, key.TenantID, actors)
	if err == nil {
		rec := make(map[string]statements.Statement, len(taken))
		for id, st := range taken {
			rec[id] = statements.Statement{Hash: st.hash, Sealed: keys[st.actor].Seal(string(st.raw))}
		}
		err = s.statements.Record(ctx, key.TenantID, key.SourceID, stored, rec)
	}
	if err != nil {
		s.log.WarnContext(ctx, "recording xAPI statements", "tenant_id", key.TenantID, "err", err)
	}
}

// getStatement answers GET /xapi/statements?statementId=: the statement as it was sent, with its id and
// the time it was stored. A statement whose person was erased is gone (404), like one never sent.
func (s *Server) getStatement(w http.ResponseWriter, r *http.Request, key Key) {
	ctx := r.Context()
	if !xapiVersion(w, r) {
		return
	}
	id := strings.ToLower(r.URL.Query().Get("statementId"))
	if !ingest.IsUUID(id) {
		writeProblem(w, http.StatusBadRequest, "malformed-request", "Malformed request",
			"statementId must be a statement's UUID (this resource reads statements by id only)", 0)
		return
	}
	sealed, stored, err := s.statements.Get(ctx, key.TenantID, id)
	var plain string
	if err == nil {
		plain, err = s.sealer.Open(ctx, key.TenantID, sealed)
	}
	switch {
	case errors.Is(err, statements.ErrNotFound), errors.Is(err, keyring.ErrShredded):
		writeProblem(w, http.StatusNotFound, "not-found", "Not found", "no statement "+id, 0)
		return
	case err != nil:
		s.log.WarnContext(ctx, "reading an xAPI statement", "tenant_id", key.TenantID, "err", err)
		writeProblem(w, http.StatusServiceUnavailable, "statements-unavailable", "Cannot read statements now", "retry later", retryAfterBusy)
		return
	}
	var st map[string]json.RawMessage
	if err := json.Unmarshal([]byte(plain), &st); err != nil {
		writeProblem(w, http.StatusInternalServerError, "internal", "Internal error", "a stored statement does not read back", 0)
		return
	}
	st["id"], _ = json.Marshal(id)
	st["stored"], _ = json.Marshal(stored.UTC().Format(time.RFC3339Nano))
	w.Header().Set("X-Experience-API-Version", "1.0.3")
	writeJSON(w, http.StatusOK, st)
}
