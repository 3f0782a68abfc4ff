package audit_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edtech-analytics/platform/libs/pgutil/pgtest"
	"github.com/edtech-analytics/platform/libs/tenancy/audit"
	"github.com/edtech-analytics/platform/libs/tenancy/internal/controltest"
	"github.com/jackc/pgx/v5/pgxpool"
)

// TestAuditLogChainsAndVerifies appends concurrently and proves the entries form one gapless chain that
// Verify accepts, that the table refuses UPDATE, DELETE and TRUNCATE, and that each kind of
// tampering (by someone who can switch the guard off) is caught: an edited field, a removed entry,
// reordered entries, and a removed tail checked against a head recorded earlier.
// staticKey is an audit key held by the test (a keyring holds it in production).
type staticKey []byte

func (k staticKey) AuditKey(context.Context) ([]byte, error) { return k, nil }

var testKey = staticKey("a 32-byte audit key for the test")

func TestAuditLogChainsAndVerifies(t *testing.T) {
	pool := controltest.Migrated(t, pgtest.New)
	store := audit.New(pool, testKey)
	ctx := t.Context()
	if head, err := store.Verify(ctx, nil); err != nil || head.Seq != 0 {
		t.Fatalf("Verify of an empty log = %v, %v", head, err)
	}
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := store.Append(ctx, fmt.Sprintf("token:t%d", i), "d1", "benchmark.read",
				map[string]any{"metric": "attendance_rate", "n": i}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	head, err := store.Verify(ctx, nil)
	if err != nil || head.Seq != 20 {
		t.Fatalf("Verify after 20 appends = %v, %v", head, err)
	}
	entries, err := store.Entries(ctx, 1, 100)
	if err != nil || len(entries) != 20 || !strings.Contains(entries[3].Detail, `"metric":"attendance_rate"`) {
		t.Fatalf("Entries = %d entries, %v", len(entries), err)
	}
	if _, err := store.Verify(ctx, &head); err != nil {
		t.Fatalf("Verify against its own head: %v", err)
	}
	parsed, err := audit.ParseHead(head.String())
	if err != nil || parsed.String() != head.String() {
		t.Fatalf("ParseAuditHead(%s) = %v, %v", head, parsed, err)
	}

	for _, stmt := range []string{"UPDATE control.audit_log SET actor = 'x' WHERE seq = 1",
		"DELETE FROM control.audit_log WHERE seq = 20", "TRUNCATE control.audit_log"} {
		if _, err := pool.Exec(ctx, stmt); err == nil || !strings.Contains(err.Error(), "append-only") {
			t.Fatalf("%s: err = %v, want the append-only refusal", stmt, err)
		}
	}

	tamper := func(t *testing.T, stmts ...string) {
		t.Helper()
		if _, err := pool.Exec(ctx, "ALTER TABLE control.audit_log DISABLE TRIGGER USER"); err != nil {
			t.Fatal(err)
		}
		for _, s := range stmts {
			if _, err := pool.Exec(ctx, s); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := pool.Exec(ctx, "ALTER TABLE control.audit_log ENABLE TRIGGER USER"); err != nil {
			t.Fatal(err)
		}
	}
	restore := snapshot(t, pool)
	tests := []struct {
		name   string
		stmts  []string
		expect *audit.Head
		want   string
	}{
		{"edited detail", []string{`UPDATE control.audit_log SET detail = '{"metric":"x"}' WHERE seq = 7`}, nil, "entry 7 does not match"},
		{"removed entry", []string{"DELETE FROM control.audit_log WHERE seq = 12"}, nil, "entry 13 follows entry 11"},
		{"reordered entries", []string{"UPDATE control.audit_log SET seq = 1000 WHERE seq = 4",
			"UPDATE control.audit_log SET seq = 4 WHERE seq = 5", "UPDATE control.audit_log SET seq = 5 WHERE seq = 1000"},
			nil, "entry 4 does not chain to entry 3"},
		{"removed tail", []string{"DELETE FROM control.audit_log WHERE seq > 17"}, &head, "head 20 is gone"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer restore(t)
			tamper(t, tt.stmts...)
			_, err := store.Verify(ctx, tt.expect)
			if !errors.Is(err, audit.ErrTampered) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Verify = %v, want ErrTampered mentioning %q", err, tt.want)
			}
		})
	}
	if _, err := store.Verify(ctx, &head); err != nil {
		t.Fatalf("Verify after restoring: %v", err)
	}
	if e, err := store.Append(ctx, "ctl", "", "audit.verify", nil); err != nil || e.Seq != 21 {
		t.Fatalf("append after verify = %d, %v", e.Seq, err)
	}
}

// snapshot copies the audit log aside and returns a function that puts that copy back.
func snapshot(t *testing.T, pool *pgxpool.Pool) func(*testing.T) {
	t.Helper()
	if _, err := pool.Exec(t.Context(), "CREATE TABLE public.audit_copy AS SELECT * FROM control.audit_log"); err != nil {
		t.Fatal(err)
	}
	return func(t *testing.T) {
		t.Helper()
		for _, s := range []string{"ALTER TABLE control.audit_log DISABLE TRIGGER USER", "DELETE FROM control.audit_log",
			"INSERT INTO control.audit_log SELECT * FROM public.audit_copy", "ALTER TABLE control.audit_log ENABLE TRIGGER USER"} {
			if _, err := pool.Exec(t.Context(), s); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestRewrittenChainIsCaughtAtEveryEntry forges what someone who can write the table but does not hold
// the audit key can: entry 7 changed and every later entry re-hashed, with SHA-256 as the chain used to
// be, or with a key of their own. Verify names every forged entry. Entries written before the chain was
// keyed still verify.
func TestRewrittenChainIsCaughtAtEveryEntry(t *testing.T) {
	pool := controltest.Migrated(t, pgtest.New)
	ctx := t.Context()
	store := audit.New(pool, testKey)
	// Three entries from before the chain was keyed.
	prev := make([]byte, 32)
	for seq := int64(1); seq <= 3; seq++ {
		e := audit.Entry{Seq: seq, At: time.Unix(1700000000+seq, 0).UTC(), Actor: "ctl", Action: "tenant.create", Detail: "{}", PrevHash: prev}
		e.Hash = audit.ChainHash(nil, prev, e)
		if _, err := pool.Exec(ctx, `INSERT INTO control.audit_log (seq, at, actor, tenant_id, action, detail, prev_hash, hash, keyed)
			VALUES ($1, $2, $3, '', $4, $5, $6, $7, false)`, e.Seq, e.At, e.Actor, e.Action, e.Detail, e.PrevHash, e.Hash); err != nil {
			t.Fatal(err)
		}
		prev = e.Hash
	}
	for i := range 17 {
		if _, err := store.Append(ctx, "ctl", "d1", "token.create", map[string]int{"n": i}); err != nil {
			t.Fatal(err)
		}
	}
	head, err := store.Verify(ctx, nil)
	if err != nil || head.Seq != 20 {
		t.Fatalf("Verify of 3 unkeyed and 17 keyed entries = %v, %v", head, err)
	}
	restore := snapshot(t, pool)
	for _, forger := range []struct {
		name  string
		key   []byte
		keyed bool
		want  string
	}{
		{"sha256", nil, false, "is not keyed, though entries are keyed from 4 on"},
		{"another key", []byte("the forger's own key of 32 bytes"), true, "does not match its hash"},
	} {
		t.Run(forger.name, func(t *testing.T) {
			defer restore(t)
			entries, err := store.Entries(ctx, 1, 100)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := pool.Exec(ctx, "ALTER TABLE control.audit_log DISABLE TRIGGER USER"); err != nil {
				t.Fatal(err)
			}
			prev := entries[5].Hash
			for _, e := range entries[6:] {
				if e.Seq == 7 {
					e.Detail = `{"n":"changed"}`
				}
				e.PrevHash, e.Keyed = prev, forger.keyed
				e.Hash = audit.ChainHash(forger.key, prev, e)
				if _, err := pool.Exec(ctx, `UPDATE control.audit_log SET detail = $2, prev_hash = $3, hash = $4, keyed = $5 WHERE seq = $1`,
					e.Seq, e.Detail, e.PrevHash, e.Hash, e.Keyed); err != nil {
					t.Fatal(err)
				}
				prev = e.Hash
			}
			if _, err := pool.Exec(ctx, "ALTER TABLE control.audit_log ENABLE TRIGGER USER"); err != nil {
				t.Fatal(err)
			}
			_, err = store.Verify(ctx, nil)
			var te *audit.TamperError
			if !errors.As(err, &te) || !errors.Is(err, audit.ErrTampered) || len(te.Breaks) != 14 {
				t.Fatalf("Verify = %v, want the 14 forged entries (7-20) named", err)
			}
			for i, b := range te.Breaks {
				if !strings.HasPrefix(b, fmt.Sprintf("entry %d ", 7+i)) || !strings.Contains(b, forger.want) {
					t.Fatalf("break %d = %q, want entry %d: %s", i, b, 7+i, forger.want)
				}
			}
		})
	}
}
