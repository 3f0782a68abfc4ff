// Command devstack runs the whole platform in one process for the demo: an embedded Kafka (kfake,
// persisted under DEV_DIR), the local PostgreSQL and ClickHouse (started or reused by libs/testenv/devenv), every
// service, demo districts with API keys, and a generator feeding them sample data.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/edtech-analytics/platform/services/devstack/internal/demo"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	dir := os.Getenv("DEV_DIR")
	if dir == "" {
		dir = ".dev"
	}
	if err := demo.Run(ctx, demo.Options{Dir: dir}, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "devstack:", err)
		os.Exit(1)
	}
}
