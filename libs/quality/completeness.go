package quality

import (
	"fmt"
	"math"
	"time"
)

// GapBound is the share by which ClickHouse and the sink may differ on a day before it is a finding (0.5%).
const GapBound = 0.005

// What completeness compares. The sink keeps current state, not every event: of attendance it keeps one
// mark per student and day (attendance_daily, the latest mark), of assessment results and submissions
// the latest per student and item, whatever its day, and of all events only a count per student
// (student_activity), not per day. So per closed day what is comparable is attendance: the students
// with a mark for the day in ClickHouse's events (distinct student_id of type attendance with that
// attendance_date) against attendance_daily's rows of the day. A student's erasure deletes in both.
const (
	ComparedType = "attendance"
	ComparedUnit = "student-days"
)

// DayGap is one closed day's attendance student-days in ClickHouse against the sink's rows.
type DayGap struct {
	Day        time.Time `json:"day"`
	ClickHouse int64     `json:"clickhouse"`
	Stored     int64     `json:"stored"`
	// Ratio is |ClickHouse-Stored| over the larger of the two (0 when both are 0).
	Ratio   float64 `json:"ratio"`
	Finding bool    `json:"finding"`
}

// LastClosedDay is the latest UTC day that ended at least settle before now: both consumers have had
// the time to store it.
func LastClosedDay(now time.Time, settle time.Duration) time.Time {
	return Day(now.Add(-settle)).AddDate(0, 0, -1)
}

// CompareDays returns a DayGap for each of days (midnights UTC), from the counts of each store by day
// (a missing day is 0). A day is a finding when the stores are more than GapBound apart and at least
// one apart.
func CompareDays(days []time.Time, clickhouse, stored map[time.Time]int64) []DayGap {
	out := make([]DayGap, 0, len(days))
	for _, d := range days {
		g := DayGap{Day: d, ClickHouse: clickhouse[d], Stored: stored[d]}
		diff := math.Abs(float64(g.ClickHouse - g.Stored))
		if m := max(g.ClickHouse, g.Stored); m > 0 {
			g.Ratio = diff / float64(m)
		}
		g.Finding = g.Ratio > GapBound && diff >= 1
		out = append(out, g)
	}
	return out
}

// Finding is one check's finding, in the shape of the roster checks' (libs/tenancy/rosters.Finding) so
// that a report lists both.
type Finding struct {
	Check     string  `json:"check"`
	Severity  string  `json:"severity"`
	Source    string  `json:"source,omitempty"`
	Entity    string  `json:"entity,omitempty"`  // the event type
	Subject   string  `json:"subject,omitempty"` // the day, YYYY-MM-DD
	Value     float64 `json:"value"`
	Threshold float64 `json:"threshold,omitempty"`
	Message   string  `json:"message"`
}

// Report is a district's event checks at a time.
type Report struct {
	TenantID string    `json:"tenant_id"`
	At       time.Time `json:"at"`
	// Day is the day the volume check checked; Volume every key seen in its weeks.
	Day    time.Time `json:"day"`
	Volume []Volume  `json:"volume"`
	// Completeness is the closed days compared, oldest first.
	Completeness []DayGap `json:"completeness"`
}

// Anomalies counts the volume anomalies.
func (r *Report) Anomalies() int {
	n := 0
	for _, v := range r.Volume {
		if v.Anomaly {
			n++
		}
	}
	return n
}

// LastGap is the completeness of the last closed day compared; ok false when none was.
func (r *Report) LastGap() (DayGap, bool) {
	if len(r.Completeness) == 0 {
		return DayGap{}, false
	}
	return r.Completeness[len(r.Completeness)-1], true
}

// Findings lists the volume anomalies and the days over the completeness bound. A volume drop or a
// completeness gap is an error, a spike a warning.
func (r *Report) Findings(cfg VolumeConfig) []Finding {
	cfg = cfg.WithDefaults()
	var out []Finding
	for _, v := range r.Volume {
		if !v.Anomaly {
			continue
		}
		sev, dir := SeverityError, "down"
		if v.Z > 0 {
			sev, dir = SeverityWarning, "up"
		}
		out = append(out, Finding{Check: CheckVolume, Severity: sev, Source: v.Source, Entity: v.Type, Subject: v.Day.Format(time.DateOnly),
			Value: v.Z, Threshold: cfg.Z, Message: fmt.Sprintf("%s events from %s on %s: %d, %.0f%% %s on the mean %.1f of %d previous %ss (z %.1f)",
				v.Type, v.Source, v.Day.Format(time.DateOnly), v.Count, 100*math.Abs(float64(v.Count)-v.Mean)/v.Mean, dir, v.Mean,
				v.Baseline, v.Day.Weekday(), v.Z)})
	}
	for _, g := range r.Completeness {
		if !g.Finding {
			continue
		}
		out = append(out, Finding{Check: CheckCompleteness, Severity: SeverityError, Entity: ComparedType, Subject: g.Day.Format(time.DateOnly),
			Value: g.Ratio, Threshold: GapBound, Message: fmt.Sprintf("%s %s on %s: %d in clickhouse, %d stored by the sink (%.2f%% apart)",
				ComparedType, ComparedUnit, g.Day.Format(time.DateOnly), g.ClickHouse, g.Stored, 100*g.Ratio)})
	}
	return out
}
