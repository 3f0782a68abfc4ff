// Package api is the dashboard read API over the ClickHouse rollups, and the product analytics over its
// events table (analytics.go). Every answer is scoped to the caller's district and role: a district
// admin reads the whole district, a school admin its schools (and the classes and students enrolled in
// them), a teacher the classes it teaches (and their students), as the district's roster says. Anything
// outside that is 403, and every query filters on the caller's district, so nothing of another district
// is ever read. The one cross-district read, benchmarks, is served only over enough districts and is
// written to the audit log first. The usage of every district, for the vendor's billing system, is read
// with a billing token only, which belongs to no district and reads no dashboard; every request for it is
// written to the audit log.
package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/edtech-analytics/platform/libs/records"
	"github.com/edtech-analytics/platform/libs/tenancy/audit"
	"github.com/edtech-analytics/platform/libs/tenancy/credentials"
	"github.com/edtech-analytics/platform/libs/tenancy/tenants"
	"github.com/edtech-analytics/platform/libs/ttlcache"
	"github.com/edtech-analytics/platform/services/query/internal/auth"
	"github.com/google/uuid"
)

// ClickHouseSettings are the settings of the API's ClickHouse connection. A dashboard query reads a few
// granules, so one thread per query: concurrent requests, not threads within one, use the cores (at four
// requests in flight on two cores this took the p95 of a school summary from 44 to 35 ms).
var ClickHouseSettings = clickhouse.Settings{"max_threads": 1}

// Auth resolves credentials and answers the roster questions of scopes (auth.Resolver).
type Auth interface {
	Resolve(ctx context.Context, credential string) (auth.Principal, error)
	TeacherClasses(ctx context.Context, p auth.Principal) ([]string, error)
	ClassSchools(ctx context.Context, tenantID, classID string) ([]string, error)
	StudentInScope(ctx context.Context, tenantID, studentID string, classes, schools []string) (bool, error)
	ClassStudents(ctx context.Context, tenantID, classID string) ([]auth.RosterStudent, error)
	ParentStudents(ctx context.Context, p auth.Principal) ([]auth.RosterStudent, error)
	StudentEnrollments(ctx context.Context, tenantID string, scope auth.EnrollmentScope, from, to time.Time) ([]auth.Enrollee, error)
}

// Auditor writes the audit log (audit.Store).
type Auditor interface {
	Append(ctx context.Context, actor, tenantID, action string, detail any) (audit.Entry, error)
}

// Districts lists the districts that are not deleted: only they contribute to a benchmark
// (tenants.Store).
type Districts interface {
	Tenants(ctx context.Context) ([]tenants.Tenant, error)
}

// Config tunes the API.
type Config struct {
	// MinDistricts is the least number of districts a benchmark must cover to be served (default 5).
	MinDistricts int
	// MinStudents is the least number of active students a district needs in the range to contribute to
	// a benchmark (default 10).
	MinStudents int
	// BandDistricts is the least number of districts behind each released band mean (default 3, at least
	// 3: with two, a district that knows its own value would learn the other's).
	BandDistricts int
}

// API serves the dashboard endpoints.
type API struct {
	log       *slog.Logger
	auth      Auth
	audit     Auditor
	districts Districts
	ch        driver.Conn
	cfg       Config
	summaries *SummaryCache // nil: every summary is computed
	zones     TimeZones     // nil: every district's days are UTC days
	zoneCache *ttlcache.Cache[string, *time.Location]
	usage     UsageReporter // nil: GET /v1/usage is unavailable
}

// Option configures an API.
type Option func(*API)

// WithUsage serves GET /v1/usage from r.
func WithUsage(r UsageReporter) Option { return func(a *API) { a.usage = r } }

// WithSummaryCache makes the summary endpoints consult c once a request is authorized.
func WithSummaryCache(c *SummaryCache) Option { return func(a *API) { a.summaries = c } }

// New builds the API over ch, whose default database holds the aggregator's rollups.
func New(log *slog.Logger, a Auth, auditor Auditor, districts Districts, ch driver.Conn, cfg Config, opts ...Option) *API {
	if cfg.MinDistricts <= 0 {
		cfg.MinDistricts = 5
	}
	if cfg.MinStudents <= 0 {
		cfg.MinStudents = 10
	}
	cfg.BandDistricts = max(cfg.BandDistricts, 3)
	cfg.MinDistricts = max(cfg.MinDistricts, cfg.BandDistricts)
	api := &API{log: log, auth: a, audit: auditor, districts: districts, ch: ch, cfg: cfg}
	for _, o := range opts {
		o(api)
	}
	return api
}

// Handler returns the routes.
func (a *API) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/district/summary", a.district)
	mux.HandleFunc("GET /v1/schools/{school_id}/summary", a.school)
	mux.HandleFunc("GET /v1/classes/{class_id}/summary", a.class)
	mux.HandleFunc("GET /v1/students/{student_id}/summary", a.student)
	mux.HandleFunc("GET /v1/benchmarks/{metric}", a.benchmark)
	mux.HandleFunc("GET /v1/schools/{school_id}/daily", a.schoolDaily)
	mux.HandleFunc("GET /v1/district/schools", a.districtSchools)
	mux.HandleFunc("GET /v1/schools/{school_id}/classes", a.schoolClasses)
	mux.HandleFunc("GET /v1/teacher/classes", a.teacherClasses)
	mux.HandleFunc("GET /v1/classes/{class_id}/students", a.classStudents)
	mux.HandleFunc("GET /v1/parent/students", a.parentStudents)
	mux.HandleFunc("GET /v1/funnels", a.funnels)
	mux.HandleFunc("GET /v1/retention", a.retention)
	mux.HandleFunc("GET /v1/activation", a.activation)
	mux.HandleFunc("GET /v1/usage", a.serveUsage)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		problem(w, http.StatusNotFound, "not-found", "no such endpoint: "+r.URL.Path)
	})
	return mux
}

// request is an authenticated request with a valid date range.
type request struct {
	p        auth.Principal
	from, to time.Time
}

// maxRange bounds one request's date range.
const maxRange = 366 * 24 * time.Hour

// begin authenticates r as a district's principal and parses from and to; on failure it has answered. A
// platform token (billing) belongs to no district and reads no dashboard.
func (a *API) begin(w http.ResponseWriter, r *http.Request) (request, bool) {
	p, ok := a.authenticate(w, r)
	if !ok {
		return request{}, false
	}
	if credentials.IsPlatformRole(p.Role) || p.TenantID == "" {
		problem(w, http.StatusForbidden, "out-of-scope", "a "+p.Role+" token reads no district's dashboards")
		return request{}, false
	}
	from, err1 := time.Parse(time.DateOnly, r.URL.Query().Get("from"))
	to, err2 := time.Parse(time.DateOnly, r.URL.Query().Get("to"))
	switch {
	case err1 != nil:
		problem(w, http.StatusBadRequest, "invalid-parameter", "from: must be a date such as 2026-09-01")
		return request{}, false
	case err2 != nil:
		problem(w, http.StatusBadRequest, "invalid-parameter", "to: must be a date such as 2026-09-30")
		return request{}, false
	case to.Before(from) || to.Sub(from) > maxRange:
		problem(w, http.StatusBadRequest, "invalid-parameter", "to: must be on or after from, at most 366 days later")
		return request{}, false
	}
	return request{p: p, from: from, to: to}, true
}

func (a *API) authenticate(w http.ResponseWriter, r *http.Request) (auth.Principal, bool) {
	header := r.Header.Get("Authorization")
	scheme, credential, _ := strings.Cut(header, " ")
	credential = strings.TrimSpace(credential)
	if c, err := r.Cookie(auth.SessionCookie); header == "" && err == nil { // signed in to the web dashboards
		scheme, credential = "Bearer", c.Value
	}
	if !strings.EqualFold(scheme, "Bearer") || credential == "" {
		problem(w, http.StatusUnauthorized, "missing-credential", "send a dashboard token or API key as Authorization: Bearer <token>")
		return auth.Principal{}, false
	}
	p, err := a.auth.Resolve(r.Context(), credential)
	switch {
	case errors.Is(err, auth.ErrUnauthenticated):
		problem(w, http.StatusUnauthorized, "invalid-credential", "the token or key is unknown, revoked or expired")
	case errors.Is(err, auth.ErrForbidden):
		problem(w, http.StatusForbidden, "forbidden", "this key does not hold "+credentials.VerbDashboardsRead)
	case err != nil:
		a.log.ErrorContext(r.Context(), "resolving credential", "err", err)
		problem(w, http.StatusServiceUnavailable, "auth-unavailable", "cannot check the credential now; retry")
	default:
		return p, true
	}
	return auth.Principal{}, false
}

// pathID returns the path parameter name, an id of the roster (at most records.MaxIDBytes of UTF-8
// without control characters, as the gateway takes them). Any other value is answered 400 naming the
// parameter: it cannot name anything, and PostgreSQL refuses some such values (NUL, invalid UTF-8).
func pathID(w http.ResponseWriter, r *http.Request, name string) (string, bool) {
	id := r.PathValue(name)
	msg := records.CheckText(id, records.MaxIDBytes, records.Line)
	if id == "" {
		msg = "is required"
	}
	if msg != "" {
		problem(w, http.StatusBadRequest, "invalid-parameter", name+": "+msg)
		return "", false
	}
	return id, true
}

// forbidden answers 403 for a resource outside the principal's scope.
func forbidden(w http.ResponseWriter, p auth.Principal, what string) {
	problem(w, http.StatusForbidden, "out-of-scope", "a "+p.Role+" token may not read "+what)
}

func (a *API) unavailable(w http.ResponseWriter, r *http.Request, p auth.Principal, what string, err error) {
	a.log.ErrorContext(r.Context(), what, "tenant_id", p.TenantID, "err", err)
	problem(w, http.StatusServiceUnavailable, "store-unavailable", "the analytics store cannot answer now; retry")
}

// GET /v1/district/summary: district admins only.
func (a *API) district(w http.ResponseWriter, r *http.Request) {
	req, ok := a.begin(w, r)
	if !ok {
		return
	}
	if req.p.Role != credentials.RoleDistrictAdmin {
		forbidden(w, req.p, "the district summary")
		return
	}
	a.serveSummary(w, r, req, "district", "", levelQuery("district", "", nil))
}

// GET /v1/schools/{school_id}/summary: district admins, and school admins of that school.
func (a *API) school(w http.ResponseWriter, r *http.Request) {
	if req, id, ok := a.beginSchool(w, r); ok {
		a.serveSummary(w, r, req, "school", id, levelQuery("school", id, nil))
	}
}

// beginSchool begins a request of a school_id path for district admins and the school's admins; on
// failure it has answered.
func (a *API) beginSchool(w http.ResponseWriter, r *http.Request) (request, string, bool) {
	req, ok := a.begin(w, r)
	if !ok {
		return request{}, "", false
	}
	id, ok := pathID(w, r, "school_id")
	if !ok || !a.schoolAllowed(w, req.p, id) {
		return request{}, "", false
	}
	return req, id, true
}

func (a *API) schoolAllowed(w http.ResponseWriter, p auth.Principal, school string) bool {
	if p.Role == credentials.RoleDistrictAdmin || (p.Role == credentials.RoleSchoolAdmin && slices.Contains(p.Schools, school)) {
		return true
	}
	forbidden(w, p, "school "+school)
	return false
}

// GET /v1/classes/{class_id}/summary: district admins; school admins of the class's school (the roster
// says which; only rows of their schools are read); teachers of the class.
func (a *API) class(w http.ResponseWriter, r *http.Request) {
	req, ok := a.begin(w, r)
	if !ok {
		return
	}
	id, ok := pathID(w, r, "class_id")
	if !ok {
		return
	}
	parents, ok := a.classAllowed(w, r, req.p, id)
	if !ok {
		return
	}
	a.serveSummary(w, r, req, "class", id, levelQuery("class", id, parents))
}

// classAllowed decides whether p may read class id: district admins may; school admins when the roster
// puts the class in one of their schools (parents: those schools, the only rows to read); teachers of the
// class. Otherwise, or when the roster cannot answer, it has answered.
func (a *API) classAllowed(w http.ResponseWriter, r *http.Request, p auth.Principal, id string) (parents []string, ok bool) {
	switch p.Role {
	case credentials.RoleDistrictAdmin:
	case credentials.RoleSchoolAdmin:
		schools, err := a.auth.ClassSchools(r.Context(), p.TenantID, id)
		if err != nil {
			a.unavailable(w, r, p, "reading the roster", err)
			return nil, false
		}
		for _, s := range schools {
			if slices.Contains(p.Schools, s) {
				parents = append(parents, s)
			}
		}
		if len(parents) == 0 {
			forbidden(w, p, "class "+id)
			return nil, false
		}
	case credentials.RoleTeacher:
		classes, err := a.auth.TeacherClasses(r.Context(), p)
		if err != nil {
			a.unavailable(w, r, p, "reading the roster", err)
			return nil, false
		}
		if !slices.Contains(classes, id) {
			forbidden(w, p, "class "+id)
			return nil, false
		}
	default:
		forbidden(w, p, "class "+id)
		return nil, false
	}
	return parents, true
}

// GET /v1/students/{student_id}/summary (the platform's internal id): district admins; school admins and
// teachers of a student enrolled in their schools or classes.
func (a *API) student(w http.ResponseWriter, r *http.Request) {
	req, ok := a.begin(w, r)
	if !ok {
		return
	}
	id, err := uuid.Parse(r.PathValue("student_id"))
	if err != nil {
		problem(w, http.StatusBadRequest, "invalid-parameter", "student_id: must be the student's internal id (a UUID)")
		return
	}
	if req.p.Role == credentials.RoleParent {
		if !a.parentOf(w, r, req.p, id.String()) {
			return
		}
	} else if req.p.Role != credentials.RoleDistrictAdmin {
		var classes []string
		if req.p.Role == credentials.RoleTeacher {
			if classes, err = a.auth.TeacherClasses(r.Context(), req.p); err != nil {
				a.unavailable(w, r, req.p, "reading the roster", err)
				return
			}
		}
		in, err := a.auth.StudentInScope(r.Context(), req.p.TenantID, id.String(), classes, req.p.Schools)
		if err != nil {
			a.unavailable(w, r, req.p, "reading the roster", err)
			return
		}
		if !in {
			forbidden(w, req.p, "student "+id.String())
			return
		}
	}
	// Who read which student's data, and when: a student-level read is served only once it is audited.
	if _, err := a.audit.Append(r.Context(), req.p.Subject, req.p.TenantID, "student.read", map[string]string{
		"student_id": id.String(), "role": req.p.Role, "from": req.from.Format(time.DateOnly), "to": req.to.Format(time.DateOnly),
	}); err != nil {
		a.log.ErrorContext(r.Context(), "writing the audit log", "tenant_id", req.p.TenantID, "err", err)
		problem(w, http.StatusServiceUnavailable, "audit-unavailable", "student data is served only when the read is audited; retry")
		return
	}
	a.serveSummary(w, r, req, "student", id.String(), summaryQuery{
		table: "metrics_student_daily", where: "student_id = toUUID(?)", args: []any{id.String()},
	})
}

// summaryQuery selects the rows of one entity in a metrics rollup; tenant and dates are added.
type summaryQuery struct {
	table  string
	where  string
	args   []any
	active bool // the table keeps active students
}

func levelQuery(level, entity string, parents []string) summaryQuery {
	q := summaryQuery{table: "metrics_daily", where: "level = ? AND entity_id = ?", args: []any{level, entity}, active: true}
	if len(parents) > 0 {
		q.where += " AND has(?, parent_id)"
		q.args = append(q.args, parents)
	}
	return q
}

// serveSummary answers an authorized summary request, from the summary cache when the range is closed.
func (a *API) serveSummary(w http.ResponseWriter, r *http.Request, req request, level, id string, q summaryQuery) {
	from, to := req.from.Format(time.DateOnly), req.to.Format(time.DateOnly)
	key := summaryKey{tenant: req.p.TenantID, level: level, id: id, scope: q.table + " " + q.where + fmt.Sprintf(" %q", q.args),
		from: from, to: to}
	// The range's last day is closed at its end in the district's zone, the zone of the rollups' days.
	loc, err := a.location(r.Context(), req.p.TenantID)
	if err != nil {
		a.log.WarnContext(r.Context(), "reading the district's time zone; summary not cached", "tenant_id", req.p.TenantID, "err", err)
		loc = nil
	}
	v, err := a.summaries.get(r.Context(), key, req.to, loc, func() (summaryValue, error) {
		totals, days, err := a.summary(r.Context(), req, q)
		return summaryValue{totals: totals, days: days}, err
	})
	if err != nil {
		a.unavailable(w, r, req.p, "querying "+q.table, err)
		return
	}
	writeJSON(w, Summary{TenantID: req.p.TenantID, Level: level, ID: id, From: from, To: to, Totals: v.totals, Days: v.days})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v) // the client went away if this fails
}

func problem(w http.ResponseWriter, status int, slug, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"type": "/problems/" + slug, "title": http.StatusText(status), "status": status, "detail": detail})
}
