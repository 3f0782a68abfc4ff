package app

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"github.com/edtech-analytics/platform/libs/keyring"
	"github.com/edtech-analytics/platform/libs/keyring/keyringtest"
	"strings"
	"testing"

	"github.com/edtech-analytics/platform/libs/pgutil/pgtest"
	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/edtech-analytics/platform/libs/tenancy/credentials"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ctl runs one command with DATABASE_URL set to dbURL and returns what it printed.
// testMasterKeys are the MASTER_KEYS of every ctl the tests run.
var testMasterKeys = keyringtest.MasterKeys()

func ctl(t testing.TB, dbURL string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	env := Env{Stdout: &out, Stderr: &errOut, Getenv: func(k string) string {
		switch k {
		case EnvDatabaseURL:
			return dbURL
		case keyring.EnvMasterKeys:
			return testMasterKeys
		}
		return ""
	}}
	err = Run(t.Context(), args, env)
	return out.String(), errOut.String(), err
}

// mustCtl is ctl that fails the test on error.
func mustCtl(t testing.TB, dbURL string, args ...string) string {
	t.Helper()
	out, errOut, err := ctl(t, dbURL, args...)
	if err != nil {
		t.Fatalf("ctl %s: %v\nstderr: %s", strings.Join(args, " "), err, errOut)
	}
	return out
}

func migratedDB(t testing.TB) (*pgxpool.Pool, string) {
	t.Helper()
	pool, url := pgtest.New(t)
	mustCtl(t, url, "migrate")
	return pool, url
}

func TestTenantsAndKeysLifecycle(t *testing.T) {
	pool, url := migratedDB(t)
	store := credentials.New(pool)

	out := mustCtl(t, url, "tenant", "create", "--id", "springfield", "--name", "Springfield Public Schools")
	if !strings.Contains(out, "springfield") || !strings.Contains(out, "district_springfield") {
		t.Errorf("tenant create printed %q", out)
	}
	var created struct {
		ID, Name, Schema string
	}
	out = mustCtl(t, url, "tenant", "create", "--id", "shelbyville", "--name", "Shelbyville", "--output", "json")
	if err := json.Unmarshal([]byte(out), &created); err != nil || created.ID != "shelbyville" ||
		created.Schema != "district_shelbyville" {
		t.Errorf("tenant create json = %q (%v)", out, err)
	}
	if strings.Contains(out, "pseudonym") {
		t.Errorf("tenant create json exposes the pseudonym key: %s", out)
	}
	out = mustCtl(t, url, "tenant", "list")
	if !strings.Contains(out, "Springfield Public Schools") || !strings.Contains(out, "shelbyville") {
		t.Errorf("tenant list = %q", out)
	}

	// keys create: the key is printed once, with the note.
	out = mustCtl(t, url, "keys", "create", "--tenant", "springfield", "--source", "canvas",
		"--verbs", "events:write,roster:write")
	if strings.Count(out, "eak_") != 1 || !strings.Contains(out, "cannot be shown again") {
		t.Errorf("keys create printed %q", out)
	}
	var key struct {
		Key, ID, Note string
		Verbs         []string
	}
	out = mustCtl(t, url, "keys", "create", "--tenant", "springfield", "--source", "sis", "--output", "json")
	if err := json.Unmarshal([]byte(out), &key); err != nil || !strings.HasPrefix(key.Key, "eak_"+key.ID+"_") ||
		len(key.Verbs) != 1 || key.Verbs[0] != credentials.VerbEventsWrite || key.Note == "" {
		t.Fatalf("keys create json = %q (%v)", out, err)
	}
	got, err := store.LookupAPIKey(t.Context(), key.Key)
	if err != nil || got.TenantID != "springfield" || got.SourceID != "sis" {
		t.Fatalf("the printed key does not authenticate: %+v, %v", got, err)
	}

	secret := strings.TrimPrefix(key.Key, "eak_"+key.ID+"_")
	list := mustCtl(t, url, "keys", "list", "--tenant", "springfield")
	if !strings.Contains(list, key.ID) || strings.Contains(list, secret) {
		t.Errorf("keys list should show the id and not the secret: %q", list)
	}
	if rows := strings.Count(strings.TrimSpace(list), "\n"); rows != 2 {
		t.Errorf("keys list has %d key rows, want 2: %q", rows, list)
	}
	listJSON := mustCtl(t, url, "keys", "list", "--tenant", "springfield", "--output", "json")
	if strings.Contains(listJSON, secret) || !strings.Contains(listJSON, key.ID) {
		t.Errorf("keys list json = %q", listJSON)
	}

	mustCtl(t, url, "keys", "revoke", "--id", key.ID)
	if _, err := store.LookupAPIKey(t.Context(), key.Key); !errors.Is(err, credentials.ErrInvalidKey) {
		t.Errorf("revoked key still authenticates: %v", err)
	}
	list = mustCtl(t, url, "keys", "list", "--tenant", "springfield")
	for _, line := range strings.Split(list, "\n") {
		if strings.HasPrefix(line, key.ID) && strings.HasSuffix(strings.TrimSpace(line), " -") {
			t.Errorf("revoked key shows no revocation time: %q", line)
		}
	}
	if _, _, err := ctl(t, url, "keys", "revoke", "--id", "nosuchkey000"); !errors.Is(err, tenancy.ErrNotFound) {
		t.Errorf("revoking an unknown key: %v", err)
	}
}

func TestCommandLineErrors(t *testing.T) {
	_, url := migratedDB(t)
	mustCtl(t, url, "tenant", "create", "--id", "d1", "--name", "D1")
	tests := []struct {
		name    string
		args    []string
		usage   bool     // wraps ErrUsage
		mention []string // the error names these
	}{
		{"bad tenant id", []string{"tenant", "create", "--id", "A;drop", "--name", "x"}, true, []string{"--id", "tenant id"}},
		{"path tenant id", []string{"tenant", "create", "--id", "../x", "--name", "x"}, true, []string{"--id"}},
		{"missing name", []string{"tenant", "create", "--id", "d2"}, true, []string{"--name"}},
		{"existing tenant", []string{"tenant", "create", "--id", "d1", "--name", "x"}, false, []string{"already exists"}},
		{"unknown verb", []string{"keys", "create", "--tenant", "d1", "--source", "s", "--verbs", "events:write,events:nuke"}, false, []string{"--verbs", "events:nuke"}},
		{"unknown tenant", []string{"keys", "create", "--tenant", "d9", "--source", "s"}, false, []string{"d9", "not found"}},
		{"bad key tenant", []string{"keys", "list", "--tenant", "D1"}, true, []string{"--tenant", "tenant id"}},
		{"bad output", []string{"tenant", "list", "--output", "yaml"}, true, []string{"--output"}},
		{"unknown command", []string{"tenant", "erase"}, true, []string{"tenant erase"}},
		{"stray argument", []string{"tenant", "list", "extra"}, true, []string{"extra"}},
		{"no command", nil, true, []string{"no command"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := ctl(t, url, tt.args...)
			if err == nil {
				t.Fatal("succeeded")
			}
			if errors.Is(err, ErrUsage) != tt.usage {
				t.Errorf("errors.Is(%v, ErrUsage) = %v, want %v", err, !tt.usage, tt.usage)
			}
			for _, m := range tt.mention {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q does not mention %q", err, m)
				}
			}
		})
	}
}

func TestDatabaseURL(t *testing.T) {
	_, url := migratedDB(t)
	if _, _, err := ctl(t, "", "tenant", "list"); !errors.Is(err, ErrUsage) || !strings.Contains(err.Error(), EnvDatabaseURL) {
		t.Errorf("no database: %v", err)
	}
	// --database-url wins over the environment.
	out, _, err := ctl(t, "postgres://nobody@127.0.0.1:1/none", "tenant", "list", "--database-url", url)
	if err != nil || !strings.HasPrefix(out, "ID") {
		t.Errorf("tenant list with --database-url: %q, %v", out, err)
	}
	// Before the control schema exists the error says what to do.
	_, freshURL := pgtest.New(t)
	if _, _, err := ctl(t, freshURL, "tenant", "list"); err == nil || !strings.Contains(err.Error(), "ctl migrate") {
		t.Errorf("unmigrated database: %v", err)
	}
}

func TestMigrateReportsFailedDistrictsAndGoesOn(t *testing.T) {
	pool, url := migratedDB(t)
	ctx := context.Background()
	for _, id := range []string{"a1", "b2", "c3", "d4"} {
		mustCtl(t, url, "tenant", "create", "--id", id, "--name", strings.ToUpper(id))
	}
	// b2 is broken: its tables are there but goose's record of them is gone, so the template cannot apply.
	// c3 and d4 have lost their schemas and need the template again.
	for _, q := range []string{
		"DROP TABLE district_b2.goose_db_version",
		"DROP SCHEMA district_c3 CASCADE",
		"DROP SCHEMA district_d4 CASCADE",
	} {
		if _, err := pool.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	out, progress, err := ctl(t, url, "migrate", "--parallel", "2", "--output", "json")
	if err == nil || !strings.Contains(err.Error(), "1 of 4 failed: b2") {
		t.Errorf("migrate error = %v, want b2 reported", err)
	}
	// a1 is up to date and skipped; the three others are attempted, with progress over all four.
	if strings.Count(progress, "/4] district ") != 3 || !strings.Contains(progress, "district b2 (instance main): FAILED") ||
		!strings.Contains(progress, "instance main: 4 districts, 1 up to date, 3 to migrate") {
		t.Errorf("progress = %q", progress)
	}
	var report struct {
		Failed    int
		Districts []struct{ Tenant, Error string }
	}
	if err := json.Unmarshal([]byte(out), &report); err != nil || report.Failed != 1 || len(report.Districts) != 4 {
		t.Errorf("migrate json = %q (%v)", out, err)
	}
	tables := func(schema string) int {
		var n int
		if err := pool.QueryRow(ctx, "SELECT count(*) FROM information_schema.tables WHERE table_schema = $1",
			schema).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	want := tables("district_a1") // untouched: the whole template
	for _, schema := range []string{"district_c3", "district_d4"} {
		if n := tables(schema); n != want || n == 0 {
			t.Errorf("%s has %d tables after migrate, want %d", schema, n, want)
		}
	}
}

func TestUsage(t *testing.T) {
	out, _, err := ctl(t, "", "help")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range commands() {
		if !strings.Contains(out, "ctl "+c.name) {
			t.Errorf("usage lacks %q:\n%s", c.name, out)
		}
	}
	if _, errOut, err := ctl(t, "", "keys", "create", "-h"); err != nil || !strings.Contains(errOut, "-source") {
		t.Errorf("keys create -h: %v, %q", err, errOut)
	}
}
