package auth

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edtech-analytics/platform/libs/tenancy/credentials"
	"github.com/jackc/pgx/v5/pgxpool"
)

// fakeStore answers lookups from maps and counts them.
type fakeStore struct {
	mu      sync.Mutex
	tokens  map[string]credentials.DashboardToken
	keys    map[string]credentials.APIKey
	down    bool
	lookups int
}

func (f *fakeStore) LookupDashboardToken(_ context.Context, p string) (credentials.DashboardToken, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lookups++
	if f.down {
		return credentials.DashboardToken{}, errors.New("connection refused")
	}
	t, ok := f.tokens[p]
	if !ok {
		return t, credentials.ErrInvalidKey
	}
	return t, nil
}

func (f *fakeStore) LookupAPIKey(_ context.Context, p string) (credentials.APIKey, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lookups++
	k, ok := f.keys[p]
	if !ok {
		return k, credentials.ErrInvalidKey
	}
	return k, nil
}

func (f *fakeStore) DistrictPool(context.Context, string) (*pgxpool.Pool, string, error) {
	return nil, "", errors.New("no roster in this test")
}

// TestResolveCachesForTheTTL proves tokens and keys map to principals (a dashboards:read key as district
// admin, another key forbidden), that a revoked token keeps working only until the TTL passes, that
// invalid credentials are cached and database errors are not.
func TestResolveCachesForTheTTL(t *testing.T) {
	store := &fakeStore{
		tokens: map[string]credentials.DashboardToken{"edt_teacher": {ID: "tok1", TenantID: "d1", Role: credentials.RoleTeacher, TeacherID: "T-1"}},
		keys: map[string]credentials.APIKey{
			"eak_dash":   {ID: "key1", TenantID: "d2", Verbs: []string{credentials.VerbDashboardsRead}},
			"eak_events": {ID: "key2", TenantID: "d2", Verbs: []string{credentials.VerbEventsWrite}},
		},
	}
	const ttl = 200 * time.Millisecond
	r := NewResolver(store, store, ttl)
	// The caches read a clock the test moves, so a slow machine cannot outlast the TTL by itself.
	var clock atomic.Int64
	now := func() time.Time { return time.Unix(0, clock.Load()) }
	r.principals.SetClock(now)
	r.classes.SetClock(now)
	r.schools.SetClock(now)
	r.enrolled.SetClock(now)
	ctx := t.Context()

	p, err := r.Resolve(ctx, "edt_teacher")
	if err != nil || p.TenantID != "d1" || p.Role != credentials.RoleTeacher || p.TeacherID != "T-1" || p.Subject != "token:tok1" {
		t.Fatalf("token = %+v, %v", p, err)
	}
	if p, err := r.Resolve(ctx, "eak_dash"); err != nil || p.Role != credentials.RoleDistrictAdmin || p.TenantID != "d2" || p.Subject != "apikey:key1" {
		t.Fatalf("dashboards key = %+v, %v", p, err)
	}
	if _, err := r.Resolve(ctx, "eak_events"); !errors.Is(err, ErrForbidden) {
		t.Fatalf("events key: %v, want ErrForbidden", err)
	}
	for range 3 {
		if _, err := r.Resolve(ctx, "edt_nonsense"); !errors.Is(err, ErrUnauthenticated) {
			t.Fatalf("unknown token: %v", err)
		}
	}
	if store.lookups != 4 {
		t.Fatalf("%d lookups, want 4 (the unknown token once)", store.lookups)
	}

	store.mu.Lock()
	delete(store.tokens, "edt_teacher") // revoked
	store.mu.Unlock()
	if _, err := r.Resolve(ctx, "edt_teacher"); err != nil {
		t.Fatalf("within the TTL a revoked token still resolves from the cache: %v", err)
	}
	clock.Add(int64(ttl))
	if _, err := r.Resolve(ctx, "edt_teacher"); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("after the TTL the revoked token resolves: %v", err)
	}

	store.mu.Lock()
	store.down = true
	store.mu.Unlock()
	before := store.lookups
	for range 2 {
		if _, err := r.Resolve(ctx, "edt_other"); err == nil || errors.Is(err, ErrUnauthenticated) {
			t.Fatalf("database down: err = %v, want the database error", err)
		}
	}
	if store.lookups != before+2 {
		t.Fatal("a database error was cached")
	}
}

// TestCachedTokenIsRefusedFromItsExpiry: a token that expires 3 s after it was created is refused at
// 3.5 s although its answer is still in the cache (the TTL is a minute); a token without an expiry keeps
// resolving from the cache, and an API key (keys do not expire) too.
func TestCachedTokenIsRefusedFromItsExpiry(t *testing.T) {
	start := time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)
	expires := start.Add(3 * time.Second)
	store := &fakeStore{
		tokens: map[string]credentials.DashboardToken{
			"edt_short":   {ID: "tok1", TenantID: "d1", Role: credentials.RoleDistrictAdmin, ExpiresAt: &expires},
			"edt_forever": {ID: "tok2", TenantID: "d1", Role: credentials.RoleDistrictAdmin},
		},
		keys: map[string]credentials.APIKey{"eak_dash": {ID: "key1", TenantID: "d1", Verbs: []string{credentials.VerbDashboardsRead}}},
	}
	r := NewResolver(store, store, time.Minute)
	var clock atomic.Int64
	clock.Store(start.UnixNano())
	r.principals.SetClock(func() time.Time { return time.Unix(0, clock.Load()) })
	ctx := t.Context()
	for _, c := range []string{"edt_short", "edt_forever", "eak_dash"} {
		if _, err := r.Resolve(ctx, c); err != nil {
			t.Fatalf("%s at creation: %v", c, err)
		}
	}
	clock.Add(int64(2999 * time.Millisecond))
	if _, err := r.Resolve(ctx, "edt_short"); err != nil {
		t.Fatalf("token before its expiry: %v", err)
	}
	clock.Add(int64(501 * time.Millisecond))
	if _, err := r.Resolve(ctx, "edt_short"); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("token 3.5 s after creation, expiring at 3 s: %v, want ErrUnauthenticated", err)
	}
	for _, c := range []string{"edt_forever", "eak_dash"} {
		if _, err := r.Resolve(ctx, c); err != nil {
			t.Fatalf("%s: %v", c, err)
		}
	}
	if store.lookups != 3 {
		t.Fatalf("%d lookups, want 3: every later answer came from the cache", store.lookups)
	}
}
