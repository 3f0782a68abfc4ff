package app

import (
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/edtech-analytics/platform/libs/pgutil/pgtest"
	"github.com/edtech-analytics/platform/libs/tenancy/credentials"
	"github.com/edtech-analytics/platform/libs/testenv/devenv"
)

// TestRestoreDrill is the restore drill of docs/runbooks: back up the control schema and one district's
// schema with pg_dump, restore them into a fresh database with pg_restore, and verify the copy as an
// operator would after a restore: `ctl migrate` finds nothing to do, `ctl audit verify` checks the whole
// keyed audit chain with the same master keys (so the key hierarchy came back too), a dashboard token
// issued before the backup still resolves, and every table of the district holds the same rows.
func TestRestoreDrill(t *testing.T) {
	pgDump, err := devenv.PostgresTool("pg_dump")
	if err != nil {
		t.Fatal(err)
	}
	pgRestore, err := devenv.PostgresTool("pg_restore")
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	source, sourceURL := migratedDB(t)
	mustCtl(t, sourceURL, "tenant", "create", "--id", "d1", "--name", "District 1")
	var tok struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal([]byte(mustCtl(t, sourceURL, "token", "create", "--tenant", "d1", "--role", "district_admin", "--output", "json")), &tok); err != nil {
		t.Fatal(err)
	}
	mustCtl(t, sourceURL, "keys", "create", "--tenant", "d1", "--source", "sis")
	for _, q := range []string{
		`INSERT INTO district_d1.roster_users (sourced_id, status, date_last_modified, enabled, given_name, family_name, internal_id)
			SELECT 'u' || i, 'active', now(), true, 'G', 'F', gen_random_uuid() FROM generate_series(1, 50) i`,
		`INSERT INTO district_d1.student_activity (internal_id, event_count, last_event_at, last_event_type)
			SELECT internal_id, 3, now(), 'attendance' FROM district_d1.roster_users`,
	} {
		if _, err := source.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	var before struct {
		Entries int64 `json:"entries"`
		OK      bool  `json:"ok"`
	}
	if err := json.Unmarshal([]byte(mustCtl(t, sourceURL, "audit", "verify", "--output", "json")), &before); err != nil || !before.OK || before.Entries < 3 {
		t.Fatalf("the source's audit chain: %+v (%v)", before, err)
	}

	// Back up, then restore into a database that has never seen the platform.
	dump := filepath.Join(t.TempDir(), "d1.dump")
	runTool(t, pgDump, "--dbname", sourceURL, "--format", "custom", "--schema", "control", "--schema", "district_d1", "--file", dump)
	target, targetURL := pgtest.New(t)
	runTool(t, pgRestore, "--dbname", targetURL, "--no-owner", "--exit-on-error", dump)

	mustCtl(t, targetURL, "migrate") // the migration tables came back: nothing to apply
	var after struct {
		Entries int64 `json:"entries"`
		OK      bool  `json:"ok"`
	}
	if err := json.Unmarshal([]byte(mustCtl(t, targetURL, "audit", "verify", "--output", "json")), &after); err != nil || !after.OK || after.Entries != before.Entries {
		t.Fatalf("the restored audit chain: %+v (%v), want the source's %d entries verified", after, err, before.Entries)
	}
	if got, err := credentials.New(target).LookupDashboardToken(ctx, tok.Token); err != nil || got.TenantID != "d1" {
		t.Fatalf("a token issued before the backup, on the restored copy: %+v, %v", got, err)
	}
	want, got := rowsPerTable(t, source, "district_d1"), rowsPerTable(t, target, "district_d1")
	if len(want) < 10 || want["roster_users"] != 50 || want["student_activity"] != 50 {
		t.Fatalf("the source district's tables: %v", want)
	}
	for table, n := range want {
		if got[table] != n {
			t.Errorf("district_d1.%s: %d rows restored, %d backed up", table, got[table], n)
		}
	}
}

func runTool(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.CommandContext(t.Context(), name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", filepath.Base(name), err, out)
	}
}

// rowsPerTable counts the rows of every table of schema.
func rowsPerTable(t *testing.T, pool *pgxpool.Pool, schema string) map[string]int64 {
	t.Helper()
	rows, err := pool.Query(context.Background(), `SELECT table_name FROM information_schema.tables WHERE table_schema = $1 AND table_type = 'BASE TABLE'`, schema)
	if err != nil {
		t.Fatal(err)
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, table := range tables {
		var n int64
		if err := pool.QueryRow(context.Background(), "SELECT count(*) FROM "+pgx.Identifier{schema, table}.Sanitize()).Scan(&n); err != nil {
			t.Fatal(err)
		}
		out[table] = n
	}
	return out
}
