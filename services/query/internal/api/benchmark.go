package api

import (
	"context"
	"math"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/edtech-analytics/platform/libs/tenancy/credentials"
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

// Benchmark is the answer of GET /v1/benchmarks/{metric}: how the metric is spread across the districts
// that contribute to it in the range, as bands of districts ranked by their value, and the caller's own
// value and band. No district is named, and no number in it is any single district's value: each band's
// mean is over at least BandDistricts districts, so a caller who knows its own value still has two or more
// unknowns behind every mean.
type Benchmark struct {
	Metric        string   `json:"metric"`
	From          string   `json:"from"`
	To            string   `json:"to"`
	Districts     int      `json:"districts"`
	MinDistricts  int      `json:"min_districts"`
	MinStudents   int      `json:"min_students"`
	BandDistricts int      `json:"band_districts"`
	Bands         []Band   `json:"bands"`
	YourDistrict  *float64 `json:"your_district"`
	YourBand      *int     `json:"your_band"` // index into Bands; absent when the caller does not contribute
}

// Band is a run of districts ranked by the metric, from the FromPct to the ToPct percent of them (lowest
// first), and their mean.
type Band struct {
	FromPct   int     `json:"from_pct"`
	ToPct     int     `json:"to_pct"`
	Districts int     `json:"districts"`
	Mean      float64 `json:"mean"`
}

// maxBands caps the bands of a benchmark (deciles when there are districts enough).
const maxBands = 10

// bands splits sorted values into at most maxBands runs of at least k each (as equal as they can be) and
// returns their means, with the band the value at index own falls in (-1: none).
func bands(sorted []float64, k, own int) ([]Band, int) {
	n := len(sorted)
	count := min(maxBands, n/k)
	out := make([]Band, 0, count)
	yours, start := -1, 0
	for i := range count {
		end := (i + 1) * n / count
		var sum float64
		for _, v := range sorted[start:end] {
			sum += v
		}
		if own >= start && own < end {
			yours = i
		}
		out = append(out, Band{FromPct: 100 * start / n, ToPct: 100 * end / n, Districts: end - start, Mean: significant(sum / float64(end-start))})
		start = end
	}
	return out, yours
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
// contribute (422 otherwise). A district contributes when it is not deleted, has data for the metric in
// the range, and had at least MinStudents active students in it.
func (a *API) benchmark(w http.ResponseWriter, r *http.Request) {
	req, ok := a.begin(w, r)
	if !ok {
		return
	}
	if req.p.Role != credentials.RoleDistrictAdmin {
		forbidden(w, req.p, "benchmarks")
		return
	}
	name := r.PathValue("metric")
	m, known := benchmarkMetrics[name]
	if !known {
		problem(w, http.StatusBadRequest, "invalid-parameter", "metric: want one of "+strings.Join(BenchmarkMetrics(), ", "))
		return
	}
	live, err := a.districts.Tenants(r.Context())
	if err != nil {
		a.unavailable(w, r, req.p, "listing districts", err)
		return
	}
	isLive := make(map[string]bool, len(live))
	for _, t := range live {
		isLive[t.ID] = true
	}
	from, to := req.from.Format(time.DateOnly), req.to.Format(time.DateOnly)
	rows, err := a.summaries.benchmark(r.Context(), benchmarkKey{metric: name, from: from, to: to}, req.to, func() ([]districtValue, error) {
		return a.benchmarkRows(r.Context(), m, from, to)
	})
	if err != nil {
		a.unavailable(w, r, req.p, "querying benchmarks", err)
		return
	}
	var (
		values []float64
		own    *float64
	)
	for _, row := range rows {
		if row.den == 0 || math.IsNaN(row.num) || !isLive[row.tenant] || row.students < uint64(a.cfg.MinStudents) {
			continue
		}
		values = append(values, row.num/row.den)
		if row.tenant == req.p.TenantID {
			own = ratio(row.num, row.den)
		}
	}
	served := len(values) >= a.cfg.MinDistricts
	out := Benchmark{Metric: name, From: req.from.Format(time.DateOnly), To: req.to.Format(time.DateOnly),
		Districts: len(values), MinDistricts: a.cfg.MinDistricts, MinStudents: a.cfg.MinStudents, BandDistricts: a.cfg.BandDistricts}
	if _, err := a.audit.Append(r.Context(), req.p.Subject, req.p.TenantID, "benchmark.read",
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
	ownIndex := -1
	slices.Sort(values)
	if own != nil {
		ownIndex = slices.Index(values, *own)
	}
	var yours int
	out.Bands, yours = bands(values, a.cfg.BandDistricts, ownIndex)
	out.YourDistrict = own
	if yours >= 0 {
		out.YourBand = &yours
	}
	writeJSON(w, out)
}

// benchmarkRows reads every district's row of metric m over [from, to] from the district level of
// metrics_daily. Merging the active students of every district is most of its cost (1,500 districts over
// 30 days: about 0.25 s), which is why its rows are cached for closed ranges.
func (a *API) benchmarkRows(ctx context.Context, m benchmarkMetric, from, to string) ([]districtValue, error) {
	rows, err := a.ch.Query(ctx, "SELECT tenant_id, "+m.num+", "+m.den+`, toUInt64(uniqExactMerge(active_students))
		FROM metrics_daily WHERE level = 'district' AND day >= toDate(?) AND day <= toDate(?) GROUP BY tenant_id`, from, to)
	if err != nil {
		return nil, err
	}
	defer func() { _ = rows.Close() }() // read-only; after a full iteration Close only repeats rows.Err
	var out []districtValue
	for rows.Next() {
		var v districtValue
		if err := rows.Scan(&v.tenant, &v.num, &v.den, &v.students); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// significant rounds v to six significant digits: enough for any dashboard, and it drops the last bits of
// a floating-point sum, which depend on the order of the values summed and so on more than the mean.
func significant(v float64) float64 {
	r, err := strconv.ParseFloat(strconv.FormatFloat(v, 'g', 6, 64), 64)
	if err != nil {
		return v
	}
	return r
}
