package onerostertest

import (
	"os"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/edtech-analytics/platform/libs/keyring"
	"github.com/edtech-analytics/platform/libs/pgutil/pgtest"
	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/edtech-analytics/platform/libs/tenancy/connectors"
	"github.com/edtech-analytics/platform/libs/tenancy/fleet"
	"github.com/edtech-analytics/platform/libs/tenancy/tenants"
)

// Control returns a fresh migrated control database (the real PostgreSQL of libs/testenv) with the
// districts given, and the connectors store over it, sealing with a new local master key (whose
// MASTER_KEYS entry it returns).
func Control(t testing.TB, districts ...string) (*pgxpool.Pool, *connectors.Store, string) {
	t.Helper()
	pool, _ := pgtest.New(t)
	if err := tenancy.Migrate(t.Context(), pool); err != nil {
		t.Fatal(err)
	}
	f := fleet.New(pool, os.Getenv)
	t.Cleanup(f.Close)
	for _, d := range districts {
		if _, err := tenants.New(f).Create(t.Context(), d, d); err != nil {
			t.Fatal(err)
		}
	}
	line := keyring.NewLocalKeyLine("m1")
	master, err := keyring.ParseLocalKeys(line)
	if err != nil {
		t.Fatal(err)
	}
	return pool, connectors.New(pool, master), line
}
