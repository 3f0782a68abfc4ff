package credentials_test

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edtech-analytics/platform/libs/pgutil/pgtest"
	"github.com/edtech-analytics/platform/libs/tenancy/credentials"
	"github.com/edtech-analytics/platform/libs/tenancy/internal/controltest"
)

// TestKeyCacheRevocationTakesEffectWithinTTL: a revoked key keeps working from the cache until the TTL
// passes, then stops; an unknown key is refused.
func TestKeyCacheRevocationTakesEffectWithinTTL(t *testing.T) {
	pool, districts := controltest.Districts(t, pgtest.New)
	store := credentials.New(pool)
	ctx := t.Context()
	if _, err := districts.Create(ctx, "d1", "District 1"); err != nil {
		t.Fatal(err)
	}
	plain, key, err := store.CreateAPIKey(ctx, "d1", "lms", []string{credentials.VerbEventsWrite})
	if err != nil {
		t.Fatal(err)
	}
	const ttl = 5 * time.Second
	cache := credentials.NewKeyCache(store, ttl)
	var clock atomic.Int64 // the cache reads a clock the test moves: a slow machine cannot outlast the TTL
	cache.SetClock(func() time.Time { return time.Unix(0, clock.Load()) })
	got, err := cache.Lookup(ctx, plain)
	if err != nil || got.TenantID != "d1" || !got.Allows(credentials.VerbEventsWrite) {
		t.Fatalf("lookup = %+v, %v", got, err)
	}
	if err := store.RevokeAPIKey(ctx, key.ID); err != nil {
		t.Fatal(err)
	}
	clock.Add(int64(ttl - time.Millisecond))
	if _, err := cache.Lookup(ctx, plain); err != nil {
		t.Fatalf("cached key refused before the TTL: %v", err)
	}
	clock.Add(int64(time.Millisecond))
	if _, err := cache.Lookup(ctx, plain); !errors.Is(err, credentials.ErrInvalidKey) {
		t.Fatalf("revoked key still accepted after the TTL: %v", err)
	}
	if _, err := cache.Lookup(ctx, "eak_nope"); !errors.Is(err, credentials.ErrInvalidKey) {
		t.Fatalf("bad key: %v", err)
	}
}
