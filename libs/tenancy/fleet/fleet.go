// Package fleet is where districts live: the PostgreSQL instances that hold district schemas
// (control.instances), the instance each district is placed on (control.placements), and one pool per
// instance.
package fleet

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"sync"
	"time"

	"github.com/edtech-analytics/platform/libs/pgutil"
	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// MainInstance is the instance that holds the control schema; its URL is the one the process reached the
// control schema with.
const MainInstance = "main"

var (
	instanceNamePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)
	envNamePattern      = regexp.MustCompile(`^[A-Z_][A-Z0-9_]{0,127}$`)
)

// Instance is a PostgreSQL database that holds district schemas. Its URL is never stored: URLEnv names the
// environment variable that holds it (empty for MainInstance).
type Instance struct {
	Name      string    `json:"name"`
	URLEnv    string    `json:"url_env,omitempty"`
	Default   bool      `json:"default"`
	CreatedAt time.Time `json:"created_at"`
}

// ValidInstanceName checks an instance name: 1-63 characters of a-z, 0-9, _ and -, starting with a letter
// or digit.
func ValidInstanceName(name string) error {
	if !instanceNamePattern.MatchString(name) {
		return fmt.Errorf("%w: instance name %q: must be 1-63 characters of a-z, 0-9, _ and -, starting with a letter or digit",
			tenancy.ErrInvalidArgument, name)
	}
	return nil
}

// Fleet opens and keeps one pool per instance, and reads and writes the registry of instances and
// placements in the control schema. The control pool serves MainInstance; the others are opened on first
// use from the URL in their environment variable, read through getenv. It is safe for concurrent use.
type Fleet struct {
	control *pgxpool.Pool
	getenv  func(string) string
	connect func(ctx context.Context, url string) (*pgxpool.Pool, error)

	mu    sync.Mutex
	pools map[string]*pgxpool.Pool
}

// New returns a fleet whose main instance is control, the pool of the control schema. getenv resolves
// the instances' URL variables (os.Getenv in a service). Close releases the pools it opens.
func New(control *pgxpool.Pool, getenv func(string) string) *Fleet {
	return &Fleet{control: control, getenv: getenv, connect: pgutil.Connect, pools: map[string]*pgxpool.Pool{}}
}

// WithConnect replaces how the fleet opens the pools of instances other than main (pgutil.Connect by
// default), e.g. to size them for a service. Call it before the first Pool.
func (f *Fleet) WithConnect(connect func(ctx context.Context, url string) (*pgxpool.Pool, error)) *Fleet {
	f.connect = connect
	return f
}

// Control returns the pool of the control schema (MainInstance).
func (f *Fleet) Control() *pgxpool.Pool { return f.control }

// Pool returns the pool of the named instance, connecting on first use. ErrNotFound: no such instance.
func (f *Fleet) Pool(ctx context.Context, name string) (*pgxpool.Pool, error) {
	if name == MainInstance {
		return f.control, nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if p := f.pools[name]; p != nil {
		return p, nil
	}
	var env *string
	err := f.control.QueryRow(ctx, "SELECT url_env FROM control.instances WHERE name = $1", name).Scan(&env)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("instance %s: %w", name, tenancy.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("reading instance %s: %w", name, err)
	}
	if env == nil {
		return nil, fmt.Errorf("instance %s has no url variable", name)
	}
	url := f.getenv(*env)
	if url == "" {
		return nil, fmt.Errorf("instance %s: environment variable %s is not set", name, *env)
	}
	p, err := f.connect(ctx, url)
	if err != nil {
		return nil, fmt.Errorf("connecting to instance %s: %w", name, err)
	}
	f.pools[name] = p
	return p, nil
}

// Close closes the pools the fleet opened (not the control pool).
func (f *Fleet) Close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for name, p := range f.pools {
		p.Close()
		delete(f.pools, name)
	}
}

const instanceColumns = "name, coalesce(url_env, ''), is_default, created_at"

func scanInstance(row pgx.Row) (Instance, error) {
	var in Instance
	err := row.Scan(&in.Name, &in.URLEnv, &in.Default, &in.CreatedAt)
	return in, err
}

// AddInstance registers an instance whose URL is in the environment variable urlEnv, migrates its control
// schema (for the offsets kept there) and starts its offsets where the fleet's offsets are, so that
// consumers resume without rereading history for it. With makeDefault, new districts go there. The
// variable must be set for this process. ErrInvalidArgument: a bad name or variable name, or one already
// registered.
func (f *Fleet) AddInstance(ctx context.Context, name, urlEnv string, makeDefault bool) (Instance, error) {
	if err := ValidInstanceName(name); err != nil {
		return Instance{}, err
	}
	if name == MainInstance {
		return Instance{}, fmt.Errorf("%w: instance name %q is the control database's", tenancy.ErrInvalidArgument, name)
	}
	if !envNamePattern.MatchString(urlEnv) {
		return Instance{}, fmt.Errorf("%w: url variable %q: must be an environment variable name (A-Z, 0-9, _)",
			tenancy.ErrInvalidArgument, urlEnv)
	}
	url := f.getenv(urlEnv)
	if url == "" {
		return Instance{}, fmt.Errorf("%w: url variable %s is not set", tenancy.ErrInvalidArgument, urlEnv)
	}
	pool, err := f.connect(ctx, url)
	if err != nil {
		return Instance{}, fmt.Errorf("connecting to instance %s: %w", name, err)
	}
	defer pool.Close()
	if err := tenancy.Migrate(ctx, pool); err != nil {
		return Instance{}, fmt.Errorf("instance %s: %w", name, err)
	}
	if err := copyOffsets(ctx, f.control, pool); err != nil {
		return Instance{}, fmt.Errorf("instance %s: %w", name, err)
	}
	var in Instance
	err = pgx.BeginFunc(ctx, f.control, func(tx pgx.Tx) error {
		if makeDefault {
			if _, err := tx.Exec(ctx, "UPDATE control.instances SET is_default = false WHERE is_default"); err != nil {
				return err
			}
		}
		var err error
		in, err = scanInstance(tx.QueryRow(ctx, `INSERT INTO control.instances (name, url_env, is_default)
			VALUES ($1, $2, $3) RETURNING `+instanceColumns, name, urlEnv, makeDefault))
		return err
	})
	if pgErr := (*pgconn.PgError)(nil); errors.As(err, &pgErr) && pgErr.Code == "23505" { // unique_violation
		return Instance{}, fmt.Errorf("%w: instance %s or url variable %s is already registered", tenancy.ErrInvalidArgument, name, urlEnv)
	}
	if err != nil {
		return Instance{}, fmt.Errorf("registering instance %s: %w", name, err)
	}
	return in, nil
}

// copyOffsets starts a new instance's consumer offsets at the highest ones any consumer stored in the
// control database. No district lives on the new instance yet, so no record below them can be one it
// must apply; without a starting row, the instance would not hold consumers back anyway.
func copyOffsets(ctx context.Context, from, to *pgxpool.Pool) error {
	rows, err := from.Query(ctx, "SELECT consumer, topic, partition, next_offset FROM control.consumer_offsets")
	if err != nil {
		return fmt.Errorf("reading consumer offsets: %w", err)
	}
	type offset struct {
		consumer, topic string
		partition       int32
		next            int64
	}
	offs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (offset, error) {
		var o offset
		err := r.Scan(&o.consumer, &o.topic, &o.partition, &o.next)
		return o, err
	})
	if err != nil {
		return fmt.Errorf("reading consumer offsets: %w", err)
	}
	b := &pgx.Batch{}
	for _, o := range offs {
		b.Queue(`INSERT INTO control.consumer_offsets (consumer, topic, partition, next_offset) VALUES ($1, $2, $3, $4)
			ON CONFLICT (consumer, topic, partition) DO UPDATE
			SET next_offset = greatest(control.consumer_offsets.next_offset, EXCLUDED.next_offset)`,
			o.consumer, o.topic, o.partition, o.next)
	}
	if err := to.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("starting consumer offsets: %w", err)
	}
	return nil
}

// Instances lists the registered instances, main first.
func (f *Fleet) Instances(ctx context.Context) ([]Instance, error) {
	rows, err := f.control.Query(ctx, "SELECT "+instanceColumns+" FROM control.instances ORDER BY name <> 'main', name")
	if err != nil {
		return nil, fmt.Errorf("listing instances: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Instance, error) { return scanInstance(r) })
	if err != nil {
		return nil, fmt.Errorf("listing instances: %w", err)
	}
	return out, nil
}

// Resolve returns instance when it is registered, or the default instance (the one new districts go to)
// when it is empty. ErrNotFound: an unknown instance; ErrInvalidArgument: a bad name.
func (f *Fleet) Resolve(ctx context.Context, instance string) (string, error) {
	if instance == "" {
		err := f.control.QueryRow(ctx, "SELECT coalesce((SELECT name FROM control.instances WHERE is_default), $1)",
			MainInstance).Scan(&instance)
		if err != nil {
			return "", fmt.Errorf("reading default instance: %w", err)
		}
		return instance, nil
	}
	if err := ValidInstanceName(instance); err != nil {
		return "", err
	}
	var ok bool
	if err := f.control.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM control.instances WHERE name = $1)", instance).Scan(&ok); err != nil {
		return "", fmt.Errorf("reading instance %s: %w", instance, err)
	}
	if !ok {
		return "", fmt.Errorf("instance %s: %w", instance, tenancy.ErrNotFound)
	}
	return instance, nil
}

// Place records in tx (on the control pool) that the district lives on instance, when it is created, in
// the transaction that records the tenant. A move changes it with Move.
func Place(ctx context.Context, tx pgx.Tx, tenantID, instance string) error {
	_, err := tx.Exec(ctx, "INSERT INTO control.placements (tenant_id, instance) VALUES ($1, $2)", tenantID, instance)
	return err
}

// Move records in tx (on the control pool) that the district now lives on instance (ctl tenant move,
// once its state is there).
func Move(ctx context.Context, tx pgx.Tx, tenantID, instance string) error {
	_, err := tx.Exec(ctx, `INSERT INTO control.placements (tenant_id, instance) VALUES ($1, $2)
		ON CONFLICT (tenant_id) DO UPDATE SET instance = EXCLUDED.instance`, tenantID, instance)
	if err != nil {
		return fmt.Errorf("placing district %s on %s: %w", tenantID, instance, err)
	}
	return nil
}

// Placement returns the instance a district lives on. A district created before placements existed, or
// never placed, lives on MainInstance. Unknown tenant: ErrNotFound.
func (f *Fleet) Placement(ctx context.Context, tenantID string) (string, error) {
	var instance string
	err := f.control.QueryRow(ctx, `SELECT coalesce(p.instance, $2) FROM control.tenants t
		LEFT JOIN control.placements p ON p.tenant_id = t.id WHERE t.id = $1`, tenantID, MainInstance).Scan(&instance)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", fmt.Errorf("tenant %s: %w", tenantID, tenancy.ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("reading placement of tenant %s: %w", tenantID, err)
	}
	return instance, nil
}

// Placements returns the instance of every district that is not deleted, by tenant id.
func (f *Fleet) Placements(ctx context.Context) (map[string]string, error) {
	return f.placements(ctx, `SELECT t.id, coalesce(p.instance, $1) FROM control.tenants t
		LEFT JOIN control.placements p ON p.tenant_id = t.id WHERE t.deleted_at IS NULL`)
}

// PlacementsOf returns the instance of each of the districts ids that exists and is not deleted, by
// tenant id; the others are absent.
func (f *Fleet) PlacementsOf(ctx context.Context, ids []string) (map[string]string, error) {
	return f.placements(ctx, placementsOf, ids)
}

// PlacementsIn is PlacementsOf read through q, a transaction on the control instance (the placements a
// transaction sees after taking locks).
func PlacementsIn(ctx context.Context, q Querier, ids []string) (map[string]string, error) {
	return placements(ctx, q, placementsOf, ids)
}

// Querier is what a pool and a transaction share for reading.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

const placementsOf = `SELECT t.id, coalesce(p.instance, $1) FROM control.tenants t
		LEFT JOIN control.placements p ON p.tenant_id = t.id WHERE t.id = ANY($2) AND t.deleted_at IS NULL`

func (f *Fleet) placements(ctx context.Context, query string, args ...any) (map[string]string, error) {
	return placements(ctx, f.control, query, args...)
}

func placements(ctx context.Context, q Querier, query string, args ...any) (map[string]string, error) {
	rows, err := q.Query(ctx, query, append([]any{MainInstance}, args...)...)
	if err != nil {
		return nil, fmt.Errorf("listing placements: %w", err)
	}
	out := map[string]string{}
	var id, instance string
	if _, err := pgx.ForEachRow(rows, []any{&id, &instance}, func() error { out[id] = instance; return nil }); err != nil {
		return nil, fmt.Errorf("listing placements: %w", err)
	}
	return out, nil
}

// DistrictPool returns the pool of the instance a district lives on, and the instance's name. A tenant
// without a row (tenants.Store.EnsureDistrictSchema allows that) lives on MainInstance.
func (f *Fleet) DistrictPool(ctx context.Context, tenantID string) (*pgxpool.Pool, string, error) {
	instance, err := f.Placement(ctx, tenantID)
	if errors.Is(err, tenancy.ErrNotFound) {
		instance, err = MainInstance, nil
	}
	if err != nil {
		return nil, "", err
	}
	pool, err := f.Pool(ctx, instance)
	return pool, instance, err
}

// DistrictPools finds the pool of the instance each district's schema lives on, for services that read
// or write district schemas on the hot path (the enricher, the gateway, the query service);
// Fleet.DistrictPool reads the placement on every call. A placement is read again once it is older than
// the refresh interval (DefaultPlacementRefresh), so a district moved to another instance (ctl tenant
// move) is found there within that interval; meanwhile a write through the old placement fails (the move
// renamed the old schema) rather than landing in the old copy, and is retried by its caller. Forget drops
// one at once (a deleted district).
type DistrictPools struct {
	fleet     *Fleet
	refresh   time.Duration
	mu        sync.Mutex
	instances map[string]placed
}

type placed struct {
	instance string
	readAt   time.Time
}

// DefaultPlacementRefresh is how old a placement DistrictPools uses may be.
const DefaultPlacementRefresh = 30 * time.Second

// NewDistrictPools returns a DistrictPools over the fleet.
func NewDistrictPools(f *Fleet) *DistrictPools {
	return &DistrictPools{fleet: f, refresh: DefaultPlacementRefresh, instances: map[string]placed{}}
}

// WithRefresh sets how old a placement may be before it is read again (0: read on every call).
func (d *DistrictPools) WithRefresh(refresh time.Duration) *DistrictPools {
	d.refresh = refresh
	return d
}

// Pool returns the pool of the instance the district lives on. Unknown tenant: ErrNotFound.
func (d *DistrictPools) Pool(ctx context.Context, tenantID string) (*pgxpool.Pool, error) {
	d.mu.Lock()
	p, ok := d.instances[tenantID]
	d.mu.Unlock()
	if !ok || time.Since(p.readAt) >= d.refresh {
		instance, err := d.fleet.Placement(ctx, tenantID)
		if err != nil {
			return nil, err
		}
		p = placed{instance: instance, readAt: time.Now()}
		d.mu.Lock()
		d.instances[tenantID] = p
		d.mu.Unlock()
	}
	return d.fleet.Pool(ctx, p.instance)
}

// Forget drops what is known of the district's placement.
func (d *DistrictPools) Forget(tenantID string) {
	d.mu.Lock()
	delete(d.instances, tenantID)
	d.mu.Unlock()
}
