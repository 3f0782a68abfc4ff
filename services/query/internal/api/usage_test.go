package api_test

import (
	"encoding/csv"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edtech-analytics/platform/libs/keyring/keyringtest"
	"github.com/edtech-analytics/platform/libs/pgutil/pgtest"
	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/edtech-analytics/platform/libs/tenancy/audit"
	"github.com/edtech-analytics/platform/libs/tenancy/credentials"
	"github.com/edtech-analytics/platform/libs/tenancy/fleet"
	"github.com/edtech-analytics/platform/libs/tenancy/tenants"
	"github.com/edtech-analytics/platform/libs/usage"
	"github.com/edtech-analytics/platform/libs/usage/usagetest"
	"github.com/edtech-analytics/platform/services/query/internal/api"
	"github.com/edtech-analytics/platform/services/query/internal/auth"
)

// response is an answer's status, content type and body.
type response struct {
	status int
	ctype  string
	body   string
}

func getWith(t *testing.T, srv *httptest.Server, cred, path string, header map[string]string) response {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cred != "" {
		req.Header.Set("Authorization", "Bearer "+cred)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{resp.StatusCode, resp.Header.Get("Content-Type"), string(body)}
}

// TestUsageEndpoint: GET /v1/usage answers a billing token only, with the month's exact usage of every
// district as JSON, or as CSV (format=csv or Accept: text/csv) that reads back to the same numbers; a
// district's token (even its admin's) and API keys get 403, no credential 401; a bad month is 400 naming
// month; a billing token reads no district dashboard. Every authenticated request is in the audit log.
func TestUsageEndpoint(t *testing.T) {
	pool, _ := pgtest.New(t)
	if err := tenancy.Migrate(t.Context(), pool); err != nil {
		t.Fatal(err)
	}
	conn, _ := migrateRollups(t)
	fx := usagetest.Seed(t, pool, conn)
	f := fleet.New(pool, os.Getenv)
	t.Cleanup(f.Close)
	keys, auditLog := credentials.New(pool), audit.New(pool, keyringtest.Over(t, pool))
	token := func(tok credentials.DashboardToken) string {
		plain, _, err := keys.CreateDashboardToken(t.Context(), tok)
		if err != nil {
			t.Fatal(err)
		}
		return plain
	}
	billing := token(credentials.DashboardToken{Role: credentials.RoleBilling, Label: "billing system"})
	district := token(credentials.DashboardToken{TenantID: "d1", Role: credentials.RoleDistrictAdmin})
	key, _, err := keys.CreateAPIKey(t.Context(), "d1", "dash", []string{credentials.VerbDashboardsRead})
	if err != nil {
		t.Fatal(err)
	}
	h := api.New(slog.New(slog.NewTextHandler(io.Discard, nil)), auth.NewResolver(keys, f, time.Minute), auditLog, tenants.New(f), conn,
		api.Config{}, api.WithUsage(usage.New(pool, fleet.NewDistrictPools(f), conn)))
	srv := httptest.NewServer(h.Handler())
	t.Cleanup(srv.Close)
	path := "/v1/usage?month=" + usagetest.Month

	res := getWith(t, srv, billing, path, nil)
	if res.status != http.StatusOK || res.ctype != "application/json" {
		t.Fatalf("billing token: %d %s %s", res.status, res.ctype, res.body)
	}
	var rep usage.Report
	if err := json.Unmarshal([]byte(res.body), &rep); err != nil {
		t.Fatal(err)
	}
	fx.Check(t, &rep)

	for name, header := range map[string]map[string]string{"format=csv": nil, "accept": {"Accept": "text/csv, application/json;q=0.5"}} {
		p := path
		if header == nil {
			p += "&format=csv"
		}
		res := getWith(t, srv, billing, p, header)
		if res.status != http.StatusOK || !strings.HasPrefix(res.ctype, "text/csv") {
			t.Fatalf("%s: %d %s %s", name, res.status, res.ctype, res.body)
		}
		recs, err := csv.NewReader(strings.NewReader(res.body)).ReadAll()
		if err != nil || len(recs) != 1+len(fx.Reported) {
			t.Fatalf("%s: %d records, %v", name, len(recs), err)
		}
		col := map[string]int{}
		for i, c := range recs[0] {
			col[c] = i
		}
		for i, id := range fx.Reported {
			row, want := recs[i+1], fx.Want[id]
			if row[col["tenant_id"]] != id || row[col["events_total"]] != strconv.FormatInt(want.EventsTotal, 10) ||
				row[col["events_session"]] != strconv.FormatInt(want.Events["session"], 10) ||
				row[col["active_students"]] != strconv.FormatInt(want.ActiveStudents, 10) ||
				row[col["roster_students"]] != strconv.FormatInt(want.RosterStudents, 10) ||
				row[col["erasures_district"]] != strconv.FormatInt(want.ErasuresDistrict, 10) {
				t.Errorf("%s: row %v, want %+v", name, row, want)
			}
		}
	}
	if res := getWith(t, srv, billing, path+"&tenant=d2", nil); res.status != http.StatusOK || !strings.Contains(res.body, `"tenant_id":"d2"`) ||
		strings.Contains(res.body, `"tenant_id":"d1"`) {
		t.Errorf("one district: %d %s", res.status, res.body)
	}

	for _, c := range []struct {
		name, cred, path string
		status           int
		detail           string
	}{
		{"district admin token", district, path, http.StatusForbidden, "billing token"},
		{"api key with dashboards:read", key, path, http.StatusForbidden, "billing token"},
		{"no credential", "", path, http.StatusUnauthorized, "Bearer"},
		{"bad month", billing, "/v1/usage?month=2026-13", http.StatusBadRequest, "month:"},
		{"no month", billing, "/v1/usage", http.StatusBadRequest, "month:"},
		{"bad format", billing, path + "&format=xml", http.StatusBadRequest, "format:"},
		{"bad tenant", billing, path + "&tenant=D%201", http.StatusBadRequest, "tenant:"},
		{"unknown tenant", billing, path + "&tenant=d9", http.StatusNotFound, "tenant:"},
		{"billing token on a dashboard", billing, "/v1/district/summary?from=2026-11-01&to=2026-11-30", http.StatusForbidden, "billing token reads no district"},
		{"billing token on a benchmark", billing, "/v1/benchmarks/attendance_rate?from=2026-11-01&to=2026-11-30", http.StatusForbidden, "billing"},
		{"billing token on a student", billing, "/v1/students/00000000-0000-4000-8000-000000000001/summary?from=2026-11-01&to=2026-11-30", http.StatusForbidden, "billing"},
	} {
		res := getWith(t, srv, c.cred, c.path, nil)
		if res.status != c.status || !strings.Contains(res.body, c.detail) || !strings.HasPrefix(res.ctype, "application/problem+json") {
			t.Errorf("%s: %d %s, want %d naming %q", c.name, res.status, res.body, c.status, c.detail)
		}
	}

	// The audit log: the 4 reads served, then the 8 refusals of authenticated callers, in order.
	entries, err := auditLog.List(t.Context(), "", time.Time{}, 100)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		if e.Action != "usage.read" {
			continue
		}
		var d struct {
			Period    string `json:"period"`
			Format    string `json:"format"`
			Districts int    `json:"districts"`
			Status    int    `json:"status"`
			Served    bool   `json:"served"`
		}
		if err := json.Unmarshal([]byte(e.Detail), &d); err != nil {
			t.Fatal(err)
		}
		got = append(got, strings.Join([]string{strings.SplitN(e.Actor, ":", 2)[0], e.TenantID, d.Period, d.Format,
			strconv.Itoa(d.Districts), strconv.Itoa(d.Status), strconv.FormatBool(d.Served)}, " "))
	}
	want := []string{
		"token  2026-11 json 3 200 true", "token  2026-11 csv 3 200 true", "token  2026-11 csv 3 200 true", "token  2026-11 json 1 200 true",
		"token d1 2026-11  0 403 false", "apikey d1 2026-11  0 403 false", "token  2026-13  0 400 false", "token    0 400 false",
		"token  2026-11 xml 0 400 false", "token  2026-11  0 400 false", "token  2026-11 json 0 404 false",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("audit entries:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
