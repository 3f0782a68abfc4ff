package rebuild

import (
	"context"
	"fmt"
	"strings"

	"github.com/edtech-analytics/platform/services/sink/internal/pgstore"
	"github.com/jackc/pgx/v5"
)

// compare fills the report with row counts and order-independent checksums (sum of 64-bit hashes of
// each row's text) of every sink table, live and target, and with the rows that differ, by primary key,
// for each table that is not equal.
func (r *run) compare(ctx context.Context, tx pgx.Tx) error {
	r.report.Equal = true
	r.report.Tables = nil
	for _, table := range pgstore.Tables() {
		c := TableComparison{Table: table}
		for _, side := range []struct {
			schema   string
			rows     *int64
			checksum *string
		}{{r.schema, &c.LiveRows, &c.LiveChecksum}, {r.target, &c.ShadowRows, &c.ShadowChecksum}} {
			err := tx.QueryRow(ctx, "SELECT count(*), coalesce(sum(hashtextextended(t::text, 0)), 0)::text FROM "+
				pgx.Identifier{side.schema, table}.Sanitize()+" t").Scan(side.rows, side.checksum)
			if err != nil {
				return fmt.Errorf("comparing %s: %w", table, err)
			}
		}
		c.Equal = c.LiveRows == c.ShadowRows && c.LiveChecksum == c.ShadowChecksum
		if !c.Equal {
			diff, err := r.diff(ctx, tx, table)
			if err != nil {
				return err
			}
			c.Diff = diff
		}
		r.report.Equal = r.report.Equal && c.Equal
		r.report.Tables = append(r.report.Tables, c)
	}
	return nil
}

// diff matches the rows of the live and target tables by primary key and counts those only on one side
// and those whose values differ, with up to DiffExamples keys of each.
func (r *run) diff(ctx context.Context, tx pgx.Tx, table string) (*TableDiff, error) {
	live := pgx.Identifier{r.schema, table}.Sanitize()
	rows, err := tx.Query(ctx, `SELECT a.attname FROM pg_index i
		JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
		WHERE i.indrelid = $1::regclass AND i.indisprimary
		ORDER BY array_position(i.indkey::int2[], a.attnum)`, live)
	if err != nil {
		return nil, fmt.Errorf("reading the primary key of %s: %w", table, err)
	}
	keys, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("reading the primary key of %s: %w", table, err)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("table %s has no primary key to compare rows by", table)
	}
	var on, lkey, skey []string
	for _, k := range keys {
		id := pgx.Identifier{k}.Sanitize()
		on = append(on, "l."+id+" = s."+id)
		lkey = append(lkey, "l."+id)
		skey = append(skey, "s."+id)
	}
	q := fmt.Sprintf(`SELECT kind, count(*), (array_agg(key ORDER BY key))[1:%d] FROM (
			SELECT CASE WHEN s.ctid IS NULL THEN 'live' WHEN l.ctid IS NULL THEN 'shadow' ELSE 'changed' END AS kind,
				CASE WHEN l.ctid IS NULL THEN concat_ws(' / ', %s) ELSE concat_ws(' / ', %s) END AS key
			FROM %s l FULL JOIN %s s ON %s
			WHERE l.ctid IS NULL OR s.ctid IS NULL OR l::text <> s::text) d
		GROUP BY kind`,
		DiffExamples, strings.Join(skey, ", "), strings.Join(lkey, ", "), live,
		pgx.Identifier{r.target, table}.Sanitize(), strings.Join(on, " AND "))
	rows, err = tx.Query(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("comparing the rows of %s: %w", table, err)
	}
	d := &TableDiff{}
	var kind string
	var n int64
	var examples []string
	_, err = pgx.ForEachRow(rows, []any{&kind, &n, &examples}, func() error {
		rows := DiffRows{Count: n, Examples: examples}
		switch kind {
		case "live":
			d.OnlyLive = rows
		case "shadow":
			d.OnlyShadow = rows
		default:
			d.Changed = rows
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("comparing the rows of %s: %w", table, err)
	}
	return d, nil
}
