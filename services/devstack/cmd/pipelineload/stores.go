package main

import (
	"context"
	"errors"
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
func (c counts) complete(want uint64) bool { return c.chEvents >= want && c.pgEvents >= want }
func (c counts) exact(want uint64) bool {
	return c.chEvents == want && c.chUnique == want && c.chRollup == want && c.pgEvents == want
}

// quick counts the events table and the sink, the two stores' last steps (the rollups are filled in the
// same INSERT as the events table).
func (s *stores) quick(ctx context.Context) (counts, error) {
	var c counts
	if err := s.ch.QueryRow(ctx, "SELECT count() FROM events WHERE tenant_id IN ("+s.inList+")").Scan(&c.chEvents); err != nil {
		return c, fmt.Errorf("counting ClickHouse events: %w", err)
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

// full adds the distinct event ids and the district rollup to quick.
func (s *stores) full(ctx context.Context) (counts, error) {
	c, err := s.quick(ctx)
	if err != nil {
		return c, err
	}
	if err := s.ch.QueryRow(ctx, "SELECT uniqExact(event_id) FROM events WHERE tenant_id IN ("+s.inList+")").Scan(&c.chUnique); err != nil {
		return c, fmt.Errorf("counting distinct ClickHouse event ids: %w", err)
	}
	var rollup float64 // sumMerge of UInt64 states; read through toFloat64 for one scan type across versions
	if err := s.ch.QueryRow(ctx, "SELECT toFloat64(sumMerge(events)) FROM metrics_daily WHERE level = 'district' AND tenant_id IN ("+s.inList+")").Scan(&rollup); err != nil {
		return c, fmt.Errorf("reading the district rollup: %w", err)
	}
	c.chRollup = uint64(rollup)
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
			return c, time.Time{}, fmt.Errorf("after %s the stores hold %s of %d accepted events", drain, c, want)
		}
		select {
		case <-ctx.Done():
			return c, time.Time{}, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// watchMarkers polls each store every interval for the markers sent since from, and records when each
// was first seen, until every marker sent (markers is closed when the sending stops) is seen in both
// stores, ctx ends or the drain time after the last marker passes. A marker's time is the end of the
// poll that saw it: the freshness is an upper bound, at most one interval and one query late.
func (s *stores) watchMarkers(ctx context.Context, markers <-chan *marker, from time.Time, interval, drain time.Duration) ([]*marker, error) {
	var all []*marker
	pending := map[string]*marker{}
	open := true
	var lastSent time.Time
	tick := time.NewTicker(interval)
	defer tick.Stop()
	chQuery := "SELECT toString(event_id) FROM events WHERE tenant_id IN (" + s.inList + ") AND type = 'assessment_result' AND occurred_at >= ?"
	var parts []string
	for _, schema := range s.schemas {
		parts = append(parts, "SELECT event_id::text FROM "+schema+".assessment_results_latest WHERE occurred_at >= $1")
	}
	pgQuery := strings.Join(parts, " UNION ALL ")
	since := from.Truncate(time.Second)
	for open || len(pending) > 0 {
		select {
		case <-ctx.Done():
			return all, ctx.Err()
		case m, ok := <-markers:
			if !ok {
				open, markers = false, nil
				lastSent = time.Now()
				continue
			}
			all = append(all, m)
			pending[m.id] = m
			continue
		case <-tick.C:
		}
		if !open && time.Since(lastSent) > drain {
			return all, fmt.Errorf("%d markers not seen in both stores %s after the last was sent", len(pending), drain)
		}
		if len(pending) == 0 {
			continue
		}
		if err := s.pollCH(ctx, chQuery, since, pending); err != nil {
			return all, err
		}
		if err := s.pollPG(ctx, pgQuery, since, pending); err != nil {
			return all, err
		}
	}
	return all, nil
}

func (s *stores) pollCH(ctx context.Context, query string, since time.Time, pending map[string]*marker) error {
	rows, err := s.ch.Query(ctx, query, since)
	if err != nil {
		return fmt.Errorf("polling ClickHouse for markers: %w", err)
	}
	var seen []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return errors.Join(err, rows.Close())
		}
		seen = append(seen, id)
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return fmt.Errorf("polling ClickHouse for markers: %w", err)
	}
	now := time.Now()
	for _, id := range seen {
		if m := pending[id]; m != nil && m.ch.IsZero() {
			m.ch = now
			if !m.pg.IsZero() {
				delete(pending, id)
			}
		}
	}
	return nil
}

func (s *stores) pollPG(ctx context.Context, query string, since time.Time, pending map[string]*marker) error {
	rows, err := s.pg.Query(ctx, query, since)
	if err != nil {
		return fmt.Errorf("polling PostgreSQL for markers: %w", err)
	}
	var seen []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return err
		}
		seen = append(seen, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("polling PostgreSQL for markers: %w", err)
	}
	now := time.Now()
	for _, id := range seen {
		if m := pending[id]; m != nil && m.pg.IsZero() {
			m.pg = now
			if !m.ch.IsZero() {
				delete(pending, id)
			}
		}
	}
	return nil
}
