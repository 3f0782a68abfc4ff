package api

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"time"
)

// Summary is the answer of the summary endpoints: totals over the range and one entry per day with data.
type Summary struct {
	TenantID string    `json:"tenant_id"`
	Level    string    `json:"level"` // district, school, class or student
	ID       string    `json:"id,omitempty"`
	From     string    `json:"from"`
	To       string    `json:"to"`
	Totals   Metrics   `json:"totals"`
	Days     []DayData `json:"days"`
}

// DayData is one day of a summary.
type DayData struct {
	Day string `json:"day"`
	Metrics
}

// Metrics are what students did. ActiveStudents is absent on a student's summary; in totals it counts
// the students active at least once in the range.
type Metrics struct {
	ActiveStudents *uint64     `json:"active_students,omitempty"`
	Events         uint64      `json:"events"`
	Attendance     Attendance  `json:"attendance"`
	Assessments    Assessments `json:"assessments"`
	Submissions    Submissions `json:"submissions"`
	ContentSeconds uint64      `json:"content_seconds"`
	Logins         uint64      `json:"logins"`
	SessionSeconds uint64      `json:"session_seconds"`
}

// Attendance counts marks by status; Rate is (present + tardy) / marks, null without marks.
type Attendance struct {
	Marks   uint64   `json:"marks"`
	Present uint64   `json:"present"`
	Tardy   uint64   `json:"tardy"`
	Absent  uint64   `json:"absent"`
	Excused uint64   `json:"excused"`
	Other   uint64   `json:"other"`
	Rate    *float64 `json:"rate"`
}

// Assessments describes the distribution of score percentages (score / max_score * 100).
type Assessments struct {
	Count   uint64   `json:"count"`
	MeanPct *float64 `json:"mean_pct"`
	P10     *float64 `json:"p10"`
	P25     *float64 `json:"p25"`
	P50     *float64 `json:"p50"`
	P75     *float64 `json:"p75"`
	P90     *float64 `json:"p90"`
}

// Submissions counts assignment submissions and the late ones; LateRate is null without submissions.
type Submissions struct {
	Count    uint64   `json:"count"`
	Late     uint64   `json:"late"`
	LateRate *float64 `json:"late_rate"`
}

// measures reads every measure of a metrics rollup, merged, in the order of raw's fields.
const measures = `toUInt64(sumMerge(events)), toUInt64(sumMerge(present)), toUInt64(sumMerge(tardy)),
	toUInt64(sumMerge(absent)), toUInt64(sumMerge(excused)), toUInt64(sumMerge(other_marks)),
	toUInt64(sumMerge(assessments)), sumMerge(score_pct_sum), quantilesMerge(0.1, 0.25, 0.5, 0.75, 0.9)(score_quantiles),
	toUInt64(sumMerge(submissions)), toUInt64(sumMerge(late_submissions)), toUInt64(sumMerge(content_seconds)),
	toUInt64(sumMerge(logins)), toUInt64(sumMerge(session_seconds))`

// raw is one row of measures as ClickHouse returns them.
type raw struct {
	day                                         string
	active                                      uint64
	events, present, tardy, absent, excused     uint64
	other, assessments                          uint64
	scoreSum                                    float64
	quantiles                                   []float64
	submissions, late, content, logins, session uint64
}

func (r *raw) dest(withDay, withActive bool) []any {
	var d []any
	if withDay {
		d = append(d, &r.day)
	}
	if withActive {
		d = append(d, &r.active)
	}
	return append(d, &r.events, &r.present, &r.tardy, &r.absent, &r.excused, &r.other, &r.assessments, &r.scoreSum,
		&r.quantiles, &r.submissions, &r.late, &r.content, &r.logins, &r.session)
}

func (r raw) metrics(withActive bool) Metrics {
	m := Metrics{Events: r.events, ContentSeconds: r.content, Logins: r.logins, SessionSeconds: r.session}
	if withActive {
		active := r.active
		m.ActiveStudents = &active
	}
	marks := r.present + r.tardy + r.absent + r.excused + r.other
	m.Attendance = Attendance{Marks: marks, Present: r.present, Tardy: r.tardy, Absent: r.absent, Excused: r.excused,
		Other: r.other, Rate: ratio(float64(r.present+r.tardy), float64(marks))}
	m.Assessments = Assessments{Count: r.assessments, MeanPct: ratio(r.scoreSum, float64(r.assessments))}
	if r.assessments > 0 && len(r.quantiles) == 5 {
		q := r.quantiles
		m.Assessments.P10, m.Assessments.P25, m.Assessments.P50, m.Assessments.P75, m.Assessments.P90 =
			num(q[0]), num(q[1]), num(q[2]), num(q[3]), num(q[4])
	}
	m.Submissions = Submissions{Count: r.submissions, Late: r.late, LateRate: ratio(float64(r.late), float64(r.submissions))}
	return m
}

// ratio is a / b, or nil when b is 0.
func ratio(a, b float64) *float64 {
	if b == 0 {
		return nil
	}
	return num(a / b)
}

// num is v, or nil when v is not a number JSON can carry.
func num(v float64) *float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return nil
	}
	return &v
}

// summary reads one entity's days and totals in one query (GROUP BY day WITH TOTALS).
func (a *API) summary(ctx context.Context, req request, q summaryQuery) (Metrics, []DayData, error) {
	active := ""
	if q.active {
		active = "toUInt64(uniqExactMerge(active_students)), "
	}
	query := "SELECT toString(day), " + active + measures + " FROM " + q.table +
		" WHERE tenant_id = ? AND " + q.where + " AND day >= toDate(?) AND day <= toDate(?) GROUP BY day WITH TOTALS ORDER BY day"
	args := append(append([]any{req.p.TenantID}, q.args...), req.from.Format(time.DateOnly), req.to.Format(time.DateOnly))
	rows, err := a.ch.Query(ctx, query, args...)
	if err != nil {
		return Metrics{}, nil, err
	}
	defer func() { _ = rows.Close() }() // read-only; after a full iteration Close only repeats rows.Err
	days := []DayData{}
	for rows.Next() {
		var r raw
		if err := rows.Scan(r.dest(true, q.active)...); err != nil {
			return Metrics{}, nil, fmt.Errorf("reading %s: %w", q.table, err)
		}
		days = append(days, DayData{Day: r.day, Metrics: r.metrics(q.active)})
	}
	if err := rows.Err(); err != nil {
		return Metrics{}, nil, fmt.Errorf("reading %s: %w", q.table, err)
	}
	var t raw
	if len(days) > 0 {
		if err := rows.Totals(t.dest(true, q.active)...); err != nil {
			return Metrics{}, nil, fmt.Errorf("reading the totals of %s: %w", q.table, err)
		}
	}
	return t.metrics(q.active), days, nil
}

// Day is one school day of the school_daily rollup.
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

// GET /v1/schools/{school_id}/daily: the first, narrower school rollup (every actor's events), with the
// school scope of the summary.
func (a *API) schoolDaily(w http.ResponseWriter, r *http.Request) {
	req, school, ok := a.beginSchool(w, r)
	if !ok {
		return
	}
	rows, err := a.ch.Query(r.Context(), `
		SELECT toString(day), toUInt64(uniqExactMerge(active_students)), toUInt64(countMerge(events)), toUInt64(sumMerge(content_seconds))
		FROM school_daily
		WHERE tenant_id = ? AND school_id = ? AND day >= toDate(?) AND day <= toDate(?)
		GROUP BY day ORDER BY day`, req.p.TenantID, school, req.from.Format(time.DateOnly), req.to.Format(time.DateOnly))
	if err != nil {
		a.unavailable(w, r, req.p, "querying school_daily", err)
		return
	}
	defer func() { _ = rows.Close() }() // read-only; after a full iteration Close only repeats rows.Err
	out := SchoolDaily{TenantID: req.p.TenantID, SchoolID: school, From: req.from.Format(time.DateOnly), To: req.to.Format(time.DateOnly), Days: []Day{}}
	for rows.Next() {
		var d Day
		if err := rows.Scan(&d.Day, &d.ActiveStudents, &d.Events, &d.ContentSeconds); err != nil {
			a.unavailable(w, r, req.p, "reading school_daily", err)
			return
		}
		out.Days = append(out.Days, d)
	}
	if err := rows.Err(); err != nil {
		a.unavailable(w, r, req.p, "reading school_daily", err)
		return
	}
	writeJSON(w, out)
}
