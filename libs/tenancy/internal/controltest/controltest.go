// Package controltest sets up control schemas for the tests of libs/tenancy's packages. Its callers pass
// the database factory (pgtest.New), so that it links no test tooling itself.
package controltest

import (
	"os"
	"testing"

	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/edtech-analytics/platform/libs/tenancy/fleet"
	"github.com/edtech-analytics/platform/libs/tenancy/tenants"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// NewDB returns a fresh database, dropped when the test ends, and its URL (pgtest.New).
type NewDB func(t testing.TB) (*pgxpool.Pool, string)

// DistrictTables are the tables of a district schema built from the template.
var DistrictTables = []string{
	"assessment_results_latest", "attendance_daily", "enricher_classes", "enricher_courses",
	"enricher_demographics", "enricher_enrollments", "enricher_line_items", "enricher_sessions",
	"enricher_users", "goose_db_version", "import_held_refs", "import_ledger", "import_settings",
	"import_sources", "import_upload_files", "import_upload_records", "import_uploads",
	"quality_pii_daily", "roster_academic_sessions", "roster_classes", "roster_courses", "roster_deletions", "roster_demographics",
	"roster_enrollments", "roster_line_items", "roster_orgs", "roster_results", "roster_users",
	"student_activity", "student_identities", "students", "submissions", "xapi_statements"}

// Migrated returns a fresh database with the control schema in place.
func Migrated(t testing.TB, newDB NewDB) *pgxpool.Pool {
	t.Helper()
	pool, _ := newDB(t)
	if err := tenancy.Migrate(t.Context(), pool); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	return pool
}

// Districts returns a fresh database with the control schema in place, and the tenants store that
// creates districts on it (on its main instance; instances are found through os.Getenv).
func Districts(t testing.TB, newDB NewDB) (*pgxpool.Pool, *tenants.Store) {
	t.Helper()
	pool := Migrated(t, newDB)
	return pool, tenants.New(fleet.New(pool, os.Getenv))
}

// TwoInstances returns a fleet over a migrated control database and a second database registered as
// instance "east" (its URL in the variable EAST_URL, seen only through the fleet's getenv). Offsets
// stored before the instance joined are where its own offsets start: sink partitions 0 and 3 at 40 and 7.
func TwoInstances(t testing.TB, newDB NewDB) (f *fleet.Fleet, control, east *pgxpool.Pool) {
	t.Helper()
	control = Migrated(t, newDB)
	east, eastURL := newDB(t)
	env := map[string]string{"EAST_URL": eastURL}
	f = fleet.New(control, func(k string) string { return env[k] })
	t.Cleanup(f.Close)
	if _, err := control.Exec(t.Context(), `INSERT INTO control.consumer_offsets (consumer, topic, partition, next_offset)
		VALUES ('sink', 'enriched', 0, 40), ('sink', 'enriched', 3, 7)`); err != nil {
		t.Fatal(err)
	}
	if _, err := f.AddInstance(t.Context(), "east", "EAST_URL", false); err != nil {
		t.Fatalf("AddInstance: %v", err)
	}
	return f, control, east
}

// Tables lists the tables of schema on pool, by name.
func Tables(t testing.TB, pool *pgxpool.Pool, schema string) []string {
	t.Helper()
	rows, err := pool.Query(t.Context(),
		"SELECT table_name::text FROM information_schema.tables WHERE table_schema = $1 ORDER BY 1", schema)
	if err != nil {
		t.Fatal(err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// SchemaExists reports whether schema exists on pool.
func SchemaExists(t testing.TB, pool *pgxpool.Pool, schema string) bool {
	t.Helper()
	var ok bool
	if err := pool.QueryRow(t.Context(), "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)", schema).Scan(&ok); err != nil {
		t.Fatal(err)
	}
	return ok
}
