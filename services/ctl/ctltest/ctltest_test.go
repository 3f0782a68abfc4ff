package ctltest_test

import (
	"strings"
	"testing"

	"github.com/edtech-analytics/platform/libs/pgutil/pgtest"
	"github.com/edtech-analytics/platform/services/ctl/ctltest"
)

// TestRunInProcess drives ctl through the helper, as another module's test would.
func TestRunInProcess(t *testing.T) {
	_, url := pgtest.New(t)
	ctltest.Run(t, "migrate", "--database-url", url)
	ctltest.Run(t, "tenant", "create", "--id", "demo", "--name", "Demo District", "--database-url", url)
	if out := ctltest.Run(t, "tenant", "list", "--database-url", url); !strings.Contains(out, "Demo District") {
		t.Errorf("tenant list = %q", out)
	}
	if _, err := ctltest.RunErr(t.Context(), "no-such-command"); err == nil {
		t.Error("an unknown command did not fail")
	}
}
