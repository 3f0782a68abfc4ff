// Command pipelineload measures the whole pipeline from outside: it sends unique, realistic learning events
// of every type for N districts through the gateway, closed loop (saturate) or at a fixed rate, and reports
//
//   - accepted events/s at the gateway and the gateway's latency;
//   - events/s end to end: from the first request until ClickHouse and PostgreSQL hold every accepted
//     event, counted exactly (the events table, its uniqExact(event_id), the district rollup and the sink's
//     student_activity must each equal the accepted count: a loss or a duplicate fails the run);
//   - freshness: the time from the gateway's 202 for a marker event to the marker being visible in
//     ClickHouse and in PostgreSQL, sampled by polling;
//   - CPU per event for each service, the embedded Kafka, the load generator itself, and the PostgreSQL
//     and ClickHouse servers; the process's peak resident memory.
//
// By default it starts the whole platform in this process (cmd/devstack's stack: every service and an
// embedded Kafka) on fresh databases of the local test servers (libs/testenv/devenv), and drops them at the
// end. With -target it loads a running platform instead (e.g. `make demo`), provisioning its own districts
// through -database-url and counting in -clickhouse-addr. Loopback addresses only; every phase is bounded
// in time.
//
//	pipelineload -mode saturate -duration 30s
//	pipelineload -mode rate -rate 20000 -duration 30s
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	cfg, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintf(os.Stderr, "pipelineload: %v\n", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	rep, err := run(ctx, cfg, os.Stderr)
	if rep != nil {
		fmt.Print(rep.String())
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "pipelineload: %v\n", err)
		os.Exit(1)
	}
}
