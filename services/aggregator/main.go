// Command aggregator consumes the enriched topic into ClickHouse: the events fact table and its rollups.
package main

import (
	"context"

	"github.com/edtech-analytics/platform/libs/svc"
	"github.com/edtech-analytics/platform/services/aggregator/app"
)

func main() {
	var cfg app.Config
	svc.Main("aggregator", &cfg, func(ctx context.Context, rt svc.Runtime) error {
		return app.Run(ctx, cfg, rt)
	})
}
