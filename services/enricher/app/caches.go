package app

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/edtech-analytics/platform/services/enricher/internal/policy"
)

// tenantCache caches district lookups for ttl (tenants change rarely; lifecycle commands on the control
// topic drop an entry at once) and makes sure each district's schema has the current template before
// the enricher first writes to it.
type tenantCache struct {
	store *tenancy.Store
	ttl   time.Duration

	mu      sync.Mutex
	entries map[string]tenantEntry
	ensured map[string]bool
}

type tenantEntry struct {
	t       tenancy.Tenant
	err     error
	expires time.Time
}

func newTenantCache(store *tenancy.Store, ttl time.Duration) *tenantCache {
	return &tenantCache{store: store, ttl: ttl, entries: map[string]tenantEntry{}, ensured: map[string]bool{}}
}

// Tenant returns the district, or an error wrapping tenancy.ErrNotFound for an unknown one.
func (c *tenantCache) Tenant(ctx context.Context, id string) (tenancy.Tenant, error) {
	now := time.Now()
	c.mu.Lock()
	e, ok := c.entries[id]
	ensured := c.ensured[id]
	c.mu.Unlock()
	if ok && now.Before(e.expires) {
		return e.t, e.err
	}
	t, err := c.store.Tenant(ctx, id)
	if errors.Is(err, tenancy.ErrInvalidArgument) {
		err = tenancy.ErrNotFound
	}
	if err != nil && !errors.Is(err, tenancy.ErrNotFound) {
		return t, fmt.Errorf("loading tenant: %w", err)
	}
	if err == nil && !ensured {
		if err := c.store.EnsureDistrictSchema(ctx, id); err != nil {
			return t, err
		}
	}
	c.mu.Lock()
	c.entries[id] = tenantEntry{t: t, err: err, expires: now.Add(c.ttl)}
	c.ensured[id] = c.ensured[id] || err == nil
	c.mu.Unlock()
	return t, err
}

// Forget drops a district's entry.
func (c *tenantCache) Forget(id string) {
	c.mu.Lock()
	delete(c.entries, id)
	c.mu.Unlock()
}

// policyCache caches each district's compiled policy for ttl; a policy_updated command drops it at once.
type policyCache struct {
	src policy.Source
	ttl time.Duration

	mu      sync.Mutex
	entries map[string]policyEntry
}

type policyEntry struct {
	p       *policy.Compiled
	expires time.Time
}

func newPolicyCache(store *tenancy.Store, ttl time.Duration) *policyCache {
	return &policyCache{src: policy.Source{Store: store}, ttl: ttl, entries: map[string]policyEntry{}}
}

// Policy returns the district's current policy, compiled with its pseudonym key.
func (c *policyCache) Policy(ctx context.Context, t tenancy.Tenant) (*policy.Compiled, error) {
	now := time.Now()
	c.mu.Lock()
	e, ok := c.entries[t.ID]
	c.mu.Unlock()
	if ok && now.Before(e.expires) {
		return e.p, nil
	}
	compiled, err := c.src.Policy(ctx, t)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.entries[t.ID] = policyEntry{p: compiled, expires: now.Add(c.ttl)}
	c.mu.Unlock()
	return compiled, nil
}

// Forget drops a district's entry.
func (c *policyCache) Forget(id string) {
	c.mu.Lock()
	delete(c.entries, id)
	c.mu.Unlock()
}
