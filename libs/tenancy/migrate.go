package tenancy

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/database"
	"github.com/pressly/goose/v3/lock"
)

//go:embed migrations/control/*.sql migrations/district/*.sql
var migrationFiles embed.FS

// versionTable is the name of goose's bookkeeping table, kept inside each migrated schema.
const versionTable = "goose_db_version"

// Migrate creates the control schema if needed and applies its pending migrations. It is safe to run
// again and from several processes at once (a PostgreSQL advisory lock serialises them).
func Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	if err := migrateSchema(ctx, pool, ControlSchema, "migrations/control"); err != nil {
		return fmt.Errorf("migrating control schema: %w", err)
	}
	return nil
}

// migrateSchema creates schema if missing and brings it up to the newest migration in dir, with goose's
// version table inside the schema and search_path set to the schema alone. schema must be a validated
// plain identifier.
func migrateSchema(ctx context.Context, pool *pgxpool.Pool, schema, dir string) (retErr error) {
	if err := createSchema(ctx, pool, schema); err != nil {
		return err
	}
	fsys, err := fs.Sub(migrationFiles, dir)
	if err != nil {
		return fmt.Errorf("opening embedded migrations %s: %w", dir, err)
	}

	connCfg := pool.Config().ConnConfig // a copy
	connCfg.RuntimeParams["search_path"] = pgx.Identifier{schema}.Sanitize()
	db := stdlib.OpenDB(*connCfg)
	db.SetMaxOpenConns(1) // SQL migrations, the lock and the version table all use one session
	defer func() {
		if err := db.Close(); err != nil {
			retErr = errors.Join(retErr, fmt.Errorf("closing migration connection: %w", err))
		}
	}()

	provider, err := newProvider(db, schema, fsys)
	if err != nil {
		return err
	}
	if _, err := provider.Up(ctx); err != nil {
		return fmt.Errorf("applying migrations to schema %s: %w", schema, err)
	}
	return nil
}

// pendingMigrations reports whether schema lacks some migration in dir (true too when the schema or its
// version table does not exist yet).
func pendingMigrations(ctx context.Context, pool *pgxpool.Pool, schema, dir string) (bool, error) {
	current, err := currentSchemas(ctx, pool, []string{schema}, dir)
	if err != nil {
		return false, err
	}
	return !current[schema], nil
}

// currentSchemas reports which of schemas have every migration in dir applied, in one round trip per 500
// schemas: the version tables are found in the catalog, then read together. Schemas that do not exist or
// lack a version table are not current.
func currentSchemas(ctx context.Context, pool *pgxpool.Pool, schemas []string, dir string) (map[string]bool, error) {
	versions, err := embeddedVersions(dir)
	if err != nil {
		return nil, err
	}
	rows, err := pool.Query(ctx, `SELECT n.nspname::text FROM pg_namespace n
		JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = $2 AND c.relkind = 'r'
		WHERE n.nspname = ANY($1)`, schemas, versionTable)
	if err != nil {
		return nil, fmt.Errorf("finding migration version tables: %w", err)
	}
	withTable, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("finding migration version tables: %w", err)
	}
	current := make(map[string]bool, len(schemas))
	for chunk := range slices.Chunk(withTable, 500) {
		var q strings.Builder
		for i, schema := range chunk {
			if i > 0 {
				q.WriteString(" UNION ALL ")
			}
			// schema comes from the catalog, and is quoted both as a literal and as an identifier.
			fmt.Fprintf(&q, "SELECT %s::text, count(DISTINCT version_id) FROM %s WHERE is_applied AND version_id = ANY($1)",
				quoteLiteral(schema), pgx.Identifier{schema, versionTable}.Sanitize())
		}
		rows, err := pool.Query(ctx, q.String(), versions)
		if err != nil {
			return nil, fmt.Errorf("reading migration versions: %w", err)
		}
		var (
			schema  string
			applied int
		)
		if _, err := pgx.ForEachRow(rows, []any{&schema, &applied}, func() error {
			current[schema] = applied == len(versions)
			return nil
		}); err != nil {
			return nil, fmt.Errorf("reading migration versions: %w", err)
		}
	}
	return current, nil
}

// quoteLiteral quotes s as an SQL string literal.
func quoteLiteral(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

// embeddedVersions lists the versions of the migrations embedded under dir.
func embeddedVersions(dir string) ([]int64, error) {
	entries, err := fs.ReadDir(migrationFiles, dir)
	if err != nil {
		return nil, fmt.Errorf("listing embedded migrations %s: %w", dir, err)
	}
	var out []int64
	for _, e := range entries {
		v, err := goose.NumericComponent(e.Name())
		if err != nil {
			return nil, fmt.Errorf("embedded migration %s/%s: %w", dir, e.Name(), err)
		}
		out = append(out, v)
	}
	return out, nil
}

func newProvider(db *sql.DB, schema string, fsys fs.FS) (*goose.Provider, error) {
	// goose splices the table name into its SQL as is; schema is a validated plain identifier, and goose
	// versions that look the table up in pg_tables expect it unquoted.
	store, err := database.NewStore(database.DialectPostgres, schema+"."+versionTable)
	if err != nil {
		return nil, fmt.Errorf("creating migration store: %w", err)
	}
	locker, err := lock.NewPostgresSessionLocker(lock.WithLockID(lockID(schema)), lock.WithLockTimeout(1, 300))
	if err != nil {
		return nil, fmt.Errorf("creating migration lock: %w", err)
	}
	provider, err := goose.NewProvider("", db, fsys,
		goose.WithStore(store),
		goose.WithSessionLocker(locker),
		goose.WithDisableGlobalRegistry(true),
		// Migration files come from several people; one numbered below a version a schema already has
		// is applied rather than refused.
		goose.WithAllowOutofOrder(true),
	)
	if err != nil {
		return nil, fmt.Errorf("loading migrations for schema %s: %w", schema, err)
	}
	return provider, nil
}

// createSchema creates schema if it does not exist, under the same advisory lock that migrations of the
// schema take, so concurrent creators do not collide.
func createSchema(ctx context.Context, pool *pgxpool.Pool, schema string) error {
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", lockID(schema)); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+pgx.Identifier{schema}.Sanitize())
		return err
	})
	if err != nil {
		return fmt.Errorf("creating schema %s: %w", schema, err)
	}
	return nil
}

// lockID is the advisory lock key that serialises migrations of one schema.
func lockID(schema string) int64 {
	h := fnv.New64a()
	h.Write([]byte("edtech-analytics/migrate/" + schema)) // writes to a hash never fail
	return int64(h.Sum64())
}
