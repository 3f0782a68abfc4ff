package usage_test

import (
	"bytes"
	"encoding/csv"
	"errors"
	"math/big"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/edtech-analytics/platform/libs/chutil"
	"github.com/edtech-analytics/platform/libs/chutil/chtest"
	"github.com/edtech-analytics/platform/libs/pgutil/pgtest"
	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/edtech-analytics/platform/libs/tenancy/fleet"
	"github.com/edtech-analytics/platform/libs/usage"
	"github.com/edtech-analytics/platform/libs/usage/usagetest"
)

func stores(t testing.TB) (*pgxpool.Pool, driver.Conn, *fleet.Fleet) {
	t.Helper()
	ch, db, _ := chtest.New(t)
	if err := chutil.Migrate(t.Context(), ch, db, os.DirFS("../../services/aggregator/internal/chstore/migrations")); err != nil {
		t.Fatal(err)
	}
	pool, _ := pgtest.New(t)
	if err := tenancy.Migrate(t.Context(), pool); err != nil {
		t.Fatal(err)
	}
	f := fleet.New(pool, os.Getenv)
	t.Cleanup(f.Close)
	return pool, ch, f
}

// TestReport: the report of a month lists the districts that existed in it (one deleted during it, not
// one deleted before or created after), and counts exactly, each from its store: events by the time
// they were received, students active on the month's days, the roster's students, the jobs done in the
// month; the storage figures are the schema's size and each ClickHouse table's bytes apportioned by
// rows, to the byte.
func TestReport(t *testing.T) {
	pool, ch, f := stores(t)
	fx := usagetest.Seed(t, pool, ch)
	month, err := usage.Month(usagetest.Month)
	if err != nil {
		t.Fatal(err)
	}
	r := usage.New(pool, fleet.NewDistrictPools(f), ch)
	before := schemaBytes(t, pool)
	rep, err := r.Report(t.Context(), month)
	if err != nil {
		t.Fatal(err)
	}
	after := schemaBytes(t, pool)
	fx.Check(t, rep)

	sizes := tableSizes(t, ch)
	var total uint64
	for _, n := range fx.EventRows {
		total += n
	}
	for _, d := range rep.Districts {
		if got := d.PostgreSQLBytes; got < before[d.TenantID] || got > after[d.TenantID] || (d.Status != "deleted" && got == 0) {
			t.Errorf("%s: %d bytes in postgresql, want from %d to %d", d.TenantID, got, before[d.TenantID], after[d.TenantID])
		}
		// events: the district's rows are known; the total includes d3's, deleted before the month.
		if want := share(sizes["events"], fx.EventRows[d.TenantID], total); d.ClickHouseTables["events"] != want {
			t.Errorf("%s: %d bytes of events, want %d of %d", d.TenantID, d.ClickHouseTables["events"], want, sizes["events"])
		}
		var sum int64
		for table, n := range d.ClickHouseTables {
			mine, all := tenantRows(t, ch, table, d.TenantID)
			if want := share(sizes[table], mine, all); n != want {
				t.Errorf("%s: %d bytes of %s, want %d", d.TenantID, n, table, want)
			}
			sum += n
		}
		if sum != d.ClickHouseBytesApportioned || !slices.Contains(sortedKeys(d.ClickHouseTables), "metrics_daily") {
			t.Errorf("%s: apportioned %d, tables %v", d.TenantID, d.ClickHouseBytesApportioned, d.ClickHouseTables)
		}
	}

	// One district: the same figures as in the report of all.
	one, err := r.Report(t.Context(), month, "d2")
	if err != nil {
		t.Fatal(err)
	}
	if len(one.Districts) != 1 || one.Districts[0].EventsTotal != 3 || one.Districts[0].ClickHouseBytesApportioned != rep.Districts[1].ClickHouseBytesApportioned {
		t.Errorf("report of d2: %+v", one.Districts)
	}
	// A district deleted before the month is reported when named, with what is left of it.
	if d3, err := r.Report(t.Context(), month, "d3"); err != nil || d3.Districts[0].EventsTotal != 5 || d3.Districts[0].Status != "deleted" {
		t.Errorf("report of d3: %+v, %v", d3, err)
	}
	if _, err := r.Report(t.Context(), month, "d9"); !errors.Is(err, tenancy.ErrNotFound) {
		t.Errorf("report of an unknown district: %v", err)
	}
	// October: only F's session and the district export of d1 (d4 and d3 existed then too).
	oct, err := r.Report(t.Context(), usage.MonthOf(time.Date(2026, 10, 9, 0, 0, 0, 0, time.UTC)))
	if err != nil {
		t.Fatal(err)
	}
	if len(oct.Districts) != 4 || oct.Districts[0].EventsTotal != 1 || oct.Districts[0].ExportsDistrict != 1 || oct.Districts[0].ActiveStudents != 2 {
		t.Errorf("october: %+v", oct.Districts)
	}
}

// TestCSV: the CSV has a header and a row per district, a column for each learning event type whether
// it occurred or not, and reads back to the report's numbers.
func TestCSV(t *testing.T) {
	rep := &usage.Report{Period: "2026-11", Start: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), End: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC),
		MeasuredAt: time.Date(2026, 12, 2, 3, 4, 5, 0, time.UTC), Districts: []usage.District{
			{TenantID: "d1", Status: "active", Events: map[string]int64{"attendance": 3, "novel": 2}, EventsTotal: 5, ActiveStudents: 4,
				RosterStudents: 3, PostgreSQLBytes: 1 << 20, ClickHouseBytesApportioned: 12345, ExportsStudent: 2, ErasuresDistrict: 1},
			{TenantID: "d2", Status: "deleted"},
		}}
	var buf bytes.Buffer
	if err := usage.WriteCSV(&buf, rep); err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(&buf).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 3 {
		t.Fatalf("%d records", len(recs))
	}
	want := []string{"period", "period_start", "period_end", "measured_at", "tenant_id", "status", "events_total",
		"events_attendance", "events_assessment_result", "events_assignment_submission", "events_session", "events_content_view",
		"events_custom", "events_generic", "events_novel", "active_students", "roster_students", "postgresql_bytes",
		"clickhouse_bytes_apportioned", "exports_student", "exports_district", "erasures_student", "erasures_district"}
	if !slices.Equal(recs[0], want) {
		t.Fatalf("header %v", recs[0])
	}
	row := map[string]string{}
	for i, c := range recs[0] {
		row[c] = recs[1][i]
	}
	for col, v := range map[string]string{"period": "2026-11", "period_start": "2026-11-01T00:00:00Z", "measured_at": "2026-12-02T03:04:05Z",
		"tenant_id": "d1", "events_total": "5", "events_attendance": "3", "events_session": "0", "events_novel": "2",
		"active_students": "4", "roster_students": "3", "postgresql_bytes": strconv.Itoa(1 << 20), "clickhouse_bytes_apportioned": "12345",
		"exports_student": "2", "erasures_district": "1", "exports_district": "0"} {
		if row[col] != v {
			t.Errorf("%s = %q, want %q", col, row[col], v)
		}
	}
	if recs[2][4] != "d2" || recs[2][5] != "deleted" || recs[2][6] != "0" {
		t.Errorf("second row %v", recs[2])
	}
}

// TestMonth: a month is YYYY-MM, exactly, and is its UTC calendar month; periods that are not bounded by
// UTC midnights are refused (the rollups keep UTC days).
func TestMonth(t *testing.T) {
	p, err := usage.Month("2024-02")
	if err != nil || !p.Start.Equal(time.Date(2024, 2, 1, 0, 0, 0, 0, time.UTC)) || !p.End.Equal(time.Date(2024, 3, 1, 0, 0, 0, 0, time.UTC)) || p.Label != "2024-02" {
		t.Fatalf("Month = %+v, %v", p, err)
	}
	for _, bad := range []string{"", "2024-2", "2024-13", "2024-02-01", "02-2024", "x"} {
		if _, err := usage.Month(bad); !errors.Is(err, usage.ErrPeriod) {
			t.Errorf("Month(%q) = %v, want ErrPeriod", bad, err)
		}
	}
	if p := usage.MonthOf(time.Date(2026, 12, 31, 23, 0, 0, 0, time.FixedZone("x", -3*3600))); p.Label != "2027-01" {
		t.Errorf("MonthOf = %+v", p)
	}
	local := usage.Period{Start: time.Date(2026, 11, 1, 0, 0, 0, 0, time.FixedZone("x", 3600)), End: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)}
	if err := local.Validate(); !errors.Is(err, usage.ErrPeriod) {
		t.Errorf("a period not at UTC midnights: %v", err)
	}
	if err := (usage.Period{Start: p.End, End: p.Start}).Validate(); !errors.Is(err, usage.ErrPeriod) {
		t.Errorf("a period that ends before it starts: %v", err)
	}
}

// schemaBytes measures each district schema on its own: the sum of its tables' total sizes.
func schemaBytes(t *testing.T, pool *pgxpool.Pool) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	for _, id := range []string{"d1", "d2", "d4"} {
		var n int64
		if err := pool.QueryRow(t.Context(), `SELECT coalesce(sum(pg_total_relation_size(format('%I.%I', schemaname, tablename)::regclass)), 0)::bigint
			FROM pg_tables WHERE schemaname = $1`, "district_"+id).Scan(&n); err != nil {
			t.Fatal(err)
		}
		out[id] = n
	}
	return out
}

func tableSizes(t *testing.T, ch driver.Conn) map[string]uint64 {
	t.Helper()
	rows, err := ch.Query(t.Context(), `SELECT table, toUInt64(sum(bytes_on_disk)) FROM system.parts WHERE active AND database = currentDatabase() GROUP BY table`)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = rows.Close() }()
	out := map[string]uint64{}
	for rows.Next() {
		var (
			table string
			n     uint64
		)
		if err := rows.Scan(&table, &n); err != nil {
			t.Fatal(err)
		}
		out[table] = n
	}
	return out
}

func tenantRows(t *testing.T, ch driver.Conn, table, tenant string) (mine, all uint64) {
	t.Helper()
	if err := ch.QueryRow(t.Context(), "SELECT countIf(tenant_id = ?), count() FROM `"+table+"`", tenant).Scan(&mine, &all); err != nil {
		t.Fatal(err)
	}
	return mine, all
}

// share is bytes * part / whole, rounded down.
func share(bytes, part, whole uint64) int64 {
	if whole == 0 {
		return 0
	}
	n := new(big.Int).Mul(new(big.Int).SetUint64(bytes), new(big.Int).SetUint64(part))
	return n.Div(n, new(big.Int).SetUint64(whole)).Int64()
}

func sortedKeys(m map[string]int64) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
