package pgtest

import (
	"context"
	"strings"
	"testing"

	"github.com/edtech-analytics/platform/libs/testenv/devenv"
	"github.com/jackc/pgx/v5"
)

func TestNewGivesAFreshDatabaseDroppedAtCleanup(t *testing.T) {
	var name string
	t.Run("inner", func(t *testing.T) {
		pool, url := New(t)
		if err := pool.QueryRow(t.Context(), "SELECT current_database()").Scan(&name); err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(name, "t_testnewgivesafreshdatabasedroppedatcle") || !strings.Contains(url, "/"+name) {
			t.Fatalf("database %q (url %q) not named after the test", name, url)
		}
		if _, err := pool.Exec(t.Context(), "CREATE TABLE marks (id int PRIMARY KEY)"); err != nil {
			t.Fatal(err)
		}
		// A connection the test forgets to close must not stop the drop.
		if _, err := pgx.Connect(t.Context(), url); err != nil {
			t.Fatal(err)
		}
	})
	if name == "" {
		t.Fatal("inner test did not run")
	}
	if exists(t, name) {
		t.Fatalf("database %s still exists after cleanup", name)
	}
}

func TestNewIsolatesTests(t *testing.T) {
	a, _ := New(t)
	b, _ := New(t)
	if _, err := a.Exec(t.Context(), "CREATE TABLE only_in_a (id int)"); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := b.QueryRow(t.Context(), "SELECT count(*) FROM pg_tables WHERE tablename = 'only_in_a'").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatal("a table created through one database is visible in another")
	}
}

func exists(t *testing.T, name string) bool {
	t.Helper()
	ctx := context.Background()
	url, err := devenv.Postgres(ctx)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := conn.Close(ctx); err != nil {
			t.Error(err)
		}
	}()
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_database WHERE datname = $1", name).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n > 0
}
