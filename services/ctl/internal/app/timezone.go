package app

import (
	"context"
	"fmt"

	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/edtech-analytics/platform/libs/tenancy/timezones"
)

func runTenantSetTimezone(ctx context.Context, e Env, args []string) error {
	fs, c := newFlags(e, "tenant set-timezone", "--id ID --timezone ZONE")
	id := fs.String("id", "", "tenant (district) id")
	zone := fs.String("timezone", "", "IANA time zone the district's days begin in, such as America/Chicago (UTC: back to the default)")
	if err := parse(fs, c, args); err != nil {
		return err
	}
	if err := required(fs, "id", "timezone"); err != nil {
		return err
	}
	if err := tenancy.ValidTenantID(*id); err != nil {
		return usagef("--id: %w", err)
	}
	if err := timezones.Check(*zone); err != nil {
		return usagef("--timezone: %w", err)
	}
	return withControl(ctx, e, c, func(cp controlPlane) error {
		z, err := timezones.New(cp.pool).Set(ctx, *id, *zone)
		if err != nil {
			return flagError("timezone", err)
		}
		if err := cp.record(ctx, *id, "tenant.set_timezone", z); err != nil {
			return err
		}
		if err := writeZones(e, c, []timezones.Zone{z}); err != nil {
			return err
		}
		_, _ = fmt.Fprintln(e.Stderr, zoneChangeWarning) // a notice beside the answer; stdout stays parseable
		return nil
	})
}

// zoneChangeWarning is what set-timezone says about the rollups: their days are stamped on each event
// when it is enriched (ADR 0024).
const zoneChangeWarning = "note: set the zone when the district is provisioned; changing it later restates only new events: " +
	"events enriched from now on (within the enricher's policy refresh) count on days of the new zone, earlier ones keep " +
	"their days, also through a rebuild from the archive, which replays the days stamped then"

func runTenantTimezones(ctx context.Context, e Env, args []string) error {
	fs, c := newFlags(e, "tenant timezones", "[--id ID]")
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
		all, err := timezones.New(cp.pool).Zones(ctx)
		if err != nil {
			return err
		}
		list, err := ofTenant(all, *id, func(z timezones.Zone) string { return z.TenantID })
		if err != nil {
			return err
		}
		return writeZones(e, c, list)
	})
}

func writeZones(e Env, c *common, list []timezones.Zone) error {
	return writeList(e.Stdout, c.output, list, []string{"ID", "TIME ZONE"},
		func(z timezones.Zone) []string { return []string{z.TenantID, z.TimeZone} })
}
