// Package webhooks tells a district when one of its privacy jobs (libs/tenancy/jobs) finishes. A district
// has at most one webhook (control.district_webhooks): a URL and a signing secret, the secret stored sealed
// by a master key. Notify POSTs a finished job to it, retrying with exponential back-off on network errors,
// 5xx and 429 answers, and records every attempt in control.webhook_deliveries, so that a delivery the
// sending process did not finish can be sent again (Redeliver).
//
// # What a receiver gets and how it checks it
//
// Each notification is a POST whose body is JSON: a JobFinished for a finished job, or {"event": "ping",
// "tenant": ...} for a test. Its headers:
//
//	Content-Type: application/json
//	X-Edtech-Event: job.finished (or ping)
//	X-Edtech-Timestamp: 1767225600        the attempt's time, in unix seconds
//	X-Edtech-Signature: sha256=<hex>      HMAC-SHA256 of "<timestamp>.<body>"
//
// The HMAC key is the secret exactly as it was shown when the webhook was set (its 64 characters, as
// bytes). The receiver computes the HMAC over the X-Edtech-Timestamp value, a dot and the body exactly as
// received (before parsing it), compares it with the signature in constant time (Verify does both), and
// rejects a timestamp more than a few minutes from its own clock, so that a captured request cannot be
// replayed later. A retried notification carries the same body with a new timestamp and signature; the
// job's id identifies it, for a receiver that must act once per job.
package webhooks

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/edtech-analytics/platform/libs/tenancy/jobs"
)

// Keys seal the signing secrets: libs/keyring's master keys (keyring.MasterKeys) satisfy it. The
// district's own keys are not used, because its erasure shreds them before the job reporting it ends.
type Keys interface {
	// Current names the key new secrets are sealed with.
	Current() string
	Wrap(ctx context.Context, id string, plaintext, aad []byte) ([]byte, error)
	Unwrap(ctx context.Context, id string, wrapped, aad []byte) ([]byte, error)
}

// Webhook is a district's webhook, without its secret.
type Webhook struct {
	TenantID  string    `json:"tenant_id"`
	URL       string    `json:"url"`
	CreatedAt time.Time `json:"created_at"`
}

// Redacted is the URL with any password in it masked, for logs and the audit log.
func (w Webhook) Redacted() string { return redacted(w.URL) }

// Options tune the deliveries; zero values take the defaults.
type Options struct {
	// Client sends the requests; the default follows no redirects (a redirect is an answer that is not
	// 2xx, and is not retried).
	Client *http.Client
	// Timeout bounds each attempt (default 10 seconds).
	Timeout time.Duration
	// MaxAttempts bounds the attempts one Notify or Redeliver makes for a job (default 8).
	MaxAttempts uint
	// MaxElapsed bounds the time one Notify or Redeliver spends on a job (default 10 minutes).
	MaxElapsed time.Duration
	// BackOff returns the waits between attempts (default: exponential from 1 second, doubling, at most
	// 1 minute, with jitter).
	BackOff func() backoff.BackOff
}

func (o Options) withDefaults() Options {
	if o.Client == nil {
		o.Client = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.MaxAttempts == 0 {
		o.MaxAttempts = 8
	}
	if o.MaxElapsed <= 0 {
		o.MaxElapsed = 10 * time.Minute
	}
	if o.BackOff == nil {
		o.BackOff = func() backoff.BackOff {
			return &backoff.ExponentialBackOff{InitialInterval: time.Second, RandomizationFactor: 0.2, Multiplier: 2,
				MaxInterval: time.Minute}
		}
	}
	return o
}

// Store keeps the districts' webhooks and sends their notifications. Run tenancy.Migrate first.
type Store struct {
	pool *pgxpool.Pool
	keys Keys
	opt  Options
	jobs *jobs.Store // the jobs notified
}

// New returns a Store over the control database pool. keys may be nil for a store that only reads and
// removes webhooks.
func New(pool *pgxpool.Pool, keys Keys, opt Options) *Store {
	return &Store{pool: pool, keys: keys, opt: opt.withDefaults(), jobs: jobs.New(pool)}
}

// secretSize is the signing secret's size in random bytes; it is shown and used as hex.
const secretSize = 32

func secretAAD(tenant string) []byte { return []byte("webhook|" + tenant) }

// ValidURL checks a webhook URL: absolute, http or https, with a host.
func ValidURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: webhook url: %v", tenancy.ErrInvalidArgument, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("%w: webhook url %q: must start with http:// or https://", tenancy.ErrInvalidArgument, u.Redacted())
	}
	if u.Hostname() == "" {
		return nil, fmt.Errorf("%w: webhook url %q: has no host", tenancy.ErrInvalidArgument, u.Redacted())
	}
	return u, nil
}

// Set gives the district a webhook, replacing any it had, with a new signing secret, which it returns:
// it is stored sealed and cannot be shown again. An unknown district is tenancy.ErrNotFound.
func (s *Store) Set(ctx context.Context, tenant, rawURL string) (Webhook, string, error) {
	if err := tenancy.ValidTenantID(tenant); err != nil {
		return Webhook{}, "", err
	}
	u, err := ValidURL(rawURL)
	if err != nil {
		return Webhook{}, "", err
	}
	raw := make([]byte, secretSize)
	if _, err := rand.Read(raw); err != nil {
		return Webhook{}, "", fmt.Errorf("generating a webhook secret: %w", err)
	}
	secret := hex.EncodeToString(raw)
	masterID := s.keys.Current()
	sealed, err := s.keys.Wrap(ctx, masterID, []byte(secret), secretAAD(tenant))
	if err != nil {
		return Webhook{}, "", fmt.Errorf("sealing the webhook secret of district %s: %w", tenant, err)
	}
	w := Webhook{TenantID: tenant, URL: u.String()}
	err = s.pool.QueryRow(ctx, `INSERT INTO control.district_webhooks (tenant_id, url, master_key_id, sealed_secret)
		VALUES ($1, $2, $3, $4) ON CONFLICT (tenant_id) DO UPDATE SET url = EXCLUDED.url,
		master_key_id = EXCLUDED.master_key_id, sealed_secret = EXCLUDED.sealed_secret, created_at = now()
		RETURNING created_at`, tenant, w.URL, masterID, sealed).Scan(&w.CreatedAt)
	if pgErr := (*pgconn.PgError)(nil); errors.As(err, &pgErr) && pgErr.Code == "23503" {
		return Webhook{}, "", fmt.Errorf("district %s: %w", tenant, tenancy.ErrNotFound)
	}
	if err != nil {
		return Webhook{}, "", fmt.Errorf("storing the webhook of district %s: %w", tenant, err)
	}
	return w, secret, nil
}

// Get returns the district's webhook; none is tenancy.ErrNotFound.
func (s *Store) Get(ctx context.Context, tenant string) (Webhook, error) {
	w := Webhook{TenantID: tenant}
	err := s.pool.QueryRow(ctx, `SELECT url, created_at FROM control.district_webhooks WHERE tenant_id = $1`, tenant).
		Scan(&w.URL, &w.CreatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return Webhook{}, fmt.Errorf("webhook of district %s: %w", tenant, tenancy.ErrNotFound)
	}
	if err != nil {
		return Webhook{}, fmt.Errorf("reading the webhook of district %s: %w", tenant, err)
	}
	return w, nil
}

// Remove deletes the district's webhook and its deliveries; none is tenancy.ErrNotFound.
func (s *Store) Remove(ctx context.Context, tenant string) error {
	tag, err := s.pool.Exec(ctx, `DELETE FROM control.district_webhooks WHERE tenant_id = $1`, tenant)
	if err != nil {
		return fmt.Errorf("removing the webhook of district %s: %w", tenant, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("webhook of district %s: %w", tenant, tenancy.ErrNotFound)
	}
	return nil
}

// Rewrap seals every secret that another master key sealed under the current one, so that the old master
// keys can be retired; it returns how many it re-sealed.
func (s *Store) Rewrap(ctx context.Context) (int, error) {
	current := s.keys.Current()
	rows, err := s.pool.Query(ctx, `SELECT tenant_id, master_key_id, sealed_secret FROM control.district_webhooks
		WHERE master_key_id <> $1`, current)
	if err != nil {
		return 0, fmt.Errorf("reading webhook secrets: %w", err)
	}
	type sealedSecret struct {
		Tenant, MasterID string
		Sealed           []byte
	}
	old, err := pgx.CollectRows(rows, pgx.RowToStructByPos[sealedSecret])
	if err != nil {
		return 0, fmt.Errorf("reading webhook secrets: %w", err)
	}
	n := 0
	for _, o := range old {
		secret, err := s.keys.Unwrap(ctx, o.MasterID, o.Sealed, secretAAD(o.Tenant))
		if err != nil {
			return n, fmt.Errorf("district %s: webhook secret: %w", o.Tenant, err)
		}
		sealed, err := s.keys.Wrap(ctx, current, secret, secretAAD(o.Tenant))
		if err != nil {
			return n, fmt.Errorf("district %s: webhook secret: %w", o.Tenant, err)
		}
		if _, err := s.pool.Exec(ctx, `UPDATE control.district_webhooks SET master_key_id = $3, sealed_secret = $4
			WHERE tenant_id = $1 AND master_key_id = $2`, o.Tenant, o.MasterID, current, sealed); err != nil {
			return n, fmt.Errorf("district %s: storing the webhook secret: %w", o.Tenant, err)
		}
		n++
	}
	return n, nil
}

// target is a webhook ready to send to: its URL and opened secret, and since when it is set.
type target struct {
	url, secret string
	since       time.Time
}

// target reads and opens the district's webhook; none is tenancy.ErrNotFound.
func (s *Store) target(ctx context.Context, tenant string) (target, error) {
	var t target
	var masterID string
	var sealed []byte
	err := s.pool.QueryRow(ctx, `SELECT url, master_key_id, sealed_secret, created_at FROM control.district_webhooks
		WHERE tenant_id = $1`, tenant).Scan(&t.url, &masterID, &sealed, &t.since)
	if errors.Is(err, pgx.ErrNoRows) {
		return target{}, fmt.Errorf("webhook of district %s: %w", tenant, tenancy.ErrNotFound)
	}
	if err != nil {
		return target{}, fmt.Errorf("reading the webhook of district %s: %w", tenant, err)
	}
	secret, err := s.keys.Unwrap(ctx, masterID, sealed, secretAAD(tenant))
	if err != nil {
		return target{}, fmt.Errorf("opening the webhook secret of district %s: %w", tenant, err)
	}
	t.secret = string(secret)
	return t, nil
}
