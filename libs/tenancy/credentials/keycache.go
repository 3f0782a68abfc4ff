package credentials

import (
	"context"
	"errors"
	"time"

	"github.com/edtech-analytics/platform/libs/ttlcache"
)

// KeyCache caches LookupAPIKey answers for a TTL, so a revoked key stops working within the TTL on every
// instance while PostgreSQL sees at most one lookup per key per TTL (concurrent requests with one key make
// one lookup). Invalid keys are cached too, so a flood of bad keys does not reach the database; other
// errors are not cached. A full cache evicts the least recently used keys.
type KeyCache struct {
	lookup func(ctx context.Context, plaintext string) (APIKey, error)
	cache  *ttlcache.Cache[string, keyAnswer]
}

type keyAnswer struct {
	key APIKey
	err error
}

// maxCachedKeys bounds the cache.
const maxCachedKeys = 100_000

// NewKeyCache caches s.LookupAPIKey for ttl.
func NewKeyCache(s *Store, ttl time.Duration) *KeyCache {
	return &KeyCache{lookup: s.LookupAPIKey, cache: ttlcache.New[string, keyAnswer](maxCachedKeys, ttl)}
}

// SetClock replaces time.Now, for tests that move time themselves.
func (c *KeyCache) SetClock(now func() time.Time) { c.cache.SetClock(now) }

// Lookup returns the cached answer or asks the store.
func (c *KeyCache) Lookup(ctx context.Context, plaintext string) (APIKey, error) {
	a, err := c.cache.Get(plaintext, func() (keyAnswer, error) {
		k, err := c.lookup(ctx, plaintext)
		if err != nil && !errors.Is(err, ErrInvalidKey) {
			return keyAnswer{}, err
		}
		return keyAnswer{key: k, err: err}, nil
	})
	if err != nil {
		return APIKey{}, err
	}
	return a.key, a.err
}
