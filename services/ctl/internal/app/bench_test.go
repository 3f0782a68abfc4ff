package app

import (
	"fmt"
	"github.com/edtech-analytics/platform/libs/keyring"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edtech-analytics/platform/libs/pgutil/pgtest"
	"github.com/edtech-analytics/platform/libs/tenancy"
)

// benchInt reads a benchmark size from the environment.
func benchInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

// BenchmarkProvisionDistricts measures provisioning BENCH_DISTRICTS (1,500) district schemas with ctl
// migrate (--parallel BENCH_PARALLEL, 4): the tenants are registered first without schemas, as after
// a bulk import, then one migrate creates every schema and applies the template. A second migrate,
// with every schema current, measures the resumable skip. Run with -benchtime=1x.
func BenchmarkProvisionDistricts(b *testing.B) {
	n, parallel := benchInt("BENCH_DISTRICTS", 1500), benchInt("BENCH_PARALLEL", 4)
	for range b.N {
		b.StopTimer()
		pool, url := pgtest.New(b)
		if err := tenancy.Migrate(b.Context(), pool); err != nil {
			b.Fatal(err)
		}
		ids := make([]string, n)
		for i := range ids {
			ids[i] = fmt.Sprintf("d%04d", i)
		}
		if _, err := pool.Exec(b.Context(), `INSERT INTO control.tenants (id, name, pseudonym_key)
			SELECT id, id, decode(repeat('00', 32), 'hex') FROM unnest($1::text[]) AS id`, ids); err != nil {
			b.Fatal(err)
		}
		env := Env{Stdout: &strings.Builder{}, Stderr: &strings.Builder{}, Getenv: func(k string) string {
			switch k {
			case EnvDatabaseURL:
				return url
			case keyring.EnvMasterKeys:
				return testMasterKeys
			}
			return ""
		}}
		b.StartTimer()
		start := time.Now()
		if err := Run(b.Context(), []string{"migrate", "--parallel", strconv.Itoa(parallel)}, env); err != nil {
			b.Fatal(err)
		}
		provision := time.Since(start)
		start = time.Now()
		if err := Run(b.Context(), []string{"migrate"}, env); err != nil {
			b.Fatal(err)
		}
		skip := time.Since(start)
		b.StopTimer()
		stale, err := tenancy.StaleDistricts(b.Context(), pool, ids)
		if err != nil || len(stale) != 0 {
			b.Fatalf("%d districts not migrated (%v)", len(stale), err)
		}
		b.ReportMetric(provision.Seconds(), "s-provision")
		b.ReportMetric(float64(provision.Milliseconds())/float64(n), "ms/district")
		b.ReportMetric(skip.Seconds(), "s-rerun")
	}
}
