package jobs

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/edtech-analytics/platform/libs/tenancy"
)

// Job kinds the admin API queues.
const (
	KindEraseStudent = "erase_student" // a student's erasure
	KindExportTenant = "export_tenant" // a whole district's export
)

// ExportTenantParams are a queued district export's parameters (Job.Params).
type ExportTenantParams struct {
	Format string `json:"format"` // ndjson or csv
}

// EraseStudentParams are a student erasure's parameters (Job.Params): the SIS id it was asked for and
// every SIS id the student had then (its data keys are found by them), kept until the job ends.
type EraseStudentParams struct {
	SISID  string   `json:"sis_id"`
	Source string   `json:"source,omitempty"`
	SISIDs []string `json:"sis_ids,omitempty"`
}

// SISIDs returns the SIS ids the district's identities hold in clear for the student (erased ones hold
// keyed hashes), with asked among them.
func (s Students) SISIDs(ctx context.Context, tenant, internalID, asked string) ([]string, error) {
	schema, err := tenancy.SchemaName(tenant)
	if err != nil {
		return nil, err
	}
	pool, _, err := s.Pools.DistrictPool(ctx, tenant)
	if err != nil {
		return nil, err
	}
	rows, err := pool.Query(ctx, `SELECT DISTINCT sis_id FROM `+pgx.Identifier{schema, "student_identities"}.Sanitize()+`
		WHERE internal_id = $1 AND sis_id NOT LIKE 'erased:%' ORDER BY sis_id`, internalID)
	if err != nil {
		return nil, fmt.Errorf("reading the student's SIS ids: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("reading the student's SIS ids: %w", err)
	}
	if !slices.Contains(ids, asked) {
		ids = append(ids, asked)
	}
	return ids, nil
}

// ErrAmbiguous: a SIS id that names different students in two of the district's sources.
var ErrAmbiguous = errors.New("the SIS id names more than one student")

// Students finds the student a SIS id names in a district, for a job about one student.
type Students struct {
	// Pools finds a district's PostgreSQL instance (fleet.Fleet).
	Pools interface {
		DistrictPool(ctx context.Context, tenantID string) (*pgxpool.Pool, string, error)
	}
	// ErasedSIS is what an erased student's identity holds instead of the SIS id of source (the keyed
	// hash keyring.ErasedSIS with the district's pseudonym key), so that an erased student is found too.
	ErasedSIS func(ctx context.Context, tenant, source, sis string) (string, error)
}

// Find returns the internal id of the student sis names in the district, among the identities of source
// (or of any source when source is ""), erased students included. A SIS id nobody holds is
// tenancy.ErrNotFound; one naming different students in two sources is ErrAmbiguous.
func (s Students) Find(ctx context.Context, tenant, source, sis string) (string, error) {
	schema, err := tenancy.SchemaName(tenant)
	if err != nil {
		return "", err
	}
	pool, _, err := s.Pools.DistrictPool(ctx, tenant)
	if err != nil {
		return "", err
	}
	ids := pgx.Identifier{schema, "student_identities"}.Sanitize()
	sources := []string{source}
	if source == "" {
		rows, err := pool.Query(ctx, "SELECT DISTINCT source_id FROM "+ids)
		if err != nil {
			return "", fmt.Errorf("reading the sources of district %s: %w", tenant, err)
		}
		if sources, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
			return "", fmt.Errorf("reading the sources of district %s: %w", tenant, err)
		}
	}
	var srcs, values []string
	for _, src := range sources {
		hashed, err := s.ErasedSIS(ctx, tenant, src, sis)
		if err != nil {
			return "", err
		}
		srcs, values = append(srcs, src, src), append(values, sis, hashed)
	}
	rows, err := pool.Query(ctx, `SELECT DISTINCT i.internal_id::text FROM `+ids+` i
		JOIN unnest($1::text[], $2::text[]) AS k(source_id, sis_id) USING (source_id, sis_id)`, srcs, values)
	if err != nil {
		return "", fmt.Errorf("looking the student up: %w", err)
	}
	found, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return "", fmt.Errorf("looking the student up: %w", err)
	}
	switch len(found) {
	case 0:
		return "", fmt.Errorf("student %q of district %s: %w", sis, tenant, tenancy.ErrNotFound)
	case 1:
		return found[0], nil
	}
	return "", fmt.Errorf("student %q of district %s: %w (%d students)", sis, tenant, ErrAmbiguous, len(found))
}
