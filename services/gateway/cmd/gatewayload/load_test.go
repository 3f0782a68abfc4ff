package main

import (
	"io"
	"strings"
	"testing"
	"time"
)

// TestLoadToolRuns drives the tool against its in-process gateway in both modes for a moment: every
// event is accepted, nothing fails, the rate mode keeps its schedule, and the report carries the numbers.
func TestLoadToolRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("runs load")
	}
	for _, cfg := range []config{
		{mode: "saturate", duration: 700 * time.Millisecond, warmup: 200 * time.Millisecond, batch: 100, tenants: 2},
		{mode: "rate", rate: 2000, duration: 700 * time.Millisecond, batch: 100, tenants: 2, workers: 4},
	} {
		t.Run(cfg.mode, func(t *testing.T) {
			if err := cfg.validate(); err != nil {
				t.Fatal(err)
			}
			rep, err := run(t.Context(), cfg, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			// Every answer was 202 with every event accepted (a batch with a rejected event counts as failed).
			if rep.requests == 0 || rep.accepted < rep.requests*50 || len(rep.failed) != 0 || rep.p99 <= 0 {
				t.Fatalf("report: %+v", rep)
			}
			if cfg.mode == "rate" && (rep.requests < 8 || rep.requests > 16) {
				t.Errorf("sent %d requests in 0.7s at 20 requests/s", rep.requests)
			}
			if !strings.Contains(rep.String(), "events/s") {
				t.Errorf("report text: %s", rep)
			}
		})
	}
}

func TestTargetMustBeLoopback(t *testing.T) {
	for target, ok := range map[string]bool{
		"http://127.0.0.1:8080": true, "http://localhost:8080": true, "http://[::1]:80": true, "http://127.3.2.1:1": true,
		"http://10.0.0.1:8080": false, "http://example.com": false, "https://127.0.0.1": false, "127.0.0.1:8080": false,
	} {
		if err := loopbackOnly(target); (err == nil) != ok {
			t.Errorf("loopbackOnly(%q) = %v", target, err)
		}
	}
}
