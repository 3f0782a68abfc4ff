package tenants

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"
)

// fakeSource serves settings a test can change.
type fakeSource struct {
	mu     sync.Mutex
	stored []Stored
	err    error
}

func (f *fakeSource) load(context.Context) ([]Stored, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.stored, f.err
}

func (f *fakeSource) set(stored []Stored, err error) {
	f.mu.Lock()
	f.stored, f.err = stored, err
	f.mu.Unlock()
}

func newRegistry(t *testing.T, src *fakeSource, def RateLimit, minBurst int) (*Registry, *time.Time) {
	t.Helper()
	r, err := New(src.load, def, minBurst, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	clock := time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC)
	r.now = func() time.Time { return clock }
	return r, &clock
}

func TestTokenBucketAdmitsWholeBatchesOnly(t *testing.T) {
	src := &fakeSource{stored: []Stored{{TenantID: "d1", RateLimit: &RateLimit{EventsPerSecond: 100, Burst: 300}}}}
	r, clock := newRegistry(t, src, RateLimit{EventsPerSecond: 1000, Burst: 5000}, 100)
	if err := r.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	s := r.Settings("d1")
	steps := []struct {
		advance time.Duration
		n       int
		ok      bool
		wait    time.Duration
	}{
		{0, 200, true, 0},                       // the bucket starts full: 300
		{0, 150, false, 500 * time.Millisecond}, // 100 left: refused whole, 50 more events take 0.5 s
		{0, 100, true, 0},                       // the refused batch took nothing
		{0, 1, false, 10 * time.Millisecond},    // empty
		{2 * time.Second, 200, true, 0},         // refilled at 100/s
		{10 * time.Second, 300, true, 0},        // ten seconds idle store no more than the burst
		{0, 1, false, 10 * time.Millisecond},
		{0, 0, true, 0}, // an empty batch costs nothing
	}
	for i, st := range steps {
		*clock = clock.Add(st.advance)
		ok, wait := r.Admit(s, st.n)
		if ok != st.ok || wait != st.wait {
			t.Fatalf("step %d: Admit(%d) = %v, %v; want %v, %v", i, st.n, ok, wait, st.ok, st.wait)
		}
	}
	// Buckets are per district: d2 (default limit) is untouched by d1's traffic.
	if ok, _ := r.Admit(r.Settings("d2"), 5000); !ok {
		t.Fatal("another district was refused")
	}
}

func TestRefreshAppliesStoredSettingsAndDefaults(t *testing.T) {
	src := &fakeSource{stored: []Stored{
		{TenantID: "d1", RateLimit: &RateLimit{EventsPerSecond: 50, Burst: 10}},
		{TenantID: "hot", HotShards: 4},
	}}
	def := RateLimit{EventsPerSecond: 1000, Burst: 5000}
	r, _ := newRegistry(t, src, def, 100)
	if s := r.Settings("d1"); s.Limit != def {
		t.Fatalf("before the first load d1 = %+v, want the default", s.Limit)
	}
	if err := r.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		tenant string
		limit  RateLimit
		shards int
	}{
		{"d1", RateLimit{EventsPerSecond: 50, Burst: 10}, 0},
		{"hot", def, 4},
		{"new", def, 0}, // created since the last load
	}
	for _, tt := range tests {
		if s := r.Settings(tt.tenant); s.Limit != tt.limit || s.HotShards != tt.shards || s.TenantID != tt.tenant {
			t.Errorf("%s: %+v, want %+v with %d shards", tt.tenant, s, tt.limit, tt.shards)
		}
	}
	if rate, burst := r.Settings("d1").Share(); rate != 50 || burst != 100 {
		t.Errorf("d1's share on the only instance: %v/s, burst %d; want 50/s and the burst raised to one full batch (100)", rate, burst)
	}
	src.set(nil, errors.New("database down"))
	if err := r.Refresh(t.Context()); err == nil {
		t.Fatal("a failed load reported success")
	}
	if s := r.Settings("hot"); s.HotShards != 4 {
		t.Errorf("a failed load dropped the settings: %+v", s)
	}
	if _, err := New(src.load, RateLimit{}, 1, nil); err == nil {
		t.Error("a zero default limit was accepted")
	}
}

func TestRunPicksUpChanges(t *testing.T) {
	src := &fakeSource{}
	r, _ := newRegistry(t, src, RateLimit{EventsPerSecond: 10, Burst: 10}, 1)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() { done <- r.Run(ctx, 10*time.Millisecond) }()
	src.set([]Stored{{TenantID: "d1", HotShards: 3}}, nil)
	deadline := time.Now().Add(5 * time.Second)
	for r.Settings("d1").HotShards != 3 {
		if time.Now().After(deadline) {
			t.Fatal("the change was not picked up")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestRecordKeys: a normal district has one key, its id; a hot one spreads its students over every
// sub-key tenant_id/0..N-1, and a student always gets the same one.
func TestRecordKeys(t *testing.T) {
	whole := func(l RateLimit) (float64, int) { return float64(l.EventsPerSecond), l.Burst }
	normal := newSettings("d1", RateLimit{1, 1}, 0, whole)
	if k := string(normal.RecordKey("S1")); k != "d1" {
		t.Fatalf("normal key = %q", k)
	}
	hot := newSettings("d1", RateLimit{1, 1}, 8, whole)
	seen := map[string]int{}
	for i := range 1000 {
		sis := fmt.Sprintf("d1-s%03d-c%02d-%03d", i/100, i/10%10, i)
		k := string(hot.RecordKey(sis))
		seen[k]++
		if again := string(hot.RecordKey(sis)); again != k {
			t.Fatalf("student %s got keys %q and %q", sis, k, again)
		}
	}
	if len(seen) != 8 {
		t.Fatalf("1000 students used %d of 8 sub-keys: %v", len(seen), seen)
	}
	for i := range 8 {
		if n := seen[fmt.Sprintf("d1/%d", i)]; n < 60 || n > 190 {
			t.Errorf("sub-key d1/%d holds %d of 1000 students: %v", i, n, seen)
		}
	}
	// The shard function is part of the record format: pin it (FNV-1a 32 of the SIS id, modulo N).
	if got := Shard("S1", 1024); got != 0x080206e9%1024 {
		t.Errorf("Shard(S1, 1024) = %d", got)
	}
}

// TestLimitsAreSharedByLiveInstances: with two live gateway instances each admits half of a district's
// burst and rate, so the district gets its limit in total, not twice it; when one leaves, the other takes
// the whole limit at its next refresh; a failed count keeps the last one.
func TestLimitsAreSharedByLiveInstances(t *testing.T) {
	src := &fakeSource{stored: []Stored{{TenantID: "d1", RateLimit: &RateLimit{EventsPerSecond: 100, Burst: 1000}}}}
	var (
		mu    sync.Mutex
		live  = 2
		fail  error
		heard []int
	)
	peers := func(context.Context) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return live, fail
	}
	setLive := func(n int, err error) { mu.Lock(); live, fail = n, err; mu.Unlock() }
	a, clock := newRegistry(t, src, RateLimit{EventsPerSecond: 1000, Burst: 5000}, 100)
	b, _ := newRegistry(t, src, RateLimit{EventsPerSecond: 1000, Burst: 5000}, 100)
	b.now = a.now // one clock: nothing refills between the two instances' requests
	a.WithPeers(peers, func(n int) { heard = append(heard, n) })
	b.WithPeers(peers, nil)
	for _, r := range []*Registry{a, b} {
		if err := r.Refresh(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	admitted := 0
	for range 8 { // 1,600 events asked of each instance
		for _, r := range []*Registry{a, b} {
			if ok, _ := r.Admit(r.Settings("d1"), 100); ok {
				admitted += 100
			}
		}
	}
	if admitted != 1000 {
		t.Fatalf("two instances admitted %d events at once, want the district's burst of 1000", admitted)
	}
	*clock = clock.Add(time.Second) // 100 events/s in total: 50 on each
	admitted = 0
	for _, r := range []*Registry{a, b} {
		for r.Settings("d1") != nil {
			ok, _ := r.Admit(r.Settings("d1"), 10)
			if !ok {
				break
			}
			admitted += 10
		}
	}
	if admitted != 100 {
		t.Fatalf("a second later the two instances admitted %d events, want the district's 100/s", admitted)
	}

	setLive(0, errors.New("control store down"))
	if err := a.Refresh(t.Context()); err == nil || a.Live() != 2 {
		t.Fatalf("a failed count: err %v, live %d; want the error and the last count kept", err, a.Live())
	}
	setLive(1, nil)
	if err := a.Refresh(t.Context()); err != nil || a.Live() != 1 {
		t.Fatalf("after b left: err %v, live %d", err, a.Live())
	}
	if rate, burst := a.Settings("d1").Share(); rate != 100 || burst != 1000 {
		t.Errorf("the last instance's share: %v/s, burst %d; want the whole limit", rate, burst)
	}
	if fmt.Sprint(heard) != "[2 1]" {
		t.Errorf("counts heard: %v, want [2 1]", heard)
	}
}
