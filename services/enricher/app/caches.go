package app

import (
	"context"
	"errors"
	"fmt"
	"github.com/edtech-analytics/platform/libs/ttlcache"
	"sync"
	"time"

	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/edtech-analytics/platform/libs/tenancy/tenants"
	"github.com/edtech-analytics/platform/services/enricher/internal/policy"
)

// maxCachedDistricts bounds the district and policy caches.
const maxCachedDistricts = 100_000

// tenantCache caches district lookups for ttl (tenants change rarely; lifecycle commands on the control
// topic drop an entry at once) and makes sure each district's schema has the current template before
// the enricher first writes to it.
type tenantCache struct {
	store   tenantStore
	keys    pseudonymKeys
	entries *ttlcache.Cache[string, tenantAnswer]

	mu      sync.Mutex
	ensured map[string]bool
}

// tenantStore reads districts and keeps their schemas on the current template (tenants.Store).
type tenantStore interface {
	Tenant(ctx context.Context, id string) (tenants.Tenant, error)
	EnsureDistrictSchema(ctx context.Context, tenantID string) error
}

// pseudonymKeys give a district's pseudonym key from the key hierarchy, wrapping the plaintext one a
// district created before it still has (a *keyring.Keyring).
type pseudonymKeys interface {
	PseudonymKey(ctx context.Context, tenant string, legacy []byte) ([]byte, error)
}

type tenantAnswer struct {
	t   tenants.Tenant
	err error // tenancy.ErrNotFound, remembered as an answer
}

func newTenantCache(store tenantStore, keys pseudonymKeys, ttl time.Duration) *tenantCache {
	return &tenantCache{store: store, keys: keys, entries: ttlcache.New[string, tenantAnswer](maxCachedDistricts, ttl), ensured: map[string]bool{}}
}

// Tenant returns the district, or an error wrapping tenancy.ErrNotFound for an unknown one.
func (c *tenantCache) Tenant(ctx context.Context, id string) (tenants.Tenant, error) {
	a, err := c.entries.Get(id, func() (tenantAnswer, error) {
		t, err := c.store.Tenant(ctx, id)
		if errors.Is(err, tenancy.ErrInvalidArgument) {
			err = tenancy.ErrNotFound
		}
		if errors.Is(err, tenancy.ErrNotFound) {
			return tenantAnswer{t: t, err: err}, nil
		}
		if err != nil {
			return tenantAnswer{}, fmt.Errorf("loading tenant: %w", err)
		}
		if t.DeletedAt == nil { // a deleted district's records are dead letters: its keys may be gone
			if t.PseudonymKey, err = c.keys.PseudonymKey(ctx, id, t.PseudonymKey); err != nil {
				return tenantAnswer{}, fmt.Errorf("loading the pseudonym key of district %s: %w", id, err)
			}
		}
		c.mu.Lock()
		ensured := c.ensured[id]
		c.mu.Unlock()
		if !ensured {
			if err := c.store.EnsureDistrictSchema(ctx, id); err != nil {
				return tenantAnswer{}, err
			}
			c.mu.Lock()
			c.ensured[id] = true
			c.mu.Unlock()
		}
		return tenantAnswer{t: t}, nil
	})
	if err != nil {
		return tenants.Tenant{}, err
	}
	return a.t, a.err
}

// Forget drops a district's entry.
func (c *tenantCache) Forget(id string) { c.entries.Remove(id) }

// policyCache caches each district's compiled policy for ttl; a policy_updated command drops it at once.
type policyCache struct {
	src     policy.Source
	entries *ttlcache.Cache[string, *policy.Compiled]
}

func newPolicyCache(store policy.Store, ttl time.Duration) *policyCache {
	return &policyCache{src: policy.Source{Store: store}, entries: ttlcache.New[string, *policy.Compiled](maxCachedDistricts, ttl)}
}

// Policy returns the district's current policy, compiled with its pseudonym key.
func (c *policyCache) Policy(ctx context.Context, t tenants.Tenant) (*policy.Compiled, error) {
	return c.entries.Get(t.ID, func() (*policy.Compiled, error) { return c.src.Policy(ctx, t) })
}

// Forget drops a district's entry.
func (c *policyCache) Forget(id string) { c.entries.Remove(id) }

// zoneCache caches each district's time zone for ttl; a control command about the district drops it at
// once. A zone that cannot be read is not cached: the batch is retried.
type zoneCache struct {
	store   zoneStore
	entries *ttlcache.Cache[string, *time.Location]
}

// zoneStore reads districts' time zones (timezones.Store).
type zoneStore interface {
	Location(ctx context.Context, tenantID string) (*time.Location, error)
}

func newZoneCache(store zoneStore, ttl time.Duration) *zoneCache {
	return &zoneCache{store: store, entries: ttlcache.New[string, *time.Location](maxCachedDistricts, ttl)}
}

// Location returns the district's time zone.
func (c *zoneCache) Location(ctx context.Context, tenantID string) (*time.Location, error) {
	return c.entries.Get(tenantID, func() (*time.Location, error) { return c.store.Location(ctx, tenantID) })
}

// Forget drops a district's entry.
func (c *zoneCache) Forget(id string) { c.entries.Remove(id) }
