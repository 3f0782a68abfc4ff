package tenancy

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Verbs an API key can be granted.
const (
	VerbEventsWrite    = "events:write"
	VerbRosterWrite    = "roster:write"
	VerbDashboardsRead = "dashboards:read"
)

// Verbs lists every verb a key can hold.
func Verbs() []string { return []string{VerbEventsWrite, VerbRosterWrite, VerbDashboardsRead} }

// API key text: keyPrefix, then keyIDLen characters of id, "_", then keySecretLen characters of secret, all
// in keyAlphabet (lowercase base32). The secret carries 260 random bits (at least the 32 bytes asked for).
const (
	keyPrefix    = "eak_"
	keyAlphabet  = "abcdefghijklmnopqrstuvwxyz234567"
	keyIDLen     = 12
	keySecretLen = 52
	// lastUsedGranularity bounds how often a lookup writes last_used_at for one key.
	lastUsedGranularity = time.Minute
)

// APIKey is a key's record; the secret itself is never stored, only its SHA-256.
type APIKey struct {
	ID         string     `json:"id"`
	TenantID   string     `json:"tenant_id"`
	SourceID   string     `json:"source_id"`
	Verbs      []string   `json:"verbs"`
	CreatedAt  time.Time  `json:"created_at"`
	RevokedAt  *time.Time `json:"revoked_at,omitempty"`
	LastUsedAt *time.Time `json:"last_used_at,omitempty"`
}

// Allows reports whether the key was granted verb.
func (k APIKey) Allows(verb string) bool {
	return slices.Contains(k.Verbs, verb)
}

const apiKeyColumns = "id, tenant_id, source_id, verbs, created_at, revoked_at, last_used_at"

func scanAPIKey(row pgx.Row, extra ...any) (APIKey, error) {
	var k APIKey
	err := row.Scan(append([]any{&k.ID, &k.TenantID, &k.SourceID, &k.Verbs, &k.CreatedAt, &k.RevokedAt, &k.LastUsedAt},
		extra...)...)
	return k, err
}

// CreateAPIKey issues a key for tenantID, writing as sourceID with the given verbs. plaintext
// (eak_<id>_<secret>) is returned only here: show it once. Unknown tenant: ErrNotFound; bad source id or
// unknown verb: ErrInvalidArgument naming it.
func (s *Store) CreateAPIKey(ctx context.Context, tenantID, sourceID string, verbs []string) (string, APIKey, error) {
	if err := ValidTenantID(tenantID); err != nil {
		return "", APIKey{}, err
	}
	if err := ValidSourceID(sourceID); err != nil {
		return "", APIKey{}, err
	}
	verbs, err := normalizeVerbs(verbs)
	if err != nil {
		return "", APIKey{}, err
	}
	c, err := newCredential()
	if err != nil {
		return "", APIKey{}, err
	}
	// The INSERT ... SELECT inserts nothing when the tenant is unknown or deleted.
	k, err := scanAPIKey(s.pool.QueryRow(ctx,
		`INSERT INTO control.api_keys (id, tenant_id, source_id, verbs, secret_hash)
		 SELECT $1, t.id, $3, $4, $5 FROM control.tenants t WHERE t.id = $2 AND t.deleted_at IS NULL
		 RETURNING `+apiKeyColumns, c.id, tenantID, sourceID, verbs, c.hash()))
	if errors.Is(err, pgx.ErrNoRows) {
		return "", APIKey{}, fmt.Errorf("tenant %s: %w", tenantID, ErrNotFound)
	}
	if err != nil {
		return "", APIKey{}, fmt.Errorf("inserting api key for tenant %s: %w", tenantID, err)
	}
	return c.plaintext(keyPrefix), k, nil
}

// LookupAPIKey authenticates a presented key and returns its record. Malformed, unknown, wrong, revoked
// keys and keys of a tenant that is not active all give ErrInvalidKey alike. A successful lookup records
// last_used_at (at most once a minute per key).
func (s *Store) LookupAPIKey(ctx context.Context, plaintext string) (APIKey, error) {
	c, ok := parseCredential(keyPrefix, plaintext)
	if !ok {
		return APIKey{}, ErrInvalidKey
	}
	var (
		hash   []byte
		active bool
	)
	k, err := scanAPIKey(s.pool.QueryRow(ctx,
		`SELECT k.id, k.tenant_id, k.source_id, k.verbs, k.created_at, k.revoked_at, k.last_used_at,
		        k.secret_hash, t.status = $2 AND t.deleted_at IS NULL
		 FROM control.api_keys k JOIN control.tenants t ON t.id = k.tenant_id WHERE k.id = $1`,
		c.id, StatusActive), &hash, &active)
	if errors.Is(err, pgx.ErrNoRows) {
		return APIKey{}, ErrInvalidKey
	}
	if err != nil {
		return APIKey{}, fmt.Errorf("reading api key %s: %w", c.id, err)
	}
	if !c.matches(hash) || k.RevokedAt != nil || !active {
		return APIKey{}, ErrInvalidKey
	}
	if k.LastUsedAt, err = s.markUsed(ctx, "control.api_keys", c.id, k.LastUsedAt); err != nil {
		return APIKey{}, err
	}
	return k, nil
}

// RevokeAPIKey revokes a key by id (the part after eak_). Revoking twice keeps the first revocation time.
// Unknown id: ErrNotFound.
func (s *Store) RevokeAPIKey(ctx context.Context, id string) error {
	tag, err := s.pool.Exec(ctx,
		"UPDATE control.api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1", id)
	if err != nil {
		return fmt.Errorf("revoking api key %s: %w", id, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("api key %s: %w", id, ErrNotFound)
	}
	return nil
}

// APIKeys returns a tenant's keys, revoked ones included, oldest first. Unknown tenant: ErrNotFound.
func (s *Store) APIKeys(ctx context.Context, tenantID string) ([]APIKey, error) {
	if _, err := s.Tenant(ctx, tenantID); err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx,
		"SELECT "+apiKeyColumns+" FROM control.api_keys WHERE tenant_id = $1 ORDER BY created_at, id", tenantID)
	if err != nil {
		return nil, fmt.Errorf("listing api keys of tenant %s: %w", tenantID, err)
	}
	keys, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (APIKey, error) { return scanAPIKey(row) })
	if err != nil {
		return nil, fmt.Errorf("listing api keys of tenant %s: %w", tenantID, err)
	}
	return keys, nil
}

// normalizeVerbs checks verbs against the known set and drops duplicates, keeping order.
func normalizeVerbs(verbs []string) ([]string, error) {
	if len(verbs) == 0 {
		return nil, fmt.Errorf("%w: verbs: at least one of %s is required", ErrInvalidArgument,
			strings.Join(Verbs(), ", "))
	}
	var out []string
	for _, v := range verbs {
		if !slices.Contains(Verbs(), v) {
			return nil, fmt.Errorf("%w: verb %q: unknown, want one of %s", ErrInvalidArgument, v,
				strings.Join(Verbs(), ", "))
		}
		if !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out, nil
}

// parseKey splits eak_<id>_<secret>, checking lengths and alphabet.
func parseKey(s string) (id, secret string, ok bool) {
	rest, ok := strings.CutPrefix(s, keyPrefix)
	if !ok || len(rest) != keyIDLen+1+keySecretLen || rest[keyIDLen] != '_' {
		return "", "", false
	}
	id, secret = rest[:keyIDLen], rest[keyIDLen+1:]
	if !inAlphabet(id) || !inAlphabet(secret) {
		return "", "", false
	}
	return id, secret, true
}

func inAlphabet(s string) bool {
	for i := range len(s) {
		if strings.IndexByte(keyAlphabet, s[i]) < 0 {
			return false
		}
	}
	return true
}

// randomText returns n characters drawn uniformly from keyAlphabet (32 symbols, so a byte's low 5 bits
// carry no bias).
func randomText(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generating api key: %w", err)
	}
	for i := range b {
		b[i] = keyAlphabet[b[i]&31]
	}
	return string(b), nil
}
