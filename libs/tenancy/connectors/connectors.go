// Package connectors stores the sources services/connector pulls from or watches
// (control.connector_sources): per district and source, how to reach it, its secrets sealed by a master
// key, its schedule, its delta cursor and its sync status; and the files of a drop already sent
// (control.connector_drops), so that none is sent twice.
//
// Three secrets are kept per source, each sealed under the current master key and bound to its district,
// source and role (the additional data of the seal), never stored or returned in plain form except by
// Open, which the connector calls when it syncs: the OAuth 2.0 client secret of a OneRoster REST provider,
// the gateway API key the connector sends the source's rosters with, and the HMAC key of the source's
// webhooks, which Add generates and returns once.
package connectors

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/edtech-analytics/platform/libs/tenancy"
)

// Kinds of source.
const (
	KindOneRosterREST = "oneroster-rest"
	KindFileDrop      = "file-drop"
)

// Statuses of a source's last sync.
const (
	StatusNew     = "new"
	StatusOK      = "ok"
	StatusFailing = "failing"
)

// Keys seal the secrets: libs/keyring's master keys (keyring.MasterKeys) satisfy it.
type Keys interface {
	Current() string
	Wrap(ctx context.Context, id string, plaintext, aad []byte) ([]byte, error)
	Unwrap(ctx context.Context, id string, wrapped, aad []byte) ([]byte, error)
}

// Source is a connector source without its secrets.
type Source struct {
	TenantID string `json:"tenant_id"`
	SourceID string `json:"source_id"`
	Kind     string `json:"kind"`
	// BaseURL is the OneRoster REST base, e.g. https://sis.example/ims/oneroster/rostering/v1p2.
	BaseURL  string `json:"base_url,omitempty"`
	TokenURL string `json:"token_url,omitempty"`
	ClientID string `json:"client_id,omitempty"`
	// APIKeyID is the id of the gateway API key the connector sends with (control.api_keys).
	APIKeyID string `json:"api_key_id"`
	// DeltaEvery and FullEvery are the schedule: a delta sync (records modified since the cursor) every
	// DeltaEvery, a full (bulk) sync every FullEvery.
	DeltaEvery time.Duration `json:"delta_every"`
	FullEvery  time.Duration `json:"full_every"`
	Status
}

// Status is a source's sync status.
type Status struct {
	// Cursor is the newest dateLastModified the last successful sync saw: the next delta asks for what
	// changed after it.
	Cursor        *time.Time `json:"cursor,omitempty"`
	LastFullAt    *time.Time `json:"last_full_at,omitempty"`
	LastAttemptAt *time.Time `json:"last_attempt_at,omitempty"`
	LastSuccessAt *time.Time `json:"last_success_at,omitempty"`
	// Failures counts the attempts that failed since the last success.
	Failures  int    `json:"failures"`
	State     string `json:"status"`
	LastError string `json:"last_error,omitempty"`
}

// Secrets are a source's opened secrets.
type Secrets struct {
	ClientSecret string
	APIKey       string
	WebhookKey   string
}

// ErrNoSource: the district has no such connector source.
var ErrNoSource = errors.New("no such connector source")

// Store reads and writes connector sources in the control schema.
type Store struct {
	pool *pgxpool.Pool
	keys Keys
}

// New returns a Store over the control database; keys may be nil for a store that neither adds sources
// nor opens their secrets.
func New(pool *pgxpool.Pool, keys Keys) *Store { return &Store{pool: pool, keys: keys} }

func aad(role, tenant, source string) []byte {
	return []byte("connector|" + role + "|" + tenant + "|" + source)
}

// Validate checks a source's fields.
func (s Source) Validate() error {
	if err := tenancy.ValidTenantID(s.TenantID); err != nil {
		return err
	}
	var errs []error
	if s.SourceID == "" {
		errs = append(errs, errors.New("a source is required"))
	}
	switch s.Kind {
	case KindOneRosterREST:
		for name, v := range map[string]string{"base URL": s.BaseURL, "token URL": s.TokenURL} {
			if u, err := url.Parse(v); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				errs = append(errs, fmt.Errorf("the %s must be an http:// or https:// URL, got %q", name, v))
			}
		}
		if s.ClientID == "" {
			errs = append(errs, errors.New("a OneRoster REST source needs a client id"))
		}
	case KindFileDrop:
	default:
		errs = append(errs, fmt.Errorf("kind %q: must be %s or %s", s.Kind, KindOneRosterREST, KindFileDrop))
	}
	if s.DeltaEvery <= 0 || s.FullEvery <= 0 {
		errs = append(errs, errors.New("the delta and full intervals must be positive"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", tenancy.ErrInvalidArgument, err)
	}
	return nil
}

// Add stores a source, replacing the district's source of that id, with its client secret (empty for a
// file drop) and the gateway API key it sends with. It returns the source's new webhook key, which is
// shown only now.
func (s *Store) Add(ctx context.Context, src Source, clientSecret, apiKey string) (webhookKey string, err error) {
	if err := src.Validate(); err != nil {
		return "", err
	}
	if src.Kind == KindOneRosterREST && clientSecret == "" {
		return "", fmt.Errorf("%w: a OneRoster REST source needs a client secret", tenancy.ErrInvalidArgument)
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", fmt.Errorf("generating a webhook key: %w", err)
	}
	webhookKey = hex.EncodeToString(raw)
	id := s.keys.Current()
	seal := func(role, v string) ([]byte, error) {
		if v == "" {
			return nil, nil
		}
		return s.keys.Wrap(ctx, id, []byte(v), aad(role, src.TenantID, src.SourceID))
	}
	var sealed [3][]byte
	for i, v := range []struct{ role, value string }{{"client", clientSecret}, {"apikey", apiKey}, {"webhook", webhookKey}} {
		if sealed[i], err = seal(v.role, v.value); err != nil {
			return "", fmt.Errorf("sealing the %s secret of %s/%s: %w", v.role, src.TenantID, src.SourceID, err)
		}
	}
	_, err = s.pool.Exec(ctx, `INSERT INTO control.connector_sources (tenant_id, source_id, kind, base_url, token_url, client_id,
			master_key_id, sealed_secret, sealed_api_key, sealed_webhook_key, delta_every, full_every, api_key_id)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
		ON CONFLICT (tenant_id, source_id) DO UPDATE SET kind = EXCLUDED.kind, base_url = EXCLUDED.base_url,
			token_url = EXCLUDED.token_url, client_id = EXCLUDED.client_id, master_key_id = EXCLUDED.master_key_id,
			sealed_secret = EXCLUDED.sealed_secret, sealed_api_key = EXCLUDED.sealed_api_key,
			sealed_webhook_key = EXCLUDED.sealed_webhook_key, api_key_id = EXCLUDED.api_key_id, delta_every = EXCLUDED.delta_every, full_every = EXCLUDED.full_every,
			cursor = NULL, last_full_at = NULL, failures = 0, status = 'new', last_error = ''`,
		src.TenantID, src.SourceID, src.Kind, src.BaseURL, src.TokenURL, src.ClientID, id, sealed[0], sealed[1], sealed[2],
		src.DeltaEvery, src.FullEvery, src.APIKeyID)
	if err != nil {
		return "", fmt.Errorf("storing connector source %s/%s: %w", src.TenantID, src.SourceID, err)
	}
	return webhookKey, nil
}

// Remove deletes a source and the record of its drop, and returns what it was (its API key is the
// caller's to revoke). ErrNoSource when there was none.
func (s *Store) Remove(ctx context.Context, tenant, source string) (Source, error) {
	src, err := scan(s.pool.QueryRow(ctx, `DELETE FROM control.connector_sources WHERE tenant_id = $1 AND source_id = $2
		RETURNING `+columns, tenant, source))
	if errors.Is(err, pgx.ErrNoRows) {
		return Source{}, fmt.Errorf("%w: %s of district %s", ErrNoSource, source, tenant)
	}
	if err != nil {
		return Source{}, fmt.Errorf("removing connector source %s/%s: %w", tenant, source, err)
	}
	return src, nil
}

const columns = `tenant_id, source_id, kind, base_url, token_url, client_id, api_key_id, delta_every, full_every,
	cursor, last_full_at, last_attempt_at, last_success_at, failures, status, last_error`

func scan(row pgx.Row) (Source, error) {
	var s Source
	err := row.Scan(&s.TenantID, &s.SourceID, &s.Kind, &s.BaseURL, &s.TokenURL, &s.ClientID, &s.APIKeyID, &s.DeltaEvery, &s.FullEvery,
		&s.Cursor, &s.LastFullAt, &s.LastAttemptAt, &s.LastSuccessAt, &s.Failures, &s.State, &s.LastError)
	return s, err
}

// List returns the sources of a district (every district's when tenant is empty), by district and source,
// leaving out those of deleted districts (whose API keys are revoked).
func (s *Store) List(ctx context.Context, tenant string) ([]Source, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+columns+` FROM control.connector_sources
		WHERE ($1 = '' OR tenant_id = $1)
			AND tenant_id IN (SELECT id FROM control.tenants WHERE status <> 'deleted')
		ORDER BY tenant_id, source_id`, tenant)
	if err != nil {
		return nil, fmt.Errorf("listing connector sources: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Source, error) { return scan(r) })
	if err != nil {
		return nil, fmt.Errorf("listing connector sources: %w", err)
	}
	return out, nil
}

// Get returns one source. ErrNoSource when there is none.
func (s *Store) Get(ctx context.Context, tenant, source string) (Source, error) {
	src, err := scan(s.pool.QueryRow(ctx, `SELECT `+columns+` FROM control.connector_sources
		WHERE tenant_id = $1 AND source_id = $2`, tenant, source))
	if errors.Is(err, pgx.ErrNoRows) {
		return Source{}, fmt.Errorf("%w: %s of district %s", ErrNoSource, source, tenant)
	}
	if err != nil {
		return Source{}, fmt.Errorf("reading connector source %s/%s: %w", tenant, source, err)
	}
	return src, nil
}

// Open returns a source's secrets, unsealed.
func (s *Store) Open(ctx context.Context, tenant, source string) (Secrets, error) {
	var id string
	var sealed [3][]byte
	err := s.pool.QueryRow(ctx, `SELECT master_key_id, sealed_secret, sealed_api_key, sealed_webhook_key
		FROM control.connector_sources WHERE tenant_id = $1 AND source_id = $2`, tenant, source).Scan(&id, &sealed[0], &sealed[1], &sealed[2])
	if errors.Is(err, pgx.ErrNoRows) {
		return Secrets{}, fmt.Errorf("%w: %s of district %s", ErrNoSource, source, tenant)
	}
	if err != nil {
		return Secrets{}, fmt.Errorf("reading the secrets of %s/%s: %w", tenant, source, err)
	}
	var plain [3]string
	for i, role := range []string{"client", "apikey", "webhook"} {
		if sealed[i] == nil {
			continue
		}
		b, err := s.keys.Unwrap(ctx, id, sealed[i], aad(role, tenant, source))
		if err != nil {
			return Secrets{}, fmt.Errorf("opening the %s secret of %s/%s: %w", role, tenant, source, err)
		}
		plain[i] = string(b)
	}
	return Secrets{ClientSecret: plain[0], APIKey: plain[1], WebhookKey: plain[2]}, nil
}

// Rewrap seals every source's secrets that another master key sealed under the current one, so that the
// old master key can be retired; it returns the sources re-wrapped.
func (s *Store) Rewrap(ctx context.Context) (int, error) {
	current := s.keys.Current()
	type old struct {
		tenant, source, id string
		sealed             [3][]byte
	}
	rows, err := s.pool.Query(ctx, `SELECT tenant_id, source_id, master_key_id, sealed_secret, sealed_api_key, sealed_webhook_key
		FROM control.connector_sources WHERE master_key_id <> $1`, current)
	if err != nil {
		return 0, fmt.Errorf("reading connector secrets: %w", err)
	}
	olds, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (old, error) {
		var o old
		return o, r.Scan(&o.tenant, &o.source, &o.id, &o.sealed[0], &o.sealed[1], &o.sealed[2])
	})
	if err != nil {
		return 0, fmt.Errorf("reading connector secrets: %w", err)
	}
	n := 0
	for _, o := range olds {
		var resealed [3][]byte
		for i, role := range []string{"client", "apikey", "webhook"} {
			if o.sealed[i] == nil {
				continue
			}
			plain, err := s.keys.Unwrap(ctx, o.id, o.sealed[i], aad(role, o.tenant, o.source))
			if err != nil {
				return n, fmt.Errorf("%s/%s: opening the %s secret: %w", o.tenant, o.source, role, err)
			}
			if resealed[i], err = s.keys.Wrap(ctx, current, plain, aad(role, o.tenant, o.source)); err != nil {
				return n, fmt.Errorf("%s/%s: sealing the %s secret: %w", o.tenant, o.source, role, err)
			}
		}
		if _, err := s.pool.Exec(ctx, `UPDATE control.connector_sources SET master_key_id = $4, sealed_secret = $5,
				sealed_api_key = $6, sealed_webhook_key = $7 WHERE tenant_id = $1 AND source_id = $2 AND master_key_id = $3`,
			o.tenant, o.source, o.id, current, resealed[0], resealed[1], resealed[2]); err != nil {
			return n, fmt.Errorf("%s/%s: storing the re-wrapped secrets: %w", o.tenant, o.source, err)
		}
		n++
	}
	return n, nil
}

// Attempt is the outcome of one sync.
type Attempt struct {
	At   time.Time
	Full bool
	// Cursor is the newest dateLastModified seen (zero: keep the stored one).
	Cursor time.Time
	Err    error
}

// Record stores a sync's outcome and returns the failures in a row it makes.
func (s *Store) Record(ctx context.Context, tenant, source string, a Attempt) (int, error) {
	var failures int
	var err error
	if a.Err != nil {
		msg := a.Err.Error()
		if len(msg) > 1000 {
			msg = msg[:1000]
		}
		err = s.pool.QueryRow(ctx, `UPDATE control.connector_sources SET last_attempt_at = $3, failures = failures + 1,
			status = 'failing', last_error = $4 WHERE tenant_id = $1 AND source_id = $2 RETURNING failures`,
			tenant, source, a.At, msg).Scan(&failures)
	} else {
		var cursor *time.Time
		if !a.Cursor.IsZero() {
			cursor = &a.Cursor
		}
		err = s.pool.QueryRow(ctx, `UPDATE control.connector_sources SET last_attempt_at = $3, last_success_at = $3,
			failures = 0, status = 'ok', last_error = '', cursor = greatest(cursor, $4),
			last_full_at = CASE WHEN $5 THEN $3 ELSE last_full_at END
			WHERE tenant_id = $1 AND source_id = $2 RETURNING failures`,
			tenant, source, a.At, cursor, a.Full).Scan(&failures)
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, fmt.Errorf("%w: %s of district %s", ErrNoSource, source, tenant)
	}
	if err != nil {
		return 0, fmt.Errorf("recording the sync of %s/%s: %w", tenant, source, err)
	}
	return failures, nil
}

// Drop is a file of a drop that was sent.
type Drop struct {
	Name, ETag, Outcome, Report string
}

// Dropped returns the record of a file already sent, or false.
func (s *Store) Dropped(ctx context.Context, tenant, source, name, etag string) (Drop, bool, error) {
	d := Drop{Name: name, ETag: etag}
	err := s.pool.QueryRow(ctx, `SELECT outcome, report FROM control.connector_drops
		WHERE tenant_id = $1 AND source_id = $2 AND name = $3 AND etag = $4`, tenant, source, name, etag).Scan(&d.Outcome, &d.Report)
	if errors.Is(err, pgx.ErrNoRows) {
		return Drop{}, false, nil
	}
	if err != nil {
		return Drop{}, false, fmt.Errorf("reading the drop of %s/%s: %w", tenant, source, err)
	}
	return d, true, nil
}

// RecordDrop records that a file was sent, with its outcome ("processed" or "failed") and report.
func (s *Store) RecordDrop(ctx context.Context, tenant, source string, d Drop) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO control.connector_drops (tenant_id, source_id, name, etag, outcome, report)
		VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING`, tenant, source, d.Name, d.ETag, d.Outcome, d.Report)
	if err != nil {
		return fmt.Errorf("recording the drop of %s/%s: %w", tenant, source, err)
	}
	return nil
}
