package svc

import (
	"context"
	"flag"
	"testing"

	"github.com/edtech-analytics/platform/libs/conf"
)

type testConfig struct{ max int }

func (c *testConfig) RegisterFlags(fs *flag.FlagSet) {
	conf.Int(fs, &c.max, "gateway.max-events", "SVC_TEST_MAX_EVENTS", 1000, "")
}

func (c *testConfig) Validate() error { return nil }

// TestBadEnvironmentValueStopsTheService: a service whose environment holds a value that does not parse
// exits with the configuration error's code and never runs on the default.
func TestBadEnvironmentValueStopsTheService(t *testing.T) {
	t.Setenv("SVC_TEST_MAX_EVENTS", "1k")
	ran := false
	code := mainCode("test", &testConfig{}, nil, func(context.Context, Runtime) error { ran = true; return nil })
	if code != 2 || ran {
		t.Fatalf("exit code %d, ran %v; want 2 without running", code, ran)
	}
}
