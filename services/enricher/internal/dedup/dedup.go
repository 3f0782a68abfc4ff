// Package dedup remembers which (tenant, event_id) pairs the enricher has already passed on, so client
// retries of an accepted event are dropped. The state lives in memory per raw partition and is made
// durable by a changelog topic written in the same Kafka transaction as the enriched records: after a
// crash or rebalance, the new owner of a partition rebuilds its state from the changelog partition of the
// same number, seeing exactly the entries whose transactions committed.
package dedup

import (
	"encoding/binary"
	"hash/maphash"
	"sync"
	"time"
)

// key is a 128-bit hash of (tenant, event_id). Two independent 64-bit hashes make a false match (which
// would drop a genuine event) vanishingly unlikely: about n²/2¹²⁹ for n remembered ids.
type key [2]uint64

// Set is the dedup state of the partitions this instance owns. Entries added inside a transaction are
// pending until Commit; Abort discards them, so an aborted transaction leaves no trace.
type Set struct {
	window time.Duration
	seeds  [2]maphash.Seed

	mu      sync.Mutex
	parts   map[int32]map[key]int64 // partition -> key -> expiry (unix ms)
	pending map[int32]map[key]int64
}

// New returns an empty set remembering ids for window.
func New(window time.Duration) *Set {
	return &Set{
		window: window, seeds: [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()},
		parts: map[int32]map[key]int64{}, pending: map[int32]map[key]int64{},
	}
}

// Window is how long an id is remembered.
func (s *Set) Window() time.Duration { return s.window }

func (s *Set) hash(tenant, eventID string) key {
	var k key
	for i, seed := range s.seeds {
		var h maphash.Hash
		h.SetSeed(seed)
		h.WriteString(tenant)
		h.WriteByte(0)
		h.WriteString(eventID)
		k[i] = h.Sum64()
	}
	return k
}

// ChangelogKey is the changelog record key of an id.
func ChangelogKey(tenant, eventID string) []byte { return []byte(tenant + "/" + eventID) }

// ChangelogValue encodes an entry's expiry.
func ChangelogValue(expires time.Time) []byte {
	return binary.BigEndian.AppendUint64(nil, uint64(expires.UnixMilli()))
}

// SeenOrAdd reports whether (tenant, eventID) was seen on partition within the window; if not, it adds it
// as pending and returns the expiry to write to the changelog.
func (s *Set) SeenOrAdd(partition int32, tenant, eventID string, now time.Time) (seen bool, expires time.Time) {
	k := s.hash(tenant, eventID)
	nowMs := now.UnixMilli()
	s.mu.Lock()
	defer s.mu.Unlock()
	if exp, ok := s.parts[partition][k]; ok && exp > nowMs {
		return true, time.Time{}
	}
	if exp, ok := s.pending[partition][k]; ok && exp > nowMs {
		return true, time.Time{}
	}
	expires = now.Add(s.window)
	p := s.pending[partition]
	if p == nil {
		p = map[key]int64{}
		s.pending[partition] = p
	}
	p[k] = expires.UnixMilli()
	return false, expires
}

// Commit makes the pending entries permanent (call after the transaction committed).
func (s *Set) Commit() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for p, entries := range s.pending {
		if dst, owned := s.parts[p]; owned {
			for k, exp := range entries {
				dst[k] = exp
			}
		}
	}
	clear(s.pending)
}

// Abort drops the pending entries (call after the transaction aborted).
func (s *Set) Abort() {
	s.mu.Lock()
	clear(s.pending)
	s.mu.Unlock()
}

// Own starts tracking partition with the entries restored from its changelog.
func (s *Set) Own(partition int32, restored map[string]time.Time) {
	m := make(map[key]int64, len(restored))
	for ck, exp := range restored {
		tenant, id := splitChangelogKey(ck)
		m[s.hash(tenant, id)] = exp.UnixMilli()
	}
	s.mu.Lock()
	s.parts[partition] = m
	s.mu.Unlock()
}

// Disown forgets a partition that moved to another instance.
func (s *Set) Disown(partition int32) {
	s.mu.Lock()
	delete(s.parts, partition)
	delete(s.pending, partition)
	s.mu.Unlock()
}

// Owned reports whether the set tracks partition.
func (s *Set) Owned(partition int32) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.parts[partition]
	return ok
}

// Expire drops entries past their expiry and returns how many remain.
func (s *Set) Expire(now time.Time) int {
	nowMs := now.UnixMilli()
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, m := range s.parts {
		for k, exp := range m {
			if exp <= nowMs {
				delete(m, k)
			}
		}
		n += len(m)
	}
	return n
}

func splitChangelogKey(ck string) (tenant, id string) {
	for i := len(ck) - 1; i >= 0; i-- {
		if ck[i] == '/' {
			return ck[:i], ck[i+1:]
		}
	}
	return "", ck
}
