package keyring

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// ShredSubject deletes one person's data key: every field sealed under it can no longer be opened. It
// reports whether there was a key; shredding twice is harmless.
func (r *Keyring) ShredSubject(ctx context.Context, tenant, sisID string) (bool, error) {
	d, err := r.district(ctx, tenant, false)
	if errors.Is(err, ErrShredded) {
		return false, nil // no keys at all: nothing was ever sealed
	}
	if err != nil {
		return false, err
	}
	var id [keyIDSize]byte
	err = r.pool.QueryRow(ctx, `DELETE FROM control.subject_keys WHERE tenant_id = $1 AND subject_ref = $2
		RETURNING key_id`, tenant, d.subjectRef(sisID)).Scan(&id)
	r.bySubject.Remove(subjectRef{tenant, sisID})
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("shredding a data key of district %s: %w", tenant, err)
	}
	r.byID.Put(id, nil)
	return true, nil
}

// HasSubjectKey reports whether the person has a data key (for verifying an erasure).
func (r *Keyring) HasSubjectKey(ctx context.Context, tenant, sisID string) (bool, error) {
	d, err := r.district(ctx, tenant, false)
	if errors.Is(err, ErrShredded) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	var n int
	err = r.pool.QueryRow(ctx, `SELECT count(*) FROM control.subject_keys WHERE tenant_id = $1 AND subject_ref = $2`,
		tenant, d.subjectRef(sisID)).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("reading a data key of district %s: %w", tenant, err)
	}
	return n > 0, nil
}

// ShredDistrict deletes every key of the district, which makes everything sealed for it unreadable. It
// returns the number of data keys deleted.
func (r *Keyring) ShredDistrict(ctx context.Context, tenant string) (int64, error) {
	var n int64
	err := pgx.BeginFunc(ctx, r.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM control.subject_keys WHERE tenant_id = $1`, tenant)
		if err != nil {
			return err
		}
		n = tag.RowsAffected()
		if _, err := tx.Exec(ctx, `DELETE FROM control.district_keks WHERE tenant_id = $1`, tenant); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `DELETE FROM control.district_keys WHERE tenant_id = $1`, tenant)
		return err
	})
	r.Forget()
	if err != nil {
		return 0, fmt.Errorf("shredding the keys of district %s: %w", tenant, err)
	}
	return n, nil
}

// DistrictKeyCount is the number of data keys the district has (0 once shredded).
func (r *Keyring) DistrictKeyCount(ctx context.Context, tenant string) (int64, error) {
	var n int64
	err := r.pool.QueryRow(ctx, `SELECT count(*) FROM control.subject_keys WHERE tenant_id = $1`, tenant).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("counting the data keys of district %s: %w", tenant, err)
	}
	return n, nil
}

// Rotation is what a KEK rotation did.
type Rotation struct {
	From, To  int   // KEK versions
	Rewrapped int64 // data keys re-wrapped under the new KEK
	Retired   int64 // old KEK versions deleted
}

// rewrapBatch is how many data keys one re-wrap statement updates.
const rewrapBatch = 1000

// RotateDistrict makes a new KEK the district's current one, re-wraps every data key under it (the data
// sealed with the data keys is not touched) and deletes the old KEK versions. A process that still
// creates data keys under an old version (its cache is older than the rotation) is refused by the
// database and retries with the new one; a version still referenced is never deleted, and rotating again
// finishes it.
func (r *Keyring) RotateDistrict(ctx context.Context, tenant string) (Rotation, error) {
	var rot Rotation
	masterID := r.master.Current()
	err := pgx.BeginFunc(ctx, r.pool, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `SELECT kek_version FROM control.district_keys WHERE tenant_id = $1 FOR UPDATE`,
			tenant).Scan(&rot.From)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("%w: district %s has no keys", ErrUnknownKey, tenant)
		}
		if err != nil {
			return err
		}
		if err := tx.QueryRow(ctx, `SELECT max(version) + 1 FROM control.district_keks WHERE tenant_id = $1`,
			tenant).Scan(&rot.To); err != nil {
			return err
		}
		wrapped, err := r.master.Wrap(ctx, masterID, randomKey(), kekAAD(tenant, rot.To))
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO control.district_keks (tenant_id, version, master_key_id, wrapped)
			VALUES ($1, $2, $3, $4)`, tenant, rot.To, masterID, wrapped); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE control.district_keys SET kek_version = $2 WHERE tenant_id = $1`, tenant, rot.To)
		return err
	})
	if err != nil {
		return rot, fmt.Errorf("rotating the KEK of district %s: %w", tenant, err)
	}
	r.districts.Remove(tenant)
	newKEK, err := r.kek(ctx, tenant, rot.To)
	if err != nil {
		return rot, err
	}
	for {
		n, err := r.rewrapSome(ctx, tenant, rot.To, newKEK)
		rot.Rewrapped += n
		if err != nil {
			return rot, err
		}
		if n == 0 {
			break
		}
	}
	tag, err := r.pool.Exec(ctx, `DELETE FROM control.district_keks k WHERE tenant_id = $1 AND version <> $2
		AND NOT EXISTS (SELECT 1 FROM control.subject_keys s WHERE s.tenant_id = k.tenant_id AND s.kek_version = k.version)`,
		tenant, rot.To)
	if err != nil {
		return rot, fmt.Errorf("retiring old KEKs of district %s: %w", tenant, err)
	}
	rot.Retired = tag.RowsAffected()
	return rot, nil
}

// rewrapSome re-wraps up to rewrapBatch data keys not yet under version, returning how many it did.
func (r *Keyring) rewrapSome(ctx context.Context, tenant string, version int, kek interface {
	Seal(dst, nonce, plaintext, aad []byte) []byte
}) (int64, error) {
	rows, err := r.pool.Query(ctx, `SELECT key_id, subject_ref, kek_version, wrapped FROM control.subject_keys
		WHERE tenant_id = $1 AND kek_version <> $2 LIMIT $3`, tenant, version, rewrapBatch)
	if err != nil {
		return 0, fmt.Errorf("reading data keys to re-wrap: %w", err)
	}
	old, err := pgx.CollectRows(rows, pgx.RowToStructByPos[storedKey])
	if err != nil {
		return 0, fmt.Errorf("reading data keys to re-wrap: %w", err)
	}
	if len(old) == 0 {
		return 0, nil
	}
	ids := make([][keyIDSize]byte, len(old))
	versions := make([]int, len(old))
	wrapped := make([][]byte, len(old))
	for i, s := range old {
		prev, err := r.kek(ctx, tenant, s.Version)
		if err != nil {
			return 0, err
		}
		dek, err := prev.Open(nil, nil, s.Wrapped, dekAAD(tenant, s.ID))
		if err != nil {
			return 0, fmt.Errorf("district %s: data key %s does not unwrap: %w", tenant, uuidString(s.ID), err)
		}
		ids[i], versions[i], wrapped[i] = s.ID, s.Version, kek.Seal(nil, nil, dek, dekAAD(tenant, s.ID))
	}
	tag, err := r.pool.Exec(ctx, `UPDATE control.subject_keys s SET kek_version = $2, wrapped = t.w
		FROM unnest($1::uuid[], $3::int[], $4::bytea[]) AS t(k, v, w)
		WHERE s.key_id = t.k AND s.kek_version = t.v`, ids, version, versions, wrapped)
	if err != nil {
		return 0, fmt.Errorf("re-wrapping data keys of district %s: %w", tenant, err)
	}
	return tag.RowsAffected(), nil
}

// RotateMaster re-wraps every district's lookup secret, pseudonym key and KEKs, and the audit key, that
// another master key wraps under the current one; afterwards the old master keys can be removed from the configuration. It returns the
// number of keys re-wrapped.
func (r *Keyring) RotateMaster(ctx context.Context) (int, error) {
	current := r.master.Current()
	n := 0
	rows, err := r.pool.Query(ctx, `SELECT tenant_id, master_key_id, wrapped_lookup, wrapped_pseudonym FROM control.district_keys
		WHERE master_key_id <> $1`, current)
	if err != nil {
		return 0, fmt.Errorf("reading district secrets: %w", err)
	}
	type wrappedKey struct {
		Tenant    string
		MasterID  string
		Wrapped   []byte
		Pseudonym []byte
	}
	lookups, err := pgx.CollectRows(rows, pgx.RowToStructByPos[wrappedKey])
	if err != nil {
		return 0, fmt.Errorf("reading district secrets: %w", err)
	}
	for _, l := range lookups {
		w, err := r.rewrapMaster(ctx, l.MasterID, current, l.Wrapped, lookupAAD(l.Tenant))
		if err != nil {
			return n, fmt.Errorf("district %s: lookup secret: %w", l.Tenant, err)
		}
		var p []byte
		if l.Pseudonym != nil {
			if p, err = r.rewrapMaster(ctx, l.MasterID, current, l.Pseudonym, pseudonymAAD(l.Tenant)); err != nil {
				return n, fmt.Errorf("district %s: pseudonym key: %w", l.Tenant, err)
			}
			n++
		}
		if _, err := r.pool.Exec(ctx, `UPDATE control.district_keys SET master_key_id = $3, wrapped_lookup = $4,
			wrapped_pseudonym = $5 WHERE tenant_id = $1 AND master_key_id = $2`, l.Tenant, l.MasterID, current, w, p); err != nil {
			return n, fmt.Errorf("district %s: storing lookup secret: %w", l.Tenant, err)
		}
		n++
	}
	rows, err = r.pool.Query(ctx, `SELECT tenant_id, version, master_key_id, wrapped FROM control.district_keks
		WHERE master_key_id <> $1`, current)
	if err != nil {
		return n, fmt.Errorf("reading KEKs: %w", err)
	}
	type wrappedKEK struct {
		Tenant   string
		Version  int
		MasterID string
		Wrapped  []byte
	}
	keks, err := pgx.CollectRows(rows, pgx.RowToStructByPos[wrappedKEK])
	if err != nil {
		return n, fmt.Errorf("reading KEKs: %w", err)
	}
	for _, k := range keks {
		w, err := r.rewrapMaster(ctx, k.MasterID, current, k.Wrapped, kekAAD(k.Tenant, k.Version))
		if err != nil {
			return n, fmt.Errorf("district %s: KEK %d: %w", k.Tenant, k.Version, err)
		}
		if _, err := r.pool.Exec(ctx, `UPDATE control.district_keks SET master_key_id = $4, wrapped = $5
			WHERE tenant_id = $1 AND version = $2 AND master_key_id = $3`, k.Tenant, k.Version, k.MasterID, current, w); err != nil {
			return n, fmt.Errorf("district %s: storing KEK %d: %w", k.Tenant, k.Version, err)
		}
		n++
	}
	if done, err := r.rewrapAuditKey(ctx, current); err != nil {
		return n, err
	} else if done {
		n++
	}
	r.Forget()
	return n, nil
}

func (r *Keyring) rewrapMaster(ctx context.Context, from, to string, wrapped, aad []byte) ([]byte, error) {
	key, err := r.master.Unwrap(ctx, from, wrapped, aad)
	if err != nil {
		return nil, err
	}
	return r.master.Wrap(ctx, to, key, aad)
}
