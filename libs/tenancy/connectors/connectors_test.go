package connectors_test

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/edtech-analytics/platform/libs/pgutil/pgtest"
	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/edtech-analytics/platform/libs/tenancy/connectors"
	"github.com/edtech-analytics/platform/libs/tenancy/internal/controltest"
)

// masterKeys seal with AES-GCM under keys named by id, as libs/keyring's local master keys do (that
// module depends on this one).
type masterKeys struct {
	current string
	keys    map[string]cipher.AEAD
}

func newMasterKeys(t *testing.T) *masterKeys {
	t.Helper()
	m := &masterKeys{keys: map[string]cipher.AEAD{}}
	m.rotate(t, "m1")
	return m
}

// rotate adds a key and makes it current.
func (m *masterKeys) rotate(t *testing.T, id string) {
	t.Helper()
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	b, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	if m.keys[id], err = cipher.NewGCMWithRandomNonce(b); err != nil {
		t.Fatal(err)
	}
	m.current = id
}

func (m *masterKeys) Current() string { return m.current }
func (m *masterKeys) Wrap(_ context.Context, id string, plaintext, aad []byte) ([]byte, error) {
	return m.keys[id].Seal(nil, nil, plaintext, aad), nil
}
func (m *masterKeys) Unwrap(_ context.Context, id string, wrapped, aad []byte) ([]byte, error) {
	k, ok := m.keys[id]
	if !ok {
		return nil, fmt.Errorf("no master key %q", id)
	}
	return k.Open(nil, nil, wrapped, aad)
}

// TestSourcesKeepSecretsSealedAndTheirStatus: a source is stored with its secrets sealed (the table
// holds no plain secret), opened back whole; a failing sync counts failures in a row and a success resets
// them and moves the cursor forward only; a drop's file is recorded once; removing forgets it all.
func TestSourcesKeepSecretsSealedAndTheirStatus(t *testing.T) {
	pool, districts := controltest.Districts(t, pgtest.New)
	ctx := t.Context()
	if _, err := districts.Create(ctx, "d1", "D1"); err != nil {
		t.Fatal(err)
	}
	keys := newMasterKeys(t)
	store := connectors.New(pool, keys)
	src := connectors.Source{TenantID: "d1", SourceID: "sis", Kind: connectors.KindOneRosterREST,
		BaseURL: "https://sis.example/ims/oneroster/rostering/v1p2", TokenURL: "https://sis.example/token", ClientID: "cid",
		DeltaEvery: 15 * time.Minute, FullEvery: 24 * time.Hour, APIKeyID: "k1"}
	if _, err := store.Add(ctx, src, "", "apikey"); !errors.Is(err, tenancy.ErrInvalidArgument) {
		t.Fatalf("a REST source without a client secret: %v", err)
	}
	bad := src
	bad.BaseURL = "ftp://x"
	if _, err := store.Add(ctx, bad, "s", "k"); !errors.Is(err, tenancy.ErrInvalidArgument) {
		t.Fatalf("a bad base URL: %v", err)
	}
	hook, err := store.Add(ctx, src, "client-secret-xyz", "gateway-key-abc")
	if err != nil || len(hook) != 64 {
		t.Fatalf("add: %q %v", hook, err)
	}
	var raw []byte
	if err := pool.QueryRow(ctx, `SELECT sealed_secret || sealed_api_key || sealed_webhook_key FROM control.connector_sources`).Scan(&raw); err != nil {
		t.Fatal(err)
	}
	for _, plain := range []string{"client-secret-xyz", "gateway-key-abc", hook} {
		if bytes.Contains(raw, []byte(plain)) {
			t.Fatalf("the table holds %q in plain form", plain)
		}
	}
	sec, err := store.Open(ctx, "d1", "sis")
	if err != nil || sec != (connectors.Secrets{ClientSecret: "client-secret-xyz", APIKey: "gateway-key-abc", WebhookKey: hook}) {
		t.Fatalf("open: %+v %v", sec, err)
	}
	// A new master key: Rewrap seals the secrets under it, and the old one can go.
	keys.rotate(t, "m2")
	if n, err := store.Rewrap(ctx); err != nil || n != 1 {
		t.Fatalf("rewrap: %d %v", n, err)
	}
	delete(keys.keys, "m1")
	if again, err := store.Open(ctx, "d1", "sis"); err != nil || again != sec {
		t.Fatalf("open after rewrap: %+v %v", again, err)
	}
	if n, err := store.Rewrap(ctx); err != nil || n != 0 {
		t.Fatalf("second rewrap: %d %v", n, err)
	}
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	for i := range 3 {
		n, err := store.Record(ctx, "d1", "sis", connectors.Attempt{At: t0, Err: errors.New("provider answered 500")})
		if err != nil || n != i+1 {
			t.Fatalf("failure %d: %d %v", i, n, err)
		}
	}
	got, err := store.Get(ctx, "d1", "sis")
	if err != nil || got.Failures != 3 || got.State != connectors.StatusFailing || got.LastError != "provider answered 500" || got.LastSuccessAt != nil {
		t.Fatalf("after failures: %+v %v", got.Status, err)
	}
	if n, err := store.Record(ctx, "d1", "sis", connectors.Attempt{At: t0.Add(time.Hour), Full: true, Cursor: t0}); err != nil || n != 0 {
		t.Fatalf("success: %d %v", n, err)
	}
	if _, err := store.Record(ctx, "d1", "sis", connectors.Attempt{At: t0.Add(2 * time.Hour), Cursor: t0.Add(-time.Hour)}); err != nil {
		t.Fatal(err)
	}
	list, err := store.List(ctx, "")
	if err != nil || len(list) != 1 {
		t.Fatalf("list: %+v %v", list, err)
	}
	st := list[0].Status
	if st.State != connectors.StatusOK || st.Failures != 0 || !st.Cursor.Equal(t0) || !st.LastFullAt.Equal(t0.Add(time.Hour)) || !st.LastSuccessAt.Equal(t0.Add(2*time.Hour)) {
		t.Fatalf("after success: %+v", st)
	}
	// A deleted district's sources are not listed (their keys are revoked).
	if _, err := pool.Exec(ctx, `UPDATE control.tenants SET status = 'deleted' WHERE id = 'd1'`); err != nil {
		t.Fatal(err)
	}
	if list, err := store.List(ctx, ""); err != nil || len(list) != 0 {
		t.Fatalf("list of a deleted district: %+v %v", list, err)
	}
	if _, err := pool.Exec(ctx, `UPDATE control.tenants SET status = 'active' WHERE id = 'd1'`); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := store.Dropped(ctx, "d1", "sis", "roster.zip", "e1"); ok || err != nil {
		t.Fatalf("before the drop: %v %v", ok, err)
	}
	if err := store.RecordDrop(ctx, "d1", "sis", connectors.Drop{Name: "roster.zip", ETag: "e1", Outcome: "processed", Report: "{}"}); err != nil {
		t.Fatal(err)
	}
	if d, ok, err := store.Dropped(ctx, "d1", "sis", "roster.zip", "e1"); !ok || err != nil || d.Outcome != "processed" {
		t.Fatalf("after the drop: %+v %v %v", d, ok, err)
	}
	if removed, err := store.Remove(ctx, "d1", "sis"); err != nil || removed.APIKeyID != "k1" {
		t.Fatalf("remove: %+v %v", removed, err)
	}
	if _, err := store.Remove(ctx, "d1", "sis"); !errors.Is(err, connectors.ErrNoSource) {
		t.Fatalf("second remove: %v", err)
	}
	if _, ok, _ := store.Dropped(ctx, "d1", "sis", "roster.zip", "e1"); ok {
		t.Fatal("the drop outlived its source")
	}
}
