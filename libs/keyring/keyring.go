// Package keyring encrypts the identifying fields of a district's records under one data key per person
// (crypto-shredding): delete the person's key and every copy of those fields, in Kafka, the archive, dead
// letters and backups, can no longer be read.
//
// The hierarchy (ADR 0010): a master key (MasterKeys; local keys by default, a KMS or Vault transit can
// implement it) wraps each district's lookup secret and key-encryption keys (KEKs, versioned for
// rotation); the district's current KEK wraps each person's data key (DEK). Only wrapped keys are stored,
// in the control schema. A person is named in the key table by an HMAC of their SIS id under the
// district's lookup secret, never by the id itself.
//
// A sealed field is a string: "enc1." and the unpadded base64url of the data key's id (16 bytes), the
// AES-256-GCM nonce (12), the ciphertext and the tag (16). The district's id is the additional data, so a
// value moved to another district does not open. Values without the prefix are plaintext written before
// encryption began; Open returns them as they are.
package keyring

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/edtech-analytics/platform/libs/ttlcache"
)

const (
	keySize      = 32 // AES-256
	keyIDSize    = 16 // a random UUID
	sealedPrefix = "enc1."
	// gcmOverhead is what AES-GCM with a random nonce adds: the 12-byte nonce and the 16-byte tag.
	gcmOverhead = 12 + 16
)

var (
	// ErrShredded: the data key a sealed value names is gone (the person or district was erased).
	ErrShredded = errors.New("data key shredded")
	// ErrUnknownKey: a master key or district the caller named does not exist.
	ErrUnknownKey = errors.New("unknown key")
	// ErrMalformed: a value carries the sealed prefix but is not a sealed value of this district.
	ErrMalformed = errors.New("malformed sealed value")
)

// IsSealed reports whether v is a sealed value (it may still fail to open).
func IsSealed(v string) bool { return strings.HasPrefix(v, sealedPrefix) }

// DataKey is one person's data key, ready to seal and open their fields.
type DataKey struct {
	id     [keyIDSize]byte
	tenant string
	aad    []byte // the district's id
	aead   cipher.AEAD
}

// ID is the key's id as a UUID string.
func (k *DataKey) ID() string { return uuidString(k.id) }

// Seal encrypts a field value.
func (k *DataKey) Seal(plaintext string) string {
	bp := sealBuffers.Get().(*[]byte)
	raw := append((*bp)[:0], k.id[:]...)
	// AES-GCM only reads the plaintext, so it is passed without a copy.
	raw = k.aead.Seal(raw, nil, unsafe.Slice(unsafe.StringData(plaintext), len(plaintext)), k.aad)
	out := make([]byte, len(sealedPrefix)+base64.RawURLEncoding.EncodedLen(len(raw)))
	copy(out, sealedPrefix)
	base64.RawURLEncoding.Encode(out[len(sealedPrefix):], raw)
	*bp = raw
	sealBuffers.Put(bp)
	return unsafe.String(unsafe.SliceData(out), len(out)) // out is not used again
}

// sealBuffers hold the binary form of a sealed value while it is encoded.
var sealBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 256); return &b }}

// Keyring creates, finds, rotates and shreds a fleet's keys. It is safe for concurrent use; keys are
// cached for cacheTTL, so a key shredded by another process stops being used here within that time (the
// enricher also suppresses an erased person at once, by control command).
type Keyring struct {
	pool   *pgxpool.Pool
	master MasterKeys

	districts *ttlcache.Cache[string, *district]
	keks      *ttlcache.Cache[kekRef, cipher.AEAD]
	bySubject *ttlcache.Cache[subjectRef, *DataKey]
	byID      *ttlcache.Cache[[keyIDSize]byte, *DataKey] // nil: no such key (ids are never reused)
	// secrets are the districts' pseudonym keys (by district id) and the audit key (auditSecret).
	secrets *ttlcache.Cache[string, []byte]
}

// Options size the caches; zero values take the defaults.
type Options struct {
	CacheSize int           // data keys held (default 200,000; about 1 KiB each)
	CacheTTL  time.Duration // default 10 minutes
}

type district struct {
	lookup     []byte // HMAC key for subject refs
	kekVersion int
	kek        cipher.AEAD
}

type kekRef struct {
	tenant  string
	version int
}

type subjectRef struct{ tenant, sisID string }

// New returns a keyring over the control database pool and the master keys.
func New(pool *pgxpool.Pool, master MasterKeys, opt Options) *Keyring {
	if opt.CacheSize <= 0 {
		opt.CacheSize = 200_000
	}
	if opt.CacheTTL <= 0 {
		opt.CacheTTL = 10 * time.Minute
	}
	return &Keyring{
		pool: pool, master: master,
		districts: ttlcache.New[string, *district](10_000, opt.CacheTTL),
		keks:      ttlcache.New[kekRef, cipher.AEAD](10_000, opt.CacheTTL),
		bySubject: ttlcache.New[subjectRef, *DataKey](opt.CacheSize, opt.CacheTTL),
		byID:      ttlcache.New[[keyIDSize]byte, *DataKey](opt.CacheSize, opt.CacheTTL),
		secrets:   ttlcache.New[string, []byte](10_000, opt.CacheTTL),
	}
}

// Forget drops every cached key, for a process that has just shredded some.
func (r *Keyring) Forget() {
	r.districts.Purge()
	r.keks.Purge()
	r.bySubject.Purge()
	r.byID.Purge()
	r.secrets.Purge()
}

// SubjectKeys returns the data key of each of the district's people named by SIS id, creating the
// district's keys and any person's key that does not exist yet (one round trip for all the misses).
func (r *Keyring) SubjectKeys(ctx context.Context, tenant string, sisIDs []string) (map[string]*DataKey, error) {
	out := make(map[string]*DataKey, len(sisIDs))
	var missing []string
	for _, id := range sisIDs {
		if _, done := out[id]; done {
			continue
		}
		if k, ok := r.bySubject.Peek(subjectRef{tenant, id}); ok {
			out[id] = k
			continue
		}
		out[id] = nil
		missing = append(missing, id)
	}
	if len(missing) == 0 {
		return out, nil
	}
	found, err := r.loadSubjects(ctx, tenant, missing)
	var fk *pgconn.PgError
	if errors.As(err, &fk) && fk.Code == "23503" {
		// The district's KEK was rotated away since it was cached: load it again and retry once.
		r.districts.Remove(tenant)
		found, err = r.loadSubjects(ctx, tenant, missing)
	}
	if err != nil {
		return nil, err
	}
	for _, id := range missing {
		k := found[id]
		out[id] = k
		r.bySubject.Put(subjectRef{tenant, id}, k)
		r.byID.Put(k.id, k)
	}
	return out, nil
}

// SubjectKey is SubjectKeys for one person.
func (r *Keyring) SubjectKey(ctx context.Context, tenant, sisID string) (*DataKey, error) {
	if k, ok := r.bySubject.Peek(subjectRef{tenant, sisID}); ok {
		return k, nil
	}
	m, err := r.SubjectKeys(ctx, tenant, []string{sisID})
	if err != nil {
		return nil, err
	}
	return m[sisID], nil
}

// loadSubjects reads the data keys of sisIDs, creating those that do not exist.
func (r *Keyring) loadSubjects(ctx context.Context, tenant string, sisIDs []string) (map[string]*DataKey, error) {
	d, err := r.district(ctx, tenant, true)
	if err != nil {
		return nil, err
	}
	refs := make([][]byte, len(sisIDs))
	sisByRef := make(map[string]string, len(sisIDs))
	for i, id := range sisIDs {
		refs[i] = d.subjectRef(id)
		sisByRef[string(refs[i])] = id
	}
	out := make(map[string]*DataKey, len(sisIDs))
	if err := r.readSubjects(ctx, tenant, refs, sisByRef, out); err != nil {
		return nil, err
	}
	if len(out) == len(sisIDs) {
		return out, nil
	}
	var ids [][keyIDSize]byte
	var newRefs, wrapped, plain [][]byte
	for _, ref := range refs {
		if _, ok := out[sisByRef[string(ref)]]; ok {
			continue
		}
		id := newKeyID()
		dek := randomKey()
		ids = append(ids, id)
		newRefs = append(newRefs, ref)
		plain = append(plain, dek)
		wrapped = append(wrapped, d.kek.Seal(nil, nil, dek, dekAAD(tenant, id)))
	}
	// The keys inserted are ours: used as generated. Those a concurrent creator inserted first are read.
	rows, err := r.pool.Query(ctx, `INSERT INTO control.subject_keys (key_id, tenant_id, subject_ref, kek_version, wrapped)
		SELECT k, $2, s, $3, w FROM unnest($1::uuid[], $4::bytea[], $5::bytea[]) AS t(k, s, w)
		ON CONFLICT (tenant_id, subject_ref) DO NOTHING RETURNING key_id`, ids, tenant, d.kekVersion, newRefs, wrapped)
	if err != nil {
		return nil, fmt.Errorf("creating data keys of district %s: %w", tenant, err)
	}
	inserted, err := pgx.CollectRows(rows, pgx.RowTo[[keyIDSize]byte])
	if err != nil {
		return nil, fmt.Errorf("creating data keys of district %s: %w", tenant, err)
	}
	ours := make(map[[keyIDSize]byte]bool, len(inserted))
	for _, id := range inserted {
		ours[id] = true
	}
	var lost [][]byte
	for i, id := range ids {
		if !ours[id] {
			lost = append(lost, newRefs[i])
			continue
		}
		aead, err := newAEAD(plain[i])
		if err != nil {
			return nil, err
		}
		out[sisByRef[string(newRefs[i])]] = &DataKey{id: id, tenant: tenant, aad: []byte(tenant), aead: aead}
	}
	if len(lost) > 0 {
		if err := r.readSubjects(ctx, tenant, lost, sisByRef, out); err != nil {
			return nil, err
		}
	}
	if len(out) != len(sisIDs) {
		return nil, fmt.Errorf("district %s: %d data keys missing after creating them", tenant, len(sisIDs)-len(out))
	}
	return out, nil
}

// readSubjects adds to out (by SIS id) the stored data keys among refs.
func (r *Keyring) readSubjects(ctx context.Context, tenant string, refs [][]byte, sisByRef map[string]string, out map[string]*DataKey) error {
	stored, err := r.storedSubjects(ctx, tenant, refs)
	if err != nil {
		return err
	}
	for _, s := range stored {
		k, err := r.unwrapDEK(ctx, tenant, s)
		if err != nil {
			return err
		}
		out[sisByRef[string(s.Ref)]] = k
	}
	return nil
}

// storedSubjects reads the stored data keys among refs.
func (r *Keyring) storedSubjects(ctx context.Context, tenant string, refs [][]byte) ([]storedKey, error) {
	rows, err := r.pool.Query(ctx, `SELECT key_id, subject_ref, kek_version, wrapped FROM control.subject_keys
		WHERE tenant_id = $1 AND subject_ref = ANY($2::bytea[])`, tenant, refs)
	if err != nil {
		return nil, fmt.Errorf("reading data keys of district %s: %w", tenant, err)
	}
	stored, err := pgx.CollectRows(rows, pgx.RowToStructByPos[storedKey])
	if err != nil {
		return nil, fmt.Errorf("reading data keys of district %s: %w", tenant, err)
	}
	return stored, nil
}

// storedKey is a row of control.subject_keys.
type storedKey struct {
	ID      [keyIDSize]byte
	Ref     []byte
	Version int
	Wrapped []byte
}

// unwrapDEK opens a stored data key with the KEK version that wrapped it.
func (r *Keyring) unwrapDEK(ctx context.Context, tenant string, s storedKey) (*DataKey, error) {
	dek, err := r.openDEK(ctx, tenant, s)
	if err != nil {
		return nil, err
	}
	aead, err := newAEAD(dek)
	if err != nil {
		return nil, err
	}
	return &DataKey{id: s.ID, tenant: tenant, aad: []byte(tenant), aead: aead}, nil
}

// openDEK unwraps a stored data key with the KEK version that wrapped it.
func (r *Keyring) openDEK(ctx context.Context, tenant string, s storedKey) ([]byte, error) {
	kek, err := r.kek(ctx, tenant, s.Version)
	if err != nil {
		return nil, err
	}
	dek, err := kek.Open(nil, nil, s.Wrapped, dekAAD(tenant, s.ID))
	if err != nil {
		return nil, fmt.Errorf("district %s: data key %s does not unwrap: %w", tenant, uuidString(s.ID), err)
	}
	return dek, nil
}

// district returns the district's lookup secret and current KEK, creating them when create is set.
func (r *Keyring) district(ctx context.Context, tenant string, create bool) (*district, error) {
	return r.districts.Get(tenant, func() (*district, error) {
		d, err := r.readDistrict(ctx, tenant)
		if errors.Is(err, pgx.ErrNoRows) && create {
			if err := r.createDistrict(ctx, tenant); err != nil {
				return nil, err
			}
			d, err = r.readDistrict(ctx, tenant)
		}
		if errors.Is(err, pgx.ErrNoRows) {
			return nil, fmt.Errorf("%w: district %s has no keys", ErrShredded, tenant)
		}
		return d, err
	})
}

func (r *Keyring) readDistrict(ctx context.Context, tenant string) (*district, error) {
	var masterID string
	var wrappedLookup []byte
	var version int
	err := r.pool.QueryRow(ctx, `SELECT master_key_id, wrapped_lookup, kek_version FROM control.district_keys
		WHERE tenant_id = $1`, tenant).Scan(&masterID, &wrappedLookup, &version)
	if err != nil {
		if !errors.Is(err, pgx.ErrNoRows) {
			err = fmt.Errorf("reading keys of district %s: %w", tenant, err)
		}
		return nil, err
	}
	lookup, err := r.master.Unwrap(ctx, masterID, wrappedLookup, lookupAAD(tenant))
	if err != nil {
		return nil, fmt.Errorf("district %s: lookup secret: %w", tenant, err)
	}
	kek, err := r.kek(ctx, tenant, version)
	if err != nil {
		return nil, err
	}
	return &district{lookup: lookup, kekVersion: version, kek: kek}, nil
}

// createDistrict stores a new lookup secret and KEK version 1 for the district unless another process
// has just done so.
func (r *Keyring) createDistrict(ctx context.Context, tenant string) error {
	masterID := r.master.Current()
	lookup, err := r.master.Wrap(ctx, masterID, randomKey(), lookupAAD(tenant))
	if err != nil {
		return fmt.Errorf("district %s: wrapping lookup secret: %w", tenant, err)
	}
	kek, err := r.master.Wrap(ctx, masterID, randomKey(), kekAAD(tenant, 1))
	if err != nil {
		return fmt.Errorf("district %s: wrapping KEK: %w", tenant, err)
	}
	return pgx.BeginFunc(ctx, r.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `INSERT INTO control.district_keys (tenant_id, master_key_id, wrapped_lookup, kek_version)
			VALUES ($1, $2, $3, 1) ON CONFLICT (tenant_id) DO NOTHING`, tenant, masterID, lookup)
		if err != nil || tag.RowsAffected() == 0 {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO control.district_keks (tenant_id, version, master_key_id, wrapped)
			VALUES ($1, 1, $2, $3)`, tenant, masterID, kek)
		return err
	})
}

// kek returns a KEK version of the district.
func (r *Keyring) kek(ctx context.Context, tenant string, version int) (cipher.AEAD, error) {
	return r.keks.Get(kekRef{tenant, version}, func() (cipher.AEAD, error) {
		var masterID string
		var wrapped []byte
		err := r.pool.QueryRow(ctx, `SELECT master_key_id, wrapped FROM control.district_keks
			WHERE tenant_id = $1 AND version = $2`, tenant, version).Scan(&masterID, &wrapped)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil, fmt.Errorf("%w: district %s has no KEK version %d", ErrShredded, tenant, version)
		}
		if err != nil {
			return nil, fmt.Errorf("reading KEK %d of district %s: %w", version, tenant, err)
		}
		key, err := r.master.Unwrap(ctx, masterID, wrapped, kekAAD(tenant, version))
		if err != nil {
			return nil, fmt.Errorf("district %s: KEK %d: %w", tenant, version, err)
		}
		return newAEAD(key)
	})
}

// uuidString formats a key id the way PostgreSQL prints a uuid.
func uuidString(id [keyIDSize]byte) string {
	h := hex.EncodeToString(id[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

func dekAAD(tenant string, id [keyIDSize]byte) []byte {
	return []byte("dek|" + tenant + "|" + uuidString(id))
}

func kekAAD(tenant string, version int) []byte {
	return []byte("kek|" + tenant + "|" + strconv.Itoa(version))
}

func lookupAAD(tenant string) []byte { return []byte("lookup|" + tenant) }

func (d *district) subjectRef(sisID string) []byte {
	m := hmac.New(sha256.New, d.lookup)
	m.Write([]byte(sisID))
	return m.Sum(nil)
}

func newAEAD(key []byte) (cipher.AEAD, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCMWithRandomNonce(b)
}

// randomKey returns a fresh 256-bit key (crypto/rand never fails).
func randomKey() []byte {
	k := make([]byte, keySize)
	_, _ = rand.Read(k)
	return k
}

func newKeyID() [keyIDSize]byte {
	var id [keyIDSize]byte
	_, _ = rand.Read(id[:])
	id[6] = id[6]&0x0f | 0x40 // a version 4 UUID
	id[8] = id[8]&0x3f | 0x80
	return id
}
