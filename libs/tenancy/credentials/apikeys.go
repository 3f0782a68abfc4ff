package credentials

import (
	"context"
	"slices"
	"time"

	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/jackc/pgx/v5"
)

// keyPrefix starts every API key: eak_<id>_<secret>.
const keyPrefix = "eak_"

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

// apiKeys is the kind of API keys; they do not expire.
var apiKeys = &kind[APIKey]{
	noun: "api key", prefix: keyPrefix, table: "control.api_keys",
	columns: "id, tenant_id, source_id, verbs, created_at, revoked_at, last_used_at",
	fields: func(k *APIKey) []any {
		return []any{&k.ID, &k.TenantID, &k.SourceID, &k.Verbs, &k.CreatedAt, &k.RevokedAt, &k.LastUsedAt}
	},
	state: func(k *APIKey) (*time.Time, *time.Time, **time.Time) { return k.RevokedAt, nil, &k.LastUsedAt },
}

// CreateAPIKey issues a key for tenantID, writing as sourceID with the given verbs. plaintext
// (eak_<id>_<secret>) is returned only here: show it once. Unknown tenant: tenancy.ErrNotFound; bad
// source id or unknown verb: tenancy.ErrInvalidArgument naming it.
func (s *Store) CreateAPIKey(ctx context.Context, tenantID, sourceID string, verbs []string) (string, APIKey, error) {
	if err := tenancy.ValidTenantID(tenantID); err != nil {
		return "", APIKey{}, err
	}
	if err := tenancy.ValidSourceID(sourceID); err != nil {
		return "", APIKey{}, err
	}
	verbs, err := normalizeVerbs(verbs)
	if err != nil {
		return "", APIKey{}, err
	}
	return apiKeys.issue(ctx, s.pool, tenantID, "source_id, verbs", sourceID, verbs)
}

// LookupAPIKey authenticates a presented key and returns its record. Malformed, unknown, wrong, revoked
// keys and keys of a tenant that is not active all give ErrInvalidKey alike. A successful lookup records
// last_used_at (at most once a minute per key).
func (s *Store) LookupAPIKey(ctx context.Context, plaintext string) (APIKey, error) {
	return apiKeys.lookup(ctx, s.pool, plaintext)
}

// RevokeAPIKey revokes a key by id (the part after eak_). Revoking twice keeps the first revocation time.
// Unknown id: tenancy.ErrNotFound.
func (s *Store) RevokeAPIKey(ctx context.Context, id string) error {
	_, err := apiKeys.revoke(ctx, s.pool, id)
	return err
}

// APIKeys returns a tenant's keys, revoked ones included, oldest first. Unknown tenant:
// tenancy.ErrNotFound.
func (s *Store) APIKeys(ctx context.Context, tenantID string) ([]APIKey, error) {
	return apiKeys.list(ctx, s.pool, tenantID, false)
}

// RevokeAPIKeysOf revokes, in tx, every key of the tenant not yet revoked and returns how many it revoked:
// a deleted tenant's keys stop working (tenants.Store.Delete).
func RevokeAPIKeysOf(ctx context.Context, tx pgx.Tx, tenantID string) (int64, error) {
	tag, err := tx.Exec(ctx, "UPDATE control.api_keys SET revoked_at = now() WHERE tenant_id = $1 AND revoked_at IS NULL",
		tenantID)
	return tag.RowsAffected(), err
}
