package app

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/edtech-analytics/platform/libs/tenancy/fleet"
	"github.com/edtech-analytics/platform/libs/tenancy/tenants"
)

// District migration outcomes.
const (
	migrateUpToDate = "up_to_date"
	migrateDone     = "migrated"
	migrateFailed   = "failed"
)

// districtResult is the outcome of migrating one district schema.
type districtResult struct {
	Tenant   string `json:"tenant"`
	Instance string `json:"instance"`
	Status   string `json:"status"`
	Error    string `json:"error,omitempty"`
}

// migrator migrates the district schemas of a fleet, reporting progress to out.
type migrator struct {
	fleet    *fleet.Fleet
	tenants  *tenants.Store
	parallel int
	out      func(format string, args ...any)

	mu    sync.Mutex
	done  int // districts finished, of total
	total int
}

// runMigrate migrates the control schema, then every district schema on every instance: instances at
// once, up to --parallel districts at once on each. Up-to-date schemas are found with two queries per
// 500 districts and skipped, so a run after an interruption resumes where it stopped. A district or
// instance that fails is reported and the others go on.
func runMigrate(ctx context.Context, e Env, args []string) error {
	fs, c := newFlags(e, "migrate", "[--parallel N]")
	parallel := fs.Int("parallel", 4, "district schemas migrated at once on each instance")
	if err := parse(fs, c, args); err != nil {
		return err
	}
	if *parallel < 1 {
		return usagef("--parallel: must be at least 1, got %d", *parallel)
	}
	pool, err := connect(ctx, e, c)
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := tenancy.Migrate(ctx, pool); err != nil {
		return err
	}
	stderr := &errWriter{w: e.Stderr} // progress: a failed write is reported at the end, the migration goes on
	stderr.printf("control schema: up to date\n")
	fl := fleet.New(pool, e.Getenv)
	defer fl.Close()
	districts := tenants.New(fl)
	live, err := districts.Tenants(ctx)
	if err != nil {
		return err
	}
	placed, err := fl.Placements(ctx)
	if err != nil {
		return err
	}
	instances, err := fl.Instances(ctx)
	if err != nil {
		return err
	}
	byInstance := map[string][]string{}
	for _, t := range live {
		byInstance[placed[t.ID]] = append(byInstance[placed[t.ID]], t.ID)
	}

	m := &migrator{fleet: fl, tenants: districts, parallel: *parallel, total: len(live), out: stderr.printf}
	var (
		wg      sync.WaitGroup
		resMu   sync.Mutex
		results []districtResult
	)
	for _, in := range instances {
		wg.Go(func() {
			r := m.instance(ctx, in.Name, byInstance[in.Name])
			resMu.Lock()
			results = append(results, r...)
			resMu.Unlock()
		})
	}
	wg.Wait()
	slices.SortFunc(results, func(a, b districtResult) int { return strings.Compare(a.Tenant, b.Tenant) })

	var failed []string
	counts := map[string]int{}
	for _, r := range results {
		counts[r.Status]++
		if r.Status == migrateFailed {
			failed = append(failed, r.Tenant)
		}
	}
	if c.output == "json" {
		if err := writeJSON(e.Stdout, struct {
			Control   string           `json:"control"`
			Districts []districtResult `json:"districts"`
			UpToDate  int              `json:"up_to_date"`
			Migrated  int              `json:"migrated"`
			Failed    int              `json:"failed"`
		}{"ok", results, counts[migrateUpToDate], counts[migrateDone], len(failed)}); err != nil {
			return err
		}
	} else {
		if _, err := fmt.Fprintf(e.Stdout, "control schema and %d of %d district schemas up to date (%d migrated now, %d already)\n",
			len(results)-len(failed), len(results), counts[migrateDone], counts[migrateUpToDate]); err != nil {
			return err
		}
	}
	if len(failed) > 0 {
		return errors.Join(fmt.Errorf("migrating district schemas: %d of %d failed: %s", len(failed), len(results),
			strings.Join(failed, ", ")), stderr.Err())
	}
	return stderr.Err()
}

// instance migrates the given districts of one instance: its own control schema first (for the offsets
// kept there), then the districts that are not up to date, parallel at most at once. When the instance
// cannot be reached, every district on it fails.
func (m *migrator) instance(ctx context.Context, name string, ids []string) []districtResult {
	results := make([]districtResult, len(ids))
	for i, id := range ids {
		results[i] = districtResult{Tenant: id, Instance: name, Status: migrateUpToDate}
	}
	stale, err := m.stale(ctx, name, ids)
	if err != nil {
		for i := range results {
			results[i].Status, results[i].Error = migrateFailed, err.Error()
		}
		m.progress(len(ids))
		m.out("instance %s: FAILED, %d districts not migrated: %v\n", name, len(ids), err)
		return results
	}
	m.progress(len(ids) - len(stale))
	m.out("instance %s: %d districts, %d up to date, %d to migrate\n", name, len(ids), len(ids)-len(stale), len(stale))

	index := map[string]int{}
	for i, id := range ids {
		index[id] = i
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, m.parallel)
	for _, id := range stale {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			r := &results[index[id]]
			r.Status = migrateDone
			status := "ok"
			if err := m.tenants.EnsureDistrictSchema(ctx, id); err != nil {
				r.Status, r.Error = migrateFailed, err.Error()
				status = "FAILED: " + err.Error()
			}
			n := m.progress(1)
			m.out("[%d/%d] district %s (instance %s): %s\n", n, m.total, id, name, status)
		})
	}
	wg.Wait()
	return results
}

// stale connects to the instance, migrates its control schema unless it is main (already done) and
// returns the districts whose schemas lack a migration.
func (m *migrator) stale(ctx context.Context, name string, ids []string) ([]string, error) {
	pool, err := m.fleet.Pool(ctx, name)
	if err != nil {
		return nil, err
	}
	if name != fleet.MainInstance {
		if err := tenancy.Migrate(ctx, pool); err != nil {
			return nil, err
		}
	}
	if len(ids) == 0 {
		return nil, nil
	}
	return tenancy.StaleDistricts(ctx, pool, ids)
}

// progress counts n more districts done and returns the count so far.
func (m *migrator) progress(n int) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.done += n
	return m.done
}
