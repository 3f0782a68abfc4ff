package app

import (
	"context"
	"fmt"

	"github.com/edtech-analytics/platform/libs/tenancy"
)

func runTenantCreate(ctx context.Context, e Env, args []string) error {
	fs, c := newFlags(e, "tenant create", "--id ID --name NAME")
	id := fs.String("id", "", "tenant (district) id: 1-48 of a-z, 0-9, _")
	name := fs.String("name", "", "display name")
	if err := parse(fs, c, args); err != nil {
		return err
	}
	if err := required(fs, "id", "name"); err != nil {
		return err
	}
	if err := tenancy.ValidTenantID(*id); err != nil {
		return usagef("--id: %w", err) // refuse before touching the database
	}
	return withStore(ctx, e, c, func(store *tenancy.Store) error {
		t, err := store.CreateTenant(ctx, *id, *name)
		if err != nil {
			return flagError("name", err)
		}
		schema, err := tenancy.SchemaName(t.ID)
		if err != nil {
			return err
		}
		if c.output == "json" {
			return writeJSON(e.Stdout, struct {
				tenancy.Tenant
				Schema string `json:"schema"`
			}{t, schema})
		}
		_, err = fmt.Fprintf(e.Stdout, "created tenant %s (%s) with schema %s\n", t.ID, t.Name, schema)
		return err
	})
}

func runTenantList(ctx context.Context, e Env, args []string) error {
	fs, c := newFlags(e, "tenant list", "")
	if err := parse(fs, c, args); err != nil {
		return err
	}
	return withStore(ctx, e, c, func(store *tenancy.Store) error {
		tenants, err := store.Tenants(ctx)
		if err != nil {
			return err
		}
		return writeList(e.Stdout, c.output, tenants, []string{"ID", "NAME", "STATUS", "CREATED"},
			func(t tenancy.Tenant) []string { return []string{t.ID, t.Name, t.Status, formatTime(&t.CreatedAt)} })
	})
}
