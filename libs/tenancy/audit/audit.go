// Package audit is the control plane's audit log (control.audit_log): append-only, each entry chained to
// the one before by its hash, so that an edited, removed or reordered entry is found by Verify.
package audit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ErrTampered: the audit log's hash chain is broken (an entry was edited, removed or reordered) or
// no longer holds an entry that was recorded as its head.
var ErrTampered = errors.New("audit log tampered with")

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
}

// New returns a Store over the control database pool.
func New(pool *pgxpool.Pool) *Store { return &Store{pool: pool} }

// chainHash is SHA-256 over the previous hash, the sequence number and each field, length-prefixed so
// that no two entries encode alike. The time is taken at microseconds, as PostgreSQL stores it.
func chainHash(prev []byte, e Entry) []byte {
	h := sha256.New()
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
	e := Entry{At: time.Now().UTC().Truncate(time.Microsecond), Actor: actor, TenantID: tenantID, Action: action, Detail: string(b)}
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
		e.Hash = chainHash(e.PrevHash, e)
		_, err = tx.Exec(ctx, `INSERT INTO control.audit_log (seq, at, actor, tenant_id, action, detail, prev_hash, hash)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`, e.Seq, e.At, e.Actor, e.TenantID, e.Action, e.Detail, e.PrevHash, e.Hash)
		return err
	})
	if err != nil {
		return Entry{}, fmt.Errorf("appending audit entry %s: %w", action, err)
	}
	return e, nil
}

// Entries returns up to limit entries from seq from on, oldest first.
func (s *Store) Entries(ctx context.Context, from int64, limit int) ([]Entry, error) {
	rows, err := s.pool.Query(ctx, `SELECT seq, at, actor, tenant_id, action, detail, prev_hash, hash
		FROM control.audit_log WHERE seq >= $1 ORDER BY seq LIMIT $2`, from, limit)
	if err != nil {
		return nil, fmt.Errorf("reading audit log: %w", err)
	}
	entries, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Entry, error) {
		var e Entry
		err := r.Scan(&e.Seq, &e.At, &e.Actor, &e.TenantID, &e.Action, &e.Detail, &e.PrevHash, &e.Hash)
		e.At = e.At.UTC()
		return e, err
	})
	if err != nil {
		return nil, fmt.Errorf("reading audit log: %w", err)
	}
	return entries, nil
}

// Verify walks the whole log and checks that sequence numbers run 1, 2, 3... without a gap, that each
// entry names the previous entry's hash, and that each hash is what the entry's fields give. If expect
// is set (a head recorded earlier), the log must still hold that entry with that hash. It returns the
// current head (zero for an empty log); a broken chain is ErrTampered naming the first bad entry.
func (s *Store) Verify(ctx context.Context, expect *Head) (Head, error) {
	const page = 1000
	prev := make([]byte, sha256.Size)
	var head Head
	expectSeen := false
	for {
		entries, err := s.Entries(ctx, head.Seq+1, page)
		if err != nil {
			return head, err
		}
		for _, e := range entries {
			switch {
			case e.Seq != head.Seq+1:
				return head, fmt.Errorf("%w: entry %d follows entry %d", ErrTampered, e.Seq, head.Seq)
			case !bytes.Equal(e.PrevHash, prev):
				return head, fmt.Errorf("%w: entry %d does not chain to entry %d", ErrTampered, e.Seq, head.Seq)
			case !bytes.Equal(chainHash(prev, e), e.Hash):
				return head, fmt.Errorf("%w: entry %d does not match its hash", ErrTampered, e.Seq)
			}
			if expect != nil && e.Seq == expect.Seq {
				if !bytes.Equal(e.Hash, expect.Hash) {
					return head, fmt.Errorf("%w: entry %d is not the one recorded as head", ErrTampered, e.Seq)
				}
				expectSeen = true
			}
			prev, head = e.Hash, Head{Seq: e.Seq, Hash: e.Hash}
		}
		if len(entries) < page {
			break
		}
	}
	if expect != nil && !expectSeen {
		return head, fmt.Errorf("%w: the recorded head %d is gone (the log ends at %d)", ErrTampered, expect.Seq, head.Seq)
	}
	return head, nil
}
