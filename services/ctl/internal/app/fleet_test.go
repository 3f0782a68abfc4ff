package app

import (
	"bytes"
	"encoding/json"
	"errors"
	"github.com/edtech-analytics/platform/libs/keyring"
	"strings"
	"testing"

	"github.com/edtech-analytics/platform/libs/pgutil/pgtest"
	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/edtech-analytics/platform/libs/tenancy/audit"
	"github.com/edtech-analytics/platform/libs/tenancy/credentials"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ctlEnv runs one command with the given environment (DATABASE_URL included).
func ctlEnv(t *testing.T, env map[string]string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err = Run(t.Context(), args, Env{Stdout: &out, Stderr: &errOut, Getenv: func(k string) string {
		if v, ok := env[k]; ok || k != keyring.EnvMasterKeys {
			return v
		}
		return testMasterKeys
	}})
	return out.String(), errOut.String(), err
}

func hasSchema(t *testing.T, pool *pgxpool.Pool, schema string) bool {
	t.Helper()
	var ok bool
	if err := pool.QueryRow(t.Context(), "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)", schema).Scan(&ok); err != nil {
		t.Fatal(err)
	}
	return ok
}

// TestFleetCommands: an instance is registered by the name of the variable holding its URL, districts
// are placed on it, and migrate covers every instance: an unreachable one fails its districts and only
// those, and a second run skips every up-to-date schema.
func TestFleetCommands(t *testing.T) {
	control, url := migratedDB(t)
	east, eastURL := pgtest.New(t)
	env := map[string]string{EnvDatabaseURL: url, "PG_EAST_URL": eastURL}
	run := func(args ...string) string {
		t.Helper()
		out, errOut, err := ctlEnv(t, env, args...)
		if err != nil {
			t.Fatalf("ctl %s: %v\n%s", strings.Join(args, " "), err, errOut)
		}
		return out
	}
	if out := run("instance", "add", "--name", "east", "--url-env", "PG_EAST_URL"); !strings.Contains(out, "added instance east") {
		t.Errorf("instance add printed %q", out)
	}
	list := run("instance", "list")
	if !strings.Contains(list, "$PG_EAST_URL") || strings.Contains(list, eastURL) {
		t.Errorf("instance list = %q", list)
	}
	var created struct{ ID, Schema, Instance string }
	out := run("tenant", "create", "--id", "e1", "--name", "East One", "--instance", "east", "--output", "json")
	if err := json.Unmarshal([]byte(out), &created); err != nil || created.Instance != "east" {
		t.Errorf("tenant create json = %q (%v)", out, err)
	}
	run("tenant", "create", "--id", "e2", "--name", "East Two", "--instance", "east")
	run("tenant", "create", "--id", "m1", "--name", "Main One")
	if !hasSchema(t, east, "district_e1") || hasSchema(t, control, "district_e1") || !hasSchema(t, control, "district_m1") {
		t.Error("schemas are not on the districts' instances")
	}
	if list := run("tenant", "list"); !strings.Contains(list, "e1") || !strings.Contains(list, "east") {
		t.Errorf("tenant list = %q", list)
	}
	if _, _, err := ctlEnv(t, env, "tenant", "create", "--id", "x1", "--name", "X", "--instance", "west"); !errors.Is(err, tenancy.ErrNotFound) ||
		!strings.Contains(err.Error(), "--instance") {
		t.Errorf("create on an unknown instance: %v", err)
	}

	// e1 and m1 lost their schemas; east's URL is unknown to this run.
	for pool, q := range map[*pgxpool.Pool]string{east: "DROP SCHEMA district_e1 CASCADE", control: "DROP SCHEMA district_m1 CASCADE"} {
		if _, err := pool.Exec(t.Context(), q); err != nil {
			t.Fatal(err)
		}
	}
	_, progress, err := ctlEnv(t, map[string]string{EnvDatabaseURL: url}, "migrate")
	if err == nil || !strings.Contains(err.Error(), "2 of 3 failed: e1, e2") || !strings.Contains(progress, "instance east: FAILED") {
		t.Errorf("migrate without east: %v\n%s", err, progress)
	}
	if !hasSchema(t, control, "district_m1") {
		t.Error("main's district was not migrated while east was unreachable")
	}
	out, progress, err = ctlEnv(t, env, "migrate", "--output", "json")
	if err != nil {
		t.Fatalf("migrate: %v\n%s", err, progress)
	}
	type counts struct {
		UpToDate int `json:"up_to_date"`
		Migrated int `json:"migrated"`
		Failed   int `json:"failed"`
	}
	var report counts
	if err := json.Unmarshal([]byte(out), &report); err != nil || report != (counts{2, 1, 0}) {
		t.Errorf("migrate report %q (%v), want e1 migrated and the others skipped", out, err)
	}
	if !hasSchema(t, east, "district_e1") || !strings.Contains(progress, "instance east: 2 districts, 1 up to date, 1 to migrate") {
		t.Errorf("e1 not migrated on east:\n%s", progress)
	}
	if out := run("migrate"); !strings.Contains(out, "(0 migrated now, 3 already)") {
		t.Errorf("a second migrate did work: %q", out)
	}
}

// TestTenantDelete: deletion needs the id confirmed, then revokes the keys and drops the schema on the
// district's instance.
func TestTenantDelete(t *testing.T) {
	pool, url := migratedDB(t)
	mustCtl(t, url, "tenant", "create", "--id", "gone", "--name", "Gone")
	mustCtl(t, url, "tenant", "create", "--id", "kept", "--name", "Kept")
	var key struct{ Key string }
	if err := json.Unmarshal([]byte(mustCtl(t, url, "keys", "create", "--tenant", "gone", "--source", "sis", "--output", "json")), &key); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"tenant", "delete", "--id", "gone"},
		{"tenant", "delete", "--id", "gone", "--confirm", "kept"},
	} {
		if _, _, err := ctl(t, url, args...); !errors.Is(err, ErrUsage) || !strings.Contains(err.Error(), "--confirm gone") {
			t.Errorf("ctl %v: %v, want a usage error asking for --confirm gone", args, err)
		}
	}
	if !hasSchema(t, pool, "district_gone") {
		t.Fatal("an unconfirmed delete dropped the schema")
	}
	out := mustCtl(t, url, "tenant", "delete", "--id", "gone", "--confirm", "gone")
	if !strings.Contains(out, "1 api keys revoked") || !strings.Contains(out, "dropped") {
		t.Errorf("tenant delete printed %q", out)
	}
	if hasSchema(t, pool, "district_gone") || !hasSchema(t, pool, "district_kept") {
		t.Error("wrong schemas dropped")
	}
	if _, err := credentials.New(pool).LookupAPIKey(t.Context(), key.Key); !errors.Is(err, credentials.ErrInvalidKey) {
		t.Errorf("the deleted district's key still works: %v", err)
	}
	if list := mustCtl(t, url, "tenant", "list"); strings.Contains(list, "gone") {
		t.Errorf("tenant list shows the deleted district: %q", list)
	}
	entries, err := audit.New(pool, nil).Entries(t.Context(), 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var audited bool
	for _, en := range entries {
		audited = audited || (en.Action == "tenant.delete" && en.TenantID == "gone" && strings.Contains(en.Detail, `"schema_dropped":true`))
	}
	if !audited {
		t.Errorf("no audit entry for the deletion in %+v", entries)
	}
	if out := mustCtl(t, url, "tenant", "delete", "--id", "gone", "--confirm", "gone"); !strings.Contains(out, "already gone") {
		t.Errorf("second delete printed %q", out)
	}
	if _, _, err := ctl(t, url, "tenant", "delete", "--id", "nope", "--confirm", "nope"); !errors.Is(err, tenancy.ErrNotFound) {
		t.Errorf("deleting an unknown tenant: %v", err)
	}
}
