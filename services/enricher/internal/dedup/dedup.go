// Package dedup remembers which (tenant, event_id) pairs the enricher has already passed on, so client
// retries of an accepted event are dropped. The state lives in memory per raw partition and is made
// durable by a changelog topic written in the same Kafka transaction as the enriched records: after a
// crash or rebalance, the new owner of a partition rebuilds its state from the changelog partition of the
// same number, seeing exactly the entries whose transactions committed.
//
// Memory is bounded by the number of ids per window, at 20 bytes a slot: each partition is split into
// 64 shards of open addressing (linear probing) over 128-bit hashes with a 32-bit expiry in minutes,
// kept between 57% and 80% full, so 10 million ids take 250 to 350 MiB.
package dedup

import (
	"encoding/binary"
	"hash/maphash"
	"math/bits"
	"sync"
	"time"
)

// key is a 128-bit hash of the changelog key "tenant/event_id", as four 32-bit words so that a slot
// packs into 20 bytes. Two independent 64-bit hashes make a false match (which would drop a genuine
// event) vanishingly unlikely: about n²/2¹²⁹ for n remembered ids.
type key [4]uint32

// slot is one table entry; exp == 0 marks an empty slot.
type slot struct {
	k   key
	exp uint32 // expiry, minutes since the Unix epoch
}

const (
	shardBits = 6
	numShards = 1 << shardBits
	minSlots  = 64
)

// Set is the dedup state of the partitions this instance owns. Entries added inside a transaction are
// pending until Commit; Abort discards them, so an aborted transaction leaves no trace.
type Set struct {
	window time.Duration
	seeds  [2]maphash.Seed

	mu      sync.Mutex
	parts   map[int32]*table
	pending map[int32]map[key]uint32
	added   []added // in the tables already; Abort takes them back
}

// New returns an empty set remembering ids for window.
func New(window time.Duration) *Set {
	return &Set{
		window: window, seeds: [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()},
		parts: map[int32]*table{}, pending: map[int32]map[key]uint32{},
	}
}

// Window is how long an id is remembered.
func (s *Set) Window() time.Duration { return s.window }

// hash hashes the changelog key tenant + "/" + eventID (tenant ids never contain "/"), written in parts
// so that the hot path does not build the string.
func (s *Set) hash(parts ...string) key {
	var hs [2]uint64
	for i, seed := range s.seeds {
		var h maphash.Hash
		h.SetSeed(seed)
		for _, p := range parts {
			h.WriteString(p)
		}
		hs[i] = h.Sum64()
	}
	return key{uint32(hs[0]), uint32(hs[0] >> 32), uint32(hs[1]), uint32(hs[1] >> 32)}
}

func (s *Set) hashID(tenant, eventID string) key { return s.hash(tenant, "/", eventID) }

// ChangelogKey is the changelog record key of an id.
func ChangelogKey(tenant, eventID string) []byte { return []byte(tenant + "/" + eventID) }

// ChangelogValue encodes an entry's expiry (unix milliseconds, big-endian).
func ChangelogValue(expires time.Time) []byte {
	return binary.BigEndian.AppendUint64(nil, uint64(expires.UnixMilli()))
}

// minuteOf is t in whole minutes since the epoch, rounded down; expiries round up (expiryMinute), so an
// id is remembered for at least the window.
func minuteOf(t time.Time) uint32 { return uint32(t.Unix() / 60) }

func expiryMinute(t time.Time) uint32 { return uint32((t.UnixMilli() + 59_999) / 60_000) }

// SeenOrAdd reports whether (tenant, eventID) was seen on partition within the window; if not, it adds it
// as pending and returns the expiry to write to the changelog.
func (s *Set) SeenOrAdd(partition int32, tenant, eventID string, now time.Time) (seen bool, expires time.Time) {
	k := s.hashID(tenant, eventID)
	nowMin := minuteOf(now)
	s.mu.Lock()
	defer s.mu.Unlock()
	if t := s.parts[partition]; t != nil && t.contains(k, nowMin) {
		return true, time.Time{}
	}
	if exp, ok := s.pending[partition][k]; ok && exp > nowMin {
		return true, time.Time{}
	}
	expires = now.Add(s.window)
	p := s.pending[partition]
	if p == nil {
		p = map[key]uint32{}
		s.pending[partition] = p
	}
	p[k] = expiryMinute(expires)
	return false, expires
}

// ID is one record's id for SeenOrAddBatch: the raw partition it arrived on, its district and event id.
type ID struct {
	Partition       int32
	Tenant, EventID string
}

// SeenOrAddBatch is SeenOrAdd for every id in order, under one lock: dup[i] reports whether ids[i] was
// seen (a later copy within ids counts as seen too). The ids not seen are added with the expiry returned:
// straight into their partition's table, to be taken back by Abort (cheaper than pending entries, which
// Commit would have to copy).
func (s *Set) SeenOrAddBatch(ids []ID, now time.Time, dup []bool) (expires time.Time) {
	keys := make([]key, len(ids))
	for i, id := range ids {
		keys[i] = s.hashID(id.Tenant, id.EventID)
	}
	nowMin := minuteOf(now)
	expires = now.Add(s.window)
	exp := expiryMinute(expires)
	s.mu.Lock()
	defer s.mu.Unlock()
	var (
		lastPart int32 = -1
		t        *table
		p        map[key]uint32
	)
	for i, id := range ids {
		if id.Partition != lastPart || i == 0 {
			lastPart, t, p = id.Partition, s.parts[id.Partition], s.pending[id.Partition]
		}
		k := keys[i]
		if e, ok := p[k]; ok && e > nowMin { // added by SeenOrAdd in this transaction
			dup[i] = true
			continue
		}
		if t == nil { // the partition moved away: pending, dropped by Commit unless owned again
			if p == nil {
				p = map[key]uint32{}
				s.pending[id.Partition] = p
			}
			p[k], dup[i] = exp, false
			continue
		}
		if t.contains(k, nowMin) {
			dup[i] = true
			continue
		}
		t.put(k, exp, nowMin)
		s.added = append(s.added, added{t: t, k: k})
		dup[i] = false
	}
	return expires
}

// added is an entry SeenOrAddBatch put into a table in the open transaction.
type added struct {
	t *table
	k key
}

// Commit makes the pending entries permanent (call after the transaction committed).
func (s *Set) Commit(now time.Time) {
	nowMin := minuteOf(now)
	s.mu.Lock()
	defer s.mu.Unlock()
	for p, entries := range s.pending {
		if t, owned := s.parts[p]; owned {
			for k, exp := range entries {
				t.put(k, exp, nowMin)
			}
		}
		clear(entries) // keeps its room for the next batch
	}
	s.added = s.added[:0]
}

// Abort drops the pending entries (call after the transaction aborted).
func (s *Set) Abort() {
	s.mu.Lock()
	for _, entries := range s.pending {
		clear(entries)
	}
	for _, a := range s.added {
		a.t.shard(a.k).drop(a.k)
	}
	s.added = s.added[:0]
	s.mu.Unlock()
}

// Partition is one partition's state being rebuilt from its changelog, off the set's lock; Own installs it.
type Partition struct {
	set *Set
	t   *table
	now uint32
}

// NewPartition starts rebuilding a partition's state at now (entries already expired are skipped).
func (s *Set) NewPartition(now time.Time) *Partition {
	return &Partition{set: s, t: &table{}, now: minuteOf(now)}
}

// Add records a changelog entry; a later entry of the same key replaces an earlier one.
func (p *Partition) Add(changelogKey []byte, expires time.Time) {
	exp := expiryMinute(expires)
	if exp <= p.now {
		return
	}
	p.t.put(p.set.hash(string(changelogKey)), exp, p.now)
}

// Len is the number of entries added so far.
func (p *Partition) Len() int { return p.t.len(p.now) }

// Own starts tracking partition with the state rebuilt in p.
func (s *Set) Own(partition int32, p *Partition) {
	s.mu.Lock()
	s.parts[partition] = p.t
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

// Expire reclaims the space of expired entries where they are a quarter or more of a shard, and returns
// how many live entries remain. Expired slots are also reused by later inserts, so calling it now and
// then (every few minutes) is enough.
func (s *Set) Expire(now time.Time) int {
	nowMin := minuteOf(now)
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, t := range s.parts {
		for i := range t.shards {
			sh := &t.shards[i]
			live := sh.live(nowMin)
			if expired := sh.used - live; expired > 0 && expired*4 >= sh.used {
				sh.rehash(live, nowMin)
			}
			n += live
		}
	}
	return n
}

// table is one partition's committed entries.
type table struct {
	shards [numShards]shard
}

func (t *table) shard(k key) *shard { return &t.shards[k[1]>>(32-shardBits)] }

func (t *table) contains(k key, now uint32) bool { return t.shard(k).contains(k, now) }

func (t *table) put(k key, exp, now uint32) { t.shard(k).put(k, exp, now) }

func (t *table) len(now uint32) int {
	n := 0
	for i := range t.shards {
		n += t.shards[i].live(now)
	}
	return n
}

// shard is an open-addressing table with linear probing. Expired entries stay in place (so probe chains
// are never broken) until an insert reuses their slot or a rehash drops them.
type shard struct {
	slots []slot
	used  int // slots not empty: live or expired
}

// home is k's first slot: the high bits of a multiply by the table size (which need not be a power of 2).
func (s *shard) home(k key) int {
	hi, _ := bits.Mul64(uint64(k[2])|uint64(k[3])<<32, uint64(len(s.slots)))
	return int(hi)
}

func (s *shard) contains(k key, now uint32) bool {
	if len(s.slots) == 0 {
		return false
	}
	for i := s.home(k); ; {
		sl := &s.slots[i]
		if sl.exp == 0 {
			return false
		}
		if sl.k == k {
			return sl.exp > now
		}
		if i++; i == len(s.slots) {
			i = 0
		}
	}
}

// drop expires k where it is (its slot stays taken, so probe chains are not broken).
func (s *shard) drop(k key) {
	if len(s.slots) == 0 {
		return
	}
	for i := s.home(k); ; {
		sl := &s.slots[i]
		if sl.exp == 0 {
			return
		}
		if sl.k == k {
			sl.exp = 1 // long past, and not 0 (empty)
			return
		}
		if i++; i == len(s.slots) {
			i = 0
		}
	}
}

// put sets k's expiry, inserting it if absent (into the first expired slot of its chain, if any).
func (s *shard) put(k key, exp, now uint32) {
	if len(s.slots) == 0 {
		s.slots = make([]slot, minSlots)
	}
	reuse := -1
	for i := s.home(k); ; {
		sl := &s.slots[i]
		switch {
		case sl.k == k && sl.exp != 0:
			sl.exp = exp
			return
		case sl.exp == 0:
			if reuse < 0 {
				reuse = i
				s.used++
			}
			s.slots[reuse] = slot{k: k, exp: exp}
			if s.used*5 > len(s.slots)*4 { // above 80% full
				s.rehash(s.live(now), now)
			}
			return
		case sl.exp <= now && reuse < 0:
			reuse = i // keep probing: k may sit further along the chain
		}
		if i++; i == len(s.slots) {
			i = 0
		}
	}
}

func (s *shard) live(now uint32) int {
	n := 0
	for i := range s.slots {
		if s.slots[i].exp > now {
			n++
		}
	}
	return n
}

// rehash rebuilds the shard with its live entries at about 57% full.
func (s *shard) rehash(live int, now uint32) {
	old := s.slots
	s.slots = make([]slot, max(minSlots, live*7/4))
	s.used = 0
	for i := range old {
		if sl := &old[i]; sl.exp > now {
			j := s.home(sl.k)
			for s.slots[j].exp != 0 {
				if j++; j == len(s.slots) {
					j = 0
				}
			}
			s.slots[j] = *sl
			s.used++
		}
	}
}
