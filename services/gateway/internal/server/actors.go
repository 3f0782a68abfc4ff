package server

import (
	"context"
	"errors"
	"time"

	"github.com/edtech-analytics/platform/libs/mapping"
	"github.com/edtech-analytics/platform/libs/tenancy/mappings"
	"github.com/edtech-analytics/platform/libs/ttlcache"
)

// actorRulesTTL is how long a source's actor rules are used before they are read again: a change by
// `ctl mapping apply` takes effect within it.
const actorRulesTTL = 30 * time.Second

// newActorRules caches each source's actor rules (its mapping rules' actors section).
func newActorRules() *ttlcache.Cache[[2]string, mapping.Actors] {
	return ttlcache.New[[2]string, mapping.Actors](10_000, actorRulesTTL)
}

// actorRules returns where the key's source carries its people's SIS ids in Caliper events and xAPI
// statements: its mapping rules' actors section, the zero value (each reader's default order) when
// the source has no rules.
func (s *Server) actorRules(ctx context.Context, key Key) (mapping.Actors, error) {
	return s.actorCache.Get([2]string{key.TenantID, key.SourceID}, func() (mapping.Actors, error) {
		rules, _, err := s.mappings.Current(context.WithoutCancel(ctx), key.TenantID, key.SourceID)
		if errors.Is(err, mappings.ErrNoRules) {
			return mapping.Actors{}, nil
		}
		if err != nil {
			return mapping.Actors{}, err
		}
		return rules.Actors(), nil
	})
}
