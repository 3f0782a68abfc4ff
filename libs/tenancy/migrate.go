package tenancy

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"

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
	latest, err := latestVersion(dir)
	if err != nil {
		return false, err
	}
	var exists bool
	if err := pool.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL",
		pgx.Identifier{schema, versionTable}.Sanitize()).Scan(&exists); err != nil {
		return false, fmt.Errorf("checking version table of schema %s: %w", schema, err)
	}
	if !exists {
		return true, nil
	}
	var applied int64
	if err := pool.QueryRow(ctx, "SELECT coalesce(max(version_id), 0) FROM "+
		pgx.Identifier{schema, versionTable}.Sanitize()+" WHERE is_applied").Scan(&applied); err != nil {
		return false, fmt.Errorf("reading migration version of schema %s: %w", schema, err)
	}
	return applied < latest, nil
}

// latestVersion is the newest migration version embedded under dir.
func latestVersion(dir string) (int64, error) {
	entries, err := fs.ReadDir(migrationFiles, dir)
	if err != nil {
		return 0, fmt.Errorf("listing embedded migrations %s: %w", dir, err)
	}
	var latest int64
	for _, e := range entries {
		v, err := goose.NumericComponent(e.Name())
		if err != nil {
			return 0, fmt.Errorf("embedded migration %s/%s: %w", dir, e.Name(), err)
		}
		latest = max(latest, v)
	}
	return latest, nil
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
