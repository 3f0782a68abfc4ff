package synth

import (
	"context"
	"fmt"
	"math"
	"sort"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/edtech-analytics/platform/libs/records"
)

// Levels of the metrics rollups: the three of metrics_daily, and LevelStudent for metrics_student_daily.
const (
	LevelDistrict = "district"
	LevelSchool   = "school"
	LevelClass    = "class"
	LevelStudent  = "student"
)

// QuantileLevels are the levels score_quantiles keeps.
var QuantileLevels = [5]float64{0.1, 0.25, 0.5, 0.75, 0.9}

// MetricKey keys one merged row of the metrics rollups. Entity is ” for a district, the school, class or
// student id otherwise; Parent is a class's school.
type MetricKey struct{ Tenant, Level, Entity, Parent, Day string }

// Metrics are the merged measures of one key. Quantiles are NaN without assessments; ActiveStudents is 0
// on the student level.
type Metrics struct {
	ActiveStudents, Events                      uint64
	Present, Tardy, Absent, Excused, OtherMarks uint64
	Assessments                                 uint64
	ScorePctSum                                 float64
	Quantiles                                   [5]float64
	Submissions, LateSubmissions                uint64
	ContentSeconds, Logins, SessionSeconds      uint64
}

// acc accumulates one key's metrics.
type acc struct {
	Metrics
	students map[string]bool
	scores   []float64
}

// wantMetrics computes the metrics rollups of events, independently of ClickHouse.
func wantMetrics(events []records.EnrichedEvent) map[MetricKey]Metrics {
	accs := map[MetricKey]*acc{}
	for _, ev := range events {
		if ev.Actor.Role != "student" {
			continue
		}
		day := Day(&ev)
		school, class := deref(ev.SchoolID), deref(ev.ClassID)
		keys := []MetricKey{
			{ev.TenantID, LevelDistrict, "", "", day},
			{ev.TenantID, LevelSchool, school, "", day},
			{ev.TenantID, LevelStudent, ev.Actor.InternalID, "", day},
		}
		if class != "" {
			keys = append(keys, MetricKey{ev.TenantID, LevelClass, class, school, day})
		}
		for _, k := range keys {
			a := accs[k]
			if a == nil {
				a = &acc{students: map[string]bool{}}
				accs[k] = a
			}
			a.add(&ev)
		}
	}
	out := make(map[MetricKey]Metrics, len(accs))
	for k, a := range accs {
		if k.Level != LevelStudent {
			a.ActiveStudents = uint64(len(a.students))
		}
		a.Quantiles = quantiles(a.scores)
		out[k] = a.Metrics
	}
	return out
}

func (m *acc) add(ev *records.EnrichedEvent) {
	m.students[ev.Actor.InternalID] = true
	m.Events++
	switch {
	case ev.Attendance != nil:
		switch ev.Attendance.Status {
		case records.AttendancePresent:
			m.Present++
		case records.AttendanceTardy:
			m.Tardy++
		case records.AttendanceAbsent:
			m.Absent++
		case records.AttendanceExcused:
			m.Excused++
		default:
			m.OtherMarks++
		}
	case ev.AssessmentResult != nil:
		if a := ev.AssessmentResult; a.MaxScore > 0 {
			pct := a.Score / a.MaxScore * 100
			m.Assessments++
			m.ScorePctSum += pct
			m.scores = append(m.scores, pct)
		}
	case ev.AssignmentSubmission != nil:
		m.Submissions++
		if ev.Derived.Late != nil && *ev.Derived.Late {
			m.LateSubmissions++
		}
	case ev.Session != nil:
		if ev.Session.Action == records.SessionLogin {
			m.Logins++
		}
		switch {
		case ev.Derived.SessionSeconds != nil:
			m.SessionSeconds += uint64(max(*ev.Derived.SessionSeconds, 0))
		case ev.Session.DurationSeconds != nil:
			m.SessionSeconds += uint64(max(*ev.Session.DurationSeconds, 0))
		}
	case ev.ContentView != nil:
		m.ContentSeconds += uint64(max(ev.ContentView.DurationSeconds, 0))
	}
}

// quantiles is ClickHouse's quantiles() below its sample size: sorted values, linear interpolation at
// level * (n - 1); NaN without values.
func quantiles(values []float64) [5]float64 {
	var out [5]float64
	if len(values) == 0 {
		for i := range out {
			out[i] = math.NaN()
		}
		return out
	}
	s := append([]float64(nil), values...)
	sort.Float64s(s)
	for i, level := range QuantileLevels {
		idx := level * float64(len(s)-1)
		lo := int(math.Floor(idx))
		hi := min(lo+1, len(s)-1)
		out[i] = s[lo] + (idx-float64(lo))*(s[hi]-s[lo])
	}
	return out
}

// metricsColumns reads every measure of a metrics rollup, merged.
const metricsColumns = `toUInt64(sumMerge(events)) AS events,
	toUInt64(sumMerge(present)) AS present, toUInt64(sumMerge(tardy)) AS tardy, toUInt64(sumMerge(absent)) AS absent,
	toUInt64(sumMerge(excused)) AS excused, toUInt64(sumMerge(other_marks)) AS other_marks,
	toUInt64(sumMerge(assessments)) AS assessments, sumMerge(score_pct_sum) AS score_pct_sum,
	quantilesMerge(0.1, 0.25, 0.5, 0.75, 0.9)(score_quantiles) AS score_quantiles,
	toUInt64(sumMerge(submissions)) AS submissions, toUInt64(sumMerge(late_submissions)) AS late_submissions,
	toUInt64(sumMerge(content_seconds)) AS content_seconds, toUInt64(sumMerge(logins)) AS logins,
	toUInt64(sumMerge(session_seconds)) AS session_seconds`

type metricsRow struct {
	Tenant          string    `ch:"tenant_id"`
	Level           string    `ch:"level"`
	Entity          string    `ch:"entity_id"`
	Parent          string    `ch:"parent_id"`
	Day             string    `ch:"day"`
	ActiveStudents  uint64    `ch:"active_students"`
	Events          uint64    `ch:"events"`
	Present         uint64    `ch:"present"`
	Tardy           uint64    `ch:"tardy"`
	Absent          uint64    `ch:"absent"`
	Excused         uint64    `ch:"excused"`
	OtherMarks      uint64    `ch:"other_marks"`
	Assessments     uint64    `ch:"assessments"`
	ScorePctSum     float64   `ch:"score_pct_sum"`
	Quantiles       []float64 `ch:"score_quantiles"`
	Submissions     uint64    `ch:"submissions"`
	LateSubmissions uint64    `ch:"late_submissions"`
	ContentSeconds  uint64    `ch:"content_seconds"`
	Logins          uint64    `ch:"logins"`
	SessionSeconds  uint64    `ch:"session_seconds"`
}

func (r metricsRow) metrics() Metrics {
	m := Metrics{
		ActiveStudents: r.ActiveStudents, Events: r.Events, Present: r.Present, Tardy: r.Tardy, Absent: r.Absent,
		Excused: r.Excused, OtherMarks: r.OtherMarks, Assessments: r.Assessments, ScorePctSum: r.ScorePctSum,
		Submissions: r.Submissions, LateSubmissions: r.LateSubmissions, ContentSeconds: r.ContentSeconds,
		Logins: r.Logins, SessionSeconds: r.SessionSeconds,
	}
	copy(m.Quantiles[:], r.Quantiles)
	return m
}

// gotMetrics reads both metrics rollups, merged per key.
func gotMetrics(ctx context.Context, conn driver.Conn) (map[MetricKey]Metrics, error) {
	out := map[MetricKey]Metrics{}
	var rows []metricsRow
	if err := conn.Select(ctx, &rows, `SELECT tenant_id, level, entity_id, parent_id, toString(day) AS day,
		toUInt64(uniqExactMerge(active_students)) AS active_students, `+metricsColumns+`
		FROM metrics_daily GROUP BY tenant_id, level, entity_id, parent_id, day`); err != nil {
		return nil, fmt.Errorf("reading metrics_daily: %w", err)
	}
	var students []metricsRow
	if err := conn.Select(ctx, &students, `SELECT tenant_id, 'student' AS level, toString(student_id) AS entity_id,
		'' AS parent_id, toString(day) AS day, toUInt64(0) AS active_students, `+metricsColumns+`
		FROM metrics_student_daily GROUP BY tenant_id, student_id, day`); err != nil {
		return nil, fmt.Errorf("reading metrics_student_daily: %w", err)
	}
	for _, r := range append(rows, students...) {
		out[MetricKey{r.Tenant, r.Level, r.Entity, r.Parent, r.Day}] = r.metrics()
	}
	return out, nil
}

// diffMetrics lists the keys whose measures differ (floats within a relative 1e-9: sums depend on order).
func diffMetrics(want, got map[MetricKey]Metrics) []string {
	var out []string
	for k, w := range want {
		g, ok := got[k]
		if !ok || !sameMetrics(w, g) {
			out = append(out, fmt.Sprintf("metrics %v = %+v, want %+v", k, g, w))
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok {
			out = append(out, fmt.Sprintf("metrics %v = %+v, want no row", k, g))
		}
	}
	return out
}

func sameMetrics(a, b Metrics) bool {
	fa, fb := a.ScorePctSum, b.ScorePctSum
	qa, qb := a.Quantiles, b.Quantiles
	a.ScorePctSum, b.ScorePctSum, a.Quantiles, b.Quantiles = 0, 0, [5]float64{}, [5]float64{}
	if a.ActiveStudents != b.ActiveStudents || a.Events != b.Events || a.Present != b.Present || a.Tardy != b.Tardy ||
		a.Absent != b.Absent || a.Excused != b.Excused || a.OtherMarks != b.OtherMarks || a.Assessments != b.Assessments ||
		a.Submissions != b.Submissions || a.LateSubmissions != b.LateSubmissions || a.ContentSeconds != b.ContentSeconds ||
		a.Logins != b.Logins || a.SessionSeconds != b.SessionSeconds || !near(fa, fb) {
		return false
	}
	for i := range qa {
		if !near(qa[i], qb[i]) {
			return false
		}
	}
	return true
}

func near(a, b float64) bool {
	if math.IsNaN(a) || math.IsNaN(b) {
		return math.IsNaN(a) && math.IsNaN(b)
	}
	return math.Abs(a-b) <= 1e-9*max(1, math.Abs(a), math.Abs(b))
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
