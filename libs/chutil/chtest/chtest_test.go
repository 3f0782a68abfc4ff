package chtest

import (
	"context"
	"strings"
	"testing"

	"github.com/edtech-analytics/platform/libs/chutil"
	"github.com/edtech-analytics/platform/libs/testenv/devenv"
)

func TestNewGivesAFreshDatabaseDroppedAtCleanup(t *testing.T) {
	var name string
	t.Run("inner", func(t *testing.T) {
		conn, db, addr := New(t)
		name = db
		if want, err := devenv.ClickHouse(t.Context()); err != nil || addr != want {
			t.Fatalf("addr = %q, want devenv's %q (%v)", addr, want, err)
		}
		var current string
		if err := conn.QueryRow(t.Context(), "SELECT currentDatabase()").Scan(&current); err != nil {
			t.Fatal(err)
		}
		if current != db || !strings.HasPrefix(db, "t_testnewgivesafreshdatabasedroppedatcle") {
			t.Fatalf("current database %q, New returned %q", current, db)
		}
		if err := conn.Exec(t.Context(), "CREATE TABLE x (a UInt8) ENGINE = Memory"); err != nil {
			t.Fatal(err)
		}
	})
	if name == "" {
		t.Fatal("inner test did not run")
	}
	ctx := context.Background()
	addr, err := devenv.ClickHouse(ctx)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := chutil.Open(ctx, chutil.Options{Addr: addr})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := conn.Close(); err != nil {
			t.Error(err)
		}
	}()
	var n uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM system.databases WHERE name = ?", name).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("database %s still exists after cleanup", name)
	}
}

func TestNewIsolatesTests(t *testing.T) {
	a, dbA, _ := New(t)
	b, dbB, _ := New(t)
	if dbA == dbB {
		t.Fatalf("two calls returned one database %s", dbA)
	}
	if err := a.Exec(t.Context(), "CREATE TABLE only_in_a (x UInt8) ENGINE = Memory"); err != nil {
		t.Fatal(err)
	}
	if err := b.Exec(t.Context(), "SELECT count() FROM only_in_a"); err == nil {
		t.Fatal("a table created in one database is visible unqualified from another")
	}
}
