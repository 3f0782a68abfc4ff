package audit_test

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/edtech-analytics/platform/libs/pgutil/pgtest"
	"github.com/edtech-analytics/platform/libs/tenancy/audit"
	"github.com/edtech-analytics/platform/libs/tenancy/internal/controltest"
	"github.com/jackc/pgx/v5/pgxpool"
)

// TestAuditLogChainsAndVerifies appends concurrently and proves the entries form one gapless chain that
// Verify accepts, that the table refuses UPDATE, DELETE and TRUNCATE, and that each kind of
// tampering (by someone who can switch the guard off) is caught: an edited field, a removed entry,
// reordered entries, and a removed tail checked against a head recorded earlier.
func TestAuditLogChainsAndVerifies(t *testing.T) {
	pool := controltest.Migrated(t, pgtest.New)
	store := audit.New(pool)
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
