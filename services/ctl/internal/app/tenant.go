package app

import (
	"context"
	"errors"
	"fmt"

	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/edtech-analytics/platform/libs/tenancy/fleet"
	"github.com/edtech-analytics/platform/libs/tenancy/tenants"
)

func runTenantCreate(ctx context.Context, e Env, args []string) error {
	fs, c := newFlags(e, "tenant create", "--id ID --name NAME [--instance NAME]")
	id := fs.String("id", "", "tenant (district) id: 1-48 of a-z, 0-9, _")
	name := fs.String("name", "", "display name")
	instance := fs.String("instance", "", "PostgreSQL instance to place the district on (default: the default instance)")
	if err := parse(fs, c, args); err != nil {
		return err
	}
	if err := required(fs, "id", "name"); err != nil {
		return err
	}
	if err := tenancy.ValidTenantID(*id); err != nil {
		return usagef("--id: %w", err) // refuse before touching the database
	}
	if *instance != "" {
		if err := fleet.ValidInstanceName(*instance); err != nil {
			return usagef("--instance: %w", err)
		}
	}
	return withControl(ctx, e, c, func(cp controlPlane) error {
		t, err := cp.tenants.CreateOn(ctx, *id, *name, *instance)
		if errors.Is(err, tenancy.ErrNotFound) {
			return fmt.Errorf("--instance: %w", err)
		}
		if err != nil {
			return flagError("name", err)
		}
		schema, err := tenancy.SchemaName(t.ID)
		if err != nil {
			return err
		}
		placed, err := cp.fleet.Placement(ctx, t.ID)
		if err != nil {
			return err
		}
		if err := cp.record(ctx, t.ID, "tenant.create", map[string]string{"name": t.Name, "instance": placed}); err != nil {
			return err
		}
		if c.output == "json" {
			return writeJSON(e.Stdout, struct {
				tenants.Tenant
				Schema   string `json:"schema"`
				Instance string `json:"instance"`
			}{t, schema, placed})
		}
		_, err = fmt.Fprintf(e.Stdout, "created tenant %s (%s) with schema %s on instance %s\n", t.ID, t.Name, schema, placed)
		return err
	})
}

func runTenantDelete(ctx context.Context, e Env, args []string) error {
	fs, c := newFlags(e, "tenant delete", "--id ID --confirm ID")
	id := fs.String("id", "", "tenant (district) id")
	confirm := fs.String("confirm", "", "the tenant id again: deletion drops the district's schema and all its data")
	if err := parse(fs, c, args); err != nil {
		return err
	}
	if err := required(fs, "id"); err != nil {
		return err
	}
	if err := tenancy.ValidTenantID(*id); err != nil {
		return usagef("--id: %w", err)
	}
	if *confirm != *id {
		return usagef("tenant delete: drops schema district_%s and all its data; repeat the id in --confirm %s to proceed", *id, *id)
	}
	return withControl(ctx, e, c, func(cp controlPlane) error {
		d, err := cp.tenants.Delete(ctx, *id)
		if err != nil {
			return err
		}
		if _, err := cp.audit.Append(ctx, "ctl", d.TenantID, "tenant.delete", d); err != nil {
			return err
		}
		if c.output == "json" {
			return writeJSON(e.Stdout, d)
		}
		dropped := "already gone"
		if d.SchemaDropped {
			dropped = "dropped"
		}
		_, err = fmt.Fprintf(e.Stdout, "deleted tenant %s: %d api keys revoked, schema %s on instance %s %s\n",
			d.TenantID, d.KeysRevoked, d.Schema, d.Instance, dropped)
		return err
	})
}

// listedTenant is a tenant as tenant list shows it.
type listedTenant struct {
	tenants.Tenant
	Instance string `json:"instance"`
}

func runTenantList(ctx context.Context, e Env, args []string) error {
	fs, c := newFlags(e, "tenant list", "")
	if err := parse(fs, c, args); err != nil {
		return err
	}
	return withControl(ctx, e, c, func(cp controlPlane) error {
		live, err := cp.tenants.Tenants(ctx)
		if err != nil {
			return err
		}
		placed, err := cp.fleet.Placements(ctx)
		if err != nil {
			return err
		}
		list := make([]listedTenant, len(live))
		for i, t := range live {
			list[i] = listedTenant{t, placed[t.ID]}
		}
		return writeList(e.Stdout, c.output, list, []string{"ID", "NAME", "STATUS", "INSTANCE", "CREATED"},
			func(t listedTenant) []string {
				return []string{t.ID, t.Name, t.Status, t.Instance, formatTime(&t.CreatedAt)}
			})
	})
}
