package app

import (
	"context"
	"fmt"
	"strconv"

	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/edtech-analytics/platform/libs/tenancy/ingest"
)

func runTenantLimits(ctx context.Context, e Env, args []string) error {
	fs, c := newFlags(e, "tenant limits", "[--id ID]")
	id := fs.String("id", "", "only this tenant (district)")
	if err := parse(fs, c, args); err != nil {
		return err
	}
	if *id != "" {
		if err := tenancy.ValidTenantID(*id); err != nil {
			return usagef("--id: %w", err)
		}
	}
	return withControl(ctx, e, c, func(cp controlPlane) error {
		all, err := cp.ingest.Settings(ctx)
		if err != nil {
			return err
		}
		list, err := ofTenant(all, *id, func(s ingest.Settings) string { return s.TenantID })
		if err != nil {
			return err
		}
		return writeIngest(e, c, list)
	})
}

func runTenantSetLimits(ctx context.Context, e Env, args []string) error {
	fs, c := newFlags(e, "tenant set-limits", "--id ID (--events-per-sec N [--burst N] | --default)")
	id := fs.String("id", "", "tenant (district) id")
	eps := fs.Int("events-per-sec", 0, "events per second the district may send, across all gateway instances")
	burst := fs.Int("burst", 0, "events the district may send at once above the rate (default: --events-per-sec)")
	def := fs.Bool("default", false, "return the district to the gateways' default limit")
	if err := parse(fs, c, args); err != nil {
		return err
	}
	if err := required(fs, "id"); err != nil {
		return err
	}
	if err := tenancy.ValidTenantID(*id); err != nil {
		return usagef("--id: %w", err)
	}
	var rl *ingest.RateLimit
	switch {
	case *def && (*eps != 0 || *burst != 0):
		return usagef("tenant set-limits: --default cannot go with --events-per-sec or --burst")
	case *def:
	case *eps < 1:
		return usagef("tenant set-limits: --events-per-sec must be at least 1 (or use --default)")
	case *burst < 0:
		return usagef("tenant set-limits: --burst must be at least 1")
	default:
		rl = &ingest.RateLimit{EventsPerSecond: *eps, Burst: *burst}
		if rl.Burst == 0 {
			rl.Burst = rl.EventsPerSecond
		}
	}
	return withControl(ctx, e, c, func(cp controlPlane) error {
		s, err := cp.ingest.SetRateLimit(ctx, *id, rl)
		if err != nil {
			return flagError("events-per-sec", err)
		}
		if err := cp.record(ctx, *id, "tenant.set_limits", s); err != nil {
			return err
		}
		return writeIngest(e, c, []ingest.Settings{s})
	})
}

func runTenantSetHot(ctx context.Context, e Env, args []string) error {
	fs, c := newFlags(e, "tenant set-hot", "--id ID --shards N")
	id := fs.String("id", "", "tenant (district) id")
	shards := fs.Int("shards", -1, fmt.Sprintf("sub-keys the district's records spread over, by student (0-%d; 0: not hot)", ingest.MaxHotShards))
	if err := parse(fs, c, args); err != nil {
		return err
	}
	if err := required(fs, "id"); err != nil {
		return err
	}
	if err := tenancy.ValidTenantID(*id); err != nil {
		return usagef("--id: %w", err)
	}
	if *shards < 0 {
		return usagef("tenant set-hot: --shards is required (0-%d)", ingest.MaxHotShards)
	}
	return withControl(ctx, e, c, func(cp controlPlane) error {
		s, err := cp.ingest.SetHotShards(ctx, *id, *shards)
		if err != nil {
			return flagError("shards", err)
		}
		if err := cp.record(ctx, *id, "tenant.set_hot", s); err != nil {
			return err
		}
		return writeIngest(e, c, []ingest.Settings{s})
	})
}

// writeIngest prints ingest settings; a district without its own limit shows "default".
func writeIngest(e Env, c *common, list []ingest.Settings) error {
	return writeList(e.Stdout, c.output, list, []string{"ID", "EVENTS/S", "BURST", "HOT SHARDS"},
		func(s ingest.Settings) []string {
			eps, burst := "default", "default"
			if s.RateLimit != nil {
				eps, burst = strconv.Itoa(s.RateLimit.EventsPerSecond), strconv.Itoa(s.RateLimit.Burst)
			}
			return []string{s.TenantID, eps, burst, strconv.Itoa(s.HotShards)}
		})
}

// ofTenant keeps the items of tenant id (all of them when id is empty); none of a named tenant is
// tenancy.ErrNotFound.
func ofTenant[T any](all []T, id string, tenantOf func(T) string) ([]T, error) {
	if id == "" {
		return all, nil
	}
	var list []T
	for _, x := range all {
		if tenantOf(x) == id {
			list = append(list, x)
		}
	}
	if len(list) == 0 {
		return nil, fmt.Errorf("tenant %s: %w", id, tenancy.ErrNotFound)
	}
	return list, nil
}
