// Command devenv starts, reports and stops the local PostgreSQL and ClickHouse servers used by the tests and
// the demo.
//
//	devenv up       ensure both servers run; print eval-able `export` lines
//	devenv status   show what runs under the state dir
//	devenv down     stop the servers devenv started
//
// The state dir is $EDTECH_DEV_DIR, or /tmp/edtech-analytics-dev. `up` honours DATABASE_URL and
// CLICKHOUSE_ADDR: a server given there is used as is.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/edtech-analytics/platform/libs/testenv/devenv"
)

const usage = `usage: devenv up|status|down

  up       ensure PostgreSQL and ClickHouse run; print export lines (eval "$(devenv up)")
  status   show the servers recorded under the state dir
  down     stop the servers devenv started (data is kept)

state dir: $EDTECH_DEV_DIR or /tmp/edtech-analytics-dev
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "devenv:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) != 1 {
		_, err := io.WriteString(stderr, usage)
		return errors.Join(errors.New("expected one command"), err)
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	env := devenv.Env{Dir: devenv.Dir(), Logger: slog.New(slog.NewJSONHandler(stderr, nil))}

	switch args[0] {
	case "up":
		pg, err := postgres(ctx, env)
		if err != nil {
			return err
		}
		ch, err := clickhouse(ctx, env)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(stdout, "export %s=%s\nexport %s=%s\n", devenv.EnvDatabaseURL, shellQuote(pg),
			devenv.EnvClickHouseAddr, shellQuote(ch))
		return err
	case "status":
		s, err := env.Status(ctx)
		if err != nil {
			return err
		}
		out := &printer{w: stdout}
		out.printf("state dir   %s\n", s.Dir)
		for _, srv := range []struct {
			name string
			st   devenv.ServerStatus
		}{{"postgres", s.Postgres}, {"clickhouse", s.ClickHouse}} {
			state := "stopped"
			if srv.st.Running {
				state = "running"
			}
			out.printf("%-11s %s", srv.name, state)
			if srv.st.PID != 0 {
				out.printf(" pid=%d addr=%s", srv.st.PID, srv.st.Addr)
			}
			out.printf("\n")
		}
		return out.err
	case "down":
		return env.Down(ctx)
	case "help", "-h", "-help", "--help":
		_, err := io.WriteString(stdout, usage)
		return err
	}
	_, err := io.WriteString(stderr, usage)
	return errors.Join(fmt.Errorf("unknown command %q", args[0]), err)
}

// printer writes formatted text to w until a write fails, and keeps that first error.
type printer struct {
	w   io.Writer
	err error
}

func (p *printer) printf(format string, args ...any) {
	if p.err == nil {
		_, p.err = fmt.Fprintf(p.w, format, args...)
	}
}

// postgres and clickhouse mirror devenv.Postgres and devenv.ClickHouse with the CLI's logger.
func postgres(ctx context.Context, env devenv.Env) (string, error) {
	if u := os.Getenv(devenv.EnvDatabaseURL); u != "" {
		return u, nil
	}
	return env.Postgres(ctx)
}

func clickhouse(ctx context.Context, env devenv.Env) (string, error) {
	if a := os.Getenv(devenv.EnvClickHouseAddr); a != "" {
		return a, nil
	}
	return env.ClickHouse(ctx)
}

// shellQuote quotes s for POSIX shells.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
