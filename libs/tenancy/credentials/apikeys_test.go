package credentials_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"strings"
	"testing"

	"github.com/edtech-analytics/platform/libs/pgutil/pgtest"
	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/edtech-analytics/platform/libs/tenancy/credentials"
	"github.com/edtech-analytics/platform/libs/tenancy/internal/controltest"
)

func TestAPIKeyRoundTrip(t *testing.T) {
	pool, districts := controltest.Districts(t, pgtest.New)
	store := credentials.New(pool)
	ctx := context.Background()
	if _, err := districts.Create(ctx, "springfield", "Springfield"); err != nil {
		t.Fatal(err)
	}

	plaintext, key, err := store.CreateAPIKey(ctx, "springfield", "canvas",
		[]string{credentials.VerbEventsWrite})
	if err != nil {
		t.Fatalf("CreateAPIKey: %v", err)
	}
	if !strings.HasPrefix(plaintext, "eak_"+key.ID+"_") || len(key.ID) != 12 {
		t.Errorf("plaintext %q does not carry id %q", plaintext, key.ID)
	}
	got, err := store.LookupAPIKey(ctx, plaintext)
	if err != nil {
		t.Fatalf("LookupAPIKey: %v", err)
	}
	if got.ID != key.ID || got.TenantID != "springfield" || got.SourceID != "canvas" || got.LastUsedAt == nil {
		t.Errorf("looked up %+v", got)
	}
	if !got.Allows(credentials.VerbEventsWrite) || got.Allows(credentials.VerbRosterWrite) {
		t.Errorf("verbs = %v", got.Verbs)
	}

	// Only the SHA-256 of the secret is stored; the plaintext appears nowhere in the row.
	var row string
	var hash []byte
	if err := pool.QueryRow(ctx, "SELECT k::text, secret_hash FROM control.api_keys k WHERE id = $1",
		key.ID).Scan(&row, &hash); err != nil {
		t.Fatal(err)
	}
	secret := strings.TrimPrefix(plaintext, "eak_"+key.ID+"_")
	if sum := sha256.Sum256([]byte(secret)); !bytes.Equal(hash, sum[:]) {
		t.Error("secret_hash is not SHA-256 of the secret")
	}
	if strings.Contains(row, secret) || strings.Contains(row, plaintext) {
		t.Errorf("stored row %q contains the secret", row)
	}

	list, err := store.APIKeys(ctx, "springfield")
	if err != nil || len(list) != 1 || list[0].ID != key.ID {
		t.Errorf("APIKeys = %+v, %v", list, err)
	}
	if err := store.RevokeAPIKey(ctx, key.ID); err != nil {
		t.Fatalf("RevokeAPIKey: %v", err)
	}
	if _, err := store.LookupAPIKey(ctx, plaintext); !errors.Is(err, credentials.ErrInvalidKey) {
		t.Errorf("revoked key lookup: %v, want ErrInvalidKey", err)
	}
	if list, _ := store.APIKeys(ctx, "springfield"); len(list) != 1 || list[0].RevokedAt == nil {
		t.Errorf("APIKeys after revoke = %+v", list)
	}
	if err := store.RevokeAPIKey(ctx, "nosuchkey000"); !errors.Is(err, tenancy.ErrNotFound) {
		t.Errorf("revoking unknown key: %v", err)
	}
}

func TestLookupRefusesBadKeys(t *testing.T) {
	pool, districts := controltest.Districts(t, pgtest.New)
	store := credentials.New(pool)
	ctx := t.Context()
	if _, err := districts.Create(ctx, "d3", "D3"); err != nil {
		t.Fatal(err)
	}
	plaintext, key, err := store.CreateAPIKey(ctx, "d3", "sis", []string{credentials.VerbRosterWrite, credentials.VerbEventsWrite})
	if err != nil {
		t.Fatal(err)
	}
	flip := func(s string) string { // changes the last character, staying in the alphabet
		last := s[len(s)-1]
		repl := byte('a')
		if last == 'a' {
			repl = 'b'
		}
		return s[:len(s)-1] + string(repl)
	}
	otherID := strings.Replace(plaintext, key.ID, "zzzzzzzzzzzz", 1)
	bad := map[string]string{
		"wrong secret": flip(plaintext),
		"unknown id":   otherID,
		"malformed":    "eak_" + key.ID,
		"empty":        "",
		"bearer text":  "Bearer " + plaintext,
	}
	for name, k := range bad {
		if _, err := store.LookupAPIKey(ctx, k); !errors.Is(err, credentials.ErrInvalidKey) {
			t.Errorf("%s: LookupAPIKey = %v, want ErrInvalidKey", name, err)
		}
	}
	// A key of a tenant that is not active stops working.
	if _, err := pool.Exec(ctx, "UPDATE control.tenants SET status = 'suspended' WHERE id = 'd3'"); err != nil {
		t.Fatal(err)
	}
	if _, err := store.LookupAPIKey(ctx, plaintext); !errors.Is(err, credentials.ErrInvalidKey) {
		t.Errorf("suspended tenant: LookupAPIKey = %v, want ErrInvalidKey", err)
	}
}

func TestCreateAPIKeyValidates(t *testing.T) {
	pool, districts := controltest.Districts(t, pgtest.New)
	store := credentials.New(pool)
	ctx := t.Context()
	if _, err := districts.Create(ctx, "d4", "D4"); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, tenant, source string
		verbs                []string
		is                   error
		mention              string
	}{
		{"unknown tenant", "nope", "sis", []string{credentials.VerbEventsWrite}, tenancy.ErrNotFound, "nope"},
		{"invalid tenant", "A", "sis", []string{credentials.VerbEventsWrite}, tenancy.ErrInvalidArgument, "tenant id"},
		{"unknown verb", "d4", "sis", []string{"events:read"}, tenancy.ErrInvalidArgument, `"events:read"`},
		{"no verbs", "d4", "sis", nil, tenancy.ErrInvalidArgument, "verbs"},
		{"bad source", "d4", "a b", []string{credentials.VerbEventsWrite}, tenancy.ErrInvalidArgument, "source id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := store.CreateAPIKey(ctx, tt.tenant, tt.source, tt.verbs)
			if !errors.Is(err, tt.is) || !strings.Contains(err.Error(), tt.mention) {
				t.Errorf("CreateAPIKey = %v, want %v mentioning %s", err, tt.is, tt.mention)
			}
		})
	}
	if _, err := store.APIKeys(ctx, "nope"); !errors.Is(err, tenancy.ErrNotFound) {
		t.Errorf("APIKeys(unknown) = %v", err)
	}
}
