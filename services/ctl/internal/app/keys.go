package app

import (
	"context"
	"fmt"
	"strings"

	"github.com/edtech-analytics/platform/libs/tenancy"
)

// shownOnceNote goes with every newly created key.
const shownOnceNote = "This is the only time the key is shown: store it now, it cannot be shown again."

func runKeysCreate(ctx context.Context, e Env, args []string) error {
	fs, c := newFlags(e, "keys create", "--tenant ID --source SOURCE [--verbs VERB,...]")
	tenantID := fs.String("tenant", "", "tenant (district) id")
	source := fs.String("source", "", "source id the key writes as (the integration or SIS)")
	verbs := fs.String("verbs", tenancy.VerbEventsWrite, "comma-separated verbs: "+strings.Join(tenancy.Verbs(), ", "))
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
	return withStore(ctx, e, c, func(store *tenancy.Store) error {
		plaintext, key, err := store.CreateAPIKey(ctx, *tenantID, *source, verbList)
		if err != nil {
			return flagError("verbs", err)
		}
		if c.output == "json" {
			return writeJSON(e.Stdout, struct {
				Key string `json:"key"`
				tenancy.APIKey
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
	if err := required(fs, "tenant"); err != nil {
		return err
	}
	if err := tenancy.ValidTenantID(*tenantID); err != nil {
		return usagef("--tenant: %w", err)
	}
	return withStore(ctx, e, c, func(store *tenancy.Store) error {
		keys, err := store.APIKeys(ctx, *tenantID)
		if err != nil {
			return err
		}
		return writeList(e.Stdout, c.output, keys, []string{"ID", "SOURCE", "VERBS", "CREATED", "LAST USED", "REVOKED"},
			func(k tenancy.APIKey) []string {
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
	return withStore(ctx, e, c, func(store *tenancy.Store) error {
		if err := store.RevokeAPIKey(ctx, *id); err != nil {
			return err
		}
		if c.output == "json" {
			return writeJSON(e.Stdout, map[string]any{"id": *id, "revoked": true})
		}
		_, err := fmt.Fprintf(e.Stdout, "revoked api key %s\n", *id)
		return err
	})
}
