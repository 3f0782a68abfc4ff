package cli_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/edtech-analytics/platform/libs/pgutil/pgtest"
	"github.com/edtech-analytics/platform/services/ctl/cli"
)

// TestRunInProcess drives ctl through the exported runner, as another module would.
func TestRunInProcess(t *testing.T) {
	_, url := pgtest.New(t)
	for _, args := range [][]string{
		{"migrate", "--database-url", url},
		{"tenant", "create", "--id", "demo", "--name", "Demo District", "--database-url", url},
	} {
		var out, errOut bytes.Buffer
		if err := cli.Run(t.Context(), args, &out, &errOut); err != nil {
			t.Fatalf("ctl %v: %v (%s)", args, err, errOut.String())
		}
	}
	var out bytes.Buffer
	if err := cli.Run(t.Context(), []string{"tenant", "list", "--database-url", url}, &out, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "Demo District") {
		t.Errorf("tenant list = %q", out.String())
	}
}
