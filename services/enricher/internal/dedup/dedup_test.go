package dedup

import (
	"fmt"
	"runtime"
	"strconv"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)

func TestPendingCommitAbortAndExpiry(t *testing.T) {
	now := t0
	s := New(24 * time.Hour)
	p := s.NewPartition(now)
	p.Add([]byte("d1/restored"), now.Add(time.Hour))
	p.Add([]byte("d1/old"), now.Add(-time.Hour))
	p.Add([]byte("d1/renewed"), now.Add(-2*time.Hour))
	p.Add([]byte("d1/renewed"), now.Add(2*time.Hour)) // a later changelog entry of the same key wins
	if p.Len() != 2 {
		t.Fatalf("restored %d live entries, want 2", p.Len())
	}
	s.Own(0, p)

	steps := []struct {
		name       string
		tenant, id string
		at         time.Time
		seen       bool
	}{
		{"restored id", "d1", "restored", now, true},
		{"renewed id", "d1", "renewed", now.Add(90 * time.Minute), true},
		{"expired in changelog", "d1", "old", now, false},
		{"new id", "d1", "a", now, false},
		{"retry in the same transaction", "d1", "a", now, true},
		{"same id, other tenant", "d2", "a", now, false},
	}
	for _, st := range steps {
		if seen, _ := s.SeenOrAdd(0, st.tenant, st.id, st.at); seen != st.seen {
			t.Fatalf("%s: seen = %v, want %v", st.name, seen, st.seen)
		}
	}
	s.Abort()
	if seen, _ := s.SeenOrAdd(0, "d1", "a", now); seen {
		t.Fatal("aborted id still seen")
	}
	_, exp := s.SeenOrAdd(0, "d1", "b", now)
	if !exp.Equal(now.Add(24 * time.Hour)) {
		t.Fatalf("expiry = %v", exp)
	}
	s.Commit(now)
	if seen, _ := s.SeenOrAdd(0, "d1", "a", now.Add(23*time.Hour)); !seen {
		t.Fatal("committed id not seen within the window")
	}
	if seen, _ := s.SeenOrAdd(0, "d1", "a", now.Add(24*time.Hour+time.Minute)); seen {
		t.Fatal("id seen after the window")
	}
	if seen, _ := s.SeenOrAdd(1, "d1", "a", now); seen {
		t.Fatal("id of partition 0 seen on partition 1")
	}
	s.Abort()
	if n := s.Expire(now.Add(3 * time.Hour)); n != 2 { // a and b remain; restored and renewed expired
		t.Fatalf("entries after expiry = %d, want 2", n)
	}
	s.Disown(0)
	if s.Owned(0) {
		t.Fatal("partition still owned")
	}
	if seen, _ := s.SeenOrAdd(0, "d1", "a", now); seen {
		t.Fatal("disowned partition still remembers")
	}
}

// TestBatchAbortTakesBackAndCommitKeeps: SeenOrAddBatch finds committed ids, copies within the batch and
// ids SeenOrAdd added in the same transaction; Abort takes its entries back (also after the table grew),
// Commit keeps them; a partition not owned keeps nothing.
func TestBatchAbortTakesBackAndCommitKeeps(t *testing.T) {
	now := t0
	s := New(24 * time.Hour)
	s.Own(0, s.NewPartition(now))
	s.SeenOrAdd(0, "d1", "old", now)
	s.Commit(now)
	s.SeenOrAdd(0, "d1", "single", now) // pending, same transaction as the batch below
	var ids []ID
	for i := range 500 { // enough to grow the tables while the transaction is open
		ids = append(ids, ID{Partition: 0, Tenant: "d1", EventID: "n" + strconv.Itoa(i)})
	}
	ids = append(ids, ID{0, "d1", "old"}, ID{0, "d1", "single"}, ID{0, "d1", "n7"}, ID{1, "d1", "unowned"})
	dup := make([]bool, len(ids))
	if exp := s.SeenOrAddBatch(ids, now, dup); !exp.Equal(now.Add(24 * time.Hour)) {
		t.Fatalf("expiry = %v", exp)
	}
	for i, d := range dup {
		if want := i >= 500 && i < 503; d != want {
			t.Fatalf("%v: seen = %v, want %v", ids[i], d, want)
		}
	}
	s.Abort()
	for _, id := range []string{"n0", "n499", "single"} {
		if seen, _ := s.SeenOrAdd(0, "d1", id, now); seen {
			t.Fatalf("%s still seen after abort", id)
		}
	}
	s.Abort()
	if seen, _ := s.SeenOrAdd(0, "d1", "old", now); !seen {
		t.Fatal("a committed id was taken back by abort")
	}
	s.Abort()
	s.SeenOrAddBatch(ids[:500], now, dup)
	s.Commit(now)
	s.Abort() // nothing open: takes nothing back
	if seen, _ := s.SeenOrAdd(0, "d1", "n250", now); !seen {
		t.Fatal("committed batch id not seen")
	}
	if s.Owned(1) {
		t.Fatal("partition 1 owned")
	}
}

// TestCommitToUnownedPartitionIsDropped: entries of a partition revoked mid-transaction are not kept.
func TestCommitToUnownedPartitionIsDropped(t *testing.T) {
	s := New(24 * time.Hour)
	s.Own(0, s.NewPartition(t0))
	s.SeenOrAdd(3, "d1", "x", t0)
	s.Commit(t0)
	s.Own(3, s.NewPartition(t0))
	if seen, _ := s.SeenOrAdd(3, "d1", "x", t0); seen {
		t.Fatal("an entry committed while the partition was not owned came back")
	}
}

// TestGrowthAndSlotReuse fills a partition through several rehashes, lets half the ids expire, adds more
// (reusing expired slots), and checks every id is answered right throughout.
func TestGrowthAndSlotReuse(t *testing.T) {
	s := New(time.Hour)
	s.Own(0, s.NewPartition(t0))
	add := func(prefix string, n int, at time.Time) {
		for i := range n {
			if seen, _ := s.SeenOrAdd(0, "d1", prefix+strconv.Itoa(i), at); seen {
				t.Fatalf("%s%d seen before it was added", prefix, i)
			}
			if i%1000 == 999 {
				s.Commit(at)
			}
		}
		s.Commit(at)
	}
	check := func(prefix string, n int, at time.Time, want bool) {
		for i := range n {
			if seen, _ := s.SeenOrAdd(0, "d1", prefix+strconv.Itoa(i), at); seen != want {
				t.Fatalf("%s%d at %v: seen = %v, want %v", prefix, i, at, seen, want)
			}
		}
		s.Abort()
	}
	add("early-", 50_000, t0)
	later := t0.Add(40 * time.Minute)
	add("late-", 50_000, later)
	check("early-", 50_000, later, true)
	afterEarly := t0.Add(61 * time.Minute) // early ids expired, late ones live
	check("early-", 50_000, afterEarly, false)
	add("reuse-", 30_000, afterEarly)
	check("late-", 50_000, afterEarly, true)
	check("reuse-", 30_000, afterEarly, true)
	if n := s.Expire(afterEarly); n != 80_000 {
		t.Fatalf("live entries = %d, want 80000", n)
	}
	check("late-", 50_000, afterEarly, true)
}

// idBuf formats i as a lower-case UUID like the gateway's event ids.
func idBuf(buf []byte, i int) string {
	buf = append(buf[:0], "00000000-0000-4000-8000-000000000000"...)
	for j := len(buf) - 1; i > 0; j-- {
		buf[j] = "0123456789abcdef"[i&15]
		i >>= 4
	}
	return string(buf)
}

// TestTenMillionIDsFitIn512MiB fills one set with 10 million ids (over 12 partitions, 1,500 districts,
// committed in batches as the pipeline does) and checks the heap it holds.
func TestTenMillionIDsFitIn512MiB(t *testing.T) {
	if testing.Short() {
		t.Skip("fills 10 million ids")
	}
	const ids = 10_000_000
	before := heapInUse()
	s := New(48 * time.Hour)
	for p := range int32(12) {
		s.Own(p, s.NewPartition(t0))
	}
	buf := make([]byte, 0, 64)
	tenants := make([]string, 1500)
	for i := range tenants {
		tenants[i] = fmt.Sprintf("district_%04d", i)
	}
	// Polls of 5,000 through the pipeline's path (SeenOrAddBatch, Commit).
	batch, dup := make([]ID, 0, 5000), make([]bool, 5000)
	for i := range ids {
		batch = append(batch, ID{Partition: int32(i % 12), Tenant: tenants[i%len(tenants)], EventID: idBuf(buf, i)})
		if len(batch) == cap(batch) || i == ids-1 {
			s.SeenOrAddBatch(batch, t0, dup)
			for j := range batch {
				if dup[j] {
					t.Fatalf("id %v seen before it was added", batch[j])
				}
			}
			s.Commit(t0)
			batch = batch[:0]
		}
	}
	used := heapInUse() - before
	t.Logf("10M ids: heap in use %.1f MiB (%.1f bytes/id)", float64(used)/(1<<20), float64(used)/ids)
	if used >= 512<<20 {
		t.Fatalf("10M ids use %d MiB of heap, want < 512 MiB", used>>20)
	}
	for _, i := range []int{0, 1, ids / 2, ids - 1} {
		if seen, _ := s.SeenOrAdd(int32(i%12), tenants[i%len(tenants)], idBuf(buf, i), t0.Add(47*time.Hour)); !seen {
			t.Fatalf("id %d forgotten", i)
		}
	}
	runtime.KeepAlive(s)
}

func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// BenchmarkSeenOrAdd measures the per-record cost of a check-and-add against a set holding 1M ids.
func BenchmarkSeenOrAdd(b *testing.B) {
	s := New(48 * time.Hour)
	s.Own(0, s.NewPartition(t0))
	buf := make([]byte, 0, 64)
	for i := range 1_000_000 {
		s.SeenOrAdd(0, "d1", idBuf(buf, i), t0)
	}
	s.Commit(t0)
	ids := make([]string, 5000)
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		if i%len(ids) == 0 {
			s.Commit(t0)
			for j := range ids {
				ids[j] = idBuf(buf, 2_000_000+i+j)
			}
		}
		s.SeenOrAdd(0, "d1", ids[i%len(ids)], t0)
		i++
	}
}
