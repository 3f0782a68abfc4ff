// Package pgtest gives each test its own PostgreSQL database on the server from devenv (the private test
// cluster, or DATABASE_URL when set), dropped when the test ends.
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/edtech-analytics/platform/libs/pgutil"
	"github.com/edtech-analytics/platform/libs/testenv/devenv"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// New creates a fresh, uniquely named database and returns a pool on it and its URL. The pool is closed and
// the database dropped (its remaining connections terminated first) in t.Cleanup.
func New(t testing.TB) (*pgxpool.Pool, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	serverURL, err := devenv.Postgres(ctx)
	if err != nil {
		t.Fatalf("postgres for tests: %v", err)
	}
	name, err := devenv.DatabaseName(t.Name())
	if err != nil {
		t.Fatal(err)
	}
	dbURL, err := pgutil.WithDatabase(serverURL, name)
	if err != nil {
		t.Fatal(err)
	}
	if err := admin(ctx, serverURL, func(conn *pgx.Conn) error {
		_, err := conn.Exec(ctx, "CREATE DATABASE "+pgutil.QuoteIdent(name))
		return err
	}); err != nil {
		t.Fatalf("creating test database %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := dropDatabase(ctx, serverURL, name); err != nil {
			t.Errorf("dropping test database %s: %v", name, err)
		}
	})

	pool, err := pgutil.Connect(ctx, dbURL)
	if err != nil {
		t.Fatalf("connecting to test database: %v", err)
	}
	t.Cleanup(pool.Close) // runs before the drop above
	return pool, dbURL
}

func admin(ctx context.Context, serverURL string, fn func(*pgx.Conn) error) error {
	conn, err := pgx.Connect(ctx, serverURL)
	if err != nil {
		return fmt.Errorf("connecting to postgres: %w", err)
	}
	fnErr := fn(conn)
	return errors.Join(fnErr, conn.Close(ctx))
}

// dropDatabase terminates the database's connections and drops it, retrying while a connection that raced
// the termination is still open.
func dropDatabase(ctx context.Context, serverURL, name string) error {
	return admin(ctx, serverURL, func(conn *pgx.Conn) error {
		for attempt := 0; ; attempt++ {
			if _, err := conn.Exec(ctx,
				"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
				name); err != nil {
				return fmt.Errorf("terminating connections: %w", err)
			}
			_, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgutil.QuoteIdent(name))
			var pgErr *pgconn.PgError
			if err == nil || attempt >= 20 || !errors.As(err, &pgErr) || pgErr.Code != "55006" { // object_in_use
				return err
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(100 * time.Millisecond):
			}
		}
	})
}
