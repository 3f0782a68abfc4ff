package ttlcache

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestGetCachesForTheTTL(t *testing.T) {
	c := New[string, int](10, time.Minute)
	var clock atomic.Int64
	c.SetClock(func() time.Time { return time.Unix(0, clock.Load()) })
	loads := 0
	load := func() (int, error) { loads++; return loads, nil }
	for range 3 {
		if v, err := c.Get("a", load); err != nil || v != 1 {
			t.Fatalf("Get = %d, %v; want the first load's 1", v, err)
		}
	}
	clock.Add(int64(time.Minute))
	if v, _ := c.Get("a", load); v != 2 || loads != 2 {
		t.Fatalf("after the TTL Get = %d with %d loads, want a second load", v, loads)
	}
}

func TestFailedLoadIsNotCached(t *testing.T) {
	c := New[string, int](10, time.Minute)
	boom := errors.New("database down")
	if _, err := c.Get("a", func() (int, error) { return 0, boom }); !errors.Is(err, boom) {
		t.Fatalf("err = %v, want the load's", err)
	}
	if v, err := c.Get("a", func() (int, error) { return 7, nil }); err != nil || v != 7 {
		t.Fatalf("after a failed load Get = %d, %v; want a new load", v, err)
	}
}

// TestFullCacheEvictsTheLeastRecentlyUsed proves a full cache keeps its recently used answers: filling it
// does not send every key back to the database.
func TestFullCacheEvictsTheLeastRecentlyUsed(t *testing.T) {
	c := New[[2]string, string](3, time.Minute)
	loads := map[[2]string]int{}
	get := func(a, b string) {
		k := [2]string{a, b}
		if _, err := c.Get(k, func() (string, error) { loads[k]++; return a + b, nil }); err != nil {
			t.Fatal(err)
		}
	}
	get("x", "1")
	get("x", "2")
	get("x", "3")
	get("x", "1") // recently used again
	get("x", "4") // evicts ("x","2") only
	get("x", "1")
	get("x", "3")
	if loads[[2]string{"x", "1"}] != 1 || loads[[2]string{"x", "3"}] != 1 || c.Len() != 3 {
		t.Fatalf("loads %v, %d entries: a full cache must evict one entry, the least recently used", loads, c.Len())
	}
	get("x", "2")
	if loads[[2]string{"x", "2"}] != 2 {
		t.Fatalf("the evicted entry was not loaded again: %v", loads)
	}
}

// TestConcurrentMissesLoadOnce proves that callers missing the same key together make one load.
func TestConcurrentMissesLoadOnce(t *testing.T) {
	c := New[string, int](10, time.Minute)
	var loads atomic.Int32
	release := make(chan struct{})
	started := make(chan struct{})
	var once sync.Once
	load := func() (int, error) {
		loads.Add(1)
		once.Do(func() { close(started) })
		<-release
		return 42, nil
	}
	var wg sync.WaitGroup
	results := make(chan int, 20)
	wg.Add(1)
	go func() { defer wg.Done(); v, _ := c.Get("k", load); results <- v }()
	<-started // the first load runs; the others join it
	for range 19 {
		wg.Add(1)
		go func() { defer wg.Done(); v, _ := c.Get("k", load); results <- v }()
	}
	close(release)
	wg.Wait()
	close(results)
	for v := range results {
		if v != 42 {
			t.Fatalf("a caller got %d", v)
		}
	}
	// A caller joins the running flight, or finds the answer it added before it ended, or starts a flight
	// that finds that answer: never a second load.
	if n := loads.Load(); n != 1 {
		t.Fatalf("%d loads for 20 concurrent misses, want 1", n)
	}
}

func TestRemoveMakesTheNextGetLoad(t *testing.T) {
	c := New[string, int](10, time.Minute)
	loads := 0
	load := func() (int, error) { loads++; return loads, nil }
	_, _ = c.Get("a", load)
	c.Remove("a")
	if v, _ := c.Get("a", load); v != 2 {
		t.Fatalf("after Remove Get = %d, want a second load", v)
	}
}

func TestPeekPutPurge(t *testing.T) {
	c := New[string, int](4, time.Minute)
	now := time.Unix(1000, 0)
	c.SetClock(func() time.Time { return now })
	if _, ok := c.Peek("a"); ok {
		t.Fatal("Peek found an answer never stored")
	}
	c.Put("a", 1)
	if v, ok := c.Peek("a"); !ok || v != 1 {
		t.Fatalf("Peek after Put = %d, %v; want 1, true", v, ok)
	}
	v, err := c.Get("a", func() (int, error) { return 0, errors.New("loaded although Put stored it") })
	if err != nil || v != 1 {
		t.Fatalf("Get after Put = %d, %v", v, err)
	}
	now = now.Add(2 * time.Minute)
	if _, ok := c.Peek("a"); ok {
		t.Fatal("Peek returned an expired answer")
	}
	c.Put("b", 2)
	c.Purge()
	if _, ok := c.Peek("b"); ok || c.Len() != 0 {
		t.Fatalf("Purge left %d entries", c.Len())
	}
}
