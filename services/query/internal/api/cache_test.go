package api_test

import (
	"log/slog"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/edtech-analytics/platform/libs/tenancy/jobs"
	"github.com/edtech-analytics/platform/libs/tenancy/timezones"
	"github.com/edtech-analytics/platform/services/query/internal/api"
)

// clock is a time the test moves; the cache reads it from the server's goroutines.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

func (c *clock) add(d time.Duration) { c.set(c.now().Add(d)) }

// The fixture's events are on 2026-10-05..07 and span ends on 2026-10-31: with a settle of 1 h that day
// is open until 2026-11-01 01:00 UTC and closed from then on.
var (
	spanOpen   = time.Date(2026, 11, 1, 0, 59, 0, 0, time.UTC)
	spanClosed = time.Date(2026, 11, 1, 1, 0, 0, 0, time.UTC)
)

const (
	cacheTTL      = 10 * time.Minute
	generationTTL = 5 * time.Second
)

// cachedFixture is the API with a summary cache of the given bounds reading clk, and the reader of its
// metrics.
func cachedFixture(t *testing.T, entries int, ttl time.Duration, clk *clock, opts ...fixtureOption) (fixture, *sdkmetric.ManualReader) {
	t.Helper()
	reader := sdkmetric.NewManualReader()
	withCache := func(pool *pgxpool.Pool) api.Option {
		c, err := api.NewSummaryCache(api.SummaryCacheConfig{Entries: entries, TTL: ttl, Settle: time.Hour, GenerationTTL: generationTTL},
			jobs.New(pool), sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)), clk.now, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		return api.WithSummaryCache(c)
	}
	return newFixtureWith(t, api.Config{MinDistricts: 5, MinStudents: 1}, nil, append(opts, withCache)...), reader
}

// cacheCounts reads query_summary_cache_requests by result.
func cacheCounts(t *testing.T, reader *sdkmetric.ManualReader) map[string]int64 {
	t.Helper()
	return counts(t, reader, "query_summary_cache_requests")
}

// counts reads the counter name by result.
func counts(t *testing.T, reader *sdkmetric.ManualReader, name string) map[string]int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(t.Context(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != name {
				continue
			}
			for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
				result, _ := dp.Attributes.Value("result")
				out[result.AsString()] = dp.Value
			}
		}
	}
	return out
}

func wantCounts(t *testing.T, reader *sdkmetric.ManualReader, hit, miss, bypass int64) {
	t.Helper()
	want := map[string]int64{}
	for k, v := range map[string]int64{"hit": hit, "miss": miss, "bypass": bypass} {
		if v > 0 {
			want[k] = v
		}
	}
	if got := cacheCounts(t, reader); !reflect.DeepEqual(got, want) {
		t.Errorf("cache requests = %v, want %v", got, want)
	}
}

// summary requests path with cred and returns the answer, failing on any status but 200.
func (f fixture) summary(t *testing.T, cred, path string) api.Summary {
	t.Helper()
	var s api.Summary
	if status := f.get(t, f.creds[cred], path, &s); status != 200 {
		t.Fatalf("%s as %s: status %d, want 200", path, cred, status)
	}
	return s
}

// lateEvent is one more login of d1's student of c1 on the fixture's second day.
func (f fixture) lateEvent(t *testing.T) {
	t.Helper()
	insertEvents(t, f.conn, []event{{tenant: "d1", school: "s1", class: "c1", student: f.w.students["d1"]["c1"], typ: "session",
		day: day0.AddDate(0, 0, 1)}})
}

// TestSummaryCacheServesClosedRangesOnly proves that a range ending on an open day is computed every time
// (bypass), that once the day is closed the summary is computed once (miss) and then served from the
// cache (hit) equal to the computed answer, for every summary level, and that a late event reaches the
// summary once the entry's TTL has passed, not before.
func TestSummaryCacheServesClosedRangesOnly(t *testing.T) {
	clk := &clock{t: spanOpen}
	f, reader := cachedFixture(t, 100, cacheTTL, clk)
	paths := []struct{ cred, path string }{
		{"d1-district", "/v1/district/summary"},
		{"d1-school-s1", "/v1/schools/s1/summary"},
		{"d1-school-s1", "/v1/classes/c1/summary"},
		{"d1-teacher-t1", "/v1/students/" + f.w.students["d1"]["c1"] + "/summary"},
	}
	for _, p := range paths {
		uncached := f.summary(t, p.cred, p.path+span)
		if again := f.summary(t, p.cred, p.path+span); !reflect.DeepEqual(again, uncached) {
			t.Errorf("%s: open range answered %+v, then %+v", p.path, uncached, again)
		}
		if uncached.Totals.Events == 0 {
			t.Fatalf("%s: no events in the fixture's summary", p.path)
		}
	}
	wantCounts(t, reader, 0, 0, 2*int64(len(paths)))

	clk.set(spanClosed)
	var first []api.Summary
	for _, p := range paths {
		miss := f.summary(t, p.cred, p.path+span)
		hit := f.summary(t, p.cred, p.path+span)
		if !reflect.DeepEqual(hit, miss) {
			t.Errorf("%s: cached answer %+v, computed %+v", p.path, hit, miss)
		}
		first = append(first, miss)
	}
	wantCounts(t, reader, int64(len(paths)), int64(len(paths)), 2*int64(len(paths)))

	// A late event for a closed day: the cached summaries keep their numbers until the TTL.
	f.lateEvent(t)
	clk.add(cacheTTL - time.Second)
	for i, p := range paths {
		if got := f.summary(t, p.cred, p.path+span); !reflect.DeepEqual(got, first[i]) {
			t.Errorf("%s within the TTL: %+v, want the cached %+v", p.path, got, first[i])
		}
	}
	clk.add(time.Second)
	for i, p := range paths {
		if got := f.summary(t, p.cred, p.path+span); got.Totals.Events != first[i].Totals.Events+1 {
			t.Errorf("%s after the TTL: %d events, want the late one too (%d)", p.path, got.Totals.Events, first[i].Totals.Events+1)
		}
	}
	n := int64(len(paths))
	wantCounts(t, reader, 2*n, 2*n, 2*n)
}

// TestSummaryCacheClosesDaysInTheDistrictsZone proves that a summary's last day is closed at its end in
// the district's time zone, the zone of the rollups' days: for a Chicago district, 2026-10-31 ends at
// 05:00 UTC on November 1 (CDT), so with a settle of 1 h the span is computed every time until 06:00 UTC
// and cached from then on.
func TestSummaryCacheClosesDaysInTheDistrictsZone(t *testing.T) {
	clk := &clock{t: spanClosed}
	f, reader := cachedFixture(t, 100, cacheTTL, clk, func(pool *pgxpool.Pool) api.Option {
		return api.WithTimeZones(timezones.New(pool), time.Minute)
	})
	if _, err := timezones.New(f.pool).Set(t.Context(), "d1", "America/Chicago"); err != nil {
		t.Fatal(err)
	}
	path := "/v1/district/summary" + span
	f.summary(t, "d1-district", path)
	clk.set(time.Date(2026, 11, 1, 5, 59, 0, 0, time.UTC))
	f.summary(t, "d1-district", path)
	wantCounts(t, reader, 0, 0, 2)
	clk.set(time.Date(2026, 11, 1, 6, 0, 0, 0, time.UTC))
	miss := f.summary(t, "d1-district", path)
	if hit := f.summary(t, "d1-district", path); !reflect.DeepEqual(hit, miss) {
		t.Errorf("cached answer %+v, computed %+v", hit, miss)
	}
	wantCounts(t, reader, 1, 1, 2)
}

// TestSummaryCacheRecomputesAfterAGenerationChange proves that a finished job (an erasure) and a rebuild
// of a district raise its data generation, after which its next summary is computed again (within
// QUERY_KEY_CACHE_TTL, the generation's own cache), while another district's entries stay cached.
func TestSummaryCacheRecomputesAfterAGenerationChange(t *testing.T) {
	clk := &clock{t: spanClosed}
	f, reader := cachedFixture(t, 100, cacheTTL, clk)
	const path = "/v1/district/summary" + span
	before := f.summary(t, "d1-district", path)
	f.summary(t, "d2-district", path)
	f.lateEvent(t) // stands for what the erasure or rebuild changed in ClickHouse

	store := jobs.New(f.pool)
	job, _, err := store.Start(t.Context(), jobs.Request{Kind: jobs.KindEraseStudent, TenantID: "d1", Subject: "someone", By: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Finish(t.Context(), job.ID, jobs.StatusDone, ""); err != nil {
		t.Fatal(err)
	}
	if got := f.summary(t, "d1-district", path); !reflect.DeepEqual(got, before) {
		t.Errorf("within the generation's TTL: %+v, want the cached %+v", got, before)
	}
	clk.add(generationTTL)
	after := f.summary(t, "d1-district", path)
	if after.Totals.Events != before.Totals.Events+1 {
		t.Errorf("after the erasure: %d events, want %d (recomputed)", after.Totals.Events, before.Totals.Events+1)
	}
	f.summary(t, "d2-district", path) // d2's generation did not change: still a hit
	wantCounts(t, reader, 2, 3, 0)

	// A ClickHouse rebuild (ctl rebuild --store clickhouse) raises the generation the same way.
	f.lateEvent(t)
	if err := store.BumpGeneration(t.Context(), "d1"); err != nil {
		t.Fatal(err)
	}
	clk.add(generationTTL)
	if got := f.summary(t, "d1-district", path); got.Totals.Events != after.Totals.Events+1 {
		t.Errorf("after the rebuild: %d events, want %d (recomputed)", got.Totals.Events, after.Totals.Events+1)
	}
	wantCounts(t, reader, 2, 4, 0)
}

// TestSummaryCacheKeepsAuthorization fills the cache with summaries a district admin may read, then asks
// for the same ones with credentials that may not read them: each is refused as without a cache, and
// the cache is never consulted for them. Another district asking the same paths gets its own numbers.
func TestSummaryCacheKeepsAuthorization(t *testing.T) {
	clk := &clock{t: spanClosed}
	f, reader := cachedFixture(t, 100, cacheTTL, clk)
	st := f.w.students["d1"]
	cached := []string{"/v1/district/summary", "/v1/schools/s2/summary", "/v1/classes/c2/summary", "/v1/classes/c3/summary",
		"/v1/students/" + st["c2"] + "/summary", "/v1/students/" + st["c3"] + "/summary"}
	d1 := map[string]api.Summary{}
	for _, p := range cached {
		f.summary(t, "d1-district", p+span)
		d1[p] = f.summary(t, "d1-district", p+span)
	}
	wantCounts(t, reader, int64(len(cached)), int64(len(cached)), 0)

	for _, c := range []struct{ cred, path string }{
		{"d1-school-s1", "/v1/district/summary"},
		{"d1-school-s1", "/v1/schools/s2/summary"},
		{"d1-school-s1", "/v1/classes/c3/summary"},
		{"d1-school-s1", "/v1/students/" + st["c3"] + "/summary"},
		{"d1-teacher-t1", "/v1/district/summary"},
		{"d1-teacher-t1", "/v1/classes/c2/summary"},
		{"d1-teacher-t1", "/v1/students/" + st["c2"] + "/summary"},
		{"d1-key-events", "/v1/district/summary"},
		{"d2-teacher-t1", "/v1/students/" + st["c2"] + "/summary"},
	} {
		if status := f.get(t, f.creds[c.cred], c.path+span, nil); status != 403 {
			t.Errorf("%s as %s with the entry cached: status %d, want 403", c.path, c.cred, status)
		}
	}
	if status := f.get(t, "", "/v1/district/summary"+span, nil); status != 401 {
		t.Errorf("district summary without a credential with the entry cached: status %d, want 401", status)
	}
	wantCounts(t, reader, int64(len(cached)), int64(len(cached)), 0) // refused before the cache

	// The other district's admin asks for the same paths: its own numbers, computed for it.
	for _, p := range cached[:4] {
		got := f.summary(t, "d2-district", p+span)
		if got.TenantID != "d2" || reflect.DeepEqual(got.Totals, d1[p].Totals) {
			t.Errorf("%s as d2's admin: tenant %s, totals equal to d1's: %v", p, got.TenantID, reflect.DeepEqual(got.Totals, d1[p].Totals))
		}
	}
	wantCounts(t, reader, int64(len(cached)), int64(len(cached))+4, 0)
}

// TestSummaryCacheDisabled proves that 0 entries or a TTL of 0 never cache: every closed-range summary is
// a bypass and a late event shows at once.
func TestSummaryCacheDisabled(t *testing.T) {
	for _, c := range []struct {
		name    string
		entries int
		ttl     time.Duration
	}{{"entries 0", 0, cacheTTL}, {"ttl 0", 100, 0}} {
		t.Run(c.name, func(t *testing.T) {
			clk := &clock{t: spanClosed}
			f, reader := cachedFixture(t, c.entries, c.ttl, clk)
			const path = "/v1/district/summary" + span
			before := f.summary(t, "d1-district", path)
			f.lateEvent(t)
			if got := f.summary(t, "d1-district", path); got.Totals.Events != before.Totals.Events+1 {
				t.Errorf("%d events, want %d: the late event at once", got.Totals.Events, before.Totals.Events+1)
			}
			wantCounts(t, reader, 0, 0, 2)
		})
	}
}

// TestBenchmarkRowsCachedForClosedRanges proves that the rows a benchmark reads across districts are
// read from ClickHouse every time while the range has an open day, once when it is closed, and again
// after any district's data generation rose; that each caller still gets its own value and band from
// the shared rows; and that every request, from the cache or not, is written to the audit log.
func TestBenchmarkRowsCachedForClosedRanges(t *testing.T) {
	clk := &clock{t: spanOpen}
	f, reader := cachedFixture(t, 100, cacheTTL, clk)
	f.attendanceDistricts(t, 3, "d3", "d4", "d5", "d6", "d7")
	const path = "/v1/benchmarks/attendance_rate" + span
	bench := func(cred string) api.Benchmark {
		t.Helper()
		var b api.Benchmark
		if code := f.get(t, f.creds[cred], path, &b); code != 200 {
			t.Fatalf("benchmark as %s: status %d", cred, code)
		}
		return b
	}
	wantBench := func(hit, miss, bypass int64) {
		t.Helper()
		want := map[string]int64{}
		for k, v := range map[string]int64{"hit": hit, "miss": miss, "bypass": bypass} {
			if v > 0 {
				want[k] = v
			}
		}
		if got := counts(t, reader, "query_benchmark_cache_requests"); !reflect.DeepEqual(got, want) {
			t.Errorf("benchmark cache requests = %v, want %v", got, want)
		}
	}

	d1Open, d2Open := bench("d1-district"), bench("d2-district")
	wantBench(0, 0, 2)
	// Benchmarks read every district's days, each in its own zone: a range is closed once its last day
	// is over in the latest zone (UTC-12), 2026-11-01 12:00 UTC, plus the settle.
	clk.set(spanClosed)
	bench("d1-district")
	wantBench(0, 0, 3)
	clk.set(time.Date(2026, 11, 1, 13, 0, 0, 0, time.UTC))
	if got := bench("d1-district"); !reflect.DeepEqual(got, d1Open) {
		t.Errorf("d1's benchmark computed and kept: %+v, want %+v", got, d1Open)
	}
	if got := bench("d2-district"); !reflect.DeepEqual(got, d2Open) {
		t.Errorf("d2's benchmark from the cache: %+v, want its own %+v", got, d2Open)
	}
	wantBench(1, 1, 3)

	// d3 gets one more present mark: it shows once some district's generation rose and the total was read again.
	insertEvents(t, f.conn, []event{{tenant: "d3", school: "s1", class: "c1", student: uuid.NewString(), typ: "attendance", status: "present", day: day0}})
	if got := bench("d1-district"); !reflect.DeepEqual(got, d1Open) {
		t.Errorf("before any generation rose: %+v, want the cached %+v", got, d1Open)
	}
	if err := jobs.New(f.pool).BumpGeneration(t.Context(), "d6"); err != nil {
		t.Fatal(err)
	}
	clk.add(generationTTL)
	if got := bench("d1-district"); reflect.DeepEqual(got.Bands, d1Open.Bands) {
		t.Errorf("after a generation rose: bands %+v, want them recomputed with d3's new mark", got.Bands)
	}
	wantBench(2, 2, 3)

	entries, err := f.audit.Entries(t.Context(), 1, 100)
	if err != nil {
		t.Fatal(err)
	}
	reads := 0
	for _, e := range entries {
		if e.Action == "benchmark.read" {
			reads++
		}
	}
	if reads != 7 {
		t.Errorf("%d benchmark reads in the audit log, want all 7 requests", reads)
	}
}
