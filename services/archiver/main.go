// Command archiver archives the raw and enriched topics to object storage as Parquet files.
package main

import (
	"context"

	"github.com/edtech-analytics/platform/libs/svc"
	"github.com/edtech-analytics/platform/services/archiver/app"
)

func main() {
	var cfg app.Config
	svc.Main("archiver", &cfg, func(ctx context.Context, rt svc.Runtime) error {
		return app.Run(ctx, cfg, rt)
	})
}
