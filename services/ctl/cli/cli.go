// Package cli exposes ctl's command runner so that other programs (the dev stack, tests) can run ctl
// commands in-process.
package cli

import (
	"context"
	"io"
	"os"

	"github.com/edtech-analytics/platform/libs/conf"
	"github.com/edtech-analytics/platform/services/ctl/internal/app"
)

// ErrUsage wraps errors caused by a bad command line (unknown command, missing or invalid flag).
var ErrUsage = app.ErrUsage

// MigrateVars returns the environment variables `ctl migrate` reads, for the deploy checks.
func MigrateVars() []conf.Var { return app.MigrateVars() }

// Run runs one ctl command, e.g. []string{"tenant", "create", "--id", "d1", "--name", "District 1"}.
// Results go to stdout, progress and notes to stderr. DATABASE_URL is read from the process environment
// unless --database-url is given.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return app.Run(ctx, args, app.Env{Stdout: stdout, Stderr: stderr, Getenv: os.Getenv})
}
