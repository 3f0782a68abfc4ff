package app

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/edtech-analytics/platform/libs/archive"
	"github.com/edtech-analytics/platform/libs/chutil"
	"github.com/edtech-analytics/platform/libs/conf"
	"github.com/edtech-analytics/platform/libs/kafkax"
	"github.com/edtech-analytics/platform/libs/keyring"
	"github.com/edtech-analytics/platform/libs/records"
	"github.com/edtech-analytics/platform/libs/svc/stream"
	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/edtech-analytics/platform/libs/tenancy/jobs"
)

// kindEraseTenant is the job kind of a district's erasure.
const kindEraseTenant = "erase_tenant"

// chConfig is where ctl reaches ClickHouse.
type chConfig struct {
	addr, database, user string
	password             conf.Secret
	tls                  conf.ClientTLS
	analystPrefix        string
}

func (c *chConfig) registerFlags(fs *flag.FlagSet) {
	c.registerFlagsAddr(fs, "127.0.0.1:9000", "ClickHouse native-protocol address, host:port")
}

// registerFlagsAddr registers the flags with another default address and its help (a command for which
// ClickHouse is optional defaults to none).
func (c *chConfig) registerFlagsAddr(fs *flag.FlagSet, addr, help string) {
	conf.String(fs, &c.addr, "clickhouse.addr", "CLICKHOUSE_ADDR", addr, help)
	conf.String(fs, &c.database, "clickhouse.database", "CLICKHOUSE_DATABASE", "edtech", "ClickHouse database of the events and rollups")
	conf.String(fs, &c.user, "clickhouse.user", "CLICKHOUSE_USER", "default", "ClickHouse user")
	conf.SecretVar(fs, &c.password, "clickhouse.password", "CLICKHOUSE_PASSWORD", "ClickHouse password")
	c.tls.RegisterFlags(fs, "clickhouse.", "CLICKHOUSE_", "ClickHouse (its secure native port)")
}

// open connects to the database of the events and rollups.
func (c *chConfig) open(ctx context.Context) (driver.Conn, error) {
	return c.openAt(ctx, c.addr)
}

// openAt connects to the database on the server(s) at addr.
func (c *chConfig) openAt(ctx context.Context, addr string) (driver.Conn, error) {
	tlsCfg, err := c.tls.Config()
	if err != nil {
		return nil, fmt.Errorf("clickhouse.%w", err)
	}
	conn, err := chutil.Open(ctx, chutil.Options{Addr: addr, Database: c.database, User: c.user, Password: c.password.Reveal(), TLS: tlsCfg})
	if err != nil {
		return nil, fmt.Errorf("clickhouse: %w", err)
	}
	return conn, nil
}

// cluster returns the nodes of the ClickHouse cluster when conn's database is in the replicated cluster
// layout (events is a Distributed table, ADR 0026), reached as conn was; nil in the single-server layout.
// The caller closes it.
func (c *chConfig) cluster(ctx context.Context, conn driver.Conn) (*chutil.Cluster, error) {
	return chutil.ClusterOf(ctx, conn, c.database, "events", c.openAt)
}

// eraseStep is one idempotent step of an erasure: count says what its store holds of the district, act
// removes it. Run again after a crash, act finds less or nothing to do.
type eraseStep struct {
	name, store string
	count       func(ctx context.Context) (int64, error)
	act         func(ctx context.Context) (string, error)
}

func runEraseTenant(ctx context.Context, e Env, args []string) error {
	fs, c := newFlags(e, "erase tenant", "--tenant ID --confirm ID [--reason TEXT]")
	tenantID := fs.String("tenant", "", "tenant (district) id")
	confirm := fs.String("confirm", "", "the tenant id again: the district's data is erased from every store, for good")
	reason := fs.String("reason", "", "why, for the job and the audit log")
	by := fs.String("by", os.Getenv("USER"), "who asks, for the record")
	wait := fs.Duration("enricher-wait", 2*time.Minute,
		"how long to wait for the enricher to apply the erase command (0: do not wait; the shredded keys suppress the district's records anyway)")
	keys, file := masterFlags(fs)
	var kcfg kafkax.Config
	kcfg.RegisterFlags(fs)
	var ch chConfig
	ch.registerFlags(fs)
	conf.String(fs, &ch.analystPrefix, "analyst.prefix", "ANALYST_DATABASE_PREFIX", "analyst_",
		"prefix of each district's analyst database, as the aggregator's")
	var arch archiveConfig
	arch.registerFlags(fs)
	if err := parse(fs, c, args); err != nil {
		return err
	}
	if err := requiredTenant(fs, *tenantID); err != nil {
		return err
	}
	if *confirm != *tenantID {
		return usagef("erase tenant: erases district %s from PostgreSQL, ClickHouse, the archive, its keys and credentials, for good; "+
			"repeat the id in --confirm %s to proceed", *tenantID, *tenantID)
	}
	if err := kcfg.Validate(); err != nil {
		return usagef("kafka: %w", err)
	}
	if *by == "" {
		*by = "ctl"
	}
	return withKeyring(ctx, e, c, *keys, *file, func(cp controlPlane, kr *keyring.Keyring) error {
		// An unknown district is an error and makes no job; a deleted one can still be erased.
		if err := knownDistrict(ctx, cp, *tenantID, "nothing to erase"); err != nil {
			return err
		}
		conn, err := ch.open(ctx)
		if err != nil {
			return err
		}
		defer func() { _ = conn.Close() }()
		cluster, err := ch.cluster(ctx, conn)
		if err != nil {
			return err
		}
		if cluster != nil {
			defer cluster.Close()
		}
		store := jobs.New(cp.pool)
		job, created, err := store.Start(ctx, jobs.Request{Kind: kindEraseTenant, TenantID: *tenantID, Reason: *reason, By: *by})
		if err != nil {
			return err
		}
		if !created {
			_, _ = fmt.Fprintf(e.Stderr, "resuming job %s, started %s\n", job.ID, job.CreatedAt.Format(time.RFC3339))
		}
		runErr := arch.withArchive(ctx, func(b archive.Bucket) error {
			er := &tenantEraser{cp: cp, kr: kr, ch: conn, chc: ch, chCluster: cluster, kcfg: kcfg, arch: b, tenant: *tenantID, jobID: job.ID, by: *by, wait: *wait}
			return runJob(ctx, cp, store, job, er.steps())
		})
		job, err = store.Job(ctx, job.ID)
		if err != nil {
			return err
		}
		if err := writeJob(e, c.output, job); err != nil {
			return err
		}
		return runErr
	})
}

// knownDistrict returns tenancy.ErrNotFound, saying that no job was created, when the district was never
// registered; a deleted district is known.
func knownDistrict(ctx context.Context, cp controlPlane, tenantID, consequence string) error {
	var exists bool
	if err := cp.pool.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM control.tenants WHERE id = $1)", tenantID).Scan(&exists); err != nil {
		return err
	}
	if !exists {
		return fmt.Errorf("district %s: %w (%s, no job created)", tenantID, tenancy.ErrNotFound, consequence)
	}
	return nil
}

// runJob runs a job's steps in order from its first unfinished one, recording each with its counts and
// in the audit log, then verifies that every store is empty of what the job erased. A job it finishes is
// reported to its district's webhook.
func runJob(ctx context.Context, cp controlPlane, store *jobs.Store, job jobs.Job, steps []eraseStep) error {
	defer cp.notifyFinished(ctx, store, job) // after the lock is released
	release, err := store.Lock(ctx, job.ID)
	if err != nil {
		return err
	}
	defer release()
	if job, err = store.Job(ctx, job.ID); err != nil { // as it stands now that no other runner can change it
		return err
	}
	done := map[int]bool{}
	for _, st := range job.Steps {
		done[st.Seq] = st.Done()
	}
	for i, st := range steps {
		seq := i + 1
		if done[seq] {
			continue
		}
		before, err := st.count(ctx)
		if err != nil {
			return fmt.Errorf("job %s, step %s: counting: %w (run the command again to resume)", job.ID, st.name, err)
		}
		if err := store.BeginStep(ctx, job.ID, seq, st.name, st.store, before); err != nil {
			return err
		}
		if err := holdStep(ctx, cp.env, st.name); err != nil {
			return err
		}
		detail, err := st.act(ctx)
		if err != nil {
			return fmt.Errorf("job %s, step %s: %w (run the command again to resume)", job.ID, st.name, err)
		}
		after, err := st.count(ctx)
		if err != nil {
			return fmt.Errorf("job %s, step %s: counting: %w (run the command again to resume)", job.ID, st.name, err)
		}
		if err := store.FinishStep(ctx, job.ID, seq, after, detail); err != nil {
			return err
		}
		if err := cp.record(ctx, job.TenantID, jobAction(job, st.name),
			map[string]any{"job": job.ID, "store": st.store, "found_before": before, "found_after": after}); err != nil {
			return err
		}
	}
	// Verification: every store is counted again, after the last step.
	var left []string
	for _, st := range steps {
		n, err := st.count(ctx)
		if err != nil {
			return fmt.Errorf("job %s: verifying %s: %w (run the command again to resume)", job.ID, st.store, err)
		}
		if n != 0 {
			left = append(left, fmt.Sprintf("%s still holds %d", st.store, n))
		}
	}
	if len(left) > 0 {
		reason := "verification failed: " + strings.Join(left, "; ")
		if err := store.Finish(ctx, job.ID, jobs.StatusFailed, reason); err != nil {
			return err
		}
		return fmt.Errorf("job %s: %s", job.ID, reason)
	}
	if err := store.Finish(ctx, job.ID, jobs.StatusDone, ""); err != nil {
		return err
	}
	return cp.record(ctx, job.TenantID, jobAction(job, "done"), map[string]string{"job": job.ID, "subject": job.Subject})
}

// jobAction is the audit action of a job's step: erase.tenant.keys, erase.student.done, ...
func jobAction(job jobs.Job, step string) string {
	return strings.ReplaceAll(job.Kind, "_", ".") + "." + step
}

// tenantEraser holds what erasing one district reaches.
type tenantEraser struct {
	cp  controlPlane
	kr  *keyring.Keyring
	ch  driver.Conn
	chc chConfig
	// chCluster is the ClickHouse cluster in the replicated layout, where the district's rows are in the
	// <name>_local tables of its shard's replicas; nil for one server.
	chCluster *chutil.Cluster
	kcfg      kafkax.Config
	arch      archive.Bucket // nil: no archive configured
	tenant    string
	jobID     string
	by        string
	wait      time.Duration
}

func (t *tenantEraser) steps() []eraseStep {
	return []eraseStep{
		{"credentials", "postgres control: live API keys, dashboard tokens and connector sources (with their SIS credentials)", t.countCredentials, t.revoke},
		{"keys", "key store: the district's keys (its raw records, dead letters and archive become unreadable)", t.countKeys, t.shred},
		{"suppress", "enricher: records of the district still let through", t.countNotSuppressed, t.suppress},
		{"postgres", "postgres: the district's schemas", t.countSchemas, t.dropSchemas},
		{"clickhouse", "clickhouse: the district's rows in events and rollups", t.countCHRows, t.deleteCHRows},
		{"analyst", "clickhouse: the district's analyst database", t.countAnalyst, t.dropAnalyst},
		{"archive", "archive: the district's objects of the raw and enriched layers", t.countArchive, t.eraseArchive},
	}
}

func (t *tenantEraser) countCredentials(ctx context.Context) (n int64, err error) {
	err = t.cp.pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM control.api_keys WHERE tenant_id = $1 AND revoked_at IS NULL)
		+ (SELECT count(*) FROM control.dashboard_tokens WHERE tenant_id = $1 AND revoked_at IS NULL)
		+ (SELECT count(*) FROM control.connector_sources WHERE tenant_id = $1)`, t.tenant).Scan(&n)
	return n, err
}

func (t *tenantEraser) revoke(ctx context.Context) (string, error) {
	err := pgx.BeginFunc(ctx, t.cp.pool, func(tx pgx.Tx) error {
		for _, q := range []string{
			`UPDATE control.tenants SET status = 'deleted', deleted_at = coalesce(deleted_at, now()) WHERE id = $1`,
			`UPDATE control.api_keys SET revoked_at = now() WHERE tenant_id = $1 AND revoked_at IS NULL`,
			`UPDATE control.dashboard_tokens SET revoked_at = now() WHERE tenant_id = $1 AND revoked_at IS NULL`,
			`DELETE FROM control.connector_sources WHERE tenant_id = $1`,
		} {
			if _, err := tx.Exec(ctx, q, t.tenant); err != nil {
				return err
			}
		}
		return nil
	})
	return "district marked deleted; its keys and tokens revoked, its connector sources removed", err
}

func (t *tenantEraser) countKeys(ctx context.Context) (int64, error) {
	var n int64
	err := t.cp.pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM control.subject_keys WHERE tenant_id = $1)
		+ (SELECT count(*) FROM control.district_keks WHERE tenant_id = $1)
		+ (SELECT count(*) FROM control.district_keys WHERE tenant_id = $1)
		+ (SELECT count(*) FROM control.tenants WHERE id = $1 AND pseudonym_key IS NOT NULL)`, t.tenant).Scan(&n)
	return n, err
}

func (t *tenantEraser) shred(ctx context.Context) (string, error) {
	n, err := t.kr.ShredDistrict(ctx, t.tenant)
	if err != nil {
		return "", err
	}
	if _, err := t.cp.pool.Exec(ctx, `UPDATE control.tenants SET pseudonym_key = NULL WHERE id = $1`, t.tenant); err != nil {
		return "", err
	}
	return fmt.Sprintf("%d data keys, the KEKs, lookup secret and pseudonym key deleted", n), nil
}

// countNotSuppressed is 1 until the enricher has recorded the district's erasure (control.erasures).
func (t *tenantEraser) countNotSuppressed(ctx context.Context) (int64, error) {
	var erased bool
	err := t.cp.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM control.erasures WHERE tenant_id = $1 AND kind = 'district')`,
		t.tenant).Scan(&erased)
	if erased || t.wait == 0 {
		return 0, err
	}
	return 1, err
}

// suppress publishes the erase_district command and waits, up to the configured bound, for the enricher
// to record it.
func (t *tenantEraser) suppress(ctx context.Context) (string, error) {
	detail, err := publishCommand(ctx, t.kcfg, records.ControlCommand{Type: records.CommandEraseDistrict, TenantID: t.tenant}, t.jobID, t.by)
	if err != nil || t.wait == 0 {
		return detail + "; not waiting for the enricher", err
	}
	if err := until(ctx, t.wait, "the enricher to apply it", func() (bool, error) {
		n, err := t.countNotSuppressed(ctx)
		return n == 0, err
	}); err != nil {
		return "", fmt.Errorf("%s, but %w", detail, err)
	}
	return detail + "; applied by the enricher", nil
}

// publishCommand publishes cmd on the control topic as job's (its id is the job's, so the copy a resumed
// job publishes again is applied once) and says where it went.
func publishCommand(ctx context.Context, kcfg kafkax.Config, cmd records.ControlCommand, job, by string) (string, error) {
	codec, err := stream.NewCodec(ctx, kcfg)
	if err != nil {
		return "", err
	}
	reason := "job " + job
	cmd.CommandID, cmd.IssuedAt, cmd.IssuedBy, cmd.Reason = job, time.Now().UTC().Truncate(time.Millisecond), by, &reason
	b, err := codec.Encode(&cmd)
	if err != nil {
		return "", err
	}
	cl, err := kafkax.NewProducer(kcfg, kafkax.Deps{})
	if err != nil {
		return "", err
	}
	defer cl.Close()
	r := &kgo.Record{Topic: kcfg.Topics().Control, Key: []byte(cmd.TenantID), Value: b}
	if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
		return "", fmt.Errorf("publishing the %s command: %w", cmd.Type, err)
	}
	return fmt.Sprintf("%s published at %s %d/%d", cmd.Type, r.Topic, r.Partition, r.Offset), nil
}

// until polls done, with backoff, for up to wait.
func until(ctx context.Context, wait time.Duration, what string, done func() (bool, error)) error {
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	for delay := 20 * time.Millisecond; ; delay = min(2*delay, time.Second) {
		ok, err := done()
		if err != nil && wctx.Err() == nil {
			return err
		}
		if ok {
			return nil
		}
		select {
		case <-wctx.Done():
			return fmt.Errorf("waited %s for %s", wait, what)
		case <-time.After(delay):
		}
	}
}

func (t *tenantEraser) districtPool(ctx context.Context) (*pgxpool.Pool, error) {
	pool, _, err := t.cp.fleet.DistrictPool(ctx, t.tenant)
	return pool, err
}

func (t *tenantEraser) countSchemas(ctx context.Context) (int64, error) {
	pool, err := t.districtPool(ctx)
	if err != nil {
		return 0, err
	}
	schema, err := tenancy.SchemaName(t.tenant)
	if err != nil {
		return 0, err
	}
	var n int64
	err = pool.QueryRow(ctx, `SELECT count(*) FROM pg_namespace WHERE nspname = $1 OR nspname LIKE $2`,
		schema, strings.ReplaceAll(schema, "_", `\_`)+`\_%`).Scan(&n)
	return n, err
}

func (t *tenantEraser) dropSchemas(ctx context.Context) (string, error) {
	pool, err := t.districtPool(ctx)
	if err != nil {
		return "", err
	}
	if _, err := tenancy.DropDistrictSchemas(ctx, pool, t.tenant); err != nil {
		return "", err
	}
	return "the district's schema and its rebuild copies dropped", nil
}

// chTables lists the tables of the ClickHouse database that hold a tenant_id column (the events, each
// rollup's storage, the journal), not the views over them.
func (t *tenantEraser) chTables(ctx context.Context) ([]string, error) {
	rows, err := t.ch.Query(ctx, `SELECT c.table FROM system.columns c JOIN system.tables tb ON tb.database = c.database AND tb.name = c.table
		WHERE c.database = ? AND c.name = 'tenant_id' AND tb.engine LIKE '%MergeTree' ORDER BY c.table`, t.chc.database)
	if err != nil {
		return nil, fmt.Errorf("listing clickhouse tables: %w", err)
	}
	defer func() { _ = rows.Close() }()
	var out []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			return nil, err
		}
		out = append(out, name)
	}
	return out, rows.Err()
}

func (t *tenantEraser) countCHRows(ctx context.Context) (int64, error) {
	tables, err := t.chTables(ctx)
	if err != nil {
		return 0, err
	}
	var total int64
	err = t.onEveryNode(ctx, func(ctx context.Context, conn driver.Conn) error {
		for _, tb := range tables {
			var n uint64
			if err := conn.QueryRow(ctx, "SELECT count() FROM "+chutil.QuoteIdent(t.chc.database)+"."+chutil.QuoteIdent(tb)+
				" WHERE toString(tenant_id) = ?", t.tenant).Scan(&n); err != nil {
				return fmt.Errorf("counting %s: %w", tb, err)
			}
			total += int64(n)
		}
		return nil
	})
	return total, err
}

// onEveryNode runs fn on the ClickHouse server, or on every node of the cluster: what each replica holds
// is counted, so that one that has not applied a delete yet counts too.
func (t *tenantEraser) onEveryNode(ctx context.Context, fn func(ctx context.Context, conn driver.Conn) error) error {
	if t.chCluster == nil {
		return fn(ctx, t.ch)
	}
	return t.chCluster.EachNode(ctx, func(ctx context.Context, _ chutil.Node, conn driver.Conn) error { return fn(ctx, conn) })
}

func (t *tenantEraser) deleteCHRows(ctx context.Context) (string, error) {
	tables, err := t.chTables(ctx)
	if err != nil {
		return "", err
	}
	for _, tb := range tables {
		q := "ALTER TABLE " + chutil.QuoteIdent(t.chc.database) + "." + chutil.QuoteIdent(tb) + " DELETE WHERE toString(tenant_id) = ?"
		if t.chCluster != nil {
			// On one replica of each shard, which passes it to the others; done once every replica applied it.
			if err := t.chCluster.OnEachShard(ctx, q, t.tenant); err != nil {
				return "", fmt.Errorf("deleting from %s: %w", tb, err)
			}
			if err := t.chCluster.WaitMutations(ctx, tb); err != nil {
				return "", err
			}
			continue
		}
		if err := t.ch.Exec(ctx, q, t.tenant); err != nil {
			return "", fmt.Errorf("deleting from %s: %w", tb, err)
		}
		if err := chutil.WaitMutations(ctx, t.ch, t.chc.database, tb); err != nil {
			return "", err
		}
	}
	where := "the server"
	if t.chCluster != nil {
		where = "every replica of cluster " + t.chCluster.Name
	}
	return fmt.Sprintf("deleted from %d tables on %s: %s", len(tables), where, strings.Join(tables, ", ")), nil
}

func (t *tenantEraser) analystDatabase() (string, bool) {
	if t.chc.analystPrefix == "" {
		return "", false
	}
	return t.chc.analystPrefix + t.tenant, true
}

func (t *tenantEraser) countAnalyst(ctx context.Context) (int64, error) {
	name, ok := t.analystDatabase()
	if !ok {
		return 0, nil
	}
	var total int64
	err := t.onEveryNode(ctx, func(ctx context.Context, conn driver.Conn) error {
		var n uint64
		err := conn.QueryRow(ctx, "SELECT count() FROM system.databases WHERE name = ?", name).Scan(&n)
		total += int64(n)
		return err
	})
	return total, err
}

func (t *tenantEraser) dropAnalyst(ctx context.Context) (string, error) {
	name, ok := t.analystDatabase()
	if !ok {
		return "analyst databases are off", nil
	}
	return "dropped " + name, t.onEveryNode(ctx, func(ctx context.Context, conn driver.Conn) error { return chutil.DropDatabase(ctx, conn, name) })
}

// jobStatus returns the run function of a status command (erase status, export status): it shows one
// privacy job and its steps.
func jobStatus(name string) func(ctx context.Context, e Env, args []string) error {
	return func(ctx context.Context, e Env, args []string) error {
		fs, c := newFlags(e, name, "JOB")
		if err := fs.Parse(args); err != nil {
			return parse(fs, c, args)
		}
		if fs.NArg() != 1 {
			return usagef("%s: give the job id", name)
		}
		id := fs.Arg(0)
		return withControl(ctx, e, c, func(cp controlPlane) error {
			job, err := jobs.New(cp.pool).Job(ctx, id)
			if err != nil {
				return err
			}
			return writeJob(e, c.output, job)
		})
	}
}

// writeJob prints a job as JSON or as text.
func writeJob(e Env, output string, job jobs.Job) error {
	if output == "json" {
		return writeJSON(e.Stdout, job)
	}
	return writeJobText(e, job)
}

// writeJobText prints a job and its verification log.
func writeJobText(e Env, job jobs.Job) error {
	out := &errWriter{w: e.Stdout}
	subject := ""
	if job.Subject != "" {
		subject = ", student " + job.Subject
	}
	out.printf("job %s: %s of district %s%s, %s (requested by %s at %s)\n", job.ID, job.Kind, job.TenantID, subject, job.Status,
		job.RequestedBy, job.CreatedAt.UTC().Format(time.RFC3339))
	if job.Error != "" {
		out.printf("  %s\n", job.Error)
	}
	for _, st := range job.Steps {
		state := "running"
		if st.Done() {
			state = "done " + st.FinishedAt.UTC().Format(time.RFC3339)
		}
		out.printf("  %d. %-11s %s: before %s, after %s; %s (%s)\n", st.Seq, st.Name, st.Store, count(st.FoundBefore),
			count(st.FoundAfter), st.Detail, state)
	}
	return out.Err()
}

func count(n *int64) string {
	if n == nil {
		return "-"
	}
	return fmt.Sprint(*n)
}
