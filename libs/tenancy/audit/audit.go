// Package audit is the control plane's audit log (control.audit_log): append-only, each entry chained to
// the one before by a keyed hash (HMAC-SHA256 under the audit key, which is held wrapped by the master
// key and so cannot be computed by someone who can only write the table), so that an edited, removed or
// reordered entry is found by Verify. Entries written before the chain was keyed keep their SHA-256
// chain.
package audit

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ErrTampered: the audit log's hash chain is broken (an entry was edited, removed or reordered) or
// no longer holds an entry that was recorded as its head.
var ErrTampered = errors.New("audit log tampered with")

// TamperError lists every break Verify found; it matches ErrTampered.
type TamperError struct {
	Breaks []string
}

func (e *TamperError) Error() string {
	const shown = 10
	list := e.Breaks
	more := ""
	if len(list) > shown {
		list, more = list[:shown], fmt.Sprintf("; and %d more", len(e.Breaks)-shown)
	}
	return fmt.Sprintf("%v: %d breaks: %s%s", ErrTampered, len(e.Breaks), strings.Join(list, "; "), more)
}

// Is makes a TamperError match ErrTampered.
func (e *TamperError) Is(target error) bool { return target == ErrTampered }

// Keys gives the key that signs the chain (a *keyring.Keyring).
type Keys interface {
	AuditKey(ctx context.Context) ([]byte, error)
}

// lockKey serialises appends: each entry's hash depends on the one before it.
const lockKey = int64(0x6175646974) // "audit"

// Entry is one entry of the audit log. Detail is JSON text; the hash covers it byte for byte.
type Entry struct {
	Seq      int64     `json:"seq"`
	At       time.Time `json:"at"`
	Actor    string    `json:"actor"`
	TenantID string    `json:"tenant_id,omitempty"`
	Action   string    `json:"action"`
	Detail   string    `json:"detail"`
	PrevHash []byte    `json:"prev_hash"`
	Hash     []byte    `json:"hash"`
	Keyed    bool      `json:"keyed"` // hashed with the audit key; false for entries written before
}

// Head names the newest entry of the log; record it elsewhere to detect later truncation.
type Head struct {
	Seq  int64  `json:"seq"`
	Hash []byte `json:"hash"`
}

// String renders the head as SEQ:HEX, the form ParseHead reads.
func (h Head) String() string { return fmt.Sprintf("%d:%s", h.Seq, hex.EncodeToString(h.Hash)) }

// ParseHead reads SEQ:HEX.
func ParseHead(s string) (Head, error) {
	seq, hexHash, ok := strings.Cut(s, ":")
	var h Head
	if _, err := fmt.Sscan(seq, &h.Seq); !ok || err != nil || h.Seq < 1 {
		return Head{}, fmt.Errorf("%w: audit head %q: want SEQ:HASH", tenancy.ErrInvalidArgument, s)
	}
	hash, err := hex.DecodeString(hexHash)
	if err != nil || len(hash) != sha256.Size {
		return Head{}, fmt.Errorf("%w: audit head %q: the hash must be 64 hex digits", tenancy.ErrInvalidArgument, s)
	}
	h.Hash = hash
	return h, nil
}

// Store appends to, reads and verifies the audit log. Run tenancy.Migrate first.
type Store struct {
	pool *pgxpool.Pool
	keys Keys
}

// New returns a Store over the control database pool; keys sign new entries and verify keyed ones.
func New(pool *pgxpool.Pool, keys Keys) *Store { return &Store{pool: pool, keys: keys} }

// chainHash is HMAC-SHA256 under key (SHA-256 for an entry written before the chain was keyed, key nil)
// over the previous hash, the sequence number and each field, length-prefixed so that no two entries
// encode alike. The time is taken at microseconds, as PostgreSQL stores it.
func chainHash(key, prev []byte, e Entry) []byte {
	h := sha256.New()
	if key != nil {
		h = hmac.New(sha256.New, key)
	}
	h.Write(prev)
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(e.Seq))
	h.Write(n[:])
	for _, f := range []string{e.At.UTC().Format(time.RFC3339Nano), e.Actor, e.TenantID, e.Action, e.Detail} {
		binary.BigEndian.PutUint64(n[:], uint64(len(f)))
		h.Write(n[:])
		h.Write([]byte(f))
	}
	return h.Sum(nil)
}

// Append adds an entry: who (actor, e.g. "token:abc" or "ctl"), for which district (tenantID, ""
// for none), what (action, e.g. "benchmark.read") and its details (marshalled to JSON). It returns the
// stored entry. Appends are serialised, so the log's order is the order they committed in.
func (s *Store) Append(ctx context.Context, actor, tenantID, action string, detail any) (Entry, error) {
	if actor == "" || action == "" {
		return Entry{}, fmt.Errorf("%w: audit entry: actor and action are required", tenancy.ErrInvalidArgument)
	}
	b, err := json.Marshal(detail)
	if err != nil {
		return Entry{}, fmt.Errorf("encoding audit detail: %w", err)
	}
	key, err := s.keys.AuditKey(ctx)
	if err != nil {
		return Entry{}, fmt.Errorf("appending audit entry %s: %w", action, err)
	}
	e := Entry{At: time.Now().UTC().Truncate(time.Microsecond), Actor: actor, TenantID: tenantID, Action: action, Detail: string(b), Keyed: true}
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", lockKey); err != nil {
			return err
		}
		e.PrevHash = make([]byte, sha256.Size)
		err := tx.QueryRow(ctx, "SELECT seq, hash FROM control.audit_log ORDER BY seq DESC LIMIT 1").Scan(&e.Seq, &e.PrevHash)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		e.Seq++
		e.Hash = chainHash(key, e.PrevHash, e)
		_, err = tx.Exec(ctx, `INSERT INTO control.audit_log (seq, at, actor, tenant_id, action, detail, prev_hash, hash, keyed)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, true)`, e.Seq, e.At, e.Actor, e.TenantID, e.Action, e.Detail, e.PrevHash, e.Hash)
		return err
	})
	if err != nil {
		return Entry{}, fmt.Errorf("appending audit entry %s: %w", action, err)
	}
	return e, nil
}

// Entries returns up to limit entries from seq from on, oldest first.
func (s *Store) Entries(ctx context.Context, from int64, limit int) ([]Entry, error) {
	rows, err := s.pool.Query(ctx, `SELECT seq, at, actor, tenant_id, action, detail, prev_hash, hash, keyed
		FROM control.audit_log WHERE seq >= $1 ORDER BY seq LIMIT $2`, from, limit)
	if err != nil {
		return nil, fmt.Errorf("reading audit log: %w", err)
	}
	return collectEntries(rows)
}

func collectEntries(rows pgx.Rows) ([]Entry, error) {
	entries, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Entry, error) {
		var e Entry
		err := r.Scan(&e.Seq, &e.At, &e.Actor, &e.TenantID, &e.Action, &e.Detail, &e.PrevHash, &e.Hash, &e.Keyed)
		e.At = e.At.UTC()
		return e, err
	})
	if err != nil {
		return nil, fmt.Errorf("reading audit log: %w", err)
	}
	return entries, nil
}

// List returns the newest entries (up to limit, oldest of them first) of a district (all districts for
// ""), at or after since.
func (s *Store) List(ctx context.Context, tenantID string, since time.Time, limit int) ([]Entry, error) {
	rows, err := s.pool.Query(ctx, `SELECT seq, at, actor, tenant_id, action, detail, prev_hash, hash, keyed FROM (
			SELECT * FROM control.audit_log WHERE ($1 = '' OR tenant_id = $1) AND at >= $2 ORDER BY seq DESC LIMIT $3
		) newest ORDER BY seq`, tenantID, since, limit)
	if err != nil {
		return nil, fmt.Errorf("reading audit log: %w", err)
	}
	return collectEntries(rows)
}

// Verify walks the whole log and checks that sequence numbers run 1, 2, 3... without a gap, that each
// entry names the previous entry's hash, that each hash is what the entry's fields give under the audit
// key (SHA-256 for entries written before the chain was keyed, and none of those after a keyed one). If
// expect is set (a head recorded earlier, e.g. published), the log must still hold that entry with that
// hash, and so must it hold each of more (every head published). It returns the current head (zero for an empty log). A broken chain is a *TamperError listing
// every break: after a break the walk goes on from the entry as stored, so each changed entry is named.
func (s *Store) Verify(ctx context.Context, expect *Head, more ...Head) (Head, error) {
	expected := map[int64][]byte{}
	if expect != nil {
		expected[expect.Seq] = expect.Hash
	}
	for _, h := range more {
		expected[h.Seq] = h.Hash
	}
	const page = 1000
	prev := make([]byte, sha256.Size)
	var head Head
	var breaks []string
	var key []byte
	keyedSince := int64(0)
	for {
		entries, err := s.Entries(ctx, head.Seq+1, page)
		if err != nil {
			return head, err
		}
		for _, e := range entries {
			if e.Keyed && key == nil {
				if key, err = s.keys.AuditKey(ctx); err != nil {
					return head, fmt.Errorf("verifying the keyed entries: %w", err)
				}
			}
			var k []byte
			if e.Keyed {
				k = key
				if keyedSince == 0 {
					keyedSince = e.Seq
				}
			}
			switch {
			case e.Seq != head.Seq+1:
				breaks = append(breaks, fmt.Sprintf("entry %d follows entry %d", e.Seq, head.Seq))
			case !bytes.Equal(e.PrevHash, prev):
				breaks = append(breaks, fmt.Sprintf("entry %d does not chain to entry %d", e.Seq, head.Seq))
			case !e.Keyed && keyedSince != 0:
				breaks = append(breaks, fmt.Sprintf("entry %d is not keyed, though entries are keyed from %d on", e.Seq, keyedSince))
			case !hmac.Equal(chainHash(k, prev, e), e.Hash):
				breaks = append(breaks, fmt.Sprintf("entry %d does not match its hash", e.Seq))
			}
			if want, ok := expected[e.Seq]; ok {
				if !bytes.Equal(e.Hash, want) {
					breaks = append(breaks, fmt.Sprintf("entry %d is not the one recorded as head", e.Seq))
				}
				delete(expected, e.Seq)
			}
			prev, head = e.Hash, Head{Seq: e.Seq, Hash: e.Hash}
		}
		if len(entries) < page {
			break
		}
	}
	for _, seq := range slices.Sorted(maps.Keys(expected)) {
		breaks = append(breaks, fmt.Sprintf("the recorded head %d is gone (the log ends at %d)", seq, head.Seq))
	}
	if len(breaks) > 0 {
		return head, &TamperError{Breaks: breaks}
	}
	return head, nil
}
