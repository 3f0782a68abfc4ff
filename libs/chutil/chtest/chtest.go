// Package chtest gives each test its own ClickHouse database on the server from devenv (the private
// loopback server, or CLICKHOUSE_ADDR when set), dropped when the test ends.
package chtest

import (
	"context"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/edtech-analytics/platform/libs/chutil"
	"github.com/edtech-analytics/platform/libs/testenv/devenv"
)

// New creates a fresh, uniquely named database and returns a connection whose default database it is, its
// name and the server's native address. The connection is closed and the database dropped in t.Cleanup.
func New(t testing.TB) (conn driver.Conn, database string, addr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	addr, err := devenv.ClickHouse(ctx)
	if err != nil {
		t.Fatalf("clickhouse for tests: %v", err)
	}
	database, err = devenv.DatabaseName(t.Name())
	if err != nil {
		t.Fatal(err)
	}
	admin, err := chutil.Open(ctx, chutil.Options{Addr: addr})
	if err != nil {
		t.Fatal(err)
	}
	err = chutil.CreateDatabase(ctx, admin, database)
	if cerr := admin.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := drop(ctx, addr, database); err != nil {
			t.Errorf("dropping test database %s: %v", database, err)
		}
	})

	conn, err = chutil.Open(ctx, chutil.Options{Addr: addr, Database: database})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { // runs before the drop above
		if err := conn.Close(); err != nil {
			t.Errorf("closing clickhouse connection: %v", err)
		}
	})
	return conn, database, addr
}

func drop(ctx context.Context, addr, database string) error {
	admin, err := chutil.Open(ctx, chutil.Options{Addr: addr})
	if err != nil {
		return err
	}
	err = chutil.DropDatabase(ctx, admin, database)
	if cerr := admin.Close(); err == nil {
		err = cerr
	}
	return err
}
