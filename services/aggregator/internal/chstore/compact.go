package chstore

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/edtech-analytics/platform/libs/chutil"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
)

// Rollups are the tables the dashboard API and analysts read, all partitioned by month of day. Compact
// keeps each month of them to one part.
var Rollups = []string{"metrics_daily", "metrics_student_daily", "school_daily", "attendance_daily"}

// CompactConfig says when a month of a rollup is merged into one part.
type CompactConfig struct {
	// Interval is the time between rounds (with up to a tenth of jitter, so that several aggregator
	// instances spread out); 0 turns compaction off.
	Interval time.Duration
	// OpenMinParts is how many parts the current month's partition may reach before it is merged too; 0
	// leaves the current month to ClickHouse's background merges. A closed month is merged once it has a
	// second part (late events).
	OpenMinParts int
}

// Merged is one partition a compaction round merged.
type Merged struct {
	Table     string
	Partition string
	Parts     int // before the merge
	Took      time.Duration
}

// Why: a rollup row of an AggregatingMergeTree is only final once every part that holds its key has been
// merged, so a query reads one granule per part and merges the aggregate states of all of them. Background
// merges leave a month in several parts of similar size for good (they pick merges by size ratio), which
// made a district summary read and merge 10 granules of uniqExact and quantile states instead of 2 (26-30
// ms in ClickHouse instead of 15-17, BENCHMARKS.md "Dashboard API"). OPTIMIZE ... FINAL once a month is
// closed bounds that; it rewrites one month of one rollup at a time (about 120 MiB at 1,500 districts).

// Compact runs one round over database's rollups: every partition of a closed month with two or more
// active parts, and the current month's once it has OpenMinParts, oldest first, one OPTIMIZE at a time.
// Several instances may run it: one that finds a partition already merged skips it.
func Compact(ctx context.Context, conn driver.Conn, database string, openMinParts int) ([]Merged, error) {
	return compactTables(ctx, conn, database, Rollups, openMinParts)
}

// CompactCluster is Compact in the replicated cluster layout (ADR 0026): a round over the rollups' local
// tables on one replica of each shard, whose replication log hands each merge to the shard's other
// replicas (a replica that is not the shard's leader passes OPTIMIZE to the leader).
func CompactCluster(ctx context.Context, cluster *chutil.Cluster, openMinParts int) ([]Merged, error) {
	local := make([]string, len(Rollups))
	for i, r := range Rollups {
		local[i] = r + "_local"
	}
	var merged []Merged
	err := cluster.EachShard(ctx, func(ctx context.Context, _ chutil.Node, conn driver.Conn) error {
		m, err := compactTables(ctx, conn, cluster.Database, local, openMinParts)
		merged = append(merged, m...)
		return err
	})
	return merged, err
}

// compactTables runs a round over tables of database on conn's server.
func compactTables(ctx context.Context, conn driver.Conn, database string, tables []string, openMinParts int) ([]Merged, error) {
	var due []struct {
		Table     string `ch:"table"`
		Partition string `ch:"partition_id"`
		Parts     uint64 `ch:"parts"`
	}
	open := uint64(openMinParts)
	if open == 0 {
		open = 1 << 62
	}
	err := conn.Select(ctx, &due, `SELECT table, partition_id, count() AS parts FROM system.parts
		WHERE database = ? AND active AND has(?, table)
		GROUP BY table, partition_id
		HAVING parts >= if(partition_id < toString(toYYYYMM(today())), 2, ?)
		ORDER BY partition_id, table`, database, tables, open)
	if err != nil {
		return nil, fmt.Errorf("listing the parts of the rollups of %s: %w", database, err)
	}
	// No time limit: a merge of a month takes seconds to minutes, and ClickHouse finishes it whatever the
	// client does. A replicated table's OPTIMIZE returns once the merge is in the replication log, without
	// waiting for the replicas: ClickHouse 18.16 fails that wait ("Unknown log entry type: 0") when the
	// partition had nothing left to merge, as when another instance merged it first.
	octx := clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{"max_execution_time": 0, "replication_alter_partitions_sync": 0}))
	var merged []Merged
	for _, p := range due {
		start := time.Now()
		if err := conn.Exec(octx, fmt.Sprintf("OPTIMIZE TABLE %s.%s PARTITION ID '%s' FINAL", chutil.QuoteIdent(database), chutil.QuoteIdent(p.Table), p.Partition)); err != nil {
			return merged, fmt.Errorf("merging %s.%s partition %s: %w", database, p.Table, p.Partition, err)
		}
		merged = append(merged, Merged{Table: p.Table, Partition: p.Partition, Parts: int(p.Parts), Took: time.Since(start)})
	}
	return merged, nil
}

// RunCompaction runs a round (Compact or CompactCluster) every cfg.Interval until ctx ends. A failed round
// is logged, counted and tried again at the next: compaction only speeds reads up, and never holds
// ingestion. mp may be nil.
func RunCompaction(ctx context.Context, round func(ctx context.Context, openMinParts int) ([]Merged, error), cfg CompactConfig,
	log *slog.Logger, mp metric.MeterProvider) error {
	if cfg.Interval <= 0 {
		return nil
	}
	if mp == nil {
		mp = metricnoop.NewMeterProvider()
	}
	meter := mp.Meter("aggregator/chstore")
	merges, err := meter.Int64Counter("aggregator_rollup_partitions_merged",
		metric.WithDescription("months of rollups merged into one part by compaction, by table"))
	if err != nil {
		return err
	}
	failures, err := meter.Int64Counter("aggregator_compaction_failures", metric.WithDescription("compaction rounds that failed"))
	if err != nil {
		return err
	}
	for {
		wait := cfg.Interval + time.Duration(rand.Int64N(int64(cfg.Interval/10)+1))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		merged, err := round(ctx, cfg.OpenMinParts)
		for _, m := range merged {
			merges.Add(ctx, 1, metric.WithAttributes(attribute.String("table", m.Table)))
			log.Info("rollup partition merged", "table", m.Table, "partition", m.Partition, "parts", m.Parts, "took", m.Took.Round(time.Millisecond))
		}
		if err != nil && ctx.Err() == nil {
			failures.Add(ctx, 1)
			log.Warn("compacting rollups", "err", err)
		}
	}
}
