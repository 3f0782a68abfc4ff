package chstore

import (
	"context"
	"fmt"
	"io/fs"
	"testing/fstest"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/edtech-analytics/platform/libs/chutil"
)

// MigrateTo applies the migrations up to version last only, as an older aggregator did.
func MigrateTo(ctx context.Context, conn driver.Conn, database string, last int) error {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return err
	}
	names, err := fs.Glob(sub, "*.sql")
	if err != nil {
		return err
	}
	older := fstest.MapFS{}
	for _, name := range names {
		var v int
		if _, err := fmt.Sscanf(name, "%04d_", &v); err != nil {
			return fmt.Errorf("migration %s: %w", name, err)
		}
		if v > last {
			continue
		}
		b, err := fs.ReadFile(sub, name)
		if err != nil {
			return err
		}
		older[name] = &fstest.MapFile{Data: b}
	}
	return chutil.Migrate(ctx, conn, database, older)
}

// RepairPartitions repairs the partitions as NextOffsets does, without NextOffsets' wait for running
// inserts first: as a caller whose wait ended before a write of the store began.
func RepairPartitions(ctx context.Context, s *Store, topic string, partitions []int32) error {
	return s.repairPartitions(ctx, topic, partitions)
}

// SetInsertWait sets how long s waits for inserts running on the server before ErrBusy.
func SetInsertWait(s *Store, d time.Duration) { s.insertWait = d }

// CheckNode describes the server settings of conn's server below what the cluster layout needs.
func CheckNode(ctx context.Context, conn driver.Conn) ([]string, error) { return checkNode(ctx, conn) }
