package keyring

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

var auditAAD = []byte("audit")

// auditSecret is the audit key's entry in the secrets cache: no district id starts with a NUL.
const auditSecret = "\x00audit"

// AuditKey returns the key that signs the audit chain (an HMAC key), creating it on first use. It is
// stored wrapped by the master key, so the database alone cannot sign an entry.
func (r *Keyring) AuditKey(ctx context.Context) ([]byte, error) {
	return r.secrets.Get(auditSecret, func() ([]byte, error) {
		key, err := r.readAuditKey(ctx)
		if !errors.Is(err, pgx.ErrNoRows) {
			return key, err
		}
		masterID := r.master.Current()
		wrapped, err := r.master.Wrap(ctx, masterID, randomKey(), auditAAD)
		if err != nil {
			return nil, fmt.Errorf("wrapping the audit key: %w", err)
		}
		if _, err := r.pool.Exec(ctx, `INSERT INTO control.audit_key (master_key_id, wrapped) VALUES ($1, $2)
			ON CONFLICT (one) DO NOTHING`, masterID, wrapped); err != nil {
			return nil, fmt.Errorf("storing the audit key: %w", err)
		}
		return r.readAuditKey(ctx)
	})
}

func (r *Keyring) readAuditKey(ctx context.Context) ([]byte, error) {
	var masterID string
	var wrapped []byte
	err := r.pool.QueryRow(ctx, `SELECT master_key_id, wrapped FROM control.audit_key`).Scan(&masterID, &wrapped)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("reading the audit key: %w", err)
	}
	key, err := r.master.Unwrap(ctx, masterID, wrapped, auditAAD)
	if err != nil {
		return nil, fmt.Errorf("the audit key: %w", err)
	}
	return key, nil
}

// rewrapAuditKey re-wraps the audit key under the current master key; it reports whether it did.
func (r *Keyring) rewrapAuditKey(ctx context.Context, current string) (bool, error) {
	var masterID string
	var wrapped []byte
	err := r.pool.QueryRow(ctx, `SELECT master_key_id, wrapped FROM control.audit_key WHERE master_key_id <> $1`, current).
		Scan(&masterID, &wrapped)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("reading the audit key: %w", err)
	}
	w, err := r.rewrapMaster(ctx, masterID, current, wrapped, auditAAD)
	if err != nil {
		return false, fmt.Errorf("the audit key: %w", err)
	}
	if _, err := r.pool.Exec(ctx, `UPDATE control.audit_key SET master_key_id = $2, wrapped = $3 WHERE master_key_id = $1`,
		masterID, current, w); err != nil {
		return false, fmt.Errorf("storing the audit key: %w", err)
	}
	return true, nil
}
