package stack

import (
	"strings"
	"testing"
)

// TestBadEnvironmentValueStopsTheStack: the demo reads the services' environment too, and a value that
// does not parse stops it naming the variable and the value.
func TestBadEnvironmentValueStopsTheStack(t *testing.T) {
	t.Setenv("GATEWAY_MAX_EVENTS", "1k")
	t.Setenv("SINK_MAX_POLL_RECORDS", "lots")
	err := checkEnv()
	for _, want := range []string{`GATEWAY_MAX_EVENTS="1k"`, `SINK_MAX_POLL_RECORDS="lots"`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("checkEnv() = %v, want it to name %s", err, want)
		}
	}
}
