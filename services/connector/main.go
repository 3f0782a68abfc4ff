// Command connector pulls districts' rosters from the systems that only wait to be asked (OneRoster 1.2
// REST providers), takes the files districts drop, and sends both to the gateway's roster API.
package main

import (
	"context"

	"github.com/edtech-analytics/platform/libs/svc"
	"github.com/edtech-analytics/platform/services/connector/app"
)

func main() {
	var cfg app.Config
	svc.Main("connector", &cfg, func(ctx context.Context, rt svc.Runtime) error {
		return app.Run(ctx, cfg, rt)
	})
}
