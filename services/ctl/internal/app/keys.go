package app

import (
	"context"
	"fmt"
	"strings"

	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/edtech-analytics/platform/libs/tenancy/credentials"
)

// shownOnceNote goes with every newly created key.
const shownOnceNote = "This is the only time the key is shown: store it now, it cannot be shown again."

func runKeysCreate(ctx context.Context, e Env, args []string) error {
	fs, c := newFlags(e, "keys create", "--tenant ID --source SOURCE [--verbs VERB,...]")
	tenantID := fs.String("tenant", "", "tenant (district) id")
	source := fs.String("source", "", "source id the key writes as (the integration or SIS)")
	verbs := fs.String("verbs", credentials.VerbEventsWrite, "comma-separated verbs: "+strings.Join(credentials.Verbs(), ", "))
	if err := parse(fs, c, args); err != nil {
		return err
	}
	if err := required(fs, "tenant", "source", "verbs"); err != nil {
		return err
	}
	if err := tenancy.ValidTenantID(*tenantID); err != nil {
		return usagef("--tenant: %w", err)
	}
	if err := tenancy.ValidSourceID(*source); err != nil {
		return usagef("--source: %w", err)
	}
	var verbList []string
	for v := range strings.SplitSeq(*verbs, ",") {
		verbList = append(verbList, strings.TrimSpace(v))
	}
	return withControl(ctx, e, c, func(cp controlPlane) error {
		plaintext, key, err := cp.credentials.CreateAPIKey(ctx, *tenantID, *source, verbList)
		if err != nil {
			return flagError("verbs", err)
		}
		if err := cp.record(ctx, key.TenantID, "api_key.create", key); err != nil {
			return err
		}
		if c.output == "json" {
			return writeJSON(e.Stdout, struct {
				Key string `json:"key"`
				credentials.APIKey
				Note string `json:"note"`
			}{plaintext, key, shownOnceNote})
		}
		_, err = fmt.Fprintf(e.Stdout, "created api key %s for tenant %s (source %s, verbs %s):\n\n    %s\n\n%s\n",
			key.ID, key.TenantID, key.SourceID, strings.Join(key.Verbs, ","), plaintext, shownOnceNote)
		return err
	})
}

func runKeysList(ctx context.Context, e Env, args []string) error {
	fs, c := newFlags(e, "keys list", "--tenant ID")
	tenantID := fs.String("tenant", "", "tenant (district) id")
	if err := parse(fs, c, args); err != nil {
		return err
	}
	if err := requiredTenant(fs, *tenantID); err != nil {
		return err
	}
	return withControl(ctx, e, c, func(cp controlPlane) error {
		keys, err := cp.credentials.APIKeys(ctx, *tenantID)
		if err != nil {
			return err
		}
		return writeList(e.Stdout, c.output, keys, []string{"ID", "SOURCE", "VERBS", "CREATED", "LAST USED", "REVOKED"},
			func(k credentials.APIKey) []string {
				return []string{k.ID, k.SourceID, strings.Join(k.Verbs, ","), formatTime(&k.CreatedAt),
					formatTime(k.LastUsedAt), formatTime(k.RevokedAt)}
			})
	})
}

func runKeysRevoke(ctx context.Context, e Env, args []string) error {
	fs, c := newFlags(e, "keys revoke", "--id KEYID")
	id := fs.String("id", "", "key id (the 12 characters after eak_)")
	if err := parse(fs, c, args); err != nil {
		return err
	}
	if err := required(fs, "id"); err != nil {
		return err
	}
	return withControl(ctx, e, c, func(cp controlPlane) error {
		if err := cp.credentials.RevokeAPIKey(ctx, *id); err != nil {
			return err
		}
		if err := cp.record(ctx, "", "api_key.revoke", map[string]string{"id": *id}); err != nil {
			return err
		}
		if c.output == "json" {
			return writeJSON(e.Stdout, map[string]any{"id": *id, "revoked": true})
		}
		_, err := fmt.Fprintf(e.Stdout, "revoked api key %s\n", *id)
		return err
	})
}
