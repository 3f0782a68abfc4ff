// Package api is the dashboard read API over the ClickHouse rollups. Every answer is scoped to the tenant
// of the caller's key; nothing of another district is ever read.
package api

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/edtech-analytics/platform/libs/tenancy"
)

// Keys resolves API keys.
type Keys interface {
	Lookup(ctx context.Context, plaintext string) (tenancy.APIKey, error)
}

// API serves the dashboard endpoints.
type API struct {
	log  *slog.Logger
	keys Keys
	ch   driver.Conn
}

// New builds the API.
func New(log *slog.Logger, keys Keys, ch driver.Conn) *API { return &API{log: log, keys: keys, ch: ch} }

// Handler returns the routes.
func (a *API) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/schools/{school_id}/daily", a.schoolDaily)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		problem(w, http.StatusNotFound, "not-found", "no such endpoint: "+r.URL.Path)
	})
	return mux
}

// Day is one school day of the rollup.
type Day struct {
	Day            string `json:"day"`
	ActiveStudents uint64 `json:"active_students"`
	Events         uint64 `json:"events"`
	ContentSeconds uint64 `json:"content_seconds"`
}

// SchoolDaily is the answer of GET /v1/schools/{school_id}/daily.
type SchoolDaily struct {
	TenantID string `json:"tenant_id"`
	SchoolID string `json:"school_id"`
	From     string `json:"from"`
	To       string `json:"to"`
	Days     []Day  `json:"days"`
}

// maxRange bounds one request's date range.
const maxRange = 366 * 24 * time.Hour

func (a *API) schoolDaily(w http.ResponseWriter, r *http.Request) {
	key, ok := a.authenticate(w, r)
	if !ok {
		return
	}
	school := r.PathValue("school_id")
	from, err1 := time.Parse(time.DateOnly, r.URL.Query().Get("from"))
	to, err2 := time.Parse(time.DateOnly, r.URL.Query().Get("to"))
	switch {
	case err1 != nil:
		problem(w, http.StatusBadRequest, "invalid-parameter", "from: must be a date such as 2026-09-01")
		return
	case err2 != nil:
		problem(w, http.StatusBadRequest, "invalid-parameter", "to: must be a date such as 2026-09-30")
		return
	case to.Before(from) || to.Sub(from) > maxRange:
		problem(w, http.StatusBadRequest, "invalid-parameter", "to: must be on or after from, at most 366 days later")
		return
	}
	rows, err := a.ch.Query(r.Context(), `
		SELECT toString(day), toUInt64(uniqExactMerge(active_students)), toUInt64(countMerge(events)), toUInt64(sumMerge(content_seconds))
		FROM school_daily
		WHERE tenant_id = ? AND school_id = ? AND day >= toDate(?) AND day <= toDate(?)
		GROUP BY day ORDER BY day`, key.TenantID, school, from.Format(time.DateOnly), to.Format(time.DateOnly))
	if err != nil {
		a.log.ErrorContext(r.Context(), "querying school_daily", "tenant_id", key.TenantID, "err", err)
		problem(w, http.StatusServiceUnavailable, "store-unavailable", "the analytics store cannot answer now; retry")
		return
	}
	defer rows.Close()
	out := SchoolDaily{TenantID: key.TenantID, SchoolID: school, From: from.Format(time.DateOnly), To: to.Format(time.DateOnly), Days: []Day{}}
	for rows.Next() {
		var d Day
		if err := rows.Scan(&d.Day, &d.ActiveStudents, &d.Events, &d.ContentSeconds); err != nil {
			a.log.ErrorContext(r.Context(), "reading school_daily", "err", err)
			problem(w, http.StatusServiceUnavailable, "store-unavailable", "the analytics store cannot answer now; retry")
			return
		}
		out.Days = append(out.Days, d)
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}

func (a *API) authenticate(w http.ResponseWriter, r *http.Request) (tenancy.APIKey, bool) {
	scheme, token, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	if !strings.EqualFold(scheme, "Bearer") || token == "" {
		problem(w, http.StatusUnauthorized, "missing-api-key", "send the key as Authorization: Bearer <key>")
		return tenancy.APIKey{}, false
	}
	key, err := a.keys.Lookup(r.Context(), strings.TrimSpace(token))
	switch {
	case errors.Is(err, tenancy.ErrInvalidKey):
		problem(w, http.StatusUnauthorized, "invalid-api-key", "the key is unknown or revoked")
		return key, false
	case err != nil:
		a.log.ErrorContext(r.Context(), "looking up api key", "err", err)
		problem(w, http.StatusServiceUnavailable, "auth-unavailable", "cannot check the key now; retry")
		return key, false
	case !key.Allows(tenancy.VerbDashboardsRead):
		problem(w, http.StatusForbidden, "forbidden", "this key does not hold "+tenancy.VerbDashboardsRead)
		return key, false
	}
	return key, true
}

func problem(w http.ResponseWriter, status int, slug, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"type": "/problems/" + slug, "title": http.StatusText(status), "status": status, "detail": detail})
}
