package chstore

import (
	"context"
	"fmt"
	"io/fs"
	"testing/fstest"

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
