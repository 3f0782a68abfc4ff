// Package credentials issues and checks the control plane's bearer credentials: API keys (eak_...), with
// which integrations write events and rosters, and dashboard tokens (edt_...), with which dashboards read.
//
// Both are one credential type: <prefix><id>_<secret>, where the id is public and names the record, and
// only the secret's SHA-256 is stored. Both kinds are issued, checked, marked used, revoked and listed by
// the same code (kind); they differ in their prefix, their table and what they grant (verbs, or a
// dashboard role and scope). A dashboard token of a platform role (billing) belongs to no district: its
// tenant_id is NULL, and no district's status decides whether it is valid.
package credentials

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ErrInvalidKey: a credential that is malformed, unknown, wrong, revoked, expired or of an inactive
// tenant. It never says which.
var ErrInvalidKey = errors.New("invalid api key")

// Credential text: a prefix, then idLen characters of id, "_", then secretLen characters of secret, all in
// alphabet (lowercase base32). The secret carries 260 random bits (at least the 32 bytes asked for).
const (
	alphabet  = "abcdefghijklmnopqrstuvwxyz234567"
	idLen     = 12
	secretLen = 52
	// lastUsedGranularity bounds how often a lookup writes last_used_at for one credential.
	lastUsedGranularity = time.Minute
)

// Store issues, checks, revokes and lists API keys (control.api_keys) and dashboard tokens
// (control.dashboard_tokens). Run tenancy.Migrate first.
type Store struct {
	pool *pgxpool.Pool
}

// New returns a Store over the control database pool.
func New(pool *pgxpool.Pool) *Store { return &Store{pool: pool} }

// credential is a presented or freshly drawn credential: its public id and its secret.
type credential struct {
	id, secret string
}

// newCredential draws a fresh id and secret.
func newCredential() (credential, error) {
	id, err := randomText(idLen)
	if err != nil {
		return credential{}, err
	}
	secret, err := randomText(secretLen)
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

// parseCredential splits <prefix><id>_<secret>, checking lengths and alphabet; ok is false for any other
// shape.
func parseCredential(prefix, s string) (credential, bool) {
	rest, ok := strings.CutPrefix(s, prefix)
	if !ok || len(rest) != idLen+1+secretLen || rest[idLen] != '_' {
		return credential{}, false
	}
	c := credential{id: rest[:idLen], secret: rest[idLen+1:]}
	if !inAlphabet(c.id) || !inAlphabet(c.secret) {
		return credential{}, false
	}
	return c, true
}

// matches reports, in constant time, whether the secret is the one whose hash was stored.
func (c credential) matches(stored []byte) bool {
	return subtle.ConstantTimeCompare(c.hash(), stored) == 1
}

func inAlphabet(s string) bool {
	for i := range len(s) {
		if strings.IndexByte(alphabet, s[i]) < 0 {
			return false
		}
	}
	return true
}

// randomText returns n characters drawn uniformly from alphabet (32 symbols, so a byte's low 5 bits carry
// no bias).
func randomText(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generating api key: %w", err)
	}
	for i := range b {
		b[i] = alphabet[b[i]&31]
	}
	return string(b), nil
}

// kind is one kind of credential: its text prefix, the table of its records and how a record R is read.
// Every table of credentials has id, tenant_id, secret_hash, created_at, revoked_at and last_used_at.
type kind[R any] struct {
	noun    string // names the kind in messages: "api key"
	prefix  string // starts its text: "eak_"
	table   string // holds its records: "control.api_keys"
	columns string // the record's columns, in the order of fields
	fields  func(r *R) []any
	// state returns what decides whether a record still grants access (its revocation and expiry; a nil
	// expiry never expires), and where it keeps its last use.
	state func(r *R) (revoked, expires *time.Time, lastUsed **time.Time)
}

// scan reads a record, and then extra.
func (k *kind[R]) scan(row pgx.Row, extra ...any) (R, error) {
	var r R
	err := row.Scan(append(k.fields(&r), extra...)...)
	return r, err
}

// issue draws a credential of the kind for tenantID, a tenant that is not deleted, and stores it with the
// kind's own columns cols set to values. plaintext is returned only here. Unknown or deleted tenant:
// tenancy.ErrNotFound.
func (k *kind[R]) issue(ctx context.Context, pool *pgxpool.Pool, tenantID, cols string, values ...any) (string, R, error) {
	var zero R
	c, err := newCredential()
	if err != nil {
		return "", zero, err
	}
	placeholders := make([]string, len(values))
	for i := range values {
		placeholders[i] = "$" + strconv.Itoa(i+4)
	}
	// The INSERT ... SELECT inserts nothing when the tenant is unknown or deleted. A credential of no
	// tenant (a platform role's; the table's constraints say which may have none) is inserted as it is.
	from := " FROM control.tenants t WHERE t.id = $2 AND t.deleted_at IS NULL"
	if tenantID == "" {
		from = " WHERE $2::text = ''"
	}
	r, err := k.scan(pool.QueryRow(ctx, "INSERT INTO "+k.table+" (id, tenant_id, secret_hash, "+cols+")"+
		" SELECT $1, nullif($2::text, ''), $3, "+strings.Join(placeholders, ", ")+from+
		" RETURNING "+k.columns, append([]any{c.id, tenantID, c.hash()}, values...)...))
	if errors.Is(err, pgx.ErrNoRows) {
		return "", zero, fmt.Errorf("tenant %s: %w", tenantID, tenancy.ErrNotFound)
	}
	if err != nil {
		return "", zero, fmt.Errorf("inserting %s for tenant %s: %w", k.noun, tenantID, err)
	}
	return c.plaintext(k.prefix), r, nil
}

// lookup authenticates a presented credential of the kind and returns its record. Malformed, unknown,
// wrong, revoked and expired credentials, and those of a tenant that is not active, all give ErrInvalidKey
// alike. A successful lookup records last_used_at (at most once per lastUsedGranularity).
func (k *kind[R]) lookup(ctx context.Context, pool *pgxpool.Pool, plaintext string) (R, error) {
	var zero R
	c, ok := parseCredential(k.prefix, plaintext)
	if !ok {
		return zero, ErrInvalidKey
	}
	var (
		hash   []byte
		active bool
	)
	r, err := k.scan(pool.QueryRow(ctx, "SELECT "+k.columns+", secret_hash,"+
		" CASE WHEN k.tenant_id IS NULL THEN true"+ // a platform role's credential: no district to be active
		" ELSE coalesce((SELECT t.status = $2 AND t.deleted_at IS NULL FROM control.tenants t WHERE t.id = k.tenant_id), false) END"+
		" FROM "+k.table+" k WHERE k.id = $1", c.id, tenancy.StatusActive), &hash, &active)
	if errors.Is(err, pgx.ErrNoRows) {
		return zero, ErrInvalidKey
	}
	if err != nil {
		return zero, fmt.Errorf("reading %s %s: %w", k.noun, c.id, err)
	}
	revoked, expires, lastUsed := k.state(&r)
	now := time.Now()
	if !c.matches(hash) || revoked != nil || !active || (expires != nil && !now.Before(*expires)) {
		return zero, ErrInvalidKey
	}
	if *lastUsed != nil && now.Sub(**lastUsed) <= lastUsedGranularity {
		return r, nil
	}
	if _, err := pool.Exec(ctx, "UPDATE "+k.table+" SET last_used_at = $2 WHERE id = $1", c.id, now); err != nil {
		return zero, fmt.Errorf("recording use of %s %s: %w", k.table, c.id, err)
	}
	*lastUsed = &now
	return r, nil
}

// revoke revokes a credential by id and returns its record. Revoking twice keeps the first time. Unknown
// id: tenancy.ErrNotFound.
func (k *kind[R]) revoke(ctx context.Context, pool *pgxpool.Pool, id string) (R, error) {
	var zero R
	r, err := k.scan(pool.QueryRow(ctx,
		"UPDATE "+k.table+" SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1 RETURNING "+k.columns, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return zero, fmt.Errorf("%s %s: %w", k.noun, id, tenancy.ErrNotFound)
	}
	if err != nil {
		return zero, fmt.Errorf("revoking %s %s: %w", k.noun, id, err)
	}
	return r, nil
}

// list returns a tenant's credentials of the kind, revoked ones included, oldest first; with platform,
// those of no tenant (platform roles) instead. Unknown tenant: tenancy.ErrNotFound.
func (k *kind[R]) list(ctx context.Context, pool *pgxpool.Pool, tenantID string, platform bool) ([]R, error) {
	where := "tenant_id IS NULL AND $1::text = ''"
	if !platform {
		where = "tenant_id = $1"
		var exists bool
		if err := pool.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM control.tenants WHERE id = $1)", tenantID).Scan(&exists); err != nil {
			return nil, fmt.Errorf("reading tenant %s: %w", tenantID, err)
		}
		if !exists {
			return nil, fmt.Errorf("tenant %s: %w", tenantID, tenancy.ErrNotFound)
		}
	}
	rows, err := pool.Query(ctx,
		"SELECT "+k.columns+" FROM "+k.table+" WHERE "+where+" ORDER BY created_at, id", tenantID)
	if err != nil {
		return nil, fmt.Errorf("listing %ss of tenant %s: %w", k.noun, tenantID, err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (R, error) { return k.scan(row) })
	if err != nil {
		return nil, fmt.Errorf("listing %ss of tenant %s: %w", k.noun, tenantID, err)
	}
	return out, nil
}
