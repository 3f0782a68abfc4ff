package admin

import (
	"encoding/json"
	"errors"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/edtech-analytics/platform/libs/records"
	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/edtech-analytics/platform/libs/tenancy/credentials"
	"github.com/edtech-analytics/platform/libs/tenancy/jobs"
)

func (a *Admin) export(w http.ResponseWriter, r *http.Request) {
	key, ok := a.authenticate(w, r)
	if !ok {
		return
	}
	var req ExportRequest
	if !decode(w, r, &req, `{"format": "ndjson" | "csv", "reason": ...}`) {
		return
	}
	if req.Format != "ndjson" && req.Format != "csv" {
		problem(w, http.StatusBadRequest, "invalid-field", "format: must be ndjson or csv")
		return
	}
	if msg := records.CheckText(req.Reason, 1000, records.Multiline); msg != "" {
		problem(w, http.StatusBadRequest, "invalid-field", "reason: "+msg)
		return
	}
	if a.ExportDir == "" {
		problem(w, http.StatusNotImplemented, "exports-off", "this deployment has no export storage (EXPORT_DIR); ask the operators for ctl export tenant")
		return
	}
	params, _ := json.Marshal(jobs.ExportTenantParams{Format: req.Format})
	a.queue(w, r, key, jobs.Request{Kind: jobs.KindExportTenant, TenantID: key.TenantID, Reason: req.Reason,
		By: "apikey:" + key.ID, Params: params, Queue: true}, "export.tenant.requested", nil)
}

// queue queues a job (or finds the same request's unfinished one), audits the request and answers.
func (a *Admin) queue(w http.ResponseWriter, r *http.Request, key credentials.APIKey, req jobs.Request, action string, detail map[string]any) {
	job, created, err := a.Jobs.Start(r.Context(), req)
	if err != nil {
		a.fail(w, r, "queueing the job", err)
		return
	}
	if detail == nil {
		detail = map[string]any{}
	}
	detail["job"], detail["created"] = job.ID, created
	if _, err := a.Audit.Append(r.Context(), "apikey:"+key.ID, key.TenantID, action, detail); err != nil {
		a.fail(w, r, "writing the audit log", err)
		return
	}
	status := http.StatusAccepted
	if !created {
		status = http.StatusOK // the same request is already queued or running
	}
	w.Header().Set("Location", statusURL(job.ID))
	writeJSON(w, status, JobAnswer{Job: job, StatusURL: statusURL(job.ID)})
}

// ownJob reads the job the path names if it is the key's district's; otherwise it has answered.
func (a *Admin) ownJob(w http.ResponseWriter, r *http.Request) (jobs.Job, credentials.APIKey, bool) {
	key, ok := a.authenticate(w, r)
	if !ok {
		return jobs.Job{}, key, false
	}
	job, err := a.Jobs.Job(r.Context(), r.PathValue("id"))
	if errors.Is(err, tenancy.ErrNotFound) || err == nil && job.TenantID != key.TenantID {
		problem(w, http.StatusNotFound, "not-found", "id: no job of this district has this id")
		return jobs.Job{}, key, false
	}
	if err != nil {
		a.fail(w, r, "reading the job", err)
		return jobs.Job{}, key, false
	}
	return job, key, true
}

func (a *Admin) job(w http.ResponseWriter, r *http.Request) {
	job, _, ok := a.ownJob(w, r)
	if !ok {
		return
	}
	ans := JobAnswer{Job: job, StatusURL: statusURL(job.ID)}
	if a.exported(job) {
		entries, err := os.ReadDir(filepath.Join(a.ExportDir, job.ID))
		if err != nil {
			a.fail(w, r, "listing the export's files", err)
			return
		}
		for _, e := range entries {
			ans.Files = append(ans.Files, e.Name())
		}
	}
	writeJSON(w, http.StatusOK, ans)
}

// exported reports whether job is a finished export whose files are here.
func (a *Admin) exported(job jobs.Job) bool {
	return job.Kind == jobs.KindExportTenant && job.Status == jobs.StatusDone && a.ExportDir != ""
}

// file serves one file of a finished export of the key's district, and audits the download.
func (a *Admin) file(w http.ResponseWriter, r *http.Request) {
	job, key, ok := a.ownJob(w, r)
	if !ok {
		return
	}
	name := r.PathValue("name")
	if !a.exported(job) {
		problem(w, http.StatusNotFound, "not-found", "id: the job is not a finished export")
		return
	}
	if name != filepath.Base(name) || strings.HasPrefix(name, ".") {
		problem(w, http.StatusNotFound, "not-found", "name: not a file of the export")
		return
	}
	f, err := os.Open(filepath.Join(a.ExportDir, job.ID, name))
	if errors.Is(err, fs.ErrNotExist) {
		problem(w, http.StatusNotFound, "not-found", "name: not a file of the export")
		return
	}
	if err != nil {
		a.fail(w, r, "opening the export's file", err)
		return
	}
	defer func() { _ = f.Close() }()
	st, err := f.Stat()
	if err != nil {
		a.fail(w, r, "opening the export's file", err)
		return
	}
	if _, err := a.Audit.Append(r.Context(), "apikey:"+key.ID, key.TenantID, "export.tenant.download",
		map[string]any{"job": job.ID, "file": name, "bytes": st.Size()}); err != nil {
		a.fail(w, r, "writing the audit log", err)
		return
	}
	w.Header().Set("Content-Disposition", `attachment; filename="`+name+`"`)
	http.ServeContent(w, r, name, st.ModTime(), f)
}
