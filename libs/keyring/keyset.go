package keyring

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// KeySet holds data keys of some of a district's people as key material: about 100 bytes a person,
// against about a kilobyte for a DataKey ready to use. It is for a caller that gets many people's keys
// well before it uses them (a first roster import creates the keys of its new people while it still
// reads the upload) and would otherwise read them back from the key store. Keys in a set are not in the
// keyring's cache. A set is safe for concurrent use: an import reads the keys of one chunk while it adds
// those of the next.
type KeySet struct {
	tenant string
	mu     sync.RWMutex
	keys   map[string]keyMaterial
}

// keyMaterial is a data key's id and its plaintext.
type keyMaterial struct {
	id  [keyIDSize]byte
	dek [keySize]byte
}

// KeySetEntryBytes is about what a set holds per person besides the SIS id, for callers that account
// for memory.
const KeySetEntryBytes = 96

// NewKeySet returns an empty set of the district's keys.
func NewKeySet(tenant string) *KeySet {
	return &KeySet{tenant: tenant, keys: map[string]keyMaterial{}}
}

// Len is the number of people in the set.
func (s *KeySet) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.keys)
}

// has reports whether the set holds the person's key.
func (s *KeySet) has(sisID string) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	_, ok := s.keys[sisID]
	return ok
}

// put adds the person's key to the set.
func (s *KeySet) put(sisID string, m keyMaterial) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys[sisID] = m
}

// Key returns the person's data key ready to use, or nil when the set does not hold it.
func (s *KeySet) Key(sisID string) (*DataKey, error) {
	s.mu.RLock()
	m, ok := s.keys[sisID]
	s.mu.RUnlock()
	if !ok {
		return nil, nil
	}
	aead, err := newAEAD(m.dek[:])
	if err != nil {
		return nil, err
	}
	return &DataKey{id: m.id, tenant: s.tenant, aad: []byte(s.tenant), aead: aead}, nil
}

// EnsureSubjectKeys adds the data keys of people to set, creating those that do not exist yet. It
// inserts first and reads only the keys of those who had one, so a batch of new people takes one round
// trip (SubjectKeys reads first: most of the people it is asked for have keys).
func (r *Keyring) EnsureSubjectKeys(ctx context.Context, set *KeySet, sisIDs []string) error {
	var todo []string
	seen := make(map[string]bool, len(sisIDs))
	for _, id := range sisIDs {
		if !set.has(id) && !seen[id] {
			seen[id] = true
			todo = append(todo, id)
		}
	}
	if len(todo) == 0 {
		return nil
	}
	err := r.ensureSubjects(ctx, set, todo)
	var fk *pgconn.PgError
	if errors.As(err, &fk) && fk.Code == "23503" {
		// The district's KEK was rotated away since it was cached: load it again and retry once.
		r.districts.Remove(set.tenant)
		err = r.ensureSubjects(ctx, set, todo)
	}
	return err
}

func (r *Keyring) ensureSubjects(ctx context.Context, set *KeySet, sisIDs []string) error {
	tenant := set.tenant
	d, err := r.district(ctx, tenant, true)
	if err != nil {
		return err
	}
	ids := make([][keyIDSize]byte, len(sisIDs))
	refs := make([][]byte, len(sisIDs))
	wrapped := make([][]byte, len(sisIDs))
	made := make([]keyMaterial, len(sisIDs))
	for i, sis := range sisIDs {
		ids[i] = newKeyID()
		refs[i] = d.subjectRef(sis)
		made[i].id = ids[i]
		copy(made[i].dek[:], randomKey())
		wrapped[i] = d.kek.Seal(nil, nil, made[i].dek[:], dekAAD(tenant, ids[i]))
	}
	rows, err := r.pool.Query(ctx, `INSERT INTO control.subject_keys (key_id, tenant_id, subject_ref, kek_version, wrapped)
		SELECT k, $2, s, $3, w FROM unnest($1::uuid[], $4::bytea[], $5::bytea[]) AS t(k, s, w)
		ON CONFLICT (tenant_id, subject_ref) DO NOTHING RETURNING key_id`, ids, tenant, d.kekVersion, refs, wrapped)
	if err != nil {
		return fmt.Errorf("creating data keys of district %s: %w", tenant, err)
	}
	inserted, err := pgx.CollectRows(rows, pgx.RowTo[[keyIDSize]byte])
	if err != nil {
		return fmt.Errorf("creating data keys of district %s: %w", tenant, err)
	}
	ours := make(map[[keyIDSize]byte]bool, len(inserted))
	for _, id := range inserted {
		ours[id] = true
	}
	// Those who had a key keep it: read theirs.
	var had [][]byte
	sisByRef := map[string]string{}
	for i, sis := range sisIDs {
		if ours[ids[i]] {
			set.put(sis, made[i])
			continue
		}
		had = append(had, refs[i])
		sisByRef[string(refs[i])] = sis
	}
	if len(had) == 0 {
		return nil
	}
	stored, err := r.storedSubjects(ctx, tenant, had)
	if err != nil {
		return err
	}
	for _, s := range stored {
		dek, err := r.openDEK(ctx, tenant, s)
		if err != nil {
			return err
		}
		m := keyMaterial{id: s.ID}
		copy(m.dek[:], dek)
		set.put(sisByRef[string(s.Ref)], m)
	}
	if len(stored) != len(had) {
		return fmt.Errorf("district %s: %d data keys missing after creating them", tenant, len(had)-len(stored))
	}
	return nil
}
