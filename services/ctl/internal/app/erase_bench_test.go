package app

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// BenchmarkEraseTenant measures ctl erase tenant of a district with -export.events events (1,000,000)
// in ClickHouse, its rollups filled by the aggregator's views, beside a second district of a tenth of
// that which must stay whole, on the test servers. It reports seconds per erasure; every iteration loads
// the district again, untimed. Run with -benchtime=1x:
//
//	go test ./internal/app/ -run '^$' -bench BenchmarkEraseTenant -benchtime 1x
func BenchmarkEraseTenant(b *testing.B) {
	n := *exportEvents
	_, url := migratedDB(b)
	conn, database, addr := aggregatorCH(b)
	kcfg := platformTopics(b)
	ctx := b.Context()
	for _, id := range []string{"bench", "other"} {
		mustCtl(b, url, "tenant", "create", "--id", id, "--name", id)
	}
	other := strings.Replace(fmt.Sprintf(benchEventsSQL, enrichedTopic, n/10), "'bench' AS tenant_id", "'other' AS tenant_id", 1)
	if err := conn.Exec(ctx, other); err != nil {
		b.Fatal(err)
	}
	args := append([]string{"erase", "tenant", "--tenant", "bench", "--confirm", "bench", "--enricher-wait", "0",
		"--clickhouse.addr", addr, "--clickhouse.database", database}, kafkaArgs(kcfg)...)
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		start := time.Now()
		if err := conn.Exec(ctx, fmt.Sprintf(benchEventsSQL, enrichedTopic, n)); err != nil {
			b.Fatal(err)
		}
		b.Logf("loaded %d events and their rollups in %s", n, time.Since(start).Round(time.Millisecond))
		b.StartTimer()
		mustCtl(b, url, args...)
	}
	b.StopTimer()
	var left, kept uint64
	if err := conn.QueryRow(ctx, "SELECT countIf(tenant_id = 'bench'), countIf(tenant_id = 'other') FROM events").Scan(&left, &kept); err != nil ||
		left != 0 || kept != uint64(n/10) {
		b.Fatalf("events of the erased district left: %d; of the other: %d of %d (%v)", left, kept, n/10, err)
	}
	b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/erasure")
}
