package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/edtech-analytics/platform/libs/ttlcache"
)

// SummaryCacheConfig bounds the summary cache (docs/adr/0021).
type SummaryCacheConfig struct {
	// Entries is the most summaries held, least recently used evicted first; 0 disables the cache.
	Entries int
	// TTL is how long a summary is served after it was computed; 0 disables the cache. It bounds how
	// long events that arrive late for a closed day stay out of a cached summary.
	TTL time.Duration
	// Settle is how long after its end a day is closed (QUERY_QUALITY_SETTLE, libs/quality): only a range
	// whose last day is closed is cached. A summary's days are its district's local days (ADR 0024), so
	// its last day ends at midnight in the district's time zone.
	Settle time.Duration
	// GenerationTTL is how long a district's data generation is reused before it is read again from the
	// control store (QUERY_KEY_CACHE_TTL): it bounds how long a finished erasure or rebuild may leave
	// summaries computed before it visible.
	GenerationTTL time.Duration
}

// Validate reports configuration errors.
func (c SummaryCacheConfig) Validate() error {
	var errs []error
	if c.Entries < 0 {
		errs = append(errs, fmt.Errorf("entries %d: not negative", c.Entries))
	}
	if c.TTL < 0 || c.Settle < 0 || c.GenerationTTL < 0 {
		errs = append(errs, fmt.Errorf("ttl %v, settle %v, generation ttl %v: not negative", c.TTL, c.Settle, c.GenerationTTL))
	}
	return errors.Join(errs...)
}

// Generations reads a district's data generation, which every job that may remove or replace its
// analytics data raises, and the sum of all districts' (jobs.Store).
type Generations interface {
	Generation(ctx context.Context, tenantID string) (int64, error)
	TotalGeneration(ctx context.Context) (int64, error)
}

// generationDistricts is how many districts' generations are remembered.
const generationDistricts = 10_000

// benchmarkEntries bounds the cached benchmark rows: five metrics over 40 ranges, each about 50 KB at
// 1,500 districts.
const benchmarkEntries = 200

// totalGeneration is the key of the sum of every district's generation among the districts' own
// (tenant ids are never empty).
const totalGeneration = ""

// SummaryCache holds computed summaries (totals and days, before JSON) of ranges whose last day is
// closed. It is consulted only after the request was authorized, and its keys name what was read (the
// district, the level, the entity, the rows the query keeps, the range and the district's data
// generation), never who asked.
//
// It also holds the rows a benchmark reads across districts (one per district: its metric's numerator
// and denominator and its active students), keyed by the metric, the range and the sum of all
// districts' generations; who is live, who asked and what is released are decided on every request.
type SummaryCache struct {
	entries    *ttlcache.Cache[summaryKey, summaryValue] // nil: disabled
	benchmarks *ttlcache.Cache[benchmarkKey, []districtValue]
	gens       *ttlcache.Cache[string, int64]
	source     Generations
	settle     time.Duration
	now        func() time.Time
	log        *slog.Logger
	requests   metric.Int64Counter
	benchReqs  metric.Int64Counter
}

// benchmarkKey names the rows of one benchmark metric over one range.
type benchmarkKey struct {
	metric, from, to string
	generation       int64
}

// districtValue is one district's row of a benchmark: the metric's numerator and denominator over the
// range and the district's active students in it.
type districtValue struct {
	tenant   string
	num, den float64
	students uint64
}

// summaryKey names one summary's data. scope is the query's filter and its arguments (a school admin's
// class summary keeps only the rows of its schools), so two queries reading different rows never share
// an entry.
type summaryKey struct {
	tenant, level, id, scope, from, to string
	generation                         int64
}

// summaryValue is a computed summary; it is shared by every request it answers and never modified.
type summaryValue struct {
	totals Metrics
	days   []DayData
}

// Results of a summary cache lookup, the result attribute of query_summary_cache_requests_total.
const (
	cacheHit    = "hit"
	cacheMiss   = "miss"
	cacheBypass = "bypass" // not cacheable: an open day in the range, the cache disabled, or no generation
)

// NewSummaryCache returns a cache over gens, reading the time from now, and registers on mp the counter
// query_summary_cache_requests_total{result="hit|miss|bypass"} (exported with the _total suffix).
func NewSummaryCache(cfg SummaryCacheConfig, gens Generations, mp metric.MeterProvider, now func() time.Time, log *slog.Logger) (*SummaryCache, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("summary cache: %w", err)
	}
	requests, err := mp.Meter("query").Int64Counter("query_summary_cache_requests",
		metric.WithDescription("summary requests by what the summary cache did: hit, miss (computed and kept) or bypass (not cacheable)"))
	if err != nil {
		return nil, fmt.Errorf("creating metric query_summary_cache_requests: %w", err)
	}
	benchReqs, err := mp.Meter("query").Int64Counter("query_benchmark_cache_requests",
		metric.WithDescription("benchmark requests by what the cache of benchmark rows did: hit, miss (computed and kept) or bypass (not cacheable)"))
	if err != nil {
		return nil, fmt.Errorf("creating metric query_benchmark_cache_requests: %w", err)
	}
	c := &SummaryCache{source: gens, settle: cfg.Settle, now: now, log: log, requests: requests, benchReqs: benchReqs}
	if cfg.Entries > 0 && cfg.TTL > 0 {
		c.entries = ttlcache.New[summaryKey, summaryValue](cfg.Entries, cfg.TTL)
		c.entries.SetClock(now)
		c.benchmarks = ttlcache.New[benchmarkKey, []districtValue](min(cfg.Entries, benchmarkEntries), cfg.TTL)
		c.benchmarks.SetClock(now)
		c.gens = ttlcache.New[string, int64](generationDistricts, cfg.GenerationTTL)
		c.gens.SetClock(now)
	}
	return c, nil
}

// latestZone is the last time zone whose day ends (UTC-12): a day of every district is over once it is
// over there.
var latestZone = time.FixedZone("UTC-12", -12*60*60)

// closed reports whether every day up to and including to (a date) is closed in loc: its end, midnight
// after it in loc, lies settle or more in the past. A nil loc (the district's zone unknown) is never
// closed.
func (c *SummaryCache) closed(to time.Time, loc *time.Location) bool {
	if loc == nil {
		return false
	}
	end := time.Date(to.Year(), to.Month(), to.Day()+1, 0, 0, 0, 0, loc)
	return !c.now().Add(-c.settle).Before(end)
}

// get returns the summary k names, from the cache or from load; to is the range's last day, a day of
// the district's zone loc (nil when unknown: not cached). A nil cache always loads.
func (c *SummaryCache) get(ctx context.Context, k summaryKey, to time.Time, loc *time.Location, load func() (summaryValue, error)) (summaryValue, error) {
	if c == nil {
		return load()
	}
	if c.entries == nil || !c.closed(to, loc) {
		c.count(ctx, cacheBypass)
		return load()
	}
	gen, err := c.gens.Get(k.tenant, func() (int64, error) { return c.source.Generation(ctx, k.tenant) })
	if err != nil { // without the generation an entry could outlive an erasure: compute, keep nothing
		c.log.WarnContext(ctx, "reading the data generation; summary not cached", "tenant_id", k.tenant, "err", err)
		c.count(ctx, cacheBypass)
		return load()
	}
	k.generation = gen
	if v, ok := c.entries.Peek(k); ok {
		c.count(ctx, cacheHit)
		return v, nil
	}
	c.count(ctx, cacheMiss)
	return c.entries.Get(k, load) // concurrent misses of one key make one query
}

// benchmark returns the benchmark rows k names, from the cache or from load; to is the range's last day.
// A nil cache always loads.
func (c *SummaryCache) benchmark(ctx context.Context, k benchmarkKey, to time.Time, load func() ([]districtValue, error)) ([]districtValue, error) {
	if c == nil {
		return load()
	}
	if c.benchmarks == nil || !c.closed(to, latestZone) { // districts' days end in their zones
		c.benchReqs.Add(ctx, 1, metric.WithAttributes(attribute.String("result", cacheBypass)))
		return load()
	}
	gen, err := c.gens.Get(totalGeneration, func() (int64, error) { return c.source.TotalGeneration(ctx) })
	if err != nil {
		c.log.WarnContext(ctx, "reading the total data generation; benchmark not cached", "err", err)
		c.benchReqs.Add(ctx, 1, metric.WithAttributes(attribute.String("result", cacheBypass)))
		return load()
	}
	k.generation = gen
	if v, ok := c.benchmarks.Peek(k); ok {
		c.benchReqs.Add(ctx, 1, metric.WithAttributes(attribute.String("result", cacheHit)))
		return v, nil
	}
	c.benchReqs.Add(ctx, 1, metric.WithAttributes(attribute.String("result", cacheMiss)))
	return c.benchmarks.Get(k, load)
}

func (c *SummaryCache) count(ctx context.Context, result string) {
	c.requests.Add(ctx, 1, metric.WithAttributes(attribute.String("result", result)))
}
