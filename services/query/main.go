// Command query serves dashboards over the ClickHouse rollups.
package main

import (
	"context"

	"github.com/edtech-analytics/platform/libs/svc"
	"github.com/edtech-analytics/platform/services/query/app"
)

func main() {
	var cfg app.Config
	svc.Main("query", &cfg, func(ctx context.Context, rt svc.Runtime) error {
		return app.Run(ctx, cfg, rt, app.Hooks{})
	})
}
