package app

import (
	"archive/zip"
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/jackc/pgx/v5"

	"github.com/edtech-analytics/platform/libs/chutil"
	"github.com/edtech-analytics/platform/libs/keyring"
	"github.com/edtech-analytics/platform/libs/tenancy/jobs"
	"github.com/edtech-analytics/platform/libs/tenancy/privacy"
)

const exportStudentSynopsis = "--tenant ID --student SIS_ID [--source SRC] --out PATH"

// runExportStudent answers a student's (or parent's) access request: everything the platform holds about
// the student, in one zip of JSON files and a manifest.
func runExportStudent(ctx context.Context, e Env, args []string) error {
	fs, c := newFlags(e, "export student", exportStudentSynopsis)
	var f exportFlags
	f.register(fs, e, "the zip file to write (an existing file is replaced, atomically)")
	sisID := fs.String("student", "", "the student's SIS id")
	source := fs.String("source", "", "the source (integration) the SIS id is from (default: any)")
	if err := f.parse(fs, c, args, "student"); err != nil {
		return err
	}
	return f.run(ctx, e, c, kindExportStudent, "export.student", map[string]string{"source": *source},
		func(cp controlPlane, kr *keyring.Keyring, snap *snapshot) (exporter, string, error) {
			policy, err := cp.policies.Policy(ctx, f.tenant)
			if err != nil {
				return nil, "", err
			}
			id, err := students(cp, kr).Find(ctx, f.tenant, *source, *sisID)
			if errors.Is(err, jobs.ErrAmbiguous) {
				return nil, "", usagef("%v: give --source", err)
			}
			if err != nil {
				return nil, "", fmt.Errorf("unknown student: %w (nothing to export, no job created)", err)
			}
			x, err := newStudentExport(ctx, snap, id, policy, f.out)
			return x, id, err
		})
}

// studentExport writes one student's export into a zip, beside its destination until publish moves it
// there.
type studentExport struct {
	snap     *snapshot
	id       string
	policy   privacy.Policy
	out      string
	tables   []studentTable
	tmp      *os.File
	file     *digest // the zip file, as written
	zw       *zip.Writer
	manifest manifest
	sum      string // the zip's sha256, once published
}

// studentTable is a district table's rows about the student.
type studentTable struct {
	name, where string
	arg         any
}

func newStudentExport(ctx context.Context, snap *snapshot, id string, policy privacy.Policy, out string) (*studentExport, error) {
	x := &studentExport{snap: snap, id: id, policy: policy, out: out,
		manifest: manifest{Kind: kindExportStudent, TenantID: snap.tenant, StudentID: id, GeneratedAt: snap.at, Consistency: consistency +
			"; the rollups (metrics_student_daily) as they were when read", Offsets: snap.offsets}}
	// Every table with an internal_id column, and the roster tables that name the student by sourced_id.
	withID, err := snap.tables(ctx, "internal_id")
	if err != nil {
		return nil, err
	}
	for _, t := range withID {
		x.tables = append(x.tables, studentTable{t, "internal_id = $1", id})
	}
	rows, err := snap.tx.Query(ctx, "SELECT sourced_id FROM "+snap.table("roster_users")+" WHERE internal_id = $1", id)
	if err != nil {
		return nil, fmt.Errorf("reading the student's roster ids: %w", err)
	}
	sourcedIDs, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("reading the student's roster ids: %w", err)
	}
	for _, l := range []struct{ table, column string }{
		{"roster_enrollments", "user_sourced_id"}, {"roster_demographics", "sourced_id"}, {"roster_results", "student_sourced_id"},
		{"roster_deletions", "sourced_id"},
	} {
		x.tables = append(x.tables, studentTable{l.table, pgx.Identifier{l.column}.Sanitize() + " = ANY($1)", sourcedIDs})
	}
	x.tmp, err = os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+".tmp-*")
	if err != nil {
		return nil, err
	}
	x.file = newDigest(x.tmp)
	x.zw = zip.NewWriter(x.file)
	return x, nil
}

func (x *studentExport) summary() map[string]any {
	return map[string]any{"subject": x.id, "files": len(x.manifest.Files), "sha256": x.sum}
}

// discard removes the zip if it was not published.
func (x *studentExport) discard() {
	if x.sum == "" {
		_ = x.tmp.Close()
		_ = os.Remove(x.tmp.Name())
	}
}

func (x *studentExport) steps() []exportStep {
	return []exportStep{
		{"postgres", "postgres: the district schema's rows about the student", x.countPostgres, x.writePostgres},
		{"clickhouse", "clickhouse: the student's events and daily rollup", x.countClickHouse, x.writeClickHouse},
	}
}

func (x *studentExport) countPostgres(ctx context.Context) (int64, error) {
	var total int64
	for _, t := range x.tables {
		var n int64
		if err := x.snap.tx.QueryRow(ctx, "SELECT count(*) FROM "+x.snap.table(t.name)+" WHERE "+t.where, t.arg).Scan(&n); err != nil {
			return 0, fmt.Errorf("counting %s: %w", t.name, err)
		}
		total += n
	}
	return total, nil
}

func (x *studentExport) writePostgres(ctx context.Context) (int64, string, error) {
	var total int64
	for _, t := range x.tables {
		dir, contains := aboutStudentTable(t.name)
		n, err := x.add(exportFile{Name: dir + "/" + t.name + ".json", Store: "postgres", Table: t.name, Contains: contains},
			func(row func([]byte) error) (n int64, err error) {
				rows, err := x.snap.tx.Query(ctx, "SELECT row_to_json(t)::text FROM "+x.snap.table(t.name)+" t WHERE "+t.where, t.arg)
				if err != nil {
					return 0, err
				}
				defer rows.Close()
				for rows.Next() {
					if err := row(rows.RawValues()[0]); err != nil {
						return n, err
					}
					n++
				}
				return n, rows.Err()
			})
		if err != nil {
			return total, "", fmt.Errorf("exporting %s: %w", t.name, err)
		}
		total += n
	}
	return total, fmt.Sprintf("%d rows from %d tables", total, len(x.tables)), nil
}

// aboutStudentTable says where a district table's rows go in the zip and what they are.
func aboutStudentTable(table string) (dir, contains string) {
	switch table {
	case "students":
		return "identity", "the student's internal id, the key that matches them across SIS vendors, and whether they were erased or merged"
	case "student_identities":
		return "identity", "the SIS ids, per source, that name the student"
	case "roster_users":
		return "roster", "the student's roster record (OneRoster user) as stored after the district's privacy policy"
	case "roster_enrollments":
		return "roster", "the student's class enrollments"
	case "roster_demographics":
		return "roster", "the student's demographics record"
	case "roster_results":
		return "roster", "the student's gradebook results"
	case "roster_deletions":
		return "roster", "the deletions of the student's roster records the platform remembers, so that stale copies are not applied"
	case "student_activity":
		return "learning", "how many learning events the student has, and the latest"
	case "attendance_daily":
		return "learning", "the student's attendance mark per day"
	case "assessment_results_latest":
		return "learning", "the student's latest result per assessment"
	case "submissions":
		return "learning", "the student's latest submission per assignment"
	}
	if strings.HasPrefix(table, "enricher_") {
		return "roster", "roster context the platform keeps to enrich the student's events (" + strings.TrimPrefix(table, "enricher_") + ")"
	}
	return "learning", "the rows of " + table + " about the student"
}

// eventsWhere is the condition on ClickHouse events of the student's, with its arguments.
func (x *studentExport) eventsWhere() (string, []any) {
	where, args := x.snap.eventsWhere()
	return where + " AND student_id = toUUID(?)", append(args, x.id)
}

// rollup is the query of the student's rows of metrics_student_daily, each day's partial aggregates merged.
func (x *studentExport) rollup(ctx context.Context) (string, error) {
	return mergedQuery(ctx, x.snap.ch, "metrics_student_daily", []string{"tenant_id", "student_id", "day"},
		"tenant_id = ? AND student_id = toUUID(?)")
}

func (x *studentExport) countClickHouse(ctx context.Context) (int64, error) {
	where, args := x.eventsWhere()
	events, err := chCount(ctx, x.snap.ch, "SELECT count() FROM events WHERE "+where, args...)
	if err != nil {
		return 0, err
	}
	q, err := x.rollup(ctx)
	if err != nil {
		return 0, err
	}
	days, err := chCount(ctx, x.snap.ch, "SELECT count() FROM ("+q+")", x.snap.tenant, x.id)
	return events + days, err
}

func (x *studentExport) writeClickHouse(ctx context.Context) (int64, string, error) {
	where, args := x.eventsWhere()
	events, err := x.addCH(ctx, exportFile{Name: "events/events.json", Table: "events",
		Contains: "the student's learning events, as the analytics store keeps them (pseudonymised, no names or SIS ids)"},
		"SELECT * FROM events WHERE "+where+" ORDER BY occurred_at, occurred_ms, event_id", args...)
	if err != nil {
		return 0, "", err
	}
	q, err := x.rollup(ctx)
	if err != nil {
		return 0, "", err
	}
	days, err := x.addCH(ctx, exportFile{Name: "rollups/metrics_student_daily.json", Table: "metrics_student_daily",
		Contains: "what the student did per day, as the dashboards count it"}, q+" ORDER BY day", x.snap.tenant, x.id)
	if err != nil {
		return 0, "", err
	}
	err = x.snap.ch.QueryRow(ctx, "SELECT argMax(pseudonym, occurred_at) FROM events WHERE "+where+" AND pseudonym != ''",
		args...).Scan(&x.manifest.Pseudonym)
	if err != nil {
		return 0, "", fmt.Errorf("reading the student's pseudonym: %w", err)
	}
	return events + days, fmt.Sprintf("%d events, %d days of rollups", events, days), nil
}

// addCH writes the rows of a ClickHouse query as a file.
func (x *studentExport) addCH(ctx context.Context, f exportFile, query string, args ...any) (int64, error) {
	f.Store = "clickhouse"
	n, err := x.add(f, func(row func([]byte) error) (int64, error) {
		rows, err := x.snap.ch.Query(ctx, query, args...)
		if err != nil {
			return 0, err
		}
		r := newCHRows(rows)
		var b []byte
		return r.each(func() error {
			b = r.appendJSON(b[:0])
			return row(b)
		})
	})
	if err != nil {
		return 0, fmt.Errorf("exporting %s: %w", f.Table, err)
	}
	return n, nil
}

// add writes a file of rows into the zip as a JSON array, a row a line, and lists it in the manifest:
// rows calls row with each row's JSON and returns their number.
func (x *studentExport) add(f exportFile, rows func(row func([]byte) error) (int64, error)) (int64, error) {
	d, w, err := x.entry(f.Name)
	if err != nil {
		return 0, err
	}
	sep := "[\n"
	n, err := rows(func(b []byte) error {
		_, _ = w.WriteString(sep) // w keeps its first error for the next Write
		sep = ",\n"
		_, err := w.Write(b)
		return err
	})
	if err != nil {
		return n, err
	}
	end := "\n]\n"
	if n == 0 {
		end = "[]\n"
	}
	_, _ = w.WriteString(end)
	if err := w.Flush(); err != nil {
		return n, err
	}
	f.Rows, f.Bytes, f.SHA256 = n, d.n, d.sum()
	x.manifest.Files = append(x.manifest.Files, f)
	return n, nil
}

// entry starts a file of the zip.
func (x *studentExport) entry(name string) (*digest, *bufio.Writer, error) {
	zf, err := x.zw.CreateHeader(&zip.FileHeader{Name: name, Method: zip.Deflate, Modified: x.snap.at})
	if err != nil {
		return nil, nil, fmt.Errorf("writing %s: %w", name, err)
	}
	d := newDigest(zf)
	return d, bufio.NewWriter(d), nil
}

// writeDocument writes v as an indented JSON file.
func (x *studentExport) writeDocument(name string, v any) (*digest, error) {
	d, w, err := x.entry(name)
	if err != nil {
		return nil, err
	}
	if err := writeJSON(w, v); err != nil {
		return nil, err
	}
	return d, w.Flush()
}

// publish adds the policy and the manifest, and moves the zip into place.
func (x *studentExport) publish(job jobs.Job) error {
	const name = "policy.json"
	d, err := x.writeDocument(name, x.policy)
	if err != nil {
		return err
	}
	x.manifest.Files = append(x.manifest.Files, exportFile{Name: name, Store: "control", Rows: 1, Bytes: d.n, SHA256: d.sum(),
		Contains: "the district's privacy policy in force: what the platform keeps, masks, pseudonymises or drops of each field, by age"})
	x.manifest.Job = job.ID
	if _, err := x.writeDocument("manifest.json", x.manifest); err != nil {
		return err
	}
	if err := x.zw.Close(); err != nil {
		return err
	}
	if err := x.tmp.Sync(); err != nil {
		return err
	}
	if err := x.tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(x.tmp.Name(), x.out); err != nil {
		return err
	}
	x.sum = x.file.sum()
	return nil
}

// mergedQuery selects the rows of an AggregatingMergeTree table that match where, grouped by keys, with
// every aggregate state merged by its -Merge function and every other column's any value; the kafka_*
// bookkeeping columns are left out. The columns come from system.columns.
func mergedQuery(ctx context.Context, ch driver.Conn, table string, keys []string, where string) (string, error) {
	rows, err := ch.Query(ctx, "SELECT name, type FROM system.columns WHERE database = currentDatabase() AND table = ?", table)
	if err != nil {
		return "", fmt.Errorf("reading the columns of %s: %w", table, err)
	}
	defer func() { _ = rows.Close() }()
	var cols []string
	for rows.Next() {
		var name, typ string
		if err := rows.Scan(&name, &typ); err != nil {
			return "", err
		}
		switch {
		case slices.Contains(keys, name):
			cols = append(cols, chutil.QuoteIdent(name))
		case strings.HasPrefix(name, "kafka_"):
		default:
			cols = append(cols, mergeExpr(name, typ)+" AS "+chutil.QuoteIdent(name))
		}
	}
	if err := rows.Err(); err != nil {
		return "", err
	}
	if len(cols) == 0 {
		return "", fmt.Errorf("clickhouse has no table %s", table)
	}
	quoted := make([]string, len(keys))
	for i, k := range keys {
		quoted[i] = chutil.QuoteIdent(k)
	}
	return "SELECT " + strings.Join(cols, ", ") + " FROM " + chutil.QuoteIdent(table) + " WHERE " + where +
		" GROUP BY " + strings.Join(quoted, ", "), nil
}

// mergeExpr is the expression that reads column name of ClickHouse type typ in a GROUP BY: the -Merge of
// an AggregateFunction(f[(params)], ...) state (fMerge[(params)](name)), any(name) for a plain column.
func mergeExpr(name, typ string) string {
	col := chutil.QuoteIdent(name)
	inner, ok := strings.CutPrefix(typ, "AggregateFunction(")
	if !ok {
		return "any(" + col + ")"
	}
	depth := 0
	for i, r := range inner {
		switch {
		case r == '(':
			depth++
		case r == ')' && depth > 0:
			depth--
		case depth == 0 && (r == ',' || r == ')'):
			fn, params, _ := strings.Cut(inner[:i], "(")
			if params != "" {
				params = "(" + params
			}
			return fn + "Merge" + params + "(" + col + ")"
		}
	}
	return "any(" + col + ")"
}
