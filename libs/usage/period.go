// Package usage measures what each district used in a period, for billing (ADR 0023): events ingested by
// type, active students, roster size, storage in PostgreSQL and ClickHouse, and finished exports and
// erasures. Every count is exact, read from the stores that hold the data (ClickHouse's events table and
// rollups, the district's schema, the control schema), never sampled or estimated; the one number that is
// not a count, a district's ClickHouse bytes, is an apportioned share and is named so.
//
// 'ctl usage report' prints a report, the query service serves it to the vendor's billing system
// (GET /v1/usage) and keeps the current month's figures as gauges.
package usage

import (
	"errors"
	"fmt"
	"time"
)

// ErrPeriod: a month or period that cannot be reported. The message names what is wrong.
var ErrPeriod = errors.New("invalid period")

// MonthLayout is how a month is written: YYYY-MM.
const MonthLayout = "2006-01"

// Period is the span [Start, End) a report covers. Events are counted by when they were received, jobs
// by when they finished, both as instants in the span; active students by the rollups' days, from
// Start's date to End's date (excluded), which are UTC days, so Start and End must be UTC midnights.
// A month in a district's own time zone needs rollups kept by its local days: the boundary is a value
// of the computation, not a constant in its queries, so such a period is one constructor away.
type Period struct {
	Start, End time.Time
	// Label names the period in reports ("2026-11" for a month).
	Label string
}

// Month returns the UTC calendar month of a YYYY-MM string.
func Month(s string) (Period, error) {
	t, err := time.Parse(MonthLayout, s)
	if err != nil || t.Format(MonthLayout) != s {
		return Period{}, fmt.Errorf("%w: %q is not a month written YYYY-MM, such as 2026-11", ErrPeriod, s)
	}
	return MonthOf(t), nil
}

// MonthOf returns the UTC calendar month that holds t.
func MonthOf(t time.Time) Period {
	t = t.UTC()
	start := time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
	return Period{Start: start, End: start.AddDate(0, 1, 0), Label: start.Format(MonthLayout)}
}

// Validate reports a period that the rollups cannot answer: empty, or not bounded by UTC midnights.
func (p Period) Validate() error {
	switch {
	case !p.End.After(p.Start):
		return fmt.Errorf("%w: it ends (%s) before it starts (%s)", ErrPeriod, p.End.Format(time.RFC3339), p.Start.Format(time.RFC3339))
	case !utcMidnight(p.Start) || !utcMidnight(p.End):
		return fmt.Errorf("%w: %s to %s: the rollups keep UTC days, so a period starts and ends at a UTC midnight",
			ErrPeriod, p.Start.Format(time.RFC3339), p.End.Format(time.RFC3339))
	}
	return nil
}

func utcMidnight(t time.Time) bool {
	u := t.UTC()
	return u.Equal(time.Date(u.Year(), u.Month(), u.Day(), 0, 0, 0, 0, time.UTC))
}
