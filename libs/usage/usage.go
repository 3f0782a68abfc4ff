package usage

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/bits"
	"slices"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/edtech-analytics/platform/libs/chutil"
	"github.com/edtech-analytics/platform/libs/tenancy"
)

// Job kinds counted (control.privacy_jobs.kind, as ctl and the admin API create them).
const (
	KindExportStudent = "export_student"
	KindExportTenant  = "export_tenant"
	KindEraseStudent  = "erase_student"
	KindEraseTenant   = "erase_tenant"
)

// District is one district's usage in a period.
type District struct {
	TenantID string `json:"tenant_id"`
	// Status is the district's status at the report's time (active, deleted, ...): a district deleted
	// during the period is reported for it.
	Status string `json:"status"`
	// Events counts the events received in the period and stored (after the enricher's deduplication:
	// each event id once), by type; EventsTotal is their sum.
	Events      map[string]int64 `json:"events"`
	EventsTotal int64            `json:"events_total"`
	// ActiveStudents counts the distinct students with at least one event on a day of the period.
	ActiveStudents int64 `json:"active_students"`
	// RosterStudents counts the users with a student role in the district's roster when measured.
	RosterStudents int64 `json:"roster_students"`
	// PostgreSQLBytes is the size of the district's schema when measured: tables, their indexes and
	// TOAST data.
	PostgreSQLBytes int64 `json:"postgresql_bytes"`
	// ClickHouseBytesApportioned is the district's share of ClickHouse's shared tables when measured:
	// each table's bytes on disk times the district's part of its rows. ClickHouseTables has the
	// share of each table.
	ClickHouseBytesApportioned int64            `json:"clickhouse_bytes_apportioned"`
	ClickHouseTables           map[string]int64 `json:"clickhouse_tables"`
	// Exports and erasures that finished (done, not failed) in the period.
	ExportsStudent   int64 `json:"exports_student"`
	ExportsDistrict  int64 `json:"exports_district"`
	ErasuresStudent  int64 `json:"erasures_student"`
	ErasuresDistrict int64 `json:"erasures_district"`
}

// Report is the usage of districts in a period. Counts of the period (events, active students, jobs) are
// of what the stores hold at MeasuredAt; sizes (roster, storage) are as of MeasuredAt.
type Report struct {
	Period     string     `json:"period"`
	Start      time.Time  `json:"start"`
	End        time.Time  `json:"end"`
	MeasuredAt time.Time  `json:"measured_at"`
	Districts  []District `json:"districts"`
}

// DistrictPools finds the PostgreSQL pool of a district's schema (libs/tenancy/fleet.DistrictPools).
type DistrictPools interface {
	Pool(ctx context.Context, tenantID string) (*pgxpool.Pool, error)
}

// Reporter measures usage over the control database, the districts' pools and the ClickHouse database of
// the aggregator's tables.
type Reporter struct {
	control *pgxpool.Pool
	pools   DistrictPools
	ch      driver.Conn
	dial    func(ctx context.Context, addr string) (driver.Conn, error)
	now     func() time.Time
}

// New returns a Reporter. ch's default database must hold the aggregator's tables.
func New(control *pgxpool.Pool, pools DistrictPools, ch driver.Conn) *Reporter {
	return &Reporter{control: control, pools: pools, ch: ch, now: time.Now}
}

// WithNodes lets the report reach each node of a replicated ClickHouse cluster (ADR 0026) through dial
// (host:port as system.clusters names it, with the same default database as ch): there each shard holds
// its districts' rows in tables of its own, measured on one replica of each shard. Without it, a report of
// a database in that layout fails rather than apportion one node's tables.
func (r *Reporter) WithNodes(dial func(ctx context.Context, addr string) (driver.Conn, error)) *Reporter {
	r.dial = dial
	return r
}

// Report measures the districts named, or with none every district that existed during the period
// (created before its end, not deleted before its start), ordered by id. An unknown district:
// tenancy.ErrNotFound; a period the rollups cannot answer: ErrPeriod.
func (r *Reporter) Report(ctx context.Context, p Period, tenantIDs ...string) (*Report, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	rep := &Report{Period: p.Label, Start: p.Start.UTC(), End: p.End.UTC(), MeasuredAt: r.now().UTC()}
	if err := r.districts(ctx, rep, p, tenantIDs); err != nil {
		return nil, err
	}
	if len(rep.Districts) == 0 {
		rep.Districts = []District{}
		return rep, nil
	}
	byID := make(map[string]*District, len(rep.Districts))
	for i := range rep.Districts {
		byID[rep.Districts[i].TenantID] = &rep.Districts[i]
	}
	filter := tenantFilter(slices.Collect(maps.Keys(byID)))
	for _, step := range []func(context.Context, Period, string, map[string]*District) error{
		r.events, r.activeStudents, r.clickHouseBytes, r.jobs,
	} {
		if err := step(ctx, p, filter, byID); err != nil {
			return nil, err
		}
	}
	for i := range rep.Districts {
		if err := r.postgres(ctx, &rep.Districts[i]); err != nil {
			return nil, err
		}
	}
	return rep, nil
}

// districts fills rep.Districts with the districts to measure.
func (r *Reporter) districts(ctx context.Context, rep *Report, p Period, ids []string) error {
	query, args := `SELECT id, status FROM control.tenants WHERE created_at < $1 AND (deleted_at IS NULL OR deleted_at >= $2) ORDER BY id`,
		[]any{p.End, p.Start}
	if len(ids) > 0 {
		for _, id := range ids {
			if err := tenancy.ValidTenantID(id); err != nil {
				return err
			}
		}
		query, args = `SELECT id, status FROM control.tenants WHERE id = ANY($1) ORDER BY id`, []any{ids}
	}
	rows, err := r.control.Query(ctx, query, args...)
	if err != nil {
		return fmt.Errorf("listing districts: %w", err)
	}
	rep.Districts, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (District, error) {
		d := District{Events: map[string]int64{}, ClickHouseTables: map[string]int64{}}
		return d, row.Scan(&d.TenantID, &d.Status)
	})
	if err != nil {
		return fmt.Errorf("listing districts: %w", err)
	}
	for _, id := range ids {
		if !slices.ContainsFunc(rep.Districts, func(d District) bool { return d.TenantID == id }) {
			return fmt.Errorf("tenant %s: %w", id, tenancy.ErrNotFound)
		}
	}
	return nil
}

// tenantFilter is a ClickHouse condition on tenant_id for ids, valid tenant ids (slugs), as a literal
// list: clickhouse-go cannot bind a slice for IN on 18.16.
func tenantFilter(ids []string) string {
	slices.Sort(ids)
	quoted := make([]string, len(ids))
	for i, id := range ids {
		quoted[i] = "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(id) + "'"
	}
	return "tenant_id IN (" + strings.Join(quoted, ", ") + ")"
}

func chTime(t time.Time) string { return t.UTC().Format(time.DateTime) }

// events counts the events received in the period by district and type, from ClickHouse's events table:
// the fact table holds each event once (the enricher drops retried event ids, the aggregator writes
// each record once), and received_at is when the gateway accepted it. The rollups cannot answer this:
// they count by the day an event occurred, and students' events only.
func (r *Reporter) events(ctx context.Context, p Period, filter string, byID map[string]*District) error {
	rows, err := r.ch.Query(ctx, `SELECT toString(tenant_id), toString(type), count()
		FROM events
		WHERE `+filter+` AND received_at >= toDateTime(?, 'UTC') AND received_at < toDateTime(?, 'UTC')
		GROUP BY tenant_id, type`, chTime(p.Start), chTime(p.End))
	if err != nil {
		return fmt.Errorf("counting events received: %w", err)
	}
	defer func() { _ = rows.Close() }()
	for rows.Next() {
		var (
			tenant, typ string
			n           uint64
		)
		if err := rows.Scan(&tenant, &typ, &n); err != nil {
			return fmt.Errorf("reading events received: %w", err)
		}
		if d := byID[tenant]; d != nil {
			d.Events[typ] += int64(n)
			d.EventsTotal += int64(n)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("reading events received: %w", err)
	}
	return nil
}

// activeStudents counts the distinct students active in the period from metrics_student_daily, which has
// a row per student and day they were active: the exact count (uniqExact) of the student ids of the
// period's days. Only events of actors with role student count, on the day they occurred (an attendance
// mark on its attendance date), as in every dashboard; it is the set metrics_daily's active_students
// states hold, whose uniqExactMerge gives the same number eight times slower (merging UUID sets).
func (r *Reporter) activeStudents(ctx context.Context, p Period, filter string, byID map[string]*District) error {
	rows, err := r.ch.Query(ctx, `SELECT toString(tenant_id), toUInt64(uniqExact(toString(student_id)))
		FROM metrics_student_daily
		WHERE `+filter+` AND day >= toDate(?) AND day < toDate(?)
		GROUP BY tenant_id`, p.Start.UTC().Format(time.DateOnly), p.End.UTC().Format(time.DateOnly))
	if err != nil {
		return fmt.Errorf("counting active students: %w", err)
	}
	defer func() { _ = rows.Close() }()
	for rows.Next() {
		var (
			tenant string
			n      uint64
		)
		if err := rows.Scan(&tenant, &n); err != nil {
			return fmt.Errorf("reading active students: %w", err)
		}
		if d := byID[tenant]; d != nil {
			d.ActiveStudents = int64(n)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("reading active students: %w", err)
	}
	return nil
}

// clickHouseBytes apportions the bytes on disk of each table of the database that has a tenant_id column
// (the events table and the rollups) among its districts by their rows: a district's share of a table
// is bytes * district rows / all rows. The rows are those of the table's active parts, not yet merged
// ones counted apart, as the bytes are. A table of one district's rows (a ClickHouse rebuild's staging
// table) thus goes whole to it. Tables without a tenant_id (offsets, the insert journal) are the
// platform's and are apportioned to no one; a district's analyst database holds views only, no data.
//
// In the replicated cluster layout each shard's <table>_local tables are apportioned among the districts
// of that shard, on one of its replicas (the others hold copies of the same parts), under the table's
// name without _local.
func (r *Reporter) clickHouseBytes(ctx context.Context, _ Period, filter string, byID map[string]*District) error {
	var database string
	if err := r.ch.QueryRow(ctx, "SELECT currentDatabase()").Scan(&database); err != nil {
		return fmt.Errorf("reading the clickhouse database: %w", err)
	}
	cluster, err := chutil.ClusterOf(ctx, r.ch, database, "events", r.dial)
	if err != nil {
		return fmt.Errorf("reading clickhouse table sizes: %w", err)
	}
	if cluster == nil {
		shares, err := tableShares(ctx, r.ch, filter)
		if err == nil {
			addShares(byID, shares)
		}
		return err
	}
	defer cluster.Close()
	return cluster.EachShard(ctx, func(ctx context.Context, _ chutil.Node, conn driver.Conn) error {
		shares, err := tableShares(ctx, conn, filter)
		if err == nil { // only a shard measured whole counts: another replica may be asked after an error
			addShares(byID, shares)
		}
		return err
	})
}

// tableShares apportions the bytes of conn's server's tables with a tenant_id among the districts of
// filter: district -> table -> bytes.
func tableShares(ctx context.Context, conn driver.Conn, filter string) (map[string]map[string]int64, error) {
	rows, err := conn.Query(ctx, `SELECT p.table, toUInt64(sum(p.bytes_on_disk))
		FROM system.parts AS p
		WHERE p.active AND p.database = currentDatabase() AND p.table IN (
			SELECT table FROM system.columns WHERE database = currentDatabase() AND name = 'tenant_id')
		GROUP BY p.table ORDER BY p.table`)
	if err != nil {
		return nil, fmt.Errorf("reading clickhouse table sizes: %w", err)
	}
	sizes := map[string]uint64{}
	for rows.Next() {
		var (
			table string
			n     uint64
		)
		if err := rows.Scan(&table, &n); err != nil {
			_ = rows.Close()
			return nil, fmt.Errorf("reading clickhouse table sizes: %w", err)
		}
		sizes[table] = n
	}
	err = errors.Join(rows.Err(), rows.Close())
	if err != nil {
		return nil, fmt.Errorf("reading clickhouse table sizes: %w", err)
	}
	out := map[string]map[string]int64{}
	for _, table := range slices.Sorted(maps.Keys(sizes)) {
		counts, total, err := tenantRows(ctx, conn, table, filter)
		if err != nil {
			return nil, err
		}
		for tenant, n := range counts {
			if out[tenant] == nil {
				out[tenant] = map[string]int64{}
			}
			out[tenant][strings.TrimSuffix(table, "_local")] += apportion(sizes[table], n, total)
		}
	}
	return out, nil
}

// addShares adds the districts' shares to their reports.
func addShares(byID map[string]*District, shares map[string]map[string]int64) {
	for tenant, tables := range shares {
		d := byID[tenant]
		if d == nil {
			continue
		}
		for table, n := range tables {
			d.ClickHouseTables[table] += n
			d.ClickHouseBytesApportioned += n
		}
	}
}

// tenantRows counts a table's rows of the districts of filter, and its rows of every district.
func tenantRows(ctx context.Context, conn driver.Conn, table, filter string) (map[string]uint64, uint64, error) {
	rows, err := conn.Query(ctx, `SELECT toString(tenant_id), `+filter+` AS wanted, count() FROM `+chutil.QuoteIdent(table)+
		` GROUP BY tenant_id`)
	if err != nil {
		return nil, 0, fmt.Errorf("counting the rows of %s by district: %w", table, err)
	}
	defer func() { _ = rows.Close() }()
	counts, total := map[string]uint64{}, uint64(0)
	for rows.Next() {
		var (
			tenant string
			wanted uint8
			n      uint64
		)
		if err := rows.Scan(&tenant, &wanted, &n); err != nil {
			return nil, 0, fmt.Errorf("reading the rows of %s by district: %w", table, err)
		}
		total += n
		if wanted == 1 {
			counts[tenant] = n
		}
	}
	if err := rows.Err(); err != nil {
		return nil, 0, fmt.Errorf("reading the rows of %s by district: %w", table, err)
	}
	return counts, total, nil
}

// apportion returns bytes * part / whole, rounded down, without overflow (part <= whole).
func apportion(bytes, part, whole uint64) int64 {
	if whole == 0 || part == 0 {
		return 0
	}
	hi, lo := bits.Mul64(bytes, part)
	q, _ := bits.Div64(hi, lo, whole)
	return int64(q)
}

// jobs counts the privacy jobs that finished done in the period, by district and kind.
func (r *Reporter) jobs(ctx context.Context, p Period, _ string, byID map[string]*District) error {
	rows, err := r.control.Query(ctx, `SELECT tenant_id, kind, count(*) FROM control.privacy_jobs
		WHERE status = 'done' AND finished_at >= $1 AND finished_at < $2 GROUP BY tenant_id, kind`, p.Start, p.End)
	if err != nil {
		return fmt.Errorf("counting privacy jobs: %w", err)
	}
	var (
		tenant, kind string
		n            int64
	)
	_, err = pgx.ForEachRow(rows, []any{&tenant, &kind, &n}, func() error {
		d := byID[tenant]
		if d == nil {
			return nil
		}
		switch kind {
		case KindExportStudent:
			d.ExportsStudent = n
		case KindExportTenant:
			d.ExportsDistrict = n
		case KindEraseStudent:
			d.ErasuresStudent = n
		case KindEraseTenant:
			d.ErasuresDistrict = n
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("counting privacy jobs: %w", err)
	}
	return nil
}

// postgres measures the district's schema: its size and its roster's students. A district whose schema
// is gone (deleted) has neither.
func (r *Reporter) postgres(ctx context.Context, d *District) error {
	schema, err := tenancy.SchemaName(d.TenantID)
	if err != nil {
		return err
	}
	pool, err := r.pools.Pool(ctx, d.TenantID)
	if errors.Is(err, tenancy.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("district %s's postgresql: %w", d.TenantID, err)
	}
	var hasRoster bool
	if err := pool.QueryRow(ctx, `SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint,
			to_regclass($2) IS NOT NULL
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND c.relkind IN ('r', 'm')`,
		schema, pgx.Identifier{schema, "roster_users"}.Sanitize()).Scan(&d.PostgreSQLBytes, &hasRoster); err != nil {
		return fmt.Errorf("measuring district %s's schema: %w", d.TenantID, err)
	}
	if !hasRoster {
		return nil
	}
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM `+pgx.Identifier{schema, "roster_users"}.Sanitize()+
		` WHERE roles @> '[{"role": "student"}]'`).Scan(&d.RosterStudents); err != nil {
		return fmt.Errorf("counting district %s's roster students: %w", d.TenantID, err)
	}
	return nil
}
