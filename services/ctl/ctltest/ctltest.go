// Package ctltest runs ctl commands in-process, for the tests of other modules (the enricher's replays,
// the deploy checks).
package ctltest

import (
	"bytes"
	"context"
	"github.com/edtech-analytics/platform/libs/keyring"
	"os"
	"testing"

	"github.com/edtech-analytics/platform/libs/conf"
	"github.com/edtech-analytics/platform/services/ctl/internal/app"
)

// Run runs one ctl command, e.g. Run(t, "tenant", "create", "--id", "d1", "--name", "District 1"), and
// returns what it printed on stdout; it fails the test, with what ctl printed, if the command fails.
// DATABASE_URL is read from the process environment unless --database-url is given.
func Run(t testing.TB, args ...string) string {
	t.Helper()
	out, err := RunErr(t.Context(), args...)
	if err != nil {
		t.Fatalf("ctl %v: %v\n%s", args, err, out)
	}
	return out
}

// RunErr runs one ctl command and returns its stdout and stderr together, and its error.
func RunErr(ctx context.Context, args ...string) (string, error) {
	var out bytes.Buffer
	err := app.Run(ctx, args, app.Env{Stdout: &out, Stderr: &out, Getenv: getenv})
	return out.String(), err
}

// masterKeys are the master keys of the commands run here when the environment has none (they sign the
// audit log): the same for every command of the test binary.
var masterKeys = keyring.NewLocalKeyLine("ctltest")

func getenv(k string) string {
	if v := os.Getenv(k); v != "" || k != keyring.EnvMasterKeys || os.Getenv(keyring.EnvMasterKeyFile) != "" {
		return v
	}
	return masterKeys
}

// MigrateVars returns the environment variables `ctl migrate` reads, for the deploy checks.
func MigrateVars() []conf.Var { return app.MigrateVars() }
