package app

import (
	"context"
	"errors"
	"flag"
	"fmt"

	"github.com/edtech-analytics/platform/libs/keyring"
	"github.com/edtech-analytics/platform/libs/tenancy/audit"
	"github.com/edtech-analytics/platform/libs/tenancy/connectors"
	"github.com/edtech-analytics/platform/libs/tenancy/webhooks"
)

// masterFlags registers where the master keys come from: flags, else MASTER_KEYS or MASTER_KEY_FILE.
func masterFlags(fs *flag.FlagSet) (keys, file *string) {
	keys = fs.String("master-keys", "", "master keys, id:base64key entries, the current first (default: $"+keyring.EnvMasterKeys+")")
	file = fs.String("master-key-file", "", "file of master keys (default: $"+keyring.EnvMasterKeyFile+")")
	return keys, file
}

// masterKeys loads the master keys given by flags (keys, file), or else by the environment (MASTER_KEYS,
// MASTER_KEY_FILE).
func masterKeys(e Env, keys, file string) (*keyring.LocalKeys, error) {
	if keys == "" && file == "" {
		keys, file = e.Getenv(keyring.EnvMasterKeys), e.Getenv(keyring.EnvMasterKeyFile)
	}
	return keyring.LoadLocalKeys(keys, file)
}

// withKeyring runs fn with the keyring of the control database and the master keys.
func withKeyring(ctx context.Context, e Env, c *common, keys, file string, fn func(cp controlPlane, kr *keyring.Keyring) error) error {
	master, err := masterKeys(e, keys, file)
	if err != nil {
		return usagef("%v (set %s or pass --master-keys)", err, keyring.EnvMasterKeys)
	}
	return withControl(ctx, e, c, func(cp controlPlane) error {
		kr := keyring.New(cp.pool, master, keyring.Options{})
		cp.audit = audit.New(cp.pool, kr) // the same master keys sign the command's audit entry
		cp.master = master
		return fn(cp, kr)
	})
}

func runKeysRotateDistrict(ctx context.Context, e Env, args []string) error {
	fs, c := newFlags(e, "keys rotate-district", "--tenant ID")
	tenantID := fs.String("tenant", "", "tenant (district) id")
	keys, file := masterFlags(fs)
	if err := parse(fs, c, args); err != nil {
		return err
	}
	if err := requiredTenant(fs, *tenantID); err != nil {
		return err
	}
	return withKeyring(ctx, e, c, *keys, *file, func(cp controlPlane, kr *keyring.Keyring) error {
		rot, err := kr.RotateDistrict(ctx, *tenantID)
		if errors.Is(err, keyring.ErrUnknownKey) {
			return fmt.Errorf("district %s has no keys yet (nothing of it was sealed): nothing to rotate", *tenantID)
		}
		if err != nil {
			return err
		}
		if _, err := cp.audit.Append(ctx, "ctl", *tenantID, "keys.rotate_district", rot); err != nil {
			return err
		}
		if c.output == "json" {
			return writeJSON(e.Stdout, rot)
		}
		_, err = fmt.Fprintf(e.Stdout, "district %s: KEK %d replaced by KEK %d; %d data keys re-wrapped, %d old KEKs deleted\n",
			*tenantID, rot.From, rot.To, rot.Rewrapped, rot.Retired)
		return err
	})
}

func runKeysRotateMaster(ctx context.Context, e Env, args []string) error {
	fs, c := newFlags(e, "keys rotate-master", "")
	keys, file := masterFlags(fs)
	if err := parse(fs, c, args); err != nil {
		return err
	}
	return withKeyring(ctx, e, c, *keys, *file, func(cp controlPlane, kr *keyring.Keyring) error {
		n, err := kr.RotateMaster(ctx)
		if err != nil {
			return err
		}
		hooks, err := webhooks.New(cp.pool, cp.master, webhooks.Options{}).Rewrap(ctx)
		if err != nil {
			return err
		}
		sources, err := connectors.New(cp.pool, cp.master).Rewrap(ctx)
		if err != nil {
			return err
		}
		out := struct {
			Rewrapped        int `json:"rewrapped"`
			WebhookSecrets   int `json:"webhook_secrets"`
			ConnectorSources int `json:"connector_sources"`
		}{n, hooks, sources}
		if _, err := cp.audit.Append(ctx, "ctl", "", "keys.rotate_master", out); err != nil {
			return err
		}
		if c.output == "json" {
			return writeJSON(e.Stdout, out)
		}
		_, err = fmt.Fprintf(e.Stdout, "%d district keys re-wrapped under the current master key (and %d webhook secrets), and the secrets of %d connector sources; older master keys can now be removed\n",
			n, hooks, sources)
		return err
	})
}

func runKeysNewMaster(_ context.Context, e Env, args []string) error {
	fs, c := newFlags(e, "keys new-master", "--id ID")
	id := fs.String("id", "", "name of the new master key")
	if err := parse(fs, c, args); err != nil {
		return err
	}
	if err := required(fs, "id"); err != nil {
		return err
	}
	_, err := fmt.Fprintln(e.Stdout, keyring.NewLocalKeyLine(*id))
	return err
}
