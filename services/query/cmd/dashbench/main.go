// Command dashbench measures the dashboard API's latency over a database that benchload filled:
//
//	go run ./services/aggregator/cmd/benchload -events 50000000 -districts 1500
//	go run ./services/query/cmd/dashbench -requests 1000 -concurrency 4
//
// It registers a sample of the generated districts in a fresh PostgreSQL database (tenants, a roster
// with a teacher, a class and its students, and a district admin, a school admin and a teacher token
// each), serves the API in-process over HTTP on loopback, and sends each endpoint requests for random
// sample districts and ranges, reporting p50/p95/p99. ClickHouse and PostgreSQL come from
// CLICKHOUSE_ADDR and DATABASE_URL, or the repository's private servers (libs/testenv/devenv).
//
// -ranges random (the default) asks for 30-day ranges starting on a random day of September 2025, almost
// never the same twice; -ranges dashboard asks, as dashboards mostly do, for one of four fixed ranges at
// the end of the data set (benchload's 60 days from 2025-09-01): the last 7 days, the 7 before them, the
// last 30 days and the 30 before them. -summary-cache-entries N (0: off, the default) serves the summaries
// through the service's summary cache (ADR 0021), all of whose ranges are closed days, and adds each
// endpoint's hit rate (hits / summary requests) to the report.
//
// -suite analytics measures the product analytics endpoints instead (funnels, retention, activation,
// ADR 0024), with the sample districts in America/Chicago; -ranges 90d asks for 90-day ranges that hold
// the whole data set (they start on a random day of August 2025):
//
//	go run ./services/query/cmd/dashbench -suite analytics -ranges 90d
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"github.com/edtech-analytics/platform/libs/keyring"
	"github.com/edtech-analytics/platform/libs/testenv/loadgen"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/signal"
	"slices"
	"sync"
	"time"

	"github.com/edtech-analytics/platform/libs/chutil"
	"github.com/edtech-analytics/platform/libs/pgutil"
	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/edtech-analytics/platform/libs/tenancy/audit"
	"github.com/edtech-analytics/platform/libs/tenancy/credentials"
	"github.com/edtech-analytics/platform/libs/tenancy/fleet"
	"github.com/edtech-analytics/platform/libs/tenancy/jobs"
	"github.com/edtech-analytics/platform/libs/tenancy/tenants"
	"github.com/edtech-analytics/platform/libs/tenancy/timezones"
	"github.com/edtech-analytics/platform/libs/testenv/devenv"
	"github.com/edtech-analytics/platform/services/query/internal/api"
	"github.com/edtech-analytics/platform/services/query/internal/auth"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "dashbench:", err)
		os.Exit(1)
	}
}

// district is a sample district with its credentials and the ids its scopes cover.
type district struct {
	id                      string
	admin, school, teacher  string // tokens
	schoolID, classID, stud string
}

func run(ctx context.Context, args []string) (err error) {
	fs := flag.NewFlagSet("dashbench", flag.ContinueOnError)
	database := fs.String("database", "bench", "ClickHouse database benchload filled")
	districts := fs.Int("districts", 1500, "districts benchload generated (bench_0 ...)")
	sample := fs.Int("sample", 20, "districts to register and query")
	requests := fs.Int("requests", 1000, "requests per endpoint")
	concurrency := fs.Int("concurrency", 4, "requests in flight")
	ttl := fs.Duration("cache-ttl", 5*time.Second, "the service's credential and roster cache TTL (and the data generation's)")
	ranges := fs.String("ranges", "random", "random: 30-day ranges starting on a random September day; dashboard: one of 4 fixed closed ranges (the last 7 and 30 days and the ones before them)")
	cacheEntries := fs.Int("summary-cache-entries", 0, "entries of the summary cache (QUERY_SUMMARY_CACHE_ENTRIES; 0: no cache)")
	cacheTTL := fs.Duration("summary-cache-ttl", 10*time.Minute, "TTL of the summary cache (QUERY_SUMMARY_CACHE_TTL)")
	suite := fs.String("suite", "summaries", "summaries: the dashboard summaries and a benchmark; analytics: funnels, retention and activation")
	if err := fs.Parse(args); err != nil {
		return err
	}
	pick, ok := rangePickers[*ranges]
	if !ok {
		return fmt.Errorf("-ranges: %q is not random, dashboard or 90d", *ranges)
	}
	endpoints, ok := suites[*suite]
	if !ok {
		return fmt.Errorf("-suite: %q is not summaries or analytics", *suite)
	}
	chAddr, err := devenv.ClickHouse(ctx)
	if err != nil {
		return err
	}
	ch, err := chutil.Open(ctx, chutil.Options{Addr: chAddr, Database: *database, MaxOpenConns: *concurrency + 2, Settings: api.ClickHouseSettings})
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, ch.Close()) }()
	pgServer, err := devenv.Postgres(ctx)
	if err != nil {
		return err
	}
	pool, sample2, err := setUp(ctx, pgServer, *districts, *sample)
	if err != nil {
		return err
	}
	defer pool.Close()
	districtFleet := fleet.New(pool, os.Getenv)
	defer districtFleet.Close()

	master, err := keyring.ParseLocalKeys(keyring.NewLocalKeyLine("dashbench"))
	if err != nil {
		return err
	}
	reader := sdkmetric.NewManualReader()
	summaries, err := api.NewSummaryCache(api.SummaryCacheConfig{Entries: *cacheEntries, TTL: *cacheTTL, Settle: time.Hour, GenerationTTL: *ttl},
		jobs.New(pool), sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)), time.Now, slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	h := api.New(slog.New(slog.DiscardHandler), auth.NewResolver(credentials.New(pool), districtFleet, *ttl),
		audit.New(pool, keyring.New(pool, master, keyring.Options{})),
		tenants.New(districtFleet), ch, api.Config{}, api.WithSummaryCache(summaries), api.WithTimeZones(timezones.New(pool), *ttl))
	srv := httptest.NewServer(h.Handler())
	defer srv.Close()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: *concurrency}}

	fmt.Printf("%d requests per endpoint, %d in flight, %d sample districts of %d, %s ranges, summary cache %d entries, %s\n\n",
		*requests, *concurrency, len(sample2), *districts, *ranges, *cacheEntries, *suite)
	fmt.Printf("%-52s %8s %8s %8s %8s %9s %9s\n", "endpoint", "p50 ms", "p95 ms", "p99 ms", "max ms", "req/s", "hit rate")
	for _, ep := range endpoints {
		before, err := cacheCounts(ctx, reader)
		if err != nil {
			return err
		}
		lat, elapsed, err := fire(ctx, client, srv.URL, *requests, *concurrency, func(rng *rand.Rand) (string, string) {
			from, to := pick(rng)
			return ep.url(sample2[rng.IntN(len(sample2))], from.Format(time.DateOnly), to.Format(time.DateOnly))
		})
		if err != nil {
			return fmt.Errorf("%s: %w", ep.name, err)
		}
		after, err := cacheCounts(ctx, reader)
		if err != nil {
			return err
		}
		hitRate := "-"
		if n := after.total() - before.total(); n > 0 {
			hitRate = fmt.Sprintf("%.1f%%", 100*float64(after.hit-before.hit)/float64(n))
		}
		slices.Sort(lat)
		p := func(q float64) float64 { return float64(lat[int(q*float64(len(lat)-1))].Microseconds()) / 1000 }
		fmt.Printf("%-52s %8.1f %8.1f %8.1f %8.1f %9.0f %9s\n", ep.name, p(0.5), p(0.95), p(0.99), p(1), float64(len(lat))/elapsed.Seconds(), hitRate)
	}
	return nil
}

// endpoint names a request of one endpoint for a district and range.
type endpoint struct {
	name string
	url  func(d district, from, to string) (path, token string)
}

// suites are the endpoints -suite measures.
var suites = map[string][]endpoint{
	"summaries": {
		{"district summary (district admin)", func(d district, f, t string) (string, string) {
			return "/v1/district/summary?from=" + f + "&to=" + t, d.admin
		}},
		{"school summary (school admin)", func(d district, f, t string) (string, string) {
			return "/v1/schools/" + d.schoolID + "/summary?from=" + f + "&to=" + t, d.school
		}},
		{"class summary (teacher)", func(d district, f, t string) (string, string) {
			return "/v1/classes/" + d.classID + "/summary?from=" + f + "&to=" + t, d.teacher
		}},
		{"student summary (teacher)", func(d district, f, t string) (string, string) {
			return "/v1/students/" + d.stud + "/summary?from=" + f + "&to=" + t, d.teacher
		}},
		{"benchmark attendance_rate (district admin, audited)", func(d district, f, t string) (string, string) {
			return "/v1/benchmarks/attendance_rate?from=" + f + "&to=" + t, d.admin
		}},
	},
	"analytics": {
		{"funnel 3 steps, 7d (district admin)", func(d district, f, t string) (string, string) {
			return "/v1/funnels?steps=login,content_view,submission&window=7d&from=" + f + "&to=" + t, d.admin
		}},
		{"funnel 3 steps, 7d (teacher, class)", func(d district, f, t string) (string, string) {
			return "/v1/funnels?steps=login,content_view,submission&window=7d&class_id=" + d.classID + "&from=" + f + "&to=" + t, d.teacher
		}},
		{"retention 4 weeks (district admin)", func(d district, f, t string) (string, string) {
			return "/v1/retention?weeks=4&from=" + f + "&to=" + t, d.admin
		}},
		{"retention 4 weeks (school admin, school)", func(d district, f, t string) (string, string) {
			return "/v1/retention?weeks=4&school_id=" + d.schoolID + "&from=" + f + "&to=" + t, d.school
		}},
		{"activation 14 days (district admin)", func(d district, f, t string) (string, string) {
			return "/v1/activation?days=14&from=" + f + "&to=" + t, d.admin
		}},
	},
}

// rangePickers choose a request's range (-ranges).
var rangePickers = map[string]func(rng *rand.Rand) (from, to time.Time){
	"random": func(rng *rand.Rand) (time.Time, time.Time) {
		from := time.Date(2025, 9, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, rng.IntN(30))
		return from, from.AddDate(0, 0, 29)
	},
	"dashboard": func(rng *rand.Rand) (time.Time, time.Time) {
		end := time.Date(2025, 10, 30, 0, 0, 0, 0, time.UTC) // benchload's last day
		days := []int{7, 30}[rng.IntN(2)]
		to := end.AddDate(0, 0, -days*rng.IntN(2)) // these days, or the same length before them
		return to.AddDate(0, 0, 1-days), to
	},
	"90d": func(rng *rand.Rand) (time.Time, time.Time) {
		from := time.Date(2025, 8, 2, 0, 0, 0, 0, time.UTC).AddDate(0, 0, rng.IntN(30))
		return from, from.AddDate(0, 0, 89)
	},
}

// counts are the summary cache's lookups so far.
type counts struct{ hit, miss, bypass int64 }

func (c counts) total() int64 { return c.hit + c.miss + c.bypass }

func cacheCounts(ctx context.Context, reader *sdkmetric.ManualReader) (counts, error) {
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		return counts{}, fmt.Errorf("reading the cache metrics: %w", err)
	}
	var c counts
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			sum, ok := m.Data.(metricdata.Sum[int64])
			if m.Name != "query_summary_cache_requests" || !ok {
				continue
			}
			for _, dp := range sum.DataPoints {
				switch v, _ := dp.Attributes.Value("result"); v.AsString() {
				case "hit":
					c.hit = dp.Value
				case "miss":
					c.miss = dp.Value
				case "bypass":
					c.bypass = dp.Value
				}
			}
		}
	}
	return c, nil
}

// fire sends n requests, concurrency at a time, after a warm-up of one request per sample path, and
// returns every latency. Any answer but 200 is an error.
func fire(ctx context.Context, client *http.Client, base string, n, concurrency int, next func(*rand.Rand) (string, string)) ([]time.Duration, time.Duration, error) {
	var (
		mu   sync.Mutex
		lat  []time.Duration
		ferr error
		wg   sync.WaitGroup
	)
	jobs := make(chan struct{})
	start := time.Now()
	for w := range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 42))
			for range jobs {
				path, token := next(rng)
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
				req.Header.Set("Authorization", "Bearer "+token)
				t := time.Now()
				resp, err := client.Do(req)
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					_ = resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						err = fmt.Errorf("%s answered %d", path, resp.StatusCode)
					}
				}
				d := time.Since(t)
				mu.Lock()
				if err != nil && ferr == nil {
					ferr = err
				}
				lat = append(lat, d)
				mu.Unlock()
			}
		}()
	}
	for range n {
		jobs <- struct{}{}
	}
	close(jobs)
	wg.Wait()
	return lat, time.Since(start), ferr
}

// setUp creates a fresh control database with sample districts: each a tenant with a roster (teacher
// t1 teaches class c3 of school s3, with the students benchload put in c3) and three tokens.
func setUp(ctx context.Context, pgServer string, districts, sample int) (*pgxpool.Pool, []district, error) {
	admin, err := pgutil.Connect(ctx, pgServer)
	if err != nil {
		return nil, nil, err
	}
	for _, q := range []string{"DROP DATABASE IF EXISTS dashbench WITH (FORCE)", "CREATE DATABASE dashbench"} {
		if _, err := admin.Exec(ctx, q); err != nil {
			admin.Close()
			return nil, nil, fmt.Errorf("%s: %w", q, err)
		}
	}
	cfg := admin.Config().ConnConfig
	admin.Close()
	url := fmt.Sprintf("postgres://%s@%s:%d/dashbench?sslmode=disable", cfg.User, cfg.Host, cfg.Port)
	pool, err := pgutil.Connect(ctx, url)
	if err != nil {
		return nil, nil, err
	}
	if err := tenancy.Migrate(ctx, pool); err != nil {
		return nil, nil, err
	}
	store, keys := tenants.New(fleet.New(pool, os.Getenv)), credentials.New(pool)
	rng := rand.New(rand.NewPCG(7, 7))
	var out []district
	for _, n := range rng.Perm(districts)[:sample] {
		d := district{id: fmt.Sprintf("bench_%d", n), schoolID: "s3", classID: "c3"}
		if _, err := store.Create(ctx, d.id, "Bench "+d.id); err != nil {
			return nil, nil, err
		}
		schema := pgx.Identifier{"district_" + d.id}.Sanitize()
		batch := &pgx.Batch{}
		batch.Queue(`INSERT INTO ` + schema + `.roster_classes (sourced_id, status, date_last_modified, title, class_type, course_sourced_id, school_sourced_id)
			VALUES ('c3', 'active', now(), 'c3', 'scheduled', 'course', 's3')`)
		batch.Queue(`INSERT INTO ` + schema + `.roster_enrollments (sourced_id, status, date_last_modified, class_sourced_id, school_sourced_id, user_sourced_id, role)
			VALUES ('e-t1', 'active', now(), 'c3', 's3', 't1', 'teacher')`)
		for stu := 3; stu < 100; stu += 20 { // benchload puts student stu in class stu % 20
			internal := loadgen.StudentID(uint64(n*100 + stu)) // as benchload writes its events
			user := fmt.Sprintf("u%d", stu)
			batch.Queue(`INSERT INTO `+schema+`.roster_users (sourced_id, status, date_last_modified, enabled, given_name, family_name, internal_id)
				VALUES ($1, 'active', now(), true, 'S', 'T', $2)`, user, internal)
			batch.Queue(`INSERT INTO `+schema+`.roster_enrollments (sourced_id, status, date_last_modified, class_sourced_id, school_sourced_id, user_sourced_id, role, begin_date)
				VALUES ($1, 'active', now(), 'c3', 's3', $2, 'student', $3::date)`, "e-"+user, user, fmt.Sprintf("2025-09-%02d", 1+stu%28))
			d.stud = internal
		}
		if err := pool.SendBatch(ctx, batch).Close(); err != nil {
			return nil, nil, fmt.Errorf("writing the roster of %s: %w", d.id, err)
		}
		if _, err := timezones.New(pool).Set(ctx, d.id, "America/Chicago"); err != nil {
			return nil, nil, err
		}
		for _, tok := range []struct {
			dst *string
			t   credentials.DashboardToken
		}{
			{&d.admin, credentials.DashboardToken{TenantID: d.id, Role: credentials.RoleDistrictAdmin}},
			{&d.school, credentials.DashboardToken{TenantID: d.id, Role: credentials.RoleSchoolAdmin, SchoolIDs: []string{"s3"}}},
			{&d.teacher, credentials.DashboardToken{TenantID: d.id, Role: credentials.RoleTeacher, TeacherID: "t1"}},
		} {
			if *tok.dst, _, err = keys.CreateDashboardToken(ctx, tok.t); err != nil {
				return nil, nil, err
			}
		}
		out = append(out, d)
	}
	return pool, out, nil
}
