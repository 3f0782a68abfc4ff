// Package quality checks a district's event data in the stores: volume anomalies (a day's count of a
// source's event type against the same weekday of the previous weeks, in ClickHouse's events table) and
// completeness (what ClickHouse holds of a closed day against what the sink stored in the district's
// PostgreSQL schema). The statistics are pure functions; Checker reads the stores. Both 'ctl quality
// report' and the query service's gauges use it.
package quality

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"time"
)

// Checks, the check field of a finding.
const (
	CheckVolume       = "volume"       // a source's event type counted far from its same-weekday baseline
	CheckCompleteness = "completeness" // the sink stored another number of rows than ClickHouse holds
)

// Severities of findings (the same words as the roster checks').
const (
	SeverityWarning = "warning"
	SeverityError   = "error"
)

// VolumeConfig bounds the volume check. Zero fields take the defaults.
type VolumeConfig struct {
	// Weeks is how many previous same weekdays form the baseline (default 8).
	Weeks int
	// MinBaseline is the least number of baseline days a key needs to be checked (default 3): a source
	// or event type newer than that has no baseline.
	MinBaseline int
	// Z is the |z-score| from which a count is an anomaly (default 3).
	Z float64
	// Floor is the least absolute difference from the baseline mean that is an anomaly (default 50
	// events), so that small districts do not alert on noise.
	Floor float64
}

// WithDefaults returns c with its zero fields set to the defaults.
func (c VolumeConfig) WithDefaults() VolumeConfig {
	if c.Weeks == 0 {
		c.Weeks = 8
	}
	if c.MinBaseline == 0 {
		c.MinBaseline = 3
	}
	if c.Z == 0 {
		c.Z = 3
	}
	if c.Floor == 0 {
		c.Floor = 50
	}
	return c
}

// Validate reports settings that cannot work.
func (c VolumeConfig) Validate() error {
	c = c.WithDefaults()
	switch {
	case c.Weeks < 1:
		return fmt.Errorf("volume baseline weeks %d: at least 1", c.Weeks)
	case c.MinBaseline < 2 || c.MinBaseline > c.Weeks:
		return fmt.Errorf("volume minimum baseline %d: between 2 and the baseline weeks (%d)", c.MinBaseline, c.Weeks)
	case c.Z <= 0 || c.Floor < 0:
		return fmt.Errorf("volume thresholds z=%v floor=%v: z over 0, floor not negative", c.Z, c.Floor)
	}
	return nil
}

// Key is what volume is counted by within a district.
type Key struct {
	Source string `json:"source_id"`
	Type   string `json:"type"`
}

// DayCount is a key's number of events on a UTC day (midnight UTC).
type DayCount struct {
	Key
	Day   time.Time
	Count int64
}

// Volume is one key's count on the checked day against its baseline.
type Volume struct {
	Key
	Day   time.Time `json:"day"`
	Count int64     `json:"count"`
	// Baseline is how many of the previous same weekdays count (those from the key's first day with
	// events on); Mean and SD (sample standard deviation) are over them.
	Baseline int     `json:"baseline_days"`
	Mean     float64 `json:"mean"`
	SD       float64 `json:"sd"`
	// Z is (Count-Mean) over the larger of SD and a floor (a tenth of the mean, at least 1), so that a
	// perfectly steady baseline does not make every small change infinite. 0 without a baseline.
	Z       float64 `json:"z"`
	Anomaly bool    `json:"anomaly"`
}

// Day returns t's UTC day (midnight UTC).
func Day(t time.Time) time.Time {
	y, m, d := t.UTC().Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}

// BaselineFrom is the first day the volume check of day reads: the same weekday weeks earlier.
func BaselineFrom(day time.Time, weeks int) time.Time { return Day(day).AddDate(0, 0, -7*weeks) }

// AnalyzeVolume compares each key's count on day with the same weekday of the cfg.Weeks previous weeks,
// from counts of any days (days that are not those weekdays, or outside the weeks, are ignored; a
// missing day is a day without events). A baseline day counts, as 0 when it has no events, only from the
// key's first day with events among the baseline days on: before it the source or type did not exist (or
// not within the weeks read), which is no evidence of a drop. A key with fewer than cfg.MinBaseline such
// days is returned without a z-score and is never an anomaly. A key with events on the baseline days but
// none on day is returned with Count 0: a source that went silent. The result is sorted by key.
func AnalyzeVolume(counts []DayCount, day time.Time, cfg VolumeConfig) []Volume {
	cfg = cfg.WithDefaults()
	day = Day(day)
	// series[key][0] is day, series[key][w] the same weekday w weeks before.
	series := map[Key][]int64{}
	seen := map[Key]bool{}
	for _, c := range counts {
		d := Day(c.Day)
		diff := int(day.Sub(d) / (24 * time.Hour))
		if d.After(day) || diff%7 != 0 || diff/7 > cfg.Weeks {
			continue
		}
		s := series[c.Key]
		if s == nil {
			s = make([]int64, cfg.Weeks+1)
			series[c.Key] = s
		}
		s[diff/7] += c.Count
		if c.Count > 0 {
			seen[c.Key] = true
		}
	}
	out := make([]Volume, 0, len(series))
	for k, s := range series {
		if !seen[k] {
			continue
		}
		v := Volume{Key: k, Day: day, Count: s[0]}
		first := 0 // the oldest baseline week with events
		for w := cfg.Weeks; w >= 1; w-- {
			if s[w] > 0 {
				first = w
				break
			}
		}
		base := s[1 : first+1]
		v.Baseline = len(base)
		if v.Baseline >= cfg.MinBaseline {
			v.Mean, v.SD = meanSD(base)
			v.Z = (float64(v.Count) - v.Mean) / max(v.SD, 0.1*v.Mean, 1)
			v.Anomaly = math.Abs(v.Z) >= cfg.Z && math.Abs(float64(v.Count)-v.Mean) >= cfg.Floor
		}
		out = append(out, v)
	}
	slices.SortFunc(out, func(a, b Volume) int {
		return cmp.Or(cmp.Compare(a.Source, b.Source), cmp.Compare(a.Type, b.Type))
	})
	return out
}

// meanSD returns the mean and the sample standard deviation of xs (0 for a single value).
func meanSD(xs []int64) (mean, sd float64) {
	for _, x := range xs {
		mean += float64(x)
	}
	mean /= float64(len(xs))
	if len(xs) < 2 {
		return mean, 0
	}
	var ss float64
	for _, x := range xs {
		d := float64(x) - mean
		ss += d * d
	}
	return mean, math.Sqrt(ss / float64(len(xs)-1))
}
