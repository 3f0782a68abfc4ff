package app

import (
	"bufio"
	"compress/gzip"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	iofs "io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/edtech-analytics/platform/libs/keyring"
	"github.com/edtech-analytics/platform/libs/tenancy/jobs"
)

const exportTenantSynopsis = "--tenant ID --format ndjson|csv --out DIR"

// runExportTenant exports a whole district: every table of its PostgreSQL schema and its ClickHouse
// events, a gzip file each, and a manifest, into a new directory.
func runExportTenant(ctx context.Context, e Env, args []string) error {
	fs, c := newFlags(e, "export tenant", exportTenantSynopsis)
	var f exportFlags
	f.register(fs, e, "the directory to create and write the files into (it must not exist)")
	format := fs.String("format", "", "file format: ndjson (a JSON object a line) or csv (a header row first), gzip-compressed either way")
	if err := f.parse(fs, c, args, "format"); err != nil {
		return err
	}
	if *format != "ndjson" && *format != "csv" {
		return usagef("--format: %q is not ndjson or csv", *format)
	}
	if _, err := os.Lstat(f.out); !errors.Is(err, iofs.ErrNotExist) {
		if err == nil {
			return usagef("--out: %s exists; name a directory to create", f.out)
		}
		return err
	}
	progress := &progress{out: &errWriter{w: e.Stderr}, tenant: f.tenant}
	err := f.run(ctx, e, c, kindExportTenant, "export.tenant", map[string]string{"format": *format},
		func(_ controlPlane, _ *keyring.Keyring, snap *snapshot) (exporter, string, error) {
			x, err := newTenantExport(ctx, snap, *format, f.out, progress)
			return x, "", err
		})
	return errors.Join(err, progress.out.Err())
}

// tenantExport writes a district's files into a directory beside the destination until publish renames
// it into place.
type tenantExport struct {
	snap     *snapshot
	format   string
	out, tmp string
	tables   []string
	progress *progress
	manifest manifest
}

func newTenantExport(ctx context.Context, snap *snapshot, format, out string, p *progress) (*tenantExport, error) {
	tables, err := snap.tables(ctx, "")
	if err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(out), "."+filepath.Base(out)+".tmp-")
	if err != nil {
		return nil, err
	}
	return &tenantExport{snap: snap, format: format, out: out, tmp: tmp, tables: tables, progress: p,
		manifest: manifest{Kind: kindExportTenant, TenantID: snap.tenant, Format: format, GeneratedAt: snap.at,
			Consistency: consistency, Offsets: snap.offsets}}, nil
}

func (x *tenantExport) summary() map[string]any {
	var rows int64
	for _, f := range x.manifest.Files {
		rows += f.Rows
	}
	return map[string]any{"format": x.format, "files": len(x.manifest.Files), "rows": rows}
}

// discard removes the files if they were not published.
func (x *tenantExport) discard() { _ = os.RemoveAll(x.tmp) }

func (x *tenantExport) steps() []exportStep {
	return []exportStep{
		{"postgres", "postgres: every table of the district schema", x.countPostgres, x.writePostgres},
		{"clickhouse", "clickhouse: the district's events", x.countEvents, x.writeEvents},
	}
}

// erasedRows are the rows of erased students the enricher keeps to suppress their records (an internal
// id with keyed hashes of its identifiers): not the district's data, and not exported.
var erasedRows = map[string]string{
	"students":           "erased_at IS NULL",
	"student_identities": "sis_id NOT LIKE 'erased:%'",
}

// rows is the SELECT of what a table's export holds.
func (x *tenantExport) rows(table, columns string) string {
	q := "SELECT " + columns + " FROM " + x.snap.table(table) + " t"
	if where, ok := erasedRows[table]; ok {
		q += " WHERE " + where
	}
	return q
}

func (x *tenantExport) countPostgres(ctx context.Context) (int64, error) {
	var total int64
	for _, t := range x.tables {
		var n int64
		if err := x.snap.tx.QueryRow(ctx, x.rows(t, "count(*)")).Scan(&n); err != nil {
			return 0, fmt.Errorf("counting %s: %w", t, err)
		}
		total += n
	}
	return total, nil
}

// writePostgres copies each table out of the snapshot, as CSV with a header row, or as one JSON object a
// line (row_to_json, through CSV mode with quote and delimiter characters JSON text never holds raw, so
// that COPY passes each line through unchanged).
func (x *tenantExport) writePostgres(ctx context.Context) (int64, string, error) {
	var total int64
	for _, t := range x.tables {
		query := "COPY (" + x.rows(t, "*") + ") TO STDOUT WITH (FORMAT csv, HEADER true)"
		if x.format == "ndjson" {
			query = "COPY (" + x.rows(t, "row_to_json(t)") + ") TO STDOUT WITH (FORMAT csv, QUOTE E'\\x01', DELIMITER E'\\x02')"
		}
		n, err := x.file("postgres", t, func(w *bufio.Writer) (int64, error) {
			tag, err := x.snap.tx.Conn().PgConn().CopyTo(ctx, w, query)
			return tag.RowsAffected(), err
		})
		if err != nil {
			return total, "", err
		}
		total += n
	}
	return total, fmt.Sprintf("%d rows from %d tables", total, len(x.tables)), nil
}

func (x *tenantExport) countEvents(ctx context.Context) (int64, error) {
	where, args := x.snap.eventsWhere()
	return chCount(ctx, x.snap.ch, "SELECT count() FROM events WHERE "+where, args...)
}

// writeEvents streams the district's events out of ClickHouse, a row at a time.
func (x *tenantExport) writeEvents(ctx context.Context) (int64, string, error) {
	n, err := x.file("clickhouse", "events", func(w *bufio.Writer) (int64, error) {
		where, args := x.snap.eventsWhere()
		rows, err := x.snap.ch.Query(ctx, "SELECT * FROM events WHERE "+where, args...)
		if err != nil {
			return 0, fmt.Errorf("reading events: %w", err)
		}
		r := newCHRows(rows)
		if x.format == "ndjson" {
			var b []byte
			return r.each(func() error {
				b = append(r.appendJSON(b[:0]), '\n')
				x.progress.rows("events", r.n)
				_, err := w.Write(b)
				return err
			})
		}
		cw := csv.NewWriter(w)
		if err := cw.Write(r.names); err != nil {
			_ = rows.Close()
			return 0, err
		}
		record := make([]string, len(r.names))
		n, err := r.each(func() error {
			r.texts(record)
			x.progress.rows("events", r.n)
			return cw.Write(record)
		})
		cw.Flush()
		return n, errors.Join(err, cw.Error())
	})
	return n, fmt.Sprintf("%d events", n), err
}

// file writes <table>.<format>.gz: fill writes its content and returns its rows.
func (x *tenantExport) file(store, table string, fill func(w *bufio.Writer) (int64, error)) (int64, error) {
	name := table + "." + x.format + ".gz"
	start := time.Now()
	f, err := os.OpenFile(filepath.Join(x.tmp, name), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return 0, err
	}
	defer func() { _ = f.Close() }() // after the Close below, which reports its error
	fileBuf := bufio.NewWriterSize(f, 1<<16)
	d := newDigest(fileBuf)
	// The fastest level: the default took 1.5 times as long for files a quarter smaller (BENCHMARKS.md).
	gz, _ := gzip.NewWriterLevel(d, gzip.BestSpeed) // the error is for an invalid level only
	w := bufio.NewWriterSize(gz, 1<<16)
	n, err := fill(w)
	if err == nil {
		err = errors.Join(w.Flush(), gz.Close(), fileBuf.Flush(), f.Sync(), f.Close())
	}
	if err != nil {
		return n, fmt.Errorf("writing %s: %w", name, err)
	}
	file := exportFile{Name: name, Store: store, Table: table, Rows: n, Bytes: d.n, SHA256: d.sum()}
	x.manifest.Files = append(x.manifest.Files, file)
	x.progress.done(file, time.Since(start))
	return n, nil
}

// publish writes the manifest and renames the directory into place.
func (x *tenantExport) publish(job jobs.Job) error {
	x.manifest.Job = job.ID
	b, err := json.MarshalIndent(x.manifest, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(x.tmp, "manifest.json"), append(b, '\n'), 0o600); err != nil {
		return err
	}
	return os.Rename(x.tmp, x.out)
}

// progress prints on stderr how far an export is: at most one line a second while a file is written, and
// one when it is done.
type progress struct {
	out    *errWriter // a failed line is reported at the end, the export goes on
	tenant string
	next   time.Time
}

// rows is called with the rows of table written so far, after each; it looks at the clock every 4,096.
func (p *progress) rows(table string, n int64) {
	if n%4096 != 0 {
		return
	}
	if now := time.Now(); now.After(p.next) {
		p.next = now.Add(time.Second)
		p.out.printf("export %s: %s: %d rows\n", p.tenant, table, n)
	}
}

func (p *progress) done(f exportFile, took time.Duration) {
	p.out.printf("export %s: %s: %d rows, %.1f MiB, %.1fs\n", p.tenant, f.Name, f.Rows, float64(f.Bytes)/(1<<20), took.Seconds())
}
