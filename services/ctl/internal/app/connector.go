package app

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/edtech-analytics/platform/libs/keyring"
	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/edtech-analytics/platform/libs/tenancy/connectors"
	"github.com/edtech-analytics/platform/libs/tenancy/credentials"
)

const connectorAddSynopsis = "--tenant ID --source SRC (--kind oneroster-rest --base-url URL --token-url URL --client-id ID " +
	"[--client-secret-file FILE | client secret on stdin] | --kind file-drop) [--delta-every 15m] [--full-every 24h]"

// readSecret reads a secret from a file, or else from stdin: its first line, trimmed. Never from a flag,
// which the shell's history and the process list would keep.
func readSecret(e Env, file string) (string, error) {
	var r io.Reader
	if file != "" {
		f, err := os.Open(file)
		if err != nil {
			return "", usagef("--client-secret-file: %v", err)
		}
		defer func() { _ = f.Close() }()
		r = f
	} else if e.Stdin != nil {
		r = e.Stdin
	} else {
		return "", usagef("the client secret is read from --client-secret-file or stdin, and there is neither")
	}
	line, err := bufio.NewReader(io.LimitReader(r, 4096)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("reading the client secret: %w", err)
	}
	secret := strings.TrimSpace(line)
	if secret == "" {
		return "", usagef("the client secret is empty (give it with --client-secret-file FILE or on stdin)")
	}
	return secret, nil
}

func runConnectorAdd(ctx context.Context, e Env, args []string) error {
	fs, c := newFlags(e, "connector add", connectorAddSynopsis)
	tenantID := fs.String("tenant", "", "tenant (district) id")
	source := fs.String("source", "", "source id the connector sends the rosters as")
	kind := fs.String("kind", connectors.KindOneRosterREST, "oneroster-rest (pulled) or file-drop (files left in the drop)")
	baseURL := fs.String("base-url", "", "OneRoster 1.2 rostering base URL, e.g. https://sis.example/ims/oneroster/rostering/v1p2")
	tokenURL := fs.String("token-url", "", "OAuth 2.0 token endpoint of the provider (client credentials)")
	clientID := fs.String("client-id", "", "OAuth 2.0 client id")
	secretFile := fs.String("client-secret-file", "", "file holding the OAuth 2.0 client secret (default: read from stdin)")
	deltaEvery := fs.Duration("delta-every", 15*time.Minute, "interval of delta syncs (records modified since the last sync)")
	fullEvery := fs.Duration("full-every", 24*time.Hour, "interval of full syncs (sent as bulk: what the provider no longer has is deactivated)")
	keys, file := masterFlags(fs)
	if err := parse(fs, c, args); err != nil {
		return err
	}
	if err := requiredTenant(fs, *tenantID); err != nil {
		return err
	}
	if err := required(fs, "source"); err != nil {
		return err
	}
	if err := tenancy.ValidSourceID(*source); err != nil {
		return usagef("--source: %w", err)
	}
	src := connectors.Source{TenantID: *tenantID, SourceID: *source, Kind: *kind, BaseURL: *baseURL, TokenURL: *tokenURL,
		ClientID: *clientID, DeltaEvery: *deltaEvery, FullEvery: *fullEvery}
	if err := src.Validate(); err != nil {
		return usagef("%v", err)
	}
	var secret string
	if src.Kind == connectors.KindOneRosterREST {
		var err error
		if secret, err = readSecret(e, *secretFile); err != nil {
			return err
		}
	}
	return withKeyring(ctx, e, c, *keys, *file, func(cp controlPlane, _ *keyring.Keyring) error {
		store := connectors.New(cp.pool, cp.master)
		old, err := store.Get(ctx, src.TenantID, src.SourceID)
		if err != nil && !errors.Is(err, connectors.ErrNoSource) {
			return err
		}
		apiKey, key, err := cp.credentials.CreateAPIKey(ctx, src.TenantID, src.SourceID, []string{credentials.VerbRosterWrite})
		if err != nil {
			return err
		}
		src.APIKeyID = key.ID
		webhookKey, err := store.Add(ctx, src, secret, apiKey)
		if err != nil {
			return errors.Join(err, cp.credentials.RevokeAPIKey(ctx, key.ID))
		}
		// A source added again replaces its secrets: the key it sent with until now goes.
		if old.APIKeyID != "" {
			if err := cp.credentials.RevokeAPIKey(ctx, old.APIKeyID); err != nil && !errors.Is(err, tenancy.ErrNotFound) {
				return err
			}
		}
		if err := cp.record(ctx, src.TenantID, "connector.add", map[string]string{"source": src.SourceID, "kind": src.Kind,
			"base_url": src.BaseURL, "client_id": src.ClientID, "api_key": key.ID}); err != nil {
			return err
		}
		const note = "This is the only time the webhook key is shown: give it to the source now, it cannot be shown again."
		if c.output == "json" {
			return writeJSON(e.Stdout, struct {
				connectors.Source
				WebhookKey string `json:"webhook_key"`
				Note       string `json:"note"`
			}{src, webhookKey, note})
		}
		_, err = fmt.Fprintf(e.Stdout, "connector source %s of district %s (%s) added; it sends with api key %s (roster:write).\n"+
			"webhook key (HMAC-SHA256 of X-Edtech-Signature over timestamp.body, POST /v1/webhooks/%s):\n\n    %s\n\n%s\n",
			src.SourceID, src.TenantID, src.Kind, key.ID, src.SourceID, webhookKey, note)
		return err
	})
}

func runConnectorRemove(ctx context.Context, e Env, args []string) error {
	fs, c := newFlags(e, "connector remove", "--tenant ID --source SRC")
	tenantID := fs.String("tenant", "", "tenant (district) id")
	source := fs.String("source", "", "source id")
	if err := parse(fs, c, args); err != nil {
		return err
	}
	if err := requiredTenant(fs, *tenantID); err != nil {
		return err
	}
	if err := required(fs, "source"); err != nil {
		return err
	}
	return withControl(ctx, e, c, func(cp controlPlane) error {
		src, err := connectors.New(cp.pool, nil).Remove(ctx, *tenantID, *source)
		if err != nil {
			return err
		}
		if src.APIKeyID != "" {
			if err := cp.credentials.RevokeAPIKey(ctx, src.APIKeyID); err != nil && !errors.Is(err, tenancy.ErrNotFound) {
				return err
			}
		}
		if err := cp.record(ctx, src.TenantID, "connector.remove", map[string]string{"source": src.SourceID, "api_key": src.APIKeyID}); err != nil {
			return err
		}
		_, err = fmt.Fprintf(e.Stdout, "connector source %s of district %s removed; api key %s revoked\n", src.SourceID, src.TenantID, src.APIKeyID)
		return err
	})
}

func runConnectorStatus(ctx context.Context, e Env, args []string) error {
	fs, c := newFlags(e, "connector status", "[--tenant ID]")
	tenantID := fs.String("tenant", "", "tenant (district) id (default: every district)")
	if err := parse(fs, c, args); err != nil {
		return err
	}
	if *tenantID != "" {
		if err := tenancy.ValidTenantID(*tenantID); err != nil {
			return usagef("--tenant: %w", err)
		}
	}
	return withControl(ctx, e, c, func(cp controlPlane) error {
		srcs, err := connectors.New(cp.pool, nil).List(ctx, *tenantID)
		if err != nil {
			return err
		}
		return writeList(e.Stdout, c.output, srcs, []string{"TENANT", "SOURCE", "KIND", "STATUS", "FAILURES", "LAST SUCCESS", "LAST FULL", "CURSOR", "LAST ERROR"},
			func(s connectors.Source) []string {
				lastErr := s.LastError
				if len(lastErr) > 80 {
					lastErr = lastErr[:77] + "..."
				}
				if lastErr == "" {
					lastErr = "-"
				}
				return []string{s.TenantID, s.SourceID, s.Kind, s.State, strconv.Itoa(s.Failures), formatTime(s.LastSuccessAt),
					formatTime(s.LastFullAt), formatTime(s.Cursor), lastErr}
			})
	})
}
