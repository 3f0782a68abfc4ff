package pgutil_test

import (
	"context"
	"errors"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/edtech-analytics/platform/libs/pgutil"
	"github.com/edtech-analytics/platform/libs/pgutil/pgtest"
)

func TestConnectAppliesDefaultsUnlessTheURLSetsThem(t *testing.T) {
	_, url := pgtest.New(t)
	tests := []struct {
		name     string
		url      string
		maxConns int32
	}{
		{"defaults", url, pgutil.DefaultMaxConns},
		{"url wins", url + "&pool_max_conns=3", 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pool, err := pgutil.Connect(t.Context(), tt.url)
			if err != nil {
				t.Fatal(err)
			}
			defer pool.Close()
			if got := pool.Config().MaxConns; got != tt.maxConns {
				t.Errorf("MaxConns = %d, want %d", got, tt.maxConns)
			}
			if got := pool.Config().MaxConnIdleTime; got != pgutil.DefaultMaxConnIdleTime {
				t.Errorf("MaxConnIdleTime = %v, want %v", got, pgutil.DefaultMaxConnIdleTime)
			}
			var one int
			if err := pool.QueryRow(t.Context(), "SELECT 1").Scan(&one); err != nil || one != 1 {
				t.Fatalf("SELECT 1 = %d, %v", one, err)
			}
		})
	}
}

func TestConnectFailsFastWithoutServer(t *testing.T) {
	var lc net.ListenConfig
	l, err := lc.Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil { // nothing listens there now
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	pool, err := pgutil.Connect(ctx, "postgres://postgres@127.0.0.1:"+strconv.Itoa(port)+"/postgres?sslmode=disable")
	if err == nil {
		pool.Close()
		t.Fatal("Connect succeeded without a server")
	}
	if ctx.Err() != nil {
		t.Fatalf("Connect took until the deadline: %v", err)
	}
}

func TestConnectRejectsBadURL(t *testing.T) {
	if _, err := pgutil.Connect(t.Context(), "postgres://%zz"); err == nil {
		t.Fatal("Connect accepted a malformed url")
	}
}

func TestQuoteIdent(t *testing.T) {
	tests := []struct{ in, want string }{
		{"district_42", `"district_42"`},
		{"Mixed Case", `"Mixed Case"`},
		{`evil"; DROP TABLE x; --`, `"evil""; DROP TABLE x; --"`},
	}
	for _, tt := range tests {
		if got := pgutil.QuoteIdent(tt.in); got != tt.want {
			t.Errorf("QuoteIdent(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

func TestQuoteIdentIsSafeOnTheServer(t *testing.T) {
	pool, _ := pgtest.New(t)
	name := `we"ird; schema`
	if _, err := pool.Exec(t.Context(), "CREATE SCHEMA "+pgutil.QuoteIdent(name)); err != nil {
		t.Fatal(err)
	}
	var got string
	if err := pool.QueryRow(t.Context(), "SELECT nspname FROM pg_namespace WHERE nspname = $1", name).Scan(&got); err != nil {
		t.Fatalf("schema %q not found: %v", name, err)
	}
}

func TestValidIdent(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"district_42", true},
		{"_private", true},
		{"a", true},
		{"", false},
		{"42district", false},
		{"District", false},
		{"district-42", false},
		{"x; drop", false},
		{"abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghijk", true},   // 63
		{"abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghijkl", false}, // 64
	}
	for _, tt := range tests {
		err := pgutil.ValidIdent(tt.name)
		if (err == nil) != tt.ok {
			t.Errorf("ValidIdent(%q) = %v, want ok=%v", tt.name, err, tt.ok)
		}
		if err != nil && !errors.Is(err, pgutil.ErrInvalidIdent) {
			t.Errorf("ValidIdent(%q) error %v does not wrap ErrInvalidIdent", tt.name, err)
		}
	}
}

func TestWithDatabase(t *testing.T) {
	tests := []struct{ in, want string }{
		{"postgres://u@127.0.0.1:5432/postgres?sslmode=disable", "postgres://u@127.0.0.1:5432/app_db?sslmode=disable"},
		{"postgresql://u:p%40ss@h/", "postgresql://u:p%40ss@h/app_db"},
		{"host=127.0.0.1 user=u dbname=postgres", "host=127.0.0.1 user=u dbname=postgres dbname=app_db"},
	}
	for _, tt := range tests {
		got, err := pgutil.WithDatabase(tt.in, "app_db")
		if err != nil || got != tt.want {
			t.Errorf("WithDatabase(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}
