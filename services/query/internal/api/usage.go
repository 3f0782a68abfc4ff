package api

import (
	"context"
	"errors"
	"mime"
	"net/http"
	"strings"

	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/edtech-analytics/platform/libs/tenancy/credentials"
	"github.com/edtech-analytics/platform/libs/usage"
	"github.com/edtech-analytics/platform/services/query/internal/auth"
)

// UsageReporter measures districts' usage in a period (usage.Reporter).
type UsageReporter interface {
	Report(ctx context.Context, p usage.Period, tenantIDs ...string) (*usage.Report, error)
}

// usageAudit is what the audit log records of a request for usage: every authenticated one, served or
// not, with the answer's status.
type usageAudit struct {
	Period    string `json:"period,omitempty"`
	Tenant    string `json:"tenant,omitempty"`
	Format    string `json:"format,omitempty"`
	Districts int    `json:"districts"`
	Status    int    `json:"status"`
	Served    bool   `json:"served"`
}

// GET /v1/usage?month=YYYY-MM[&tenant=ID][&format=json|csv]: billing tokens only. The usage of every
// district that existed in the UTC month, or of one (libs/usage; docs/adr/0023), as JSON (usage.Report)
// or, with format=csv or Accept: text/csv, as CSV (a header, then a row per district). A read across
// districts: written to the audit log before it is answered, and so are refusals of an authenticated
// caller (a district's token, a bad parameter).
func (a *API) serveUsage(w http.ResponseWriter, r *http.Request) {
	p, ok := a.authenticate(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	rec := usageAudit{Period: q.Get("month"), Tenant: q.Get("tenant"), Format: q.Get("format")}
	refuse := func(status int, slug, detail string) {
		rec.Status = status
		a.auditUsage(r, p, rec)
		problem(w, status, slug, detail)
	}
	if p.Role != credentials.RoleBilling {
		refuse(http.StatusForbidden, "out-of-scope", "usage spans districts: it is read with a billing token (ctl token create --role billing), not a "+p.Role+"'s")
		return
	}
	if a.usage == nil {
		refuse(http.StatusServiceUnavailable, "usage-unavailable", "this instance does not serve usage")
		return
	}
	period, err := usage.Month(q.Get("month"))
	if err != nil {
		refuse(http.StatusBadRequest, "invalid-parameter", "month: must be a month written YYYY-MM, such as 2026-11")
		return
	}
	var ids []string
	if t := q.Get("tenant"); t != "" {
		if err := tenancy.ValidTenantID(t); err != nil {
			refuse(http.StatusBadRequest, "invalid-parameter", "tenant: not a district id")
			return
		}
		ids = []string{t}
	}
	format, ok := usageFormat(r)
	if !ok {
		refuse(http.StatusBadRequest, "invalid-parameter", "format: want json or csv")
		return
	}
	rec.Format = format
	rep, err := a.usage.Report(r.Context(), period, ids...)
	if errors.Is(err, tenancy.ErrNotFound) {
		refuse(http.StatusNotFound, "not-found", "tenant: no such district")
		return
	}
	if err != nil {
		a.unavailable(w, r, p, "measuring usage", err)
		return
	}
	rec.Districts, rec.Status, rec.Served = len(rep.Districts), http.StatusOK, true
	if !a.auditUsage(r, p, rec) {
		problem(w, http.StatusServiceUnavailable, "audit-unavailable", "usage is served only when the read is audited; retry")
		return
	}
	if format == "csv" {
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
		w.Header().Set("Content-Disposition", `attachment; filename="usage-`+rep.Period+`.csv"`)
		_ = usage.WriteCSV(w, rep) // the client went away if this fails
		return
	}
	writeJSON(w, rep)
}

// usageFormat is the format asked for: the format parameter, else CSV when Accept names text/csv before
// any JSON type, else JSON.
func usageFormat(r *http.Request) (string, bool) {
	switch f := r.URL.Query().Get("format"); f {
	case "json", "csv":
		return f, true
	case "":
	default:
		return "", false
	}
	for _, part := range strings.Split(r.Header.Get("Accept"), ",") {
		mt, _, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		switch mt {
		case "text/csv":
			return "csv", true
		case "application/json", "*/*":
			return "json", true
		}
	}
	return "json", true
}

// auditUsage writes a request for usage to the audit log, and reports whether it was written.
func (a *API) auditUsage(r *http.Request, p auth.Principal, rec usageAudit) bool {
	if _, err := a.audit.Append(r.Context(), p.Subject, p.TenantID, "usage.read", rec); err != nil {
		a.log.ErrorContext(r.Context(), "writing the audit log", "tenant_id", p.TenantID, "err", err)
		return false
	}
	return true
}
