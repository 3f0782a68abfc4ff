package server

import (
	"context"
	"errors"
	"sync"
	"time"
)

// Key is an authenticated API key: the tenant and source it speaks for and the verbs it may use.
type Key struct {
	ID       string
	TenantID string
	SourceID string
	Verbs    []string
}

// Allows reports whether the key may use verb.
func (k Key) Allows(verb string) bool {
	for _, v := range k.Verbs {
		if v == verb {
			return true
		}
	}
	return false
}

// ErrInvalidKey is returned by a KeyStore for a key that is malformed, unknown, wrong or revoked.
var ErrInvalidKey = errors.New("invalid api key")

// KeyStore resolves a presented API key.
type KeyStore interface {
	Lookup(ctx context.Context, plaintext string) (Key, error)
}

// KeyCache caches lookups for ttl, so a revoked key stops working within ttl on every instance while
// the store is read at most once per key per ttl. Unknown keys are cached too (as invalid), so a flood of
// bad keys does not reach the store.
type KeyCache struct {
	store KeyStore
	ttl   time.Duration
	now   func() time.Time

	mu      sync.Mutex
	entries map[string]keyEntry
}

type keyEntry struct {
	key     Key
	err     error
	expires time.Time
}

// NewKeyCache wraps store.
func NewKeyCache(store KeyStore, ttl time.Duration) *KeyCache {
	return &KeyCache{store: store, ttl: ttl, now: time.Now, entries: map[string]keyEntry{}}
}

// maxCachedKeys bounds the cache; when full, expired entries are dropped, then everything.
const maxCachedKeys = 100_000

// Lookup returns the cached answer or asks the store. Store errors other than ErrInvalidKey are not cached.
func (c *KeyCache) Lookup(ctx context.Context, plaintext string) (Key, error) {
	now := c.now()
	c.mu.Lock()
	e, ok := c.entries[plaintext]
	c.mu.Unlock()
	if ok && now.Before(e.expires) {
		return e.key, e.err
	}
	k, err := c.store.Lookup(ctx, plaintext)
	if err != nil && !errors.Is(err, ErrInvalidKey) {
		return Key{}, err
	}
	c.mu.Lock()
	if len(c.entries) >= maxCachedKeys {
		for p, e := range c.entries {
			if now.After(e.expires) {
				delete(c.entries, p)
			}
		}
		if len(c.entries) >= maxCachedKeys {
			clear(c.entries)
		}
	}
	c.entries[plaintext] = keyEntry{key: k, err: err, expires: now.Add(c.ttl)}
	c.mu.Unlock()
	return k, err
}
