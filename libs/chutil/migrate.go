package chutil

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
	"testing/fstest"
	"text/template"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// MigrationsTable records the applied migrations in each migrated database.
const MigrationsTable = "schema_migrations"

// Migration errors callers may branch on.
var (
	// ErrChecksumMismatch: an applied migration file was edited afterwards. Add a new migration instead.
	ErrChecksumMismatch = errors.New("applied migration changed")
	// ErrWrongDatabase: the connection's default database is not the one being migrated.
	ErrWrongDatabase = errors.New("connection is on another database")
)

// Migration is one NNNN_name.sql file.
type Migration struct {
	Version    uint32
	Name       string // file name
	Checksum   string // sha256 of the file, hex
	Statements []string
}

// Migrate applies the NNNN_name.sql files at the root of fsys to database, in version order, skipping
// versions already recorded in database.schema_migrations (a MergeTree table it creates). Re-running it is
// a no-op; an applied file whose content changed is an error (ErrChecksumMismatch).
//
// A file may hold several statements, each ending with ';' at the end of a line; lines starting with "--"
// are comments. Unqualified names resolve to the connection's default database, which must be database
// (ErrWrongDatabase otherwise). A failed file is not recorded and is run again from its first statement next
// time, so write its statements to be repeatable (IF NOT EXISTS). Concurrent runs on one database are not
// coordinated.
func Migrate(ctx context.Context, conn driver.Conn, database string, fsys fs.FS) error {
	migrations, err := LoadMigrations(fsys)
	if err != nil {
		return err
	}
	var current string
	if err := conn.QueryRow(ctx, "SELECT currentDatabase()").Scan(&current); err != nil {
		return fmt.Errorf("reading current database: %w", err)
	}
	if current != database {
		return fmt.Errorf("migrating %s: %w (%s): open it with Options.Database = %q", database, ErrWrongDatabase, current, database)
	}
	table := QuoteIdent(database) + "." + MigrationsTable
	if err := conn.Exec(ctx, "CREATE TABLE IF NOT EXISTS "+table+` (
	version UInt32,
	name String,
	checksum String,
	applied_at DateTime('UTC')
) ENGINE = MergeTree PARTITION BY tuple() ORDER BY version`); err != nil {
		return fmt.Errorf("creating %s: %w", table, err)
	}
	applied, err := appliedMigrations(ctx, conn, table)
	if err != nil {
		return err
	}
	for _, m := range migrations {
		if sum, ok := applied[m.Version]; ok {
			if sum != m.Checksum {
				return fmt.Errorf("migration %s: %w since it was applied to %s", m.Name, ErrChecksumMismatch, database)
			}
			continue
		}
		for i, stmt := range m.Statements {
			if err := conn.Exec(ctx, stmt); err != nil && !repeatedAddColumn(stmt, err) {
				return fmt.Errorf("applying migration %s, statement %d: %w", m.Name, i+1, err)
			}
		}
		if err := recordMigration(ctx, conn, table, m); err != nil {
			return err
		}
	}
	return nil
}

// repeatedAddColumn reports whether err is an ALTER TABLE ... ADD COLUMN finding its column there already:
// the statement of a file that failed after it, run again. ClickHouse 18.16 has no ADD COLUMN IF NOT EXISTS.
func repeatedAddColumn(stmt string, err error) bool {
	var ex *clickhouse.Exception
	return errors.As(err, &ex) && ex.Code == duplicateColumn && strings.Contains(strings.ToUpper(stmt), "ADD COLUMN")
}

// duplicateColumn is the code of ClickHouse 18.16's "column with this name already exists" (ILLEGAL_COLUMN).
const duplicateColumn = 44

func appliedMigrations(ctx context.Context, conn driver.Conn, table string) (map[uint32]string, error) {
	rows, err := conn.Query(ctx, "SELECT version, any(checksum) FROM "+table+" GROUP BY version")
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", table, err)
	}
	defer func() { _ = rows.Close() }() // read-only; after a full iteration Close only repeats rows.Err
	applied := make(map[uint32]string)
	for rows.Next() {
		var (
			version uint32
			sum     string
		)
		if err := rows.Scan(&version, &sum); err != nil {
			return nil, fmt.Errorf("reading %s: %w", table, err)
		}
		applied[version] = sum
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading %s: %w", table, err)
	}
	return applied, nil
}

// recordMigration inserts through PrepareBatch: INSERT ... VALUES through Exec hangs on 18.16.
func recordMigration(ctx context.Context, conn driver.Conn, table string, m Migration) error {
	batch, err := conn.PrepareBatch(ctx, "INSERT INTO "+table+" (version, name, checksum, applied_at)")
	if err != nil {
		return fmt.Errorf("recording migration %s: %w", m.Name, err)
	}
	if err := batch.Append(m.Version, m.Name, m.Checksum, time.Now().UTC()); err != nil {
		return errors.Join(fmt.Errorf("recording migration %s: %w", m.Name, err), batch.Abort())
	}
	if err := batch.Send(); err != nil {
		return fmt.Errorf("recording migration %s: %w", m.Name, err)
	}
	return nil
}

// LoadMigrations reads and orders the NNNN_name.sql files at the root of fsys. Other files are ignored; a
// .sql file with another name, a repeated version or a file without statements is an error.
func LoadMigrations(fsys fs.FS) ([]Migration, error) {
	names, err := fs.Glob(fsys, "*.sql")
	if err != nil {
		return nil, fmt.Errorf("listing migrations: %w", err)
	}
	var out []Migration
	seen := make(map[uint32]string)
	for _, name := range names {
		version, err := migrationVersion(name)
		if err != nil {
			return nil, err
		}
		if other, ok := seen[version]; ok {
			return nil, fmt.Errorf("migrations %s and %s share version %d", other, name, version)
		}
		seen[version] = name
		b, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, fmt.Errorf("reading migration %s: %w", name, err)
		}
		stmts := SplitStatements(string(b))
		if len(stmts) == 0 {
			return nil, fmt.Errorf("migration %s holds no statement", name)
		}
		sum := sha256.Sum256(b)
		out = append(out, Migration{Version: version, Name: name, Checksum: hex.EncodeToString(sum[:]), Statements: stmts})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	return out, nil
}

// migrationVersion parses the NNNN of NNNN_name.sql (four or more digits, then '_' and a name).
func migrationVersion(name string) (uint32, error) {
	base := strings.TrimSuffix(path.Base(name), ".sql")
	digits, rest, ok := strings.Cut(base, "_")
	if !ok || len(digits) < 4 || rest == "" || strings.Trim(digits, "0123456789") != "" {
		return 0, fmt.Errorf("migration file %s: name must look like 0001_create_events.sql", name)
	}
	v, err := strconv.ParseUint(digits, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("migration file %s: %w", name, err)
	}
	return uint32(v), nil
}

// SplitStatements splits SQL text into statements: a statement ends at a line whose last non-blank
// character is ';'. Lines starting with "--" are dropped; the ';' is not kept.
func SplitStatements(sql string) []string {
	var (
		out []string
		cur []string
	)
	flush := func() {
		if s := strings.TrimSpace(strings.Join(cur, "\n")); s != "" {
			out = append(out, s)
		}
		cur = cur[:0]
	}
	for _, line := range strings.Split(sql, "\n") {
		line = strings.TrimRight(line, " \t\r")
		if strings.HasPrefix(strings.TrimSpace(line), "--") {
			continue
		}
		if stmt, ok := strings.CutSuffix(line, ";"); ok {
			cur = append(cur, stmt)
			flush()
			continue
		}
		cur = append(cur, line)
	}
	flush()
	return out
}

// RenderMigrations fills the database and cluster names, quoted, into the migrations at the root of fsys,
// each a text/template that names them {{.Database}} and {{.Cluster}} (the layout of a replicated
// cluster, whose statements run ON CLUSTER with qualified names), and returns them for Migrate.
func RenderMigrations(fsys fs.FS, database, cluster string) (fs.FS, error) {
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, fmt.Errorf("listing migrations: %w", err)
	}
	out := fstest.MapFS{}
	data := struct{ Database, Cluster string }{QuoteIdent(database), QuoteIdent(cluster)}
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".sql") {
			continue
		}
		src, err := fs.ReadFile(fsys, e.Name())
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", e.Name(), err)
		}
		tmpl, err := template.New(e.Name()).Option("missingkey=error").Parse(string(src))
		if err != nil {
			return nil, fmt.Errorf("parsing %s: %w", e.Name(), err)
		}
		var b bytes.Buffer
		if err := tmpl.Execute(&b, data); err != nil {
			return nil, fmt.Errorf("rendering %s: %w", e.Name(), err)
		}
		out[e.Name()] = &fstest.MapFile{Data: b.Bytes()}
	}
	return out, nil
}
