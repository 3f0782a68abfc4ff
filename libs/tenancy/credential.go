package tenancy

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"strings"
	"time"
)

// A credential is what API keys and dashboard tokens share: <prefix><id>_<secret>, where the id is
// public and names the record, and only the secret's SHA-256 is stored. Both kinds are issued, checked
// and marked used the same way; they differ in what they grant (verbs, or a dashboard role and scope).
type credential struct {
	id, secret string
}

// newCredential draws a fresh id and secret.
func newCredential() (credential, error) {
	id, err := randomText(keyIDLen)
	if err != nil {
		return credential{}, err
	}
	secret, err := randomText(keySecretLen)
	if err != nil {
		return credential{}, err
	}
	return credential{id: id, secret: secret}, nil
}

// hash is what is stored of the secret.
func (c credential) hash() []byte {
	h := sha256.Sum256([]byte(c.secret))
	return h[:]
}

// plaintext is the credential as its holder presents it.
func (c credential) plaintext(prefix string) string { return prefix + c.id + "_" + c.secret }

// parseCredential splits a presented credential of the given prefix; ok is false for any other shape.
func parseCredential(prefix, s string) (credential, bool) {
	rest, ok := strings.CutPrefix(s, prefix)
	if !ok {
		return credential{}, false
	}
	id, secret, ok := parseKey(keyPrefix + rest)
	return credential{id: id, secret: secret}, ok
}

// matches reports, in constant time, whether the secret is the one whose hash was stored.
func (c credential) matches(stored []byte) bool {
	return subtle.ConstantTimeCompare(c.hash(), stored) == 1
}

// markUsed records in table (control.api_keys or control.dashboard_tokens) that the credential id was
// used now, at most once per lastUsedGranularity, and returns the time to report as last used.
func (s *Store) markUsed(ctx context.Context, table, id string, last *time.Time) (*time.Time, error) {
	now := time.Now()
	if last != nil && now.Sub(*last) <= lastUsedGranularity {
		return last, nil
	}
	if _, err := s.pool.Exec(ctx, "UPDATE "+table+" SET last_used_at = $2 WHERE id = $1", id, now); err != nil {
		return nil, fmt.Errorf("recording use of %s %s: %w", table, id, err)
	}
	return &now, nil
}
