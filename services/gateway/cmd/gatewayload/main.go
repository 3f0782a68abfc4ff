// Command gatewayload measures the gateway: it posts batches of sample events (libs/testenv/sampledata) over
// keep-alive connections and reports accepted events per second at saturation, or latency percentiles at
// a fixed rate. It talks to loopback addresses only and always stops after -duration.
//
// Without -target it starts its own gateway in this process: an embedded Kafka (kfake), the gateway's
// HTTP server with its real validation, encoding and producer (acks=all, idempotent), and an in-memory
// key store in place of PostgreSQL.
//
//	gatewayload -mode saturate -duration 20s
//	gatewayload -mode rate -rate 75000 -duration 20s
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	var cfg config
	fs := flag.NewFlagSet("gatewayload", flag.ContinueOnError)
	cfg.register(fs)
	if err := fs.Parse(os.Args[1:]); err != nil {
		os.Exit(2)
	}
	if err := cfg.validate(); err != nil {
		fmt.Fprintf(os.Stderr, "gatewayload: %v\n", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	rep, err := run(ctx, cfg, os.Stderr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "gatewayload: %v\n", err)
		os.Exit(1)
	}
	fmt.Print(rep.String())
}
