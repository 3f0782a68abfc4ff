// Package admin serves a district's privacy requests to API keys holding admin:write:
//
//	POST /v1/admin/erasures   {"student": "<SIS id>", "source": "<source>", "reason": "..."}
//	POST /v1/admin/exports    {"format": "ndjson" | "csv", "reason": "..."}
//	GET  /v1/admin/jobs/{id}
//	GET  /v1/admin/jobs/{id}/files/{name}
//
// A district export is queued the same way; once done, its job lists its files (the manifest among
// them), each served gzip-compressed as written, from the directory the privacy worker writes exports to
// (ExportDir, shared storage).
//
// An erasure is answered 202 with its job, queued in the control schema (control.privacy_jobs), which
// `ctl jobs work` runs as `ctl erase student` would, resumably and verified store by store; the job's
// URL shows its steps and what each found before and after. A student the district does not know is 404
// and makes no job; asking again while one is queued or running returns that job. Every request is an
// audit entry, and a key reads only its own district's jobs.
package admin

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strings"

	"github.com/edtech-analytics/platform/libs/records"
	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/edtech-analytics/platform/libs/tenancy/audit"
	"github.com/edtech-analytics/platform/libs/tenancy/credentials"
	"github.com/edtech-analytics/platform/libs/tenancy/jobs"
)

// Keys looks API keys up (credentials.Store).
type Keys interface {
	LookupAPIKey(ctx context.Context, plaintext string) (credentials.APIKey, error)
}

// Students finds the student a SIS id names in a district (jobs.Students): its internal id, or
// tenancy.ErrNotFound.
type Students interface {
	Find(ctx context.Context, tenant, source, sis string) (string, error)
	SISIDs(ctx context.Context, tenant, internalID, asked string) ([]string, error)
}

// Jobs queues and reads privacy jobs (jobs.Store).
type Jobs interface {
	Start(ctx context.Context, r jobs.Request) (jobs.Job, bool, error)
	Job(ctx context.Context, id string) (jobs.Job, error)
}

// Auditor writes the audit log (audit.Store).
type Auditor interface {
	Append(ctx context.Context, actor, tenantID, action string, detail any) (audit.Entry, error)
}

// Admin serves the endpoints.
type Admin struct {
	Log      *slog.Logger
	Keys     Keys
	Students Students
	Jobs     Jobs
	Audit    Auditor
	// ExportDir holds the district exports, a directory per job; empty: none can be requested.
	ExportDir string
}

// Handler returns the routes, under /v1/admin/.
func (a *Admin) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/admin/erasures", a.erase)
	mux.HandleFunc("POST /v1/admin/exports", a.export)
	mux.HandleFunc("GET /v1/admin/jobs/{id}", a.job)
	mux.HandleFunc("GET /v1/admin/jobs/{id}/files/{name}", a.file)
	mux.HandleFunc("/v1/admin/", func(w http.ResponseWriter, r *http.Request) {
		problem(w, http.StatusNotFound, "not-found", "no such endpoint: "+r.Method+" "+r.URL.Path)
	})
	return mux
}

// ErasureRequest is the body of POST /v1/admin/erasures.
type ErasureRequest struct {
	Student string `json:"student"`          // the student's SIS id
	Source  string `json:"source,omitempty"` // the source it is from; empty: any of the district's
	Reason  string `json:"reason,omitempty"`
}

// ExportRequest is the body of POST /v1/admin/exports.
type ExportRequest struct {
	Format string `json:"format"` // ndjson or csv
	Reason string `json:"reason,omitempty"`
}

// JobAnswer is what the endpoints answer of a job.
type JobAnswer struct {
	Job       jobs.Job `json:"job"`
	StatusURL string   `json:"status_url"`
	Files     []string `json:"files,omitempty"` // a finished export's files, under StatusURL/files/
}

func (a *Admin) erase(w http.ResponseWriter, r *http.Request) {
	key, ok := a.authenticate(w, r)
	if !ok {
		return
	}
	var req ErasureRequest
	if !decode(w, r, &req, `{"student": ..., "source": ..., "reason": ...}`) {
		return
	}
	for _, f := range []struct{ name, value string }{{"student", req.Student}, {"source", req.Source}} {
		if msg := records.CheckText(f.value, records.MaxIDBytes, records.Line); msg != "" {
			problem(w, http.StatusBadRequest, "invalid-field", f.name+": "+msg)
			return
		}
	}
	if req.Student == "" {
		problem(w, http.StatusBadRequest, "invalid-field", "student: is required (the student's SIS id)")
		return
	}
	if msg := records.CheckText(req.Reason, 1000, records.Multiline); msg != "" {
		problem(w, http.StatusBadRequest, "invalid-field", "reason: "+msg)
		return
	}
	internal, err := a.Students.Find(r.Context(), key.TenantID, req.Source, req.Student)
	switch {
	case errors.Is(err, tenancy.ErrNotFound):
		problem(w, http.StatusNotFound, "unknown-student", "student: the district has no student with this SIS id (no job was created)")
		return
	case errors.Is(err, jobs.ErrAmbiguous):
		problem(w, http.StatusConflict, "ambiguous-student", "student: "+err.Error()+"; give source")
		return
	case err != nil:
		a.fail(w, r, "finding the student", err)
		return
	}
	ids, err := a.Students.SISIDs(r.Context(), key.TenantID, internal, req.Student)
	if err != nil {
		a.fail(w, r, "reading the student's SIS ids", err)
		return
	}
	params, _ := json.Marshal(jobs.EraseStudentParams{SISID: req.Student, Source: req.Source, SISIDs: ids})
	a.queue(w, r, key, jobs.Request{Kind: jobs.KindEraseStudent, TenantID: key.TenantID, Subject: internal,
		Reason: req.Reason, By: "apikey:" + key.ID, Params: params, Queue: true}, "erase.student.requested", map[string]any{"subject": internal})
}

// decode reads a small JSON object of the shape shape into v; on failure it has answered 400.
func decode(w http.ResponseWriter, r *http.Request, v any, shape string) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 16<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		problem(w, http.StatusBadRequest, "invalid-body", "the body must be a JSON object "+shape+": "+err.Error())
		return false
	}
	return true
}

func statusURL(id string) string { return "/v1/admin/jobs/" + id }

// authenticate accepts an API key holding admin:write; on failure it has answered.
func (a *Admin) authenticate(w http.ResponseWriter, r *http.Request) (credentials.APIKey, bool) {
	scheme, credential, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	if !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(credential) == "" {
		problem(w, http.StatusUnauthorized, "missing-credential", "send an API key holding "+credentials.VerbAdminWrite+" as Authorization: Bearer <key>")
		return credentials.APIKey{}, false
	}
	key, err := a.Keys.LookupAPIKey(r.Context(), strings.TrimSpace(credential))
	switch {
	case errors.Is(err, credentials.ErrInvalidKey):
		problem(w, http.StatusUnauthorized, "invalid-credential", "the key is unknown or revoked")
	case err != nil:
		a.fail(w, r, "checking the key", err)
	case !key.Allows(credentials.VerbAdminWrite):
		problem(w, http.StatusForbidden, "forbidden", "this key does not hold "+credentials.VerbAdminWrite)
	default:
		return key, true
	}
	return credentials.APIKey{}, false
}

func (a *Admin) fail(w http.ResponseWriter, r *http.Request, what string, err error) {
	a.Log.ErrorContext(r.Context(), what, "err", err)
	problem(w, http.StatusServiceUnavailable, "unavailable", what+" failed; retry")
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func problem(w http.ResponseWriter, status int, slug, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"type": "/problems/" + slug, "title": http.StatusText(status), "status": status, "detail": detail})
}
