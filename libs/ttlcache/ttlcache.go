// Package ttlcache caches answers for a time-to-live, for lookups every request makes (credentials, roster
// lists, identities) whose source of truth is a database.
//
// It is an LRU of github.com/hashicorp/golang-lru/v2 bounded in entries, so a full cache evicts the least
// recently used answers one by one instead of dropping everything at once (which sent every lookup to the
// database together), and concurrent misses of one key make one load (golang.org/x/sync/singleflight).
// Each entry carries its own expiry, read against a clock tests can move.
package ttlcache

import (
	"fmt"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/sync/singleflight"
)

// Cache holds up to size answers, each for ttl after it was loaded.
type Cache[K comparable, V any] struct {
	lru   *lru.Cache[K, entry[V]]
	ttl   time.Duration
	flts  singleflight.Group
	mu    sync.RWMutex
	clock func() time.Time
}

type entry[V any] struct {
	v       V
	expires time.Time
}

// New returns a cache of at most size entries (size > 0) holding each answer for ttl.
func New[K comparable, V any](size int, ttl time.Duration) *Cache[K, V] {
	l, err := lru.New[K, entry[V]](size)
	if err != nil {
		panic(fmt.Sprintf("ttlcache: %v", err)) // only for size <= 0, a programming error
	}
	return &Cache[K, V]{lru: l, ttl: ttl, clock: time.Now}
}

// SetClock replaces time.Now, for tests that move time themselves.
func (c *Cache[K, V]) SetClock(now func() time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.clock = now
}

// Now is the cache's clock.
func (c *Cache[K, V]) Now() time.Time {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.clock()
}

// Get returns the unexpired answer for k, or loads it: one load at a time per key, whose answer every
// caller waiting for it shares. A load that fails is not cached; an answer that should be remembered
// though negative (an unknown key) is the caller's to put in V.
func (c *Cache[K, V]) Get(k K, load func() (V, error)) (V, error) {
	if e, ok := c.lru.Get(k); ok && c.Now().Before(e.expires) {
		return e.v, nil
	}
	v, err, _ := c.flts.Do(flightKey(k), func() (any, error) {
		if e, ok := c.lru.Get(k); ok && c.Now().Before(e.expires) { // loaded by a flight that just ended
			return e.v, nil
		}
		v, err := load()
		if err != nil {
			return v, err
		}
		c.lru.Add(k, entry[V]{v: v, expires: c.Now().Add(c.ttl)})
		return v, nil
	})
	if err != nil {
		var zero V
		return zero, err
	}
	return v.(V), nil
}

// Peek returns k's unexpired answer without loading it.
func (c *Cache[K, V]) Peek(k K) (V, bool) {
	if e, ok := c.lru.Get(k); ok && c.Now().Before(e.expires) {
		return e.v, true
	}
	var zero V
	return zero, false
}

// Put stores an answer the caller loaded itself (in bulk, for instance) for the cache's ttl.
func (c *Cache[K, V]) Put(k K, v V) { c.lru.Add(k, entry[V]{v: v, expires: c.Now().Add(c.ttl)}) }

// Purge drops every answer.
func (c *Cache[K, V]) Purge() { c.lru.Purge() }

// Remove drops k's answer, so that the next Get loads it again.
func (c *Cache[K, V]) Remove(k K) { c.lru.Remove(k) }

// Len is the number of entries held, expired ones included until they are evicted or loaded again.
func (c *Cache[K, V]) Len() int { return c.lru.Len() }

// flightKey names k for singleflight, whose keys are strings: %#v tells apart values that print alike
// ([2]string{"a b", "c"} and {"a", "b c"}).
func flightKey[K comparable](k K) string {
	if s, ok := any(k).(string); ok {
		return s
	}
	return fmt.Sprintf("%#v", k)
}
