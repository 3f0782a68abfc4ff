// Package tenants holds what the gateway knows of each district besides its API keys: its rate limit
// and whether it is hot, refreshed from the control schema, plus the token buckets that enforce the limits.
// A district's limit holds across every gateway instance: each instance enforces an equal share of it,
// the limit divided by the number of live instances (Peers), so the district gets its limit in total
// however the load balancer spreads its requests.
package tenants

import (
	"context"
	"errors"
	"fmt"
	"golang.org/x/time/rate"
	"log/slog"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// RateLimit bounds a district's events across all gateway instances: EventsPerSecond on average, with
// bursts of up to Burst events.
type RateLimit struct {
	EventsPerSecond int
	Burst           int
}

// Stored is one district's settings as the control schema holds them.
type Stored struct {
	TenantID  string
	RateLimit *RateLimit // nil: the default
	HotShards int        // 0: not hot
}

// Source loads every district's stored settings.
type Source func(ctx context.Context) ([]Stored, error)

// Settings are one district's effective settings.
type Settings struct {
	TenantID  string
	Limit     RateLimit // the district's, across instances
	HotShards int
	keys      [][]byte // record keys: the tenant id, or tenant_id/0 .. tenant_id/N-1
	rate      float64  // this instance's share of Limit: events per second
	burst     int      // and burst
}

// Share is this instance's part of the district's limit: events per second and burst.
func (s *Settings) Share() (float64, int) { return s.rate, s.burst }

// RecordKey is the Kafka key of a record about the student with SIS id sisID: the tenant id, or for a
// hot district tenant_id/shard with shard = Shard(sisID, HotShards). The slice is shared: do not modify.
func (s *Settings) RecordKey(sisID string) []byte {
	if len(s.keys) == 1 {
		return s.keys[0]
	}
	return s.keys[Shard(sisID, len(s.keys))]
}

// Shard maps a student's SIS id to one of n sub-keys: FNV-1a (32-bit) of the id, modulo n. It is stable
// across instances and releases, so one student's events always share a key (and a partition) and keep
// their order.
func Shard(sisID string, n int) int {
	h := uint32(2166136261)
	for i := 0; i < len(sisID); i++ {
		h ^= uint32(sisID[i])
		h *= 16777619
	}
	return int(h % uint32(n))
}

func newSettings(tenantID string, limit RateLimit, hotShards int, share func(RateLimit) (float64, int)) *Settings {
	s := &Settings{TenantID: tenantID, Limit: limit, HotShards: hotShards}
	s.rate, s.burst = share(limit)
	if hotShards == 0 {
		s.keys = [][]byte{[]byte(tenantID)}
		return s
	}
	s.keys = make([][]byte, hotShards)
	for i := range s.keys {
		s.keys[i] = []byte(tenantID + "/" + strconv.Itoa(i))
	}
	return s
}

// Registry serves each district's settings from the last successful load and admits or refuses batches
// against the district's token bucket.
type Registry struct {
	src      Source
	def      RateLimit
	minBurst int
	log      *slog.Logger
	now      func() time.Time

	settings atomic.Pointer[map[string]*Settings]
	mu       sync.Mutex
	buckets  map[string]*rate.Limiter // each district's token bucket on this instance: one token per event

	peers   Peers
	onPeers func(int)
	live    atomic.Int64 // live instances as last counted, this one included
}

// Peers counts the live gateway instances, this one included (ingest.Store.Heartbeat).
type Peers func(ctx context.Context) (int, error)

// WithPeers makes the registry divide every limit by the live instances peers counts at each refresh;
// onPeers, if not nil, is told the count whenever it changes. Without it the instance takes the whole
// limit.
func (r *Registry) WithPeers(peers Peers, onPeers func(int)) *Registry {
	r.peers, r.onPeers = peers, onPeers
	return r
}

// Live returns the number of live instances the limits are divided by.
func (r *Registry) Live() int { return int(r.live.Load()) }

// New returns a registry that applies def to districts without a limit of their own. A burst is raised to
// at least minBurst (the largest batch a request may carry), since a smaller one would refuse a full batch
// forever. Call Refresh (or Run) to load the stored settings.
func New(src Source, def RateLimit, minBurst int, log *slog.Logger) (*Registry, error) {
	if def.EventsPerSecond < 1 || def.Burst < 1 {
		return nil, errors.New("default rate limit: events per second and burst must be at least 1")
	}
	r := &Registry{src: src, def: def, minBurst: minBurst, log: log, now: time.Now, buckets: map[string]*rate.Limiter{}}
	r.settings.Store(&map[string]*Settings{})
	r.live.Store(1)
	return r, nil
}

// Refresh counts the live instances (with WithPeers) and loads every district's settings. On error the
// previous count or settings stay in force.
func (r *Registry) Refresh(ctx context.Context) error {
	var peerErr error
	if r.peers != nil {
		n, err := r.peers(ctx)
		if err != nil {
			peerErr = fmt.Errorf("counting the live gateway instances: %w", err)
		} else if n = max(n, 1); int64(n) != r.live.Swap(int64(n)) && r.onPeers != nil {
			r.onPeers(n)
		}
	}
	stored, err := r.src(ctx)
	if err != nil {
		return errors.Join(peerErr, fmt.Errorf("loading tenant settings: %w", err))
	}
	m := make(map[string]*Settings, len(stored))
	for _, st := range stored {
		limit := r.def
		if st.RateLimit != nil {
			limit = *st.RateLimit
		}
		m[st.TenantID] = newSettings(st.TenantID, limit, st.HotShards, r.share)
	}
	r.settings.Store(&m)
	return peerErr
}

// share is this instance's part of a district's limit: the rate and burst divided by the live instances,
// the burst rounded up and raised to at least minBurst (a smaller one would refuse a full batch forever).
func (r *Registry) share(l RateLimit) (float64, int) {
	n := max(int(r.live.Load()), 1)
	return float64(l.EventsPerSecond) / float64(n), max((l.Burst+n-1)/n, r.minBurst)
}

// Run refreshes the settings every interval until ctx is done, logging failed loads.
func (r *Registry) Run(ctx context.Context, every time.Duration) error {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := r.Refresh(ctx); err != nil && ctx.Err() == nil {
				r.log.WarnContext(ctx, "refreshing tenant settings; keeping the previous ones", "err", err)
			}
		}
	}
}

// Settings returns a district's settings; a district created since the last load gets the defaults.
func (r *Registry) Settings(tenantID string) *Settings {
	if s, ok := (*r.settings.Load())[tenantID]; ok {
		return s
	}
	return newSettings(tenantID, r.def, 0, r.share)
}

// Admit takes n events from the district's bucket, all or none, under the limit of s (from Settings).
// When it refuses, it says how long until the bucket holds n events again.
func (r *Registry) Admit(s *Settings, n int) (bool, time.Duration) {
	if n == 0 {
		return true, 0
	}
	now := r.now()
	r.mu.Lock()
	lim, ok := r.buckets[s.TenantID]
	if !ok {
		lim = rate.NewLimiter(rate.Limit(s.rate), s.burst)
		r.buckets[s.TenantID] = lim
	}
	r.mu.Unlock()
	if lim.Limit() != rate.Limit(s.rate) {
		lim.SetLimitAt(now, rate.Limit(s.rate))
	}
	if lim.Burst() != s.burst {
		lim.SetBurstAt(now, s.burst)
	}
	res := lim.ReserveN(now, n)
	if !res.OK() { // more than the burst: never admitted (the burst is at least the largest batch)
		return false, time.Duration(math.Ceil(float64(n) / s.rate * float64(time.Second)))
	}
	if wait := res.DelayFrom(now); wait > 0 {
		res.CancelAt(now) // refused whole: the batch takes nothing
		return false, wait
	}
	return true, 0
}
