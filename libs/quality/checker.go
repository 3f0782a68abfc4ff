package quality

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Config is what the checks compare against. Zero fields take the defaults.
type Config struct {
	Volume VolumeConfig
	// Settle is how long after its end a day is closed: checked for volume and compared for
	// completeness (default 1h).
	Settle time.Duration
	// Days is how many closed days completeness compares, the last first (default 7).
	Days int
}

// WithDefaults returns c with its zero fields set to the defaults.
func (c Config) WithDefaults() Config {
	c.Volume = c.Volume.WithDefaults()
	if c.Settle == 0 {
		c.Settle = time.Hour
	}
	if c.Days == 0 {
		c.Days = 7
	}
	return c
}

// Validate reports settings that cannot work.
func (c Config) Validate() error {
	c = c.WithDefaults()
	var errs []error
	errs = append(errs, c.Volume.Validate())
	if c.Settle < 0 || c.Days < 1 {
		errs = append(errs, fmt.Errorf("completeness settle %v, days %d: settle not negative, at least one day", c.Settle, c.Days))
	}
	return errors.Join(errs...)
}

// DistrictPools finds the PostgreSQL pool of a district's schema (libs/tenancy/fleet.DistrictPools).
type DistrictPools interface {
	Pool(ctx context.Context, tenantID string) (*pgxpool.Pool, error)
}

// Checker reads a district's events in ClickHouse and the sink's state in its PostgreSQL schema.
type Checker struct {
	ch     driver.Conn
	pools  DistrictPools
	schema func(tenantID string) (string, error)
	cfg    Config
}

// NewChecker returns a Checker over the database of ClickHouse's events table (ch), the districts'
// PostgreSQL pools and schema names (libs/tenancy.SchemaName).
func NewChecker(ch driver.Conn, pools DistrictPools, schema func(tenantID string) (string, error), cfg Config) *Checker {
	return &Checker{ch: ch, pools: pools, schema: schema, cfg: cfg.WithDefaults()}
}

// Config is the checker's configuration, with defaults set.
func (c *Checker) Config() Config { return c.cfg }

// Check runs a district's checks as of now: volume on the last closed UTC day (LastClosedDay: the day
// before now's once Settle has passed since midnight, so that late events are in), completeness on the
// Days closed days up to it.
func (c *Checker) Check(ctx context.Context, tenantID string, now time.Time) (*Report, error) {
	last := LastClosedDay(now, c.cfg.Settle)
	rep := &Report{TenantID: tenantID, At: now, Day: last}
	counts, err := DailyCounts(ctx, c.ch, tenantID, BaselineFrom(rep.Day, c.cfg.Volume.Weeks), rep.Day)
	if err != nil {
		return nil, err
	}
	rep.Volume = AnalyzeVolume(counts, rep.Day, c.cfg.Volume)

	days := make([]time.Time, c.cfg.Days)
	for i := range days {
		days[i] = last.AddDate(0, 0, i-c.cfg.Days+1)
	}
	inCH, err := AttendanceDays(ctx, c.ch, tenantID, days[0], last)
	if err != nil {
		return nil, err
	}
	pool, err := c.pools.Pool(ctx, tenantID)
	if err != nil {
		return nil, fmt.Errorf("district %s's postgresql: %w", tenantID, err)
	}
	schema, err := c.schema(tenantID)
	if err != nil {
		return nil, err
	}
	stored, err := StoredAttendanceDays(ctx, pool, schema, days[0], last)
	if err != nil {
		return nil, err
	}
	rep.Completeness = CompareDays(days, inCH, stored)
	return rep, nil
}

// DailyCounts reads a district's events per source, type and UTC day of occurred_at, from the day from
// to the day to (both included), on the weekday of to only: the days the volume check of to reads. The
// scan reads the district's rows of the range (the sort key starts with tenant_id and type).
func DailyCounts(ctx context.Context, ch driver.Conn, tenantID string, from, to time.Time) ([]DayCount, error) {
	rows, err := ch.Query(ctx, `SELECT toString(source_id), toString(type), toString(toDate(occurred_at)) AS day, count()
		FROM events
		WHERE tenant_id = ? AND occurred_at >= toDateTime(?, 'UTC') AND occurred_at < toDateTime(?, 'UTC')
			AND toDayOfWeek(occurred_at) = toDayOfWeek(toDate(?))
		GROUP BY source_id, type, day`,
		tenantID, Day(from).Format(time.DateTime), Day(to).AddDate(0, 0, 1).Format(time.DateTime), Day(to).Format(time.DateOnly))
	if err != nil {
		return nil, fmt.Errorf("counting events by day: %w", err)
	}
	defer func() { _ = rows.Close() }()
	var out []DayCount
	for rows.Next() {
		var (
			c   DayCount
			day string
			n   uint64
		)
		if err := rows.Scan(&c.Source, &c.Type, &day, &n); err != nil {
			return nil, fmt.Errorf("reading event counts: %w", err)
		}
		if c.Day, err = time.Parse(time.DateOnly, day); err != nil {
			return nil, fmt.Errorf("reading event counts: day %q: %w", day, err)
		}
		c.Count = int64(n)
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading event counts: %w", err)
	}
	return out, nil
}

// MarkedAhead is how long before its day an attendance mark may be recorded and still be compared: the
// scan of AttendanceDays starts that long before the first day, so that it reads the district's recent
// attendance events only (the sort key is tenant_id, type, occurred_at), not all of them.
const MarkedAhead = 31 * 24 * time.Hour

// AttendanceDays reads, per attendance_date from from to to (both included), how many students have an
// attendance mark of a district in ClickHouse's events (marks recorded up to MarkedAhead before their
// day, and any time after).
func AttendanceDays(ctx context.Context, ch driver.Conn, tenantID string, from, to time.Time) (map[time.Time]int64, error) {
	rows, err := ch.Query(ctx, `SELECT toString(attendance_date) AS day, uniqExact(student_id)
		FROM events
		WHERE tenant_id = ? AND type = ? AND occurred_at >= toDateTime(?, 'UTC')
			AND attendance_date >= toDate(?) AND attendance_date <= toDate(?)
		GROUP BY attendance_date`,
		tenantID, ComparedType, Day(from).Add(-MarkedAhead).Format(time.DateTime), Day(from).Format(time.DateOnly), Day(to).Format(time.DateOnly))
	if err != nil {
		return nil, fmt.Errorf("counting attendance student-days in clickhouse: %w", err)
	}
	defer func() { _ = rows.Close() }()
	out := map[time.Time]int64{}
	for rows.Next() {
		var (
			day string
			n   uint64
		)
		if err := rows.Scan(&day, &n); err != nil {
			return nil, fmt.Errorf("reading attendance student-days: %w", err)
		}
		d, err := time.Parse(time.DateOnly, day)
		if err != nil {
			return nil, fmt.Errorf("reading attendance student-days: day %q: %w", day, err)
		}
		out[d] = int64(n)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading attendance student-days: %w", err)
	}
	return out, nil
}

// StoredAttendanceDays reads, per day from from to to (both included), the sink's attendance_daily rows
// in a district schema.
func StoredAttendanceDays(ctx context.Context, pool *pgxpool.Pool, schema string, from, to time.Time) (map[time.Time]int64, error) {
	rows, err := pool.Query(ctx, `SELECT day, count(*) FROM `+pgx.Identifier{schema, "attendance_daily"}.Sanitize()+
		` WHERE day >= $1 AND day <= $2 GROUP BY day`, Day(from), Day(to))
	if err != nil {
		return nil, fmt.Errorf("counting stored attendance days: %w", err)
	}
	out := map[time.Time]int64{}
	var (
		day time.Time
		n   int64
	)
	_, err = pgx.ForEachRow(rows, []any{&day, &n}, func() error {
		out[Day(day)] = n
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("counting stored attendance days: %w", err)
	}
	return out, nil
}
