package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/edtech-analytics/platform/libs/tenancy"
)

// stores reads what ClickHouse and PostgreSQL hold of the load's districts.
type stores struct {
	ch      driver.Conn
	pg      *pgxpool.Pool
	tenants []string
	inList  string // the tenants as a ClickHouse list: 'a','b' (slugs, validated by tenancy.SchemaName)
	schemas []string
}

func newStores(ch driver.Conn, pg *pgxpool.Pool, ds []district) (*stores, error) {
	s := &stores{ch: ch, pg: pg}
	for _, d := range ds {
		schema, err := tenancy.SchemaName(d.id)
		if err != nil {
			return nil, err
		}
		s.tenants, s.schemas = append(s.tenants, d.id), append(s.schemas, schema)
	}
	s.inList = "'" + strings.Join(s.tenants, "','") + "'"
	return s, nil
}

// counts is what each store holds of the load's districts.
type counts struct {
	chEvents, chUnique, chRollup uint64 // events rows, distinct event ids, the district rollup's events
	pgEvents                     uint64 // the sink's student_activity.event_count, summed
}

func (c counts) String() string {
	return fmt.Sprintf("ClickHouse events %d (distinct ids %d, district rollup %d), PostgreSQL %d", c.chEvents, c.chUnique, c.chRollup, c.pgEvents)
}

// complete says whether both stores hold want events; exact says whether every count is want.
func (c counts) complete(want uint64) bool { return c.chRollup >= want && c.pgEvents >= want }
func (c counts) exact(want uint64) bool {
	return c.chEvents == want && c.chUnique == want && c.chRollup == want && c.pgEvents == want
}

// quick counts the events of the district rollup and of the sink cheaply: a rollup row is filled in the
// same INSERT as the events table's rows, and reading it costs a few granules instead of a scan of the
// events, which would take the CPU the pipeline is measured on. full counts everything.
func (s *stores) quick(ctx context.Context) (counts, error) {
	var c counts
	var err error
	if c.chRollup, err = s.rollup(ctx, s.inList); err != nil {
		return c, err
	}
	var parts []string
	for _, schema := range s.schemas {
		parts = append(parts, "SELECT coalesce(sum(event_count), 0)::bigint AS n FROM "+schema+".student_activity")
	}
	var n int64
	if err := s.pg.QueryRow(ctx, "SELECT coalesce(sum(n), 0)::bigint FROM ("+strings.Join(parts, " UNION ALL ")+") t").Scan(&n); err != nil {
		return c, fmt.Errorf("counting PostgreSQL events: %w", err)
	}
	c.pgEvents = uint64(n)
	return c, nil
}

// rollup reads the events the district rollup counts for the tenants of list ('a','b').
func (s *stores) rollup(ctx context.Context, list string) (uint64, error) {
	var n float64 // sumMerge of UInt64 states; read through toFloat64 for one scan type across versions
	if err := s.ch.QueryRow(ctx, "SELECT toFloat64(sumMerge(events)) FROM metrics_daily WHERE level = 'district' AND tenant_id IN ("+list+")").Scan(&n); err != nil {
		return 0, fmt.Errorf("reading the district rollup: %w", err)
	}
	return uint64(n), nil
}

// full adds the rows and distinct event ids of the events table to quick (ids as strings: ClickHouse 18.16
// hashes UUIDs slowly).
func (s *stores) full(ctx context.Context) (counts, error) {
	c, err := s.quick(ctx)
	if err != nil {
		return c, err
	}
	if err := s.ch.QueryRow(ctx, "SELECT count(), uniqExact(toString(event_id)) FROM events WHERE tenant_id IN ("+s.inList+")").Scan(&c.chEvents, &c.chUnique); err != nil {
		return c, fmt.Errorf("counting ClickHouse events: %w", err)
	}
	return c, nil
}

// waitFor polls until both stores hold want events, ctx ends or the drain time passes. It returns the
// counts and when they were first complete.
func (s *stores) waitFor(ctx context.Context, want uint64, drain time.Duration) (counts, time.Time, error) {
	deadline := time.Now().Add(drain)
	for {
		c, err := s.quick(ctx)
		if err != nil {
			return c, time.Time{}, err
		}
		if c.complete(want) {
			return c, time.Now(), nil
		}
		if time.Now().After(deadline) {
			return c, time.Time{}, fmt.Errorf("after %s the stores hold %d (ClickHouse district rollup) and %d (PostgreSQL) of %d accepted events", drain, c.chRollup, c.pgEvents, want)
		}
		select {
		case <-ctx.Done():
			return c, time.Time{}, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// watchMarkers polls each store every interval for how many events the marker district holds, and records
// when each marker (markers is closed when the sending stops) was first counted, until every marker is in
// both stores, ctx ends or the drain time after the last marker passes. Markers reach a store in the order
// they were sent (one partition, each sent after the previous was acknowledged), so the n-th marker is in
// once n are counted. A marker's time is the end of the poll that counted it: the freshness is an upper
// bound, at most one interval and one query late. The polls read the district rollup and the sink's
// activity row, a few granules and one row.
func (s *stores) watchMarkers(ctx context.Context, markers <-chan *marker, interval, drain time.Duration) ([]*marker, error) {
	mk, schema := s.tenants[len(s.tenants)-1], s.schemas[len(s.schemas)-1]
	count := func() (ch, pg int64, err error) {
		rollup, err := s.rollup(ctx, "'"+mk+"'")
		if err != nil {
			return 0, 0, fmt.Errorf("polling ClickHouse for markers: %w", err)
		}
		if err := s.pg.QueryRow(ctx, "SELECT coalesce(sum(event_count), 0)::bigint FROM "+schema+".student_activity").Scan(&pg); err != nil {
			return 0, 0, fmt.Errorf("polling PostgreSQL for markers: %w", err)
		}
		return int64(rollup), pg, nil
	}
	baseCH, basePG, err := count() // the warm-up's
	if err != nil {
		return nil, err
	}
	var all []*marker
	seenCH, seenPG := 0, 0
	open := true
	var lastSent time.Time
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for open || seenCH < len(all) || seenPG < len(all) {
		select {
		case <-ctx.Done():
			return all, ctx.Err()
		case m, ok := <-markers:
			if !ok {
				open, markers = false, nil
				lastSent = time.Now()
			} else {
				all = append(all, m)
			}
			continue
		case <-tick.C:
		}
		if !open && time.Since(lastSent) > drain {
			return all, fmt.Errorf("markers not seen in both stores %s after the last was sent: %d of %d in ClickHouse, %d in PostgreSQL", drain, seenCH, len(all), seenPG)
		}
		if seenCH == len(all) && seenPG == len(all) {
			continue
		}
		ch, pg, err := count()
		if err != nil {
			return all, err
		}
		now := time.Now()
		for ; seenCH < len(all) && int64(seenCH) < ch-baseCH; seenCH++ {
			all[seenCH].ch = now
		}
		for ; seenPG < len(all) && int64(seenPG) < pg-basePG; seenPG++ {
			all[seenPG].pg = now
		}
	}
	return all, nil
}
