package jobs

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// FinishedSince returns the ids of the district's jobs that finished (done or failed) at or after since,
// oldest first.
func (s *Store) FinishedSince(ctx context.Context, tenant string, since time.Time) ([]string, error) {
	rows, err := s.pool.Query(ctx, `SELECT id::text FROM control.privacy_jobs
		WHERE tenant_id = $1 AND status IN ('done', 'failed') AND finished_at >= $2 ORDER BY finished_at`, tenant, since)
	if err != nil {
		return nil, fmt.Errorf("reading the finished jobs of district %s: %w", tenant, err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("reading the finished jobs of district %s: %w", tenant, err)
	}
	return ids, nil
}
