package app

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"hash"
	"io"
	"path/filepath"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/jackc/pgx/v5"

	"github.com/edtech-analytics/platform/libs/conf"
	"github.com/edtech-analytics/platform/libs/keyring"
	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/edtech-analytics/platform/libs/tenancy/jobs"
)

// Privacy exports: a student's access request (ctl export student, one zip) and a whole district (ctl
// export tenant, a directory of gzip files). Each reads the district's stores as of one point: its
// PostgreSQL schema inside one read-only REPEATABLE READ transaction, which also reads the offsets the
// sink committed with that state, and its ClickHouse events below the offsets the aggregator had stored
// when the export began. The manifest names both.

// Job kinds of the exports.
const (
	kindExportStudent = "export_student"
	kindExportTenant  = jobs.KindExportTenant
)

// exportFlags are the flags both exports take.
type exportFlags struct {
	tenant, out, reason, by, sinkGroup string
	keys, keyFile                      *string // the master keys, which sign the audit entry
	ch                                 chConfig
}

func (f *exportFlags) register(fs *flag.FlagSet, e Env, outHelp string) {
	fs.StringVar(&f.tenant, "tenant", "", "tenant (district) id")
	fs.StringVar(&f.out, "out", "", outHelp)
	fs.StringVar(&f.reason, "reason", "", "why, for the job and the audit log")
	fs.StringVar(&f.by, "by", e.Getenv("USER"), "who asks, for the record")
	conf.String(fs, &f.sinkGroup, "sink.group", "SINK_GROUP", "edtech-sink", "the sink's consumer group, whose committed offsets the manifest records")
	f.keys, f.keyFile = masterFlags(fs)
	f.ch.registerFlags(fs)
}

// parse parses args and checks the flags, with the other required ones named; it makes --out absolute.
func (f *exportFlags) parse(fs *flag.FlagSet, c *common, args []string, names ...string) error {
	if err := parse(fs, c, args); err != nil {
		return err
	}
	if err := requiredTenant(fs, f.tenant); err != nil {
		return err
	}
	if err := required(fs, append([]string{"out", "sink.group"}, names...)...); err != nil {
		return err
	}
	if f.by == "" {
		f.by = "ctl"
	}
	out, err := filepath.Abs(f.out)
	if err != nil {
		return usagef("--out: %w", err)
	}
	f.out = out
	return nil
}

// partitionOffset is how far a store had consumed one partition: NextOffset is the first offset it had not.
type partitionOffset struct {
	Topic      string `json:"topic"`
	Partition  int32  `json:"partition"`
	NextOffset int64  `json:"next_offset"`
}

// consumed says what the exported state covers.
type consumed struct {
	SinkGroup string `json:"sink_group"`
	// Sink: the offsets the sink had committed with the PostgreSQL state the export read (same snapshot).
	Sink []partitionOffset `json:"sink"`
	// ClickHouse: the offsets of the events the aggregator had stored (kafka_offsets) when the export
	// began; the exported events are the district's rows below them.
	ClickHouse []partitionOffset `json:"clickhouse"`
}

// consistency says what an export's snapshot is, for its manifest.
const consistency = "PostgreSQL: one REPEATABLE READ snapshot of the district schema, the state the sink had committed " +
	"with offsets.sink; ClickHouse events: the district's rows stored below offsets.clickhouse when the export began"

// manifest is manifest.json of an export.
type manifest struct {
	Kind        string       `json:"kind"`
	Job         string       `json:"job"`
	TenantID    string       `json:"tenant_id"`
	StudentID   string       `json:"student_internal_id,omitempty"`
	Pseudonym   string       `json:"pseudonym,omitempty"` // the student's pseudonym in ClickHouse events, if any
	Format      string       `json:"format,omitempty"`
	GeneratedAt time.Time    `json:"generated_at"`
	Consistency string       `json:"consistency"`
	Offsets     consumed     `json:"offsets"`
	Files       []exportFile `json:"files"`
}

// snapshot is one consistent read of a district's stores, begun at at. close ends it.
type snapshot struct {
	tenant, schema string
	at             time.Time
	tx             pgx.Tx
	ch             driver.Conn
	offsets        consumed
}

// openSnapshot begins the read-only REPEATABLE READ transaction on the district's instance, reads the
// sink's offsets in it, and the aggregator's from ClickHouse.
func openSnapshot(ctx context.Context, cp controlPlane, ch driver.Conn, tenant, group string) (*snapshot, error) {
	schema, err := tenancy.SchemaName(tenant)
	if err != nil {
		return nil, err
	}
	pool, _, err := cp.fleet.DistrictPool(ctx, tenant)
	if err != nil {
		return nil, err
	}
	tx, err := pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, fmt.Errorf("reading district %s: %w", tenant, err)
	}
	s := &snapshot{tenant: tenant, schema: schema, at: time.Now().UTC(), tx: tx, ch: ch, offsets: consumed{SinkGroup: group}}
	if err := s.readOffsets(ctx); err != nil {
		s.close(ctx)
		return nil, err
	}
	return s, nil
}

func (s *snapshot) readOffsets(ctx context.Context) error {
	if _, err := s.tx.Exec(ctx, "SET LOCAL TimeZone = 'UTC'"); err != nil {
		return err
	}
	rows, err := s.tx.Query(ctx, `SELECT topic, partition, next_offset FROM control.consumer_offsets
		WHERE consumer = $1 ORDER BY topic, partition`, s.offsets.SinkGroup)
	if err != nil {
		return fmt.Errorf("reading the sink's offsets: %w", err)
	}
	if s.offsets.Sink, err = pgx.CollectRows(rows, pgx.RowToStructByPos[partitionOffset]); err != nil {
		return fmt.Errorf("reading the sink's offsets: %w", err)
	}
	crows, err := s.ch.Query(ctx, `SELECT kafka_topic, kafka_partition, max(max_offset) + 1 FROM kafka_offsets
		GROUP BY kafka_topic, kafka_partition ORDER BY kafka_topic, kafka_partition`)
	if err != nil {
		return fmt.Errorf("reading the aggregator's offsets: %w", err)
	}
	defer func() { _ = crows.Close() }()
	s.offsets.ClickHouse = []partitionOffset{}
	for crows.Next() {
		var (
			o          partitionOffset
			part       uint32
			nextOffset uint64
		)
		if err := crows.Scan(&o.Topic, &part, &nextOffset); err != nil {
			return fmt.Errorf("reading the aggregator's offsets: %w", err)
		}
		o.Partition, o.NextOffset = int32(part), int64(nextOffset)
		s.offsets.ClickHouse = append(s.offsets.ClickHouse, o)
	}
	return crows.Err()
}

func (s *snapshot) close(ctx context.Context) {
	_ = s.tx.Rollback(context.WithoutCancel(ctx)) // read only: nothing to lose
}

// table is the quoted name of a table of the district schema.
func (s *snapshot) table(name string) string {
	return pgx.Identifier{s.schema, name}.Sanitize()
}

// tables lists the tables of the district schema, from the catalog, with a column named column when it
// is not empty.
func (s *snapshot) tables(ctx context.Context, column string) ([]string, error) {
	rows, err := s.tx.Query(ctx, `SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND NOT c.relispartition
		AND ($2 = '' OR EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = $2 AND NOT a.attisdropped))
		ORDER BY c.relname`, s.schema, column)
	if err != nil {
		return nil, fmt.Errorf("listing the tables of %s: %w", s.schema, err)
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// eventsWhere is the condition that keeps the district's events the aggregator had stored when the
// snapshot began, with its arguments.
func (s *snapshot) eventsWhere() (string, []any) {
	args := []any{s.tenant}
	parts := []string{"0"}
	for _, o := range s.offsets.ClickHouse {
		parts = append(parts, "kafka_topic = ? AND kafka_partition = ? AND kafka_offset < ?")
		args = append(args, o.Topic, o.Partition, o.NextOffset)
	}
	return "tenant_id = ? AND ((" + strings.Join(parts, ") OR (") + "))", args
}

// chCount runs a count query on ClickHouse.
func chCount(ctx context.Context, ch driver.Conn, query string, args ...any) (int64, error) {
	var n uint64
	if err := ch.QueryRow(ctx, query, args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("counting in clickhouse: %w", err)
	}
	return int64(n), nil
}

// exportFile is one file of an export, as its manifest lists it.
type exportFile struct {
	Name     string `json:"name"`
	Store    string `json:"store"` // postgres, clickhouse or control
	Table    string `json:"table,omitempty"`
	Contains string `json:"contains,omitempty"`
	Rows     int64  `json:"rows"`
	Bytes    int64  `json:"bytes"`
	SHA256   string `json:"sha256"`
}

// digest passes writes on to w, counting and hashing them.
type digest struct {
	w io.Writer
	h hash.Hash
	n int64
}

func newDigest(w io.Writer) *digest { return &digest{w: w, h: sha256.New()} }

func (d *digest) Write(p []byte) (int, error) {
	n, err := d.w.Write(p)
	d.h.Write(p[:n])
	d.n += int64(n)
	return n, err
}

func (d *digest) sum() string { return hex.EncodeToString(d.h.Sum(nil)) }

// exportStep is one store's part of an export: count says how many rows the store holds for it, write
// writes them and says how many it wrote and what.
type exportStep struct {
	name, store string
	count       func(ctx context.Context) (int64, error)
	write       func(ctx context.Context) (rows int64, detail string, err error)
}

// runExport runs an export's steps as a job, each recorded with the rows its store held and the rows
// written, then publish (the manifest, the output moved into place), and finishes the job with the
// outcome. A job the same export left unfinished is run again from its start.
func runExport(ctx context.Context, e Env, store *jobs.Store, req jobs.Request, steps []exportStep,
	publish func(job jobs.Job) error) (jobs.Job, error) {
	job, created, err := store.Start(ctx, req)
	if err != nil {
		return jobs.Job{}, err
	}
	release, err := store.Lock(ctx, job.ID)
	if err != nil {
		return jobs.Job{}, err
	}
	defer release()
	if !created {
		_, _ = fmt.Fprintf(e.Stderr, "job %s, started %s, was left unfinished: running it again\n", job.ID, job.CreatedAt.Format(time.RFC3339))
	}
	runErr := func() error {
		for i, st := range steps {
			found, err := st.count(ctx)
			if err != nil {
				return fmt.Errorf("step %s: %w", st.name, err)
			}
			if err := store.BeginStep(ctx, job.ID, i+1, st.name, st.store, found); err != nil {
				return err
			}
			written, detail, err := st.write(ctx)
			if err != nil {
				return fmt.Errorf("step %s: %w", st.name, err)
			}
			if err := store.FinishStep(ctx, job.ID, i+1, written, detail); err != nil {
				return err
			}
			if written != found {
				return fmt.Errorf("step %s: %s held %d rows, %d were written", st.name, st.store, found, written)
			}
		}
		return publish(job)
	}()
	status, reason := jobs.StatusDone, ""
	if runErr != nil {
		status, reason = jobs.StatusFailed, runErr.Error()
		runErr = fmt.Errorf("job %s: %w", job.ID, runErr)
	}
	ctx = context.WithoutCancel(ctx) // an interrupted export is recorded as failed
	if err := store.Finish(ctx, job.ID, status, reason); err != nil {
		return job, errors.Join(runErr, err)
	}
	job, err = store.Job(ctx, job.ID)
	return job, errors.Join(runErr, err)
}

// exporter is one export being written.
type exporter interface {
	steps() []exportStep
	publish(job jobs.Job) error // write the manifest, move the output into place
	discard()                   // remove the output unless it was published
	summary() map[string]any    // what the audit entry says of it
}

// run runs an export of the district as a job of kind, audited as action: it opens the district's
// stores as of one point and has prepare make the exporter and name the job's subject. An error before
// the job starts (an unknown district or student) makes no job.
func (f *exportFlags) run(ctx context.Context, e Env, c *common, kind, action string, params map[string]string,
	prepare func(cp controlPlane, kr *keyring.Keyring, snap *snapshot) (x exporter, subject string, err error)) error {
	return withKeyring(ctx, e, c, *f.keys, *f.keyFile, func(cp controlPlane, kr *keyring.Keyring) error {
		return f.runWith(ctx, e, c, cp, kr, kind, action, params, prepare)
	})
}

// syncReplicas makes every replica of the tables an export reads fetch what its shard holds, in the
// replicated cluster layout: a read through a Distributed table picks any replica, which may lag.
func (f *exportFlags) syncReplicas(ctx context.Context, ch driver.Conn) error {
	cluster, err := f.ch.cluster(ctx, ch)
	if err != nil || cluster == nil {
		return err
	}
	defer cluster.Close()
	for _, table := range []string{"kafka_offsets_local", "events_local", "metrics_student_daily_local"} {
		if err := cluster.SyncReplicas(ctx, table); err != nil {
			return err
		}
	}
	return nil
}

// runWith is run on a control plane and keyring already open (ctl jobs work's).
func (f *exportFlags) runWith(ctx context.Context, e Env, c *common, cp controlPlane, kr *keyring.Keyring, kind, action string,
	params map[string]string, prepare func(cp controlPlane, kr *keyring.Keyring, snap *snapshot) (x exporter, subject string, err error)) error {
	if err := knownDistrict(ctx, cp, f.tenant, "nothing to export"); err != nil {
		return err
	}
	ch, err := f.ch.open(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = ch.Close() }()
	if err := f.syncReplicas(ctx, ch); err != nil {
		return err
	}
	snap, err := openSnapshot(ctx, cp, ch, f.tenant, f.sinkGroup)
	if err != nil {
		return err
	}
	defer snap.close(ctx)
	x, subject, err := prepare(cp, kr, snap)
	if err != nil {
		return err
	}
	defer x.discard()
	params["out"] = f.out
	p, err := json.Marshal(params)
	if err != nil {
		return err
	}
	job, runErr := runExport(ctx, e, jobs.New(cp.pool), jobs.Request{Kind: kind, TenantID: f.tenant, Subject: subject,
		Reason: f.reason, By: f.by, Params: p}, x.steps(), x.publish)
	if job.ID == "" {
		return runErr
	}
	cp.notifyFinished(ctx, jobs.New(cp.pool), job) // the district's webhook, if it has one
	detail := x.summary()
	detail["job"], detail["status"], detail["out"] = job.ID, job.Status, f.out
	if err := cp.record(context.WithoutCancel(ctx), f.tenant, action, detail); err != nil {
		return errors.Join(runErr, err)
	}
	if err := writeJob(e, c.output, job); err != nil {
		return errors.Join(runErr, err)
	}
	if c.output == "text" && job.Status == jobs.StatusDone {
		if _, err := fmt.Fprintf(e.Stdout, "written to %s\n", f.out); err != nil {
			return err
		}
	}
	return runErr
}
