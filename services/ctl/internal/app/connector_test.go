package app

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edtech-analytics/platform/libs/keyring"
	"github.com/edtech-analytics/platform/libs/tenancy/connectors"
	"github.com/edtech-analytics/platform/libs/tenancy/credentials"
)

// ctlIn runs ctl with stdin.
func ctlIn(t *testing.T, dbURL, stdin string, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	env := Env{Stdin: strings.NewReader(stdin), Stdout: &out, Stderr: &errOut, Getenv: func(k string) string {
		switch k {
		case EnvDatabaseURL:
			return dbURL
		case keyring.EnvMasterKeys:
			return testMasterKeys
		}
		return ""
	}}
	err := Run(t.Context(), args, env)
	return out.String(), err
}

// TestConnectorCommands: `connector add` reads the client secret from stdin or a file (never a flag),
// issues the source's roster:write API key, stores the secrets sealed (the database holds neither the
// client secret nor the keys in plain form) and prints the webhook key once; `connector status` shows
// the sources; `connector remove` removes the source and revokes its key.
func TestConnectorCommands(t *testing.T) {
	pool, url := migratedDB(t)
	mustCtl(t, url, "tenant", "create", "--id", "d1", "--name", "D1")
	rest := []string{"connector", "add", "--tenant", "d1", "--source", "sis", "--base-url", "https://sis.example/ims/oneroster/rostering/v1p2",
		"--token-url", "https://sis.example/token", "--client-id", "cid"}
	if _, err := ctlIn(t, url, "", rest...); !errors.Is(err, ErrUsage) {
		t.Fatalf("add without a secret: %v", err)
	}
	if _, err := ctlIn(t, url, "s3cret\n", append(rest, "--client-secret", "s3cret")...); !errors.Is(err, ErrUsage) {
		t.Fatalf("a secret given as a flag: %v", err)
	}
	out, err := ctlIn(t, url, "client-s3cret\n", append(rest, "--output", "json")...)
	if err != nil {
		t.Fatalf("add: %v", err)
	}
	var added struct {
		connectors.Source
		WebhookKey string `json:"webhook_key"`
	}
	if err := json.Unmarshal([]byte(out), &added); err != nil || len(added.WebhookKey) != 64 || added.APIKeyID == "" {
		t.Fatalf("add printed %s (%v)", out, err)
	}
	if strings.Contains(out, "client-s3cret") {
		t.Fatal("add printed the client secret")
	}
	var raw []byte
	if err := pool.QueryRow(t.Context(), `SELECT sealed_secret || sealed_api_key || sealed_webhook_key FROM control.connector_sources`).Scan(&raw); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte("client-s3cret")) || bytes.Contains(raw, []byte(added.WebhookKey)) {
		t.Fatal("a secret is stored in plain form")
	}
	master, err := keyring.ParseLocalKeys(testMasterKeys)
	if err != nil {
		t.Fatal(err)
	}
	sec, err := connectors.New(pool, master).Open(t.Context(), "d1", "sis")
	if err != nil || sec.ClientSecret != "client-s3cret" || sec.WebhookKey != added.WebhookKey {
		t.Fatalf("the sealed secrets open to %+v (%v)", sec, err)
	}
	key, err := credentials.New(pool).LookupAPIKey(t.Context(), sec.APIKey)
	if err != nil || key.TenantID != "d1" || key.SourceID != "sis" || len(key.Verbs) != 1 || key.Verbs[0] != credentials.VerbRosterWrite {
		t.Fatalf("the source's API key: %+v %v", key, err)
	}

	// Added again: new secrets, and the key it sent with until now is revoked.
	if _, err := ctlIn(t, url, "client-s3cret\n", rest...); err != nil {
		t.Fatalf("add again: %v", err)
	}
	if _, err := credentials.New(pool).LookupAPIKey(t.Context(), sec.APIKey); err == nil {
		t.Fatal("the replaced API key still works")
	}
	if sec, err = connectors.New(pool, master).Open(t.Context(), "d1", "sis"); err != nil {
		t.Fatal(err)
	}
	secretFile := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secretFile, []byte("other\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ctlIn(t, url, "", "connector", "add", "--tenant", "d1", "--source", "sis2", "--base-url", "https://x.example/v1p2",
		"--token-url", "https://x.example/token", "--client-id", "c2", "--client-secret-file", secretFile); err != nil {
		t.Fatalf("add with a secret file: %v", err)
	}
	if _, err := ctlIn(t, url, "", "connector", "add", "--tenant", "d1", "--source", "drop", "--kind", "file-drop"); err != nil {
		t.Fatalf("add a file drop: %v", err)
	}
	if _, err := ctlIn(t, url, "x\n", "connector", "add", "--tenant", "d1", "--source", "bad", "--base-url", "ftp://x", "--token-url", "https://x/t", "--client-id", "c"); !errors.Is(err, ErrUsage) {
		t.Fatalf("a bad base URL: %v", err)
	}
	if _, err := connectors.New(pool, nil).Record(t.Context(), "d1", "sis", connectors.Attempt{At: key.CreatedAt, Err: errors.New("provider answered 503")}); err != nil {
		t.Fatal(err)
	}
	out = mustCtl(t, url, "connector", "status", "--tenant", "d1")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 || !strings.Contains(lines[0], "FAILURES") || !strings.Contains(out, "failing") || !strings.Contains(out, "provider answered 503") ||
		!strings.Contains(out, "file-drop") {
		t.Fatalf("status:\n%s", out)
	}
	current, err := connectors.New(pool, nil).Get(t.Context(), "d1", "sis")
	if err != nil {
		t.Fatal(err)
	}
	out = mustCtl(t, url, "connector", "remove", "--tenant", "d1", "--source", "sis")
	if !strings.Contains(out, current.APIKeyID) {
		t.Fatalf("remove printed %q", out)
	}
	if _, err := credentials.New(pool).LookupAPIKey(t.Context(), sec.APIKey); err == nil {
		t.Fatal("the removed source's API key still works")
	}
	var list []connectors.Source
	if err := json.Unmarshal([]byte(mustCtl(t, url, "connector", "status", "--output", "json")), &list); err != nil || len(list) != 2 {
		t.Fatalf("status after remove: %+v %v", list, err)
	}
	// A new master key: rotate-master re-wraps the sources' secrets, which open under it alone.
	newMaster := keyring.NewLocalKeyLine("m-new")
	if out := mustCtl(t, url, "keys", "rotate-master", "--master-keys", newMaster+","+testMasterKeys); !strings.Contains(out, "the secrets of 2 connector sources") {
		t.Fatalf("rotate-master printed %q", out)
	}
	onlyNew, err := keyring.ParseLocalKeys(newMaster)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := connectors.New(pool, onlyNew).Open(t.Context(), "d1", "sis2"); err != nil || got.ClientSecret != "other" {
		t.Fatalf("the secrets under the new master key alone: %+v %v", got, err)
	}
}
