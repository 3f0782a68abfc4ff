package rosters

import (
	"context"
	"fmt"
	"time"

	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/jackc/pgx/v5"
)

// CheckPII is the check of personal data the enricher found in free-text fields (quality_pii_daily).
const CheckPII = "pii"

// piiKinds names the kinds of libs/pii in a finding's message.
var piiKinds = map[string]string{"ssn": "SSN-like numbers", "email": "email addresses", "phone": "phone numbers"}

// PIIFindings returns one warning per source, free-text field and kind in which the enricher found
// personal data since the day of since (UTC): Subject is the field, Value the number of records. What was
// done with them is the district's free-text rule's business (privacy.Policy.FreeText, mask unless set).
func (s *Store) PIIFindings(ctx context.Context, tenantID string, since time.Time) ([]Finding, error) {
	schema, err := tenancy.SchemaName(tenantID)
	if err != nil {
		return nil, err
	}
	pool, err := s.pools.Pool(ctx, tenantID)
	if err != nil {
		return nil, fmt.Errorf("finding the instance of district %s: %w", tenantID, err)
	}
	if err := tenancy.UpgradeDistrictSchema(ctx, pool, tenantID); err != nil {
		return nil, fmt.Errorf("upgrading the schema of district %s: %w", tenantID, err)
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Release()
	return piiFindings(ctx, conn.Conn(), schema, since)
}

// piiFindings reads the findings of PIIFindings through q (a connection, or Quality's transaction).
func piiFindings(ctx context.Context, q interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}, schema string, since time.Time) ([]Finding, error) {
	rows, err := q.Query(ctx, `SELECT source_id, field, kind, sum(records) FROM `+pgx.Identifier{schema, "quality_pii_daily"}.Sanitize()+`
		WHERE day >= $1::date GROUP BY 1, 2, 3 HAVING sum(records) > 0 ORDER BY 1, 2, 3`, since.UTC().Format(time.DateOnly))
	if err != nil {
		return nil, fmt.Errorf("reading pii counts: %w", err)
	}
	var (
		out                 []Finding
		source, field, kind string
		records             int64
	)
	_, err = pgx.ForEachRow(rows, []any{&source, &field, &kind, &records}, func() error {
		what := piiKinds[kind]
		if what == "" {
			what = kind
		}
		out = append(out, Finding{Check: CheckPII, Severity: SeverityWarning, Source: source, Subject: field, Value: float64(records),
			Message: fmt.Sprintf("%d records of %s from %s held %s", records, field, source, what)})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading pii counts: %w", err)
	}
	return out, nil
}
