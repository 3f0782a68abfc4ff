package jobs

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// A district's data generation (control.data_generations) counts the changes jobs may have made to its
// analytics data: every step of a job and every job that finishes (FinishStep, Finish), and every
// ClickHouse rebuild (BumpGeneration). Caches of answers computed from that data key their entries by it.
const (
	bumpGeneration = `INSERT INTO control.data_generations (tenant_id, generation)`
	onBump         = `ON CONFLICT (tenant_id) DO UPDATE SET generation = control.data_generations.generation + 1, changed_at = now()`
)

// BumpGeneration raises the district's data generation, after something outside a job (a rebuild)
// replaced its data.
func (s *Store) BumpGeneration(ctx context.Context, tenant string) error {
	if _, err := s.pool.Exec(ctx, bumpGeneration+` VALUES ($1, 1) `+onBump, tenant); err != nil {
		return fmt.Errorf("raising the data generation of district %s: %w", tenant, err)
	}
	return nil
}

// Generation returns the district's data generation: 0 until a job first changes its data.
func (s *Store) Generation(ctx context.Context, tenant string) (int64, error) {
	var g int64
	err := s.pool.QueryRow(ctx, `SELECT generation FROM control.data_generations WHERE tenant_id = $1`, tenant).Scan(&g)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("reading the data generation of district %s: %w", tenant, err)
	}
	return g, nil
}

// TotalGeneration returns the sum of every district's data generation. Generations only rise and their
// rows are never deleted, so the sum rises whenever any district's data may have changed: answers
// computed across districts (the query service's benchmarks) key their cache entries by it.
func (s *Store) TotalGeneration(ctx context.Context) (int64, error) {
	var g int64
	if err := s.pool.QueryRow(ctx, `SELECT coalesce(sum(generation), 0)::bigint FROM control.data_generations`).Scan(&g); err != nil {
		return 0, fmt.Errorf("reading the total data generation: %w", err)
	}
	return g, nil
}
