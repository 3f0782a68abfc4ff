package keyring

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// parseSealed splits a sealed value into its key id and the nonce, ciphertext and tag.
func parseSealed(v string) ([keyIDSize]byte, []byte, error) {
	var id [keyIDSize]byte
	raw, err := base64.RawURLEncoding.DecodeString(v[len(sealedPrefix):])
	if err != nil || len(raw) < keyIDSize+gcmOverhead {
		return id, nil, ErrMalformed
	}
	copy(id[:], raw)
	return id, raw[keyIDSize:], nil
}

// Open returns a field's plaintext: the value itself when it is not sealed (written before encryption
// began), or the decrypted value. A value whose data key was shredded is ErrShredded; one that is not a
// sealed value of tenant (changed, or from another district) is ErrMalformed.
func (r *Keyring) Open(ctx context.Context, tenant, v string) (string, error) {
	if !IsSealed(v) {
		return v, nil
	}
	id, sealed, err := parseSealed(v)
	if err != nil {
		return "", err
	}
	k, err := r.keyByID(ctx, id)
	if err != nil {
		return "", err
	}
	if k == nil {
		return "", ErrShredded
	}
	if k.tenant != tenant {
		return "", fmt.Errorf("%w: the key belongs to another district", ErrMalformed)
	}
	pt, err := k.aead.Open(nil, nil, sealed, k.aad)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return string(pt), nil
}

// keyByID returns the data key with id, nil when it does not exist (shredded).
func (r *Keyring) keyByID(ctx context.Context, id [keyIDSize]byte) (*DataKey, error) {
	return r.byID.Get(id, func() (*DataKey, error) {
		var tenant string
		s := storedKey{ID: id}
		err := r.pool.QueryRow(ctx, `SELECT tenant_id, kek_version, wrapped FROM control.subject_keys WHERE key_id = $1::uuid`,
			uuidString(id)).Scan(&tenant, &s.Version, &s.Wrapped)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("reading data key %s: %w", uuidString(id), err)
		}
		return r.unwrapDEK(ctx, tenant, s)
	})
}

// Preload reads, in one round trip, the data keys of the sealed values among values that are not
// cached yet, so that a batch's Open calls do not each go to the database.
func (r *Keyring) Preload(ctx context.Context, values []string) error {
	var ids [][keyIDSize]byte
	seen := map[[keyIDSize]byte]bool{}
	for _, v := range values {
		if !IsSealed(v) {
			continue
		}
		id, _, err := parseSealed(v)
		if err != nil || seen[id] {
			continue // Open reports it
		}
		seen[id] = true
		if _, ok := r.byID.Peek(id); !ok {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	// As text: a pool in pgx's exec mode (the sink's) cannot encode [16]byte without the parameter's type.
	texts := make([]string, len(ids))
	for i, id := range ids {
		texts[i] = uuidString(id)
	}
	rows, err := r.pool.Query(ctx, `SELECT key_id, tenant_id, kek_version, wrapped FROM control.subject_keys
		WHERE key_id = ANY($1::uuid[])`, texts)
	if err != nil {
		return fmt.Errorf("reading data keys: %w", err)
	}
	type row struct {
		ID      [keyIDSize]byte
		Tenant  string
		Version int
		Wrapped []byte
	}
	found, err := pgx.CollectRows(rows, pgx.RowToStructByPos[row])
	if err != nil {
		return fmt.Errorf("reading data keys: %w", err)
	}
	for _, f := range found {
		k, err := r.unwrapDEK(ctx, f.Tenant, storedKey{ID: f.ID, Version: f.Version, Wrapped: f.Wrapped})
		if err != nil {
			return err
		}
		r.byID.Put(f.ID, k)
		delete(seen, f.ID)
	}
	for _, id := range ids {
		if seen[id] {
			r.byID.Put(id, nil) // shredded: ids are never reused, so this answer stays true
		}
	}
	return nil
}

// KeyOf returns the data key a sealed value of tenant was sealed under, to seal other values of the same
// person with (nil for a value that is not sealed). A shredded key is ErrShredded; a value that is not a
// sealed value of tenant is ErrMalformed.
func (r *Keyring) KeyOf(ctx context.Context, tenant, v string) (*DataKey, error) {
	if !IsSealed(v) {
		return nil, nil
	}
	id, _, err := parseSealed(v)
	if err != nil {
		return nil, err
	}
	k, err := r.keyByID(ctx, id)
	switch {
	case err != nil:
		return nil, err
	case k == nil:
		return nil, ErrShredded
	case k.tenant != tenant:
		return nil, fmt.Errorf("%w: the key belongs to another district", ErrMalformed)
	}
	return k, nil
}
