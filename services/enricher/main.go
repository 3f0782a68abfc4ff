// Command enricher turns raw events into canonical, policy-applied enriched events, exactly once.
package main

import (
	"context"

	"github.com/edtech-analytics/platform/libs/svc"
	"github.com/edtech-analytics/platform/services/enricher/app"
)

func main() {
	var cfg app.Config
	svc.Main("enricher", &cfg, func(ctx context.Context, rt svc.Runtime) error {
		return app.Run(ctx, cfg, rt)
	})
}
