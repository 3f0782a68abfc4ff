// Package pgutil opens PostgreSQL connection pools (pgx) with the platform's defaults and quotes
// identifiers built from data, such as per-district schema names.
package pgutil

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Pool defaults, applied when the URL does not set them.
const (
	DefaultMaxConns        = 10
	DefaultMaxConnIdleTime = 5 * time.Minute
	DefaultConnectTimeout  = 10 * time.Second
)

// ErrInvalidIdent is returned (wrapped) by ValidIdent.
var ErrInvalidIdent = errors.New("invalid identifier")

// Connect opens a pool on url (a postgres:// URL or a keyword/value DSN) and pings it. Settings the URL
// leaves out get the defaults above; pool_max_conns, pool_max_conn_idle_time and connect_timeout in the URL
// win.
func Connect(ctx context.Context, url string) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("parsing postgres url: %w", err)
	}
	if !strings.Contains(url, "pool_max_conns") {
		cfg.MaxConns = DefaultMaxConns
	}
	if !strings.Contains(url, "pool_max_conn_idle_time") {
		cfg.MaxConnIdleTime = DefaultMaxConnIdleTime
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = DefaultConnectTimeout
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("creating postgres pool: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("pinging postgres at %s:%d/%s: %w", cfg.ConnConfig.Host, cfg.ConnConfig.Port,
			cfg.ConnConfig.Database, err)
	}
	return pool, nil
}

// QuoteIdent quotes name as a PostgreSQL identifier ("name", inner quotes doubled), safe to splice into SQL.
func QuoteIdent(name string) string {
	return pgx.Identifier{name}.Sanitize()
}

// ValidIdent checks that name is a plain lowercase identifier (letters, digits, underscores, not starting
// with a digit, at most 63 bytes), the form the platform uses for schema and database names so that they
// never need quoting in psql sessions and never get truncated.
func ValidIdent(name string) error {
	if name == "" || len(name) > 63 {
		return fmt.Errorf("%w %q: length must be 1..63", ErrInvalidIdent, name)
	}
	for i, r := range name {
		switch {
		case r >= 'a' && r <= 'z', r == '_':
		case r >= '0' && r <= '9' && i > 0:
		default:
			return fmt.Errorf("%w %q: only a-z, 0-9 and _ allowed, not starting with a digit", ErrInvalidIdent, name)
		}
	}
	return nil
}

// WithDatabase returns serverURL (a postgres:// URL or a keyword/value DSN) pointing at database name.
func WithDatabase(serverURL, name string) (string, error) {
	if strings.HasPrefix(serverURL, "postgres://") || strings.HasPrefix(serverURL, "postgresql://") {
		u, err := url.Parse(serverURL)
		if err != nil {
			return "", fmt.Errorf("parsing postgres url: %w", err)
		}
		u.Path, u.RawPath = "/"+name, ""
		return u.String(), nil
	}
	if err := ValidIdent(name); err != nil {
		return "", err
	}
	return serverURL + " dbname=" + name, nil // later keys win in a DSN
}
