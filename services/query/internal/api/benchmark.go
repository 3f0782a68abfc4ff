package api

import (
	"math"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/edtech-analytics/platform/libs/tenancy"
)

// benchmarkMetric is a per-district ratio over the date range; a district with a zero denominator does
// not contribute.
type benchmarkMetric struct{ num, den string }

// benchmarkMetrics are the metrics a benchmark can compare, read from the district level of metrics_daily.
var benchmarkMetrics = map[string]benchmarkMetric{
	"attendance_rate": {"toFloat64(sumMerge(present) + sumMerge(tardy))",
		"toFloat64(sumMerge(present) + sumMerge(tardy) + sumMerge(absent) + sumMerge(excused) + sumMerge(other_marks))"},
	"mean_score_pct":              {"sumMerge(score_pct_sum)", "toFloat64(sumMerge(assessments))"},
	"late_submission_rate":        {"toFloat64(sumMerge(late_submissions))", "toFloat64(sumMerge(submissions))"},
	"content_minutes_per_student": {"sumMerge(content_seconds) / 60", "toFloat64(uniqExactMerge(active_students))"},
	"logins_per_student":          {"toFloat64(sumMerge(logins))", "toFloat64(uniqExactMerge(active_students))"},
}

// BenchmarkMetrics lists the metrics GET /v1/benchmarks/{metric} knows, sorted.
func BenchmarkMetrics() []string {
	out := make([]string, 0, len(benchmarkMetrics))
	for m := range benchmarkMetrics {
		out = append(out, m)
	}
	sort.Strings(out)
	return out
}

// Benchmark is the answer of GET /v1/benchmarks/{metric}: percentiles of the metric across the districts
// that have data for it in the range, and the caller's own value. No district is named.
type Benchmark struct {
	Metric       string   `json:"metric"`
	From         string   `json:"from"`
	To           string   `json:"to"`
	Districts    int      `json:"districts"`
	MinDistricts int      `json:"min_districts"`
	P10          *float64 `json:"p10"`
	P25          *float64 `json:"p25"`
	P50          *float64 `json:"p50"`
	P75          *float64 `json:"p75"`
	P90          *float64 `json:"p90"`
	YourDistrict *float64 `json:"your_district"`
}

// benchmarkAudit is what the audit log records of a benchmark request.
type benchmarkAudit struct {
	Metric    string `json:"metric"`
	From      string `json:"from"`
	To        string `json:"to"`
	Districts int    `json:"districts"`
	Served    bool   `json:"served"`
}

// GET /v1/benchmarks/{metric}: district admins only. The one read across districts: it is written to
// the audit log before anything is answered, and served only when at least MinDistricts districts
// contribute (422 otherwise).
func (a *API) benchmark(w http.ResponseWriter, r *http.Request) {
	req, ok := a.begin(w, r)
	if !ok {
		return
	}
	if req.p.Role != tenancy.RoleDistrictAdmin {
		forbidden(w, req.p, "benchmarks")
		return
	}
	name := r.PathValue("metric")
	m, known := benchmarkMetrics[name]
	if !known {
		problem(w, http.StatusBadRequest, "invalid-parameter", "metric: want one of "+strings.Join(BenchmarkMetrics(), ", "))
		return
	}
	rows, err := a.ch.Query(r.Context(), "SELECT tenant_id, "+m.num+", "+m.den+` FROM metrics_daily
		WHERE level = 'district' AND day >= toDate(?) AND day <= toDate(?) GROUP BY tenant_id`,
		req.from.Format(time.DateOnly), req.to.Format(time.DateOnly))
	if err != nil {
		a.unavailable(w, r, req.p, "querying benchmarks", err)
		return
	}
	defer func() { _ = rows.Close() }() // read-only; after a full iteration Close only repeats rows.Err
	var (
		values []float64
		own    *float64
	)
	for rows.Next() {
		var (
			tenant string
			n, d   float64
		)
		if err := rows.Scan(&tenant, &n, &d); err != nil {
			a.unavailable(w, r, req.p, "reading benchmarks", err)
			return
		}
		if d == 0 || math.IsNaN(n) {
			continue
		}
		values = append(values, n/d)
		if tenant == req.p.TenantID {
			own = ratio(n, d)
		}
	}
	if err := rows.Err(); err != nil {
		a.unavailable(w, r, req.p, "reading benchmarks", err)
		return
	}
	served := len(values) >= a.cfg.MinDistricts
	out := Benchmark{Metric: name, From: req.from.Format(time.DateOnly), To: req.to.Format(time.DateOnly),
		Districts: len(values), MinDistricts: a.cfg.MinDistricts}
	if _, err := a.audit.AppendAudit(r.Context(), req.p.Subject, req.p.TenantID, "benchmark.read",
		benchmarkAudit{Metric: name, From: out.From, To: out.To, Districts: len(values), Served: served}); err != nil {
		a.log.ErrorContext(r.Context(), "writing the audit log", "tenant_id", req.p.TenantID, "err", err)
		problem(w, http.StatusServiceUnavailable, "audit-unavailable", "benchmarks are served only when audited; retry")
		return
	}
	if !served {
		problem(w, http.StatusUnprocessableEntity, "too-few-districts",
			"fewer districts than the minimum have data for this metric in this range; widen the range")
		return
	}
	slices.Sort(values)
	q := func(level float64) *float64 {
		idx := level * float64(len(values)-1)
		lo := int(math.Floor(idx))
		hi := min(lo+1, len(values)-1)
		return num(values[lo] + (idx-float64(lo))*(values[hi]-values[lo]))
	}
	out.P10, out.P25, out.P50, out.P75, out.P90, out.YourDistrict = q(0.1), q(0.25), q(0.5), q(0.75), q(0.9), own
	writeJSON(w, out)
}
