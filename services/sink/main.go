// Command sink keeps each district's current state in PostgreSQL from the enriched topic.
package main

import (
	"context"

	"github.com/edtech-analytics/platform/libs/svc"
	"github.com/edtech-analytics/platform/services/sink/app"
)

func main() {
	var cfg app.Config
	svc.Main("sink", &cfg, func(ctx context.Context, rt svc.Runtime) error {
		return app.Run(ctx, cfg, rt)
	})
}
