package app

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/edtech-analytics/platform/libs/tenancy"
)

// districtResult is the outcome of migrating one district schema.
type districtResult struct {
	Tenant string `json:"tenant"`
	Error  string `json:"error,omitempty"`
}

func runMigrate(ctx context.Context, e Env, args []string) error {
	fs, c := newFlags(e, "migrate", "[--parallel N]")
	parallel := fs.Int("parallel", 4, "district schemas migrated at once")
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
	fmt.Fprintln(e.Stderr, "control schema: up to date")
	store := tenancy.NewStore(pool)
	tenants, err := store.Tenants(ctx)
	if err != nil {
		return err
	}

	// Every district is attempted; a failure is reported and the others go on.
	results := make([]districtResult, len(tenants))
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex // guards done and writes to Stderr
		done int
		sem  = make(chan struct{}, *parallel)
	)
	for i, t := range tenants {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			results[i] = districtResult{Tenant: t.ID}
			status := "ok"
			if err := store.EnsureDistrictSchema(ctx, t.ID); err != nil {
				results[i].Error = err.Error()
				status = "FAILED: " + err.Error()
			}
			mu.Lock()
			defer mu.Unlock()
			done++
			fmt.Fprintf(e.Stderr, "[%d/%d] district %s: %s\n", done, len(tenants), t.ID, status)
		})
	}
	wg.Wait()
	var failed []string
	for _, r := range results {
		if r.Error != "" {
			failed = append(failed, r.Tenant)
		}
	}

	if c.output == "json" {
		if err := writeJSON(e.Stdout, struct {
			Control   string           `json:"control"`
			Districts []districtResult `json:"districts"`
			Failed    int              `json:"failed"`
		}{"ok", results, len(failed)}); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(e.Stdout, "migrated control schema and %d of %d district schemas\n",
			len(tenants)-len(failed), len(tenants))
	}
	if len(failed) > 0 {
		return fmt.Errorf("migrating district schemas: %d of %d failed: %s", len(failed), len(tenants),
			strings.Join(failed, ", "))
	}
	return nil
}
