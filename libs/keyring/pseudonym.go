package keyring

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

func pseudonymAAD(tenant string) []byte { return []byte("pseudonym|" + tenant) }

// PseudonymKey returns the district's pseudonym key (the HMAC secret of its students' pseudonyms),
// stored wrapped beside its lookup secret. legacy is the plaintext key control.tenants still holds for a
// district created before the key moved here, or by a process without master keys: the first call wraps
// it, stores it here and clears the plaintext, so every later call finds it wrapped. A district shredded
// or without any key is ErrShredded.
func (r *Keyring) PseudonymKey(ctx context.Context, tenant string, legacy []byte) ([]byte, error) {
	return r.secrets.Get(tenant, func() ([]byte, error) {
		key, err := r.readPseudonym(ctx, tenant)
		if err == nil || !errors.Is(err, ErrShredded) || len(legacy) == 0 {
			return key, err
		}
		if err := r.adoptPseudonym(ctx, tenant, legacy); err != nil {
			return nil, err
		}
		return r.readPseudonym(ctx, tenant)
	})
}

// readPseudonym unwraps the district's stored pseudonym key; ErrShredded when there is none.
func (r *Keyring) readPseudonym(ctx context.Context, tenant string) ([]byte, error) {
	var masterID string
	var wrapped []byte
	err := r.pool.QueryRow(ctx, `SELECT master_key_id, wrapped_pseudonym FROM control.district_keys WHERE tenant_id = $1`,
		tenant).Scan(&masterID, &wrapped)
	if errors.Is(err, pgx.ErrNoRows) || (err == nil && wrapped == nil) {
		return nil, fmt.Errorf("%w: district %s has no pseudonym key", ErrShredded, tenant)
	}
	if err != nil {
		return nil, fmt.Errorf("reading the pseudonym key of district %s: %w", tenant, err)
	}
	key, err := r.master.Unwrap(ctx, masterID, wrapped, pseudonymAAD(tenant))
	if err != nil {
		return nil, fmt.Errorf("district %s: pseudonym key: %w", tenant, err)
	}
	return key, nil
}

// adoptPseudonym wraps a plaintext pseudonym key into the district's keys (created if needed) and clears
// the plaintext, unless another process has just done so.
func (r *Keyring) adoptPseudonym(ctx context.Context, tenant string, legacy []byte) error {
	if _, err := r.district(ctx, tenant, true); err != nil {
		return err
	}
	var masterID string
	if err := r.pool.QueryRow(ctx, `SELECT master_key_id FROM control.district_keys WHERE tenant_id = $1`, tenant).
		Scan(&masterID); err != nil {
		return fmt.Errorf("reading the keys of district %s: %w", tenant, err)
	}
	wrapped, err := r.master.Wrap(ctx, masterID, legacy, pseudonymAAD(tenant))
	if err != nil {
		return fmt.Errorf("district %s: wrapping the pseudonym key: %w", tenant, err)
	}
	return pgx.BeginFunc(ctx, r.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `UPDATE control.district_keys SET wrapped_pseudonym = $3
			WHERE tenant_id = $1 AND master_key_id = $2 AND wrapped_pseudonym IS NULL`, tenant, masterID, wrapped); err != nil {
			return fmt.Errorf("storing the pseudonym key of district %s: %w", tenant, err)
		}
		// Stored by this call or another process's; not when a master rotation changed the row meanwhile,
		// and then the plaintext stays for the next call.
		var stored bool
		if err := tx.QueryRow(ctx, `SELECT wrapped_pseudonym IS NOT NULL FROM control.district_keys WHERE tenant_id = $1`,
			tenant).Scan(&stored); err != nil {
			return fmt.Errorf("reading the keys of district %s: %w", tenant, err)
		}
		if !stored {
			return fmt.Errorf("district %s: its keys changed while its pseudonym key was stored; try again", tenant)
		}
		if _, err := tx.Exec(ctx, `UPDATE control.tenants SET pseudonym_key = NULL WHERE id = $1 AND pseudonym_key = $2`,
			tenant, legacy); err != nil {
			return fmt.Errorf("clearing the plaintext pseudonym key of district %s: %w", tenant, err)
		}
		return nil
	})
}
