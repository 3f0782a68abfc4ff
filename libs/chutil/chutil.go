// Package chutil opens ClickHouse connections (clickhouse-go v2, native protocol) and holds the small
// helpers every ClickHouse user in the platform needs: databases, waiting for mutations, and a versioned
// migration runner.
//
// Everything here runs on the ClickHouse 18.16 test server as well as on modern ClickHouse: insert only with
// PrepareBatch or INSERT ... SELECT (an Exec of INSERT ... VALUES hangs on 18.16), and wait for ALTER ...
// DELETE with WaitMutations (there is no mutations_sync).
package chutil

import (
	"context"
	"crypto/tls"
	"fmt"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// Options says where and how to connect.
type Options struct {
	// Addr is the native-protocol address, host:port (port 9000 by default on a server), or several,
	// separated by commas: the servers of a cluster, tried in order when one does not answer.
	Addr string
	// Database is the connection's default database; empty means "default".
	Database string
	// User defaults to "default".
	User     string
	Password string
	// DialTimeout defaults to 10s.
	DialTimeout time.Duration
	// MaxOpenConns defaults to 10.
	MaxOpenConns int
	// Settings apply to every query of the connection (a query's context may override them).
	Settings clickhouse.Settings
	// TLS, when set, connects to the server's secure native port (tcp_port_secure) with it: a custom CA
	// and a client certificate for mutual TLS (conf.ClientTLS).
	TLS *tls.Config
}

// Open connects over the native protocol and pings the server.
func Open(ctx context.Context, opts Options) (driver.Conn, error) {
	if opts.Addr == "" {
		return nil, fmt.Errorf("opening clickhouse: empty address")
	}
	if opts.Database == "" {
		opts.Database = "default"
	}
	if opts.User == "" {
		opts.User = "default"
	}
	if opts.DialTimeout == 0 {
		opts.DialTimeout = 10 * time.Second
	}
	if opts.MaxOpenConns == 0 {
		opts.MaxOpenConns = 10
	}
	conn, err := clickhouse.Open(&clickhouse.Options{
		Protocol:        clickhouse.Native, // the HTTP protocol fails against 18.16
		Addr:            strings.Split(opts.Addr, ","),
		Auth:            clickhouse.Auth{Database: opts.Database, Username: opts.User, Password: opts.Password},
		DialTimeout:     opts.DialTimeout,
		MaxOpenConns:    opts.MaxOpenConns,
		MaxIdleConns:    min(5, opts.MaxOpenConns),
		ConnMaxLifetime: time.Hour,
		Settings:        opts.Settings,
		TLS:             opts.TLS,
	})
	if err != nil {
		return nil, fmt.Errorf("opening clickhouse at %s: %w", opts.Addr, err)
	}
	if err := conn.Ping(ctx); err != nil {
		_ = conn.Close() // the ping error is the one to report
		return nil, fmt.Errorf("pinging clickhouse at %s (database %s): %w", opts.Addr, opts.Database, err)
	}
	return conn, nil
}

// QuoteIdent quotes name as a ClickHouse identifier with backquotes, safe to splice into SQL.
func QuoteIdent(name string) string {
	return "`" + strings.NewReplacer(`\`, `\\`, "`", "\\`").Replace(name) + "`"
}

// CreateDatabase creates database name if it does not exist.
func CreateDatabase(ctx context.Context, conn driver.Conn, name string) error {
	if err := conn.Exec(ctx, "CREATE DATABASE IF NOT EXISTS "+QuoteIdent(name)); err != nil {
		return fmt.Errorf("creating clickhouse database %s: %w", name, err)
	}
	return nil
}

// DropDatabase drops database name and everything in it, if it exists.
func DropDatabase(ctx context.Context, conn driver.Conn, name string) error {
	if err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+QuoteIdent(name)); err != nil {
		return fmt.Errorf("dropping clickhouse database %s: %w", name, err)
	}
	return nil
}

// WaitMutations polls system.mutations until every mutation of database.table is done, or ctx ends. A
// mutation that cannot complete keeps it waiting until ctx ends, so give ctx a deadline.
func WaitMutations(ctx context.Context, conn driver.Conn, database, table string) error {
	const q = "SELECT count() FROM system.mutations WHERE database = ? AND table = ? AND is_done = 0"
	delay := 10 * time.Millisecond
	for {
		var pending uint64
		if err := conn.QueryRow(ctx, q, database, table).Scan(&pending); err != nil {
			return fmt.Errorf("reading mutations of %s.%s: %w", database, table, err)
		}
		if pending == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %d mutations of %s.%s: %w", pending, database, table, ctx.Err())
		case <-time.After(delay):
		}
		delay = min(2*delay, 200*time.Millisecond)
	}
}
