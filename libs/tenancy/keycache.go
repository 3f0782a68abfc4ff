package tenancy

import (
	"context"
	"errors"
	"sync"
	"time"
)

// KeyCache caches LookupAPIKey answers for a TTL, so a revoked key stops working within the TTL on every
// instance while PostgreSQL sees at most one lookup per key per TTL. Invalid keys are cached too, so a
// flood of bad keys does not reach the database; other errors are not cached.
type KeyCache struct {
	lookup func(ctx context.Context, plaintext string) (APIKey, error)
	ttl    time.Duration
	now    func() time.Time

	mu      sync.Mutex
	entries map[string]keyEntry
}

type keyEntry struct {
	key     APIKey
	err     error
	expires time.Time
}

// maxCachedKeys bounds the cache; when full, expired entries are dropped, then everything.
const maxCachedKeys = 100_000

// NewKeyCache caches s.LookupAPIKey for ttl.
func NewKeyCache(s *Store, ttl time.Duration) *KeyCache {
	return &KeyCache{lookup: s.LookupAPIKey, ttl: ttl, now: time.Now, entries: map[string]keyEntry{}}
}

// Lookup returns the cached answer or asks the store.
func (c *KeyCache) Lookup(ctx context.Context, plaintext string) (APIKey, error) {
	now := c.now()
	c.mu.Lock()
	e, ok := c.entries[plaintext]
	c.mu.Unlock()
	if ok && now.Before(e.expires) {
		return e.key, e.err
	}
	k, err := c.lookup(ctx, plaintext)
	if err != nil && !errors.Is(err, ErrInvalidKey) {
		return APIKey{}, err
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
