// Command gateway is the platform's HTTP ingestion edge.
package main

import (
	"context"

	"github.com/edtech-analytics/platform/libs/svc"
	"github.com/edtech-analytics/platform/services/gateway/app"
)

func main() {
	var cfg app.Config
	svc.Main("gateway", &cfg, func(ctx context.Context, rt svc.Runtime) error {
		return app.Run(ctx, cfg, rt, app.Hooks{})
	})
}
