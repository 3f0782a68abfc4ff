// Package keyringtest gives tests a keyring on a fresh control database of the local test PostgreSQL.
package keyringtest

import (
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/edtech-analytics/platform/libs/keyring"
	"github.com/edtech-analytics/platform/libs/pgutil/pgtest"
	"github.com/edtech-analytics/platform/libs/tenancy"
)

// MasterKeys returns a fresh MASTER_KEYS value holding one key.
func MasterKeys() string { return keyring.NewLocalKeyLine("test") }

// New returns a keyring with a fresh master key over a fresh database with the control schema.
func New(t testing.TB) *keyring.Keyring {
	t.Helper()
	pool, _ := pgtest.New(t)
	if err := tenancy.Migrate(t.Context(), pool); err != nil {
		t.Fatalf("migrating the control schema: %v", err)
	}
	return Over(t, pool)
}

// Over returns a keyring with a fresh master key over pool, whose control schema is migrated.
func Over(t testing.TB, pool *pgxpool.Pool) *keyring.Keyring {
	t.Helper()
	master, err := keyring.ParseLocalKeys(MasterKeys())
	if err != nil {
		t.Fatal(err)
	}
	return keyring.New(pool, master, keyring.Options{})
}
