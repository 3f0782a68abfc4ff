package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kadm"
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

func runEraseStudent(ctx context.Context, e Env, args []string) error {
	fs, c := newFlags(e, "erase student", "--tenant ID --student SIS_ID [--source SRC] [--reason TEXT]")
	tenantID := fs.String("tenant", "", "tenant (district) id")
	sis := fs.String("student", "", "the student's SIS id (OneRoster sourcedId)")
	source := fs.String("source", "", "the source the SIS id is from (default: any source of the district)")
	reason := fs.String("reason", "", "why, for the job and the audit log")
	by := fs.String("by", os.Getenv("USER"), "who asks, for the record")
	wait := fs.Duration("wait", 2*time.Minute, "how long to wait for the enricher, the sink and the aggregator to apply the erasure")
	var sinkGroup string
	conf.String(fs, &sinkGroup, "sink.group", "SINK_GROUP", "edtech-sink", "the sink's consumer group, the name its stored offsets are kept under")
	keys, file := masterFlags(fs)
	var kcfg kafkax.Config
	kcfg.RegisterFlags(fs)
	var ch chConfig
	ch.registerFlags(fs)
	var arch archiveConfig
	arch.registerFlags(fs)
	if err := parse(fs, c, args); err != nil {
		return err
	}
	if err := requiredTenant(fs, *tenantID); err != nil {
		return err
	}
	if err := required(fs, "student"); err != nil {
		return err
	}
	if err := kcfg.Validate(); err != nil {
		return usagef("kafka: %w", err)
	}
	if *by == "" {
		*by = "ctl"
	}
	return withKeyring(ctx, e, c, *keys, *file, func(cp controlPlane, kr *keyring.Keyring) error {
		if _, err := cp.tenants.Tenant(ctx, *tenantID); err != nil {
			return fmt.Errorf("district %s: %w (nothing to erase, no job created)", *tenantID, err)
		}
		found := students(cp, kr)
		internalID, err := found.Find(ctx, *tenantID, *source, *sis)
		if errors.Is(err, jobs.ErrAmbiguous) {
			return usagef("%v: give --source", err)
		}
		if err != nil {
			return fmt.Errorf("%w (nothing to erase, no job created)", err)
		}
		ids, err := found.SISIDs(ctx, *tenantID, internalID, *sis)
		if err != nil {
			return err
		}
		params, err := json.Marshal(jobs.EraseStudentParams{SISID: *sis, Source: *source, SISIDs: ids})
		if err != nil {
			return err
		}
		job, created, err := jobs.New(cp.pool).Start(ctx, jobs.Request{Kind: jobs.KindEraseStudent, TenantID: *tenantID,
			Subject: internalID, Reason: *reason, By: *by, Params: params})
		if err != nil {
			return err
		}
		if !created {
			_, _ = fmt.Fprintf(e.Stderr, "resuming job %s, started %s\n", job.ID, job.CreatedAt.Format(time.RFC3339))
		}
		w := worker{kcfg: kcfg, ch: ch, archive: arch, sinkGroup: sinkGroup, wait: *wait}
		return w.report(ctx, e, c, cp, job, w.eraseStudent(ctx, cp, kr, job))
	})
}

// students finds students by SIS id, erased ones too.
func students(cp controlPlane, kr *keyring.Keyring) jobs.Students {
	return jobs.Students{Pools: cp.fleet, ErasedSIS: kr.ErasedSISFunc(func(ctx context.Context, tenant string) ([]byte, error) {
		t, err := cp.tenants.Tenant(ctx, tenant)
		return t.PseudonymKey, err
	})}
}

// worker runs privacy jobs: what they reach beyond the control schema.
type worker struct {
	exportDir string
	kcfg      kafkax.Config
	ch        chConfig
	archive   archiveConfig
	sinkGroup string
	wait      time.Duration
}

// eraseStudent runs a student erasure job to its end (or to an error it can be resumed after).
func (w worker) eraseStudent(ctx context.Context, cp controlPlane, kr *keyring.Keyring, job jobs.Job) error {
	var p jobs.EraseStudentParams
	if err := json.Unmarshal(job.Params, &p); err != nil || p.SISID == "" {
		return jobs.New(cp.pool).Finish(ctx, job.ID, jobs.StatusFailed, "the job does not say which SIS id to erase")
	}
	sis := p.SISIDs
	if !slices.Contains(sis, p.SISID) {
		sis = append(sis, p.SISID)
	}
	pool, _, err := cp.fleet.DistrictPool(ctx, job.TenantID)
	if err != nil {
		return err
	}
	conn, err := w.ch.open(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close() }()
	return w.archive.withArchive(ctx, func(b archive.Bucket) error {
		er := &studentEraser{cp: cp, kr: kr, pool: pool, ch: conn, chc: w.ch, kcfg: w.kcfg, arch: b, sinkGroup: w.sinkGroup,
			tenant: job.TenantID, sis: sis, student: job.Subject, jobID: job.ID, by: job.RequestedBy, wait: w.wait}
		return runJob(ctx, cp, jobs.New(cp.pool), job, er.steps())
	})
}

// report prints the job as it stands and returns runErr.
func (w worker) report(ctx context.Context, e Env, c *common, cp controlPlane, job jobs.Job, runErr error) error {
	job, err := jobs.New(cp.pool).Job(ctx, job.ID)
	if err != nil {
		return errors.Join(runErr, err)
	}
	return errors.Join(runErr, writeJob(e, c.output, job))
}

// studentEraser holds what erasing one student reaches.
type studentEraser struct {
	cp        controlPlane
	kr        *keyring.Keyring
	pool      *pgxpool.Pool // the district's instance
	ch        driver.Conn
	chc       chConfig
	kcfg      kafkax.Config
	arch      archive.Bucket // nil: no archive configured
	sinkGroup string
	tenant    string
	sis       []string // every SIS id the student had: each has its data key
	student   string   // internal id
	jobID     string
	by        string
	wait      time.Duration

	markers map[int32]int64 // the erasure markers this run published: partition -> offset
}

func (s *studentEraser) steps() []eraseStep {
	return []eraseStep{
		{"keys", "key store: the student's data key (its raw records and dead letters become unreadable)", s.countKey, s.shred},
		{"suppress", "enricher: the student's identities and context, and its records from now on", s.countNotSuppressed, s.suppress},
		{"postgres", "postgres: the student's rows in the district schema", s.countPostgres, s.erasePostgres},
		{"clickhouse", "clickhouse: the student's events, its rows in the rollups, and the rollups of its days", s.countClickHouse, s.eraseClickHouse},
		{"archive", "archive: the student's rows in the district's enriched files", s.countArchive, s.eraseArchive},
	}
}

func (s *studentEraser) countKey(ctx context.Context) (int64, error) {
	var n int64
	for _, id := range s.sis {
		ok, err := s.kr.HasSubjectKey(ctx, s.tenant, id)
		if err != nil {
			return 0, err
		}
		if ok {
			n++
		}
	}
	return n, nil
}

func (s *studentEraser) shred(ctx context.Context) (string, error) {
	n := 0
	for _, id := range s.sis {
		ok, err := s.kr.ShredSubject(ctx, s.tenant, id)
		if err != nil {
			return "", err
		}
		if ok {
			n++
		}
	}
	return fmt.Sprintf("%d data keys deleted (of the student's %d SIS ids)", n, len(s.sis)), nil
}

// countNotSuppressed is 1 until the enricher has recorded the student's erasure (control.erasures).
func (s *studentEraser) countNotSuppressed(ctx context.Context) (int64, error) {
	var erased bool
	err := s.cp.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM control.erasures WHERE tenant_id = $1 AND internal_id = $2)`,
		s.tenant, s.student).Scan(&erased)
	if erased {
		return 0, err
	}
	return 1, err
}

// suppress publishes the erase_student command and waits for the enricher to record it: from then on
// it drops the student's records, also when raw is replayed.
func (s *studentEraser) suppress(ctx context.Context) (string, error) {
	detail, err := publishCommand(ctx, s.kcfg, records.ControlCommand{Type: records.CommandEraseStudent, TenantID: s.tenant,
		StudentInternalID: &s.student}, s.jobID, s.by)
	if err != nil {
		return "", err
	}
	if err := until(ctx, s.wait, "the enricher to record the erasure", func() (bool, error) {
		n, err := s.countNotSuppressed(ctx)
		return n == 0, err
	}); err != nil {
		return "", fmt.Errorf("%s, but %w", detail, err)
	}
	return detail + "; applied by the enricher", nil
}

// sinkTables are the district tables the sink keeps of a student (by internal id), and the identities
// the enricher keeps in clear until it applies the erasure.
var sinkTables = []string{"student_activity", "attendance_daily", "assessment_results_latest", "submissions", "roster_users"}

func (s *studentEraser) countPostgres(ctx context.Context) (int64, error) {
	schema, err := tenancy.SchemaName(s.tenant)
	if err != nil {
		return 0, err
	}
	parts := make([]string, 0, len(sinkTables)+1)
	for _, t := range sinkTables {
		parts = append(parts, "(SELECT count(*) FROM "+pgx.Identifier{schema, t}.Sanitize()+" WHERE internal_id = $1)")
	}
	parts = append(parts, "(SELECT count(*) FROM "+pgx.Identifier{schema, "student_identities"}.Sanitize()+
		" WHERE internal_id = $1 AND sis_id NOT LIKE 'erased:%')")
	for _, t := range rosterImportTables {
		parts = append(parts, "(SELECT count(*) FROM "+pgx.Identifier{schema, t}.Sanitize()+" WHERE person = ANY($2))")
	}
	var n int64
	err = s.pool.QueryRow(ctx, "SELECT "+strings.Join(parts, " + "), s.student, s.sis).Scan(&n)
	return n, err
}

// rosterImportTables are the roster import step's tables (libs/tenancy/rosters), which name the person a
// record is about by SIS id: the ledger, held uploads' records and records held for references.
var rosterImportTables = []string{"import_ledger", "import_upload_records", "import_held_refs"}

// eraseRosterImport deletes the student's rows of the roster import step's tables. A later upload that
// still names the student sends the record again, which the enricher drops as the erased student's.
func (s *studentEraser) eraseRosterImport(ctx context.Context) (int64, error) {
	schema, err := tenancy.SchemaName(s.tenant)
	if err != nil {
		return 0, err
	}
	var total int64
	for _, t := range rosterImportTables {
		tag, err := s.pool.Exec(ctx, "DELETE FROM "+pgx.Identifier{schema, t}.Sanitize()+" WHERE person = ANY($1)", s.sis)
		if err != nil {
			return 0, fmt.Errorf("erasing the student from %s: %w", t, err)
		}
		total += tag.RowsAffected()
	}
	return total, nil
}

// erasePostgres publishes the erasure marker on every partition of enriched and waits for the sink to
// pass it on the district's instance: the sink deletes the student's rows in order with what it applies.
func (s *studentEraser) erasePostgres(ctx context.Context) (string, error) {
	if err := s.publishMarkers(ctx); err != nil {
		return "", err
	}
	err := until(ctx, s.wait, "the sink to apply the erasure", func() (bool, error) {
		var behind int
		err := s.pool.QueryRow(ctx, `SELECT count(*) FROM unnest($1::int[], $2::bigint[]) AS m(partition, marker)
			LEFT JOIN control.consumer_offsets o ON o.consumer = $3 AND o.topic = $4 AND o.partition = m.partition
			WHERE coalesce(o.next_offset, 0) <= m.marker`, s.markerPartitions(), s.markerOffsets(), s.sinkGroup, s.kcfg.Topics().Enriched).Scan(&behind)
		return behind == 0, err
	})
	if err != nil {
		return "", err
	}
	n, err := s.eraseRosterImport(ctx)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("erasure markers at enriched offsets %v applied by the sink; %d rows of the roster import step deleted", s.markers, n), nil
}

func (s *studentEraser) countClickHouse(ctx context.Context) (int64, error) {
	var total int64
	for _, table := range []string{"events", "metrics_student_daily"} {
		var n uint64
		q := "SELECT count() FROM " + chutil.QuoteIdent(s.chc.database) + "." + chutil.QuoteIdent(table) +
			" WHERE tenant_id = ? AND student_id = toUUID(?)"
		if err := s.ch.QueryRow(ctx, q, s.tenant, s.student).Scan(&n); err != nil {
			return 0, fmt.Errorf("counting %s: %w", table, err)
		}
		total += int64(n)
	}
	return total, nil
}

// eraseClickHouse waits for the aggregator to pass the erasure markers: on each partition it deletes the
// student's events and derives the rollups of the student's days again from the events left.
func (s *studentEraser) eraseClickHouse(ctx context.Context) (string, error) {
	if err := s.publishMarkers(ctx); err != nil {
		return "", err
	}
	err := until(ctx, s.wait, "the aggregator to apply the erasure", func() (bool, error) {
		rows, err := s.ch.Query(ctx, "SELECT kafka_partition, max(max_offset) FROM "+chutil.QuoteIdent(s.chc.database)+
			".kafka_offsets WHERE kafka_topic = ? GROUP BY kafka_partition", s.kcfg.Topics().Enriched)
		if err != nil {
			return false, err
		}
		defer func() { _ = rows.Close() }()
		stored := map[int32]int64{}
		for rows.Next() {
			var p uint32
			var last uint64
			if err := rows.Scan(&p, &last); err != nil {
				return false, err
			}
			stored[int32(p)] = int64(last)
		}
		if err := rows.Err(); err != nil {
			return false, err
		}
		for p, off := range s.markers {
			if last, ok := stored[p]; !ok || last < off {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("erasure markers at enriched offsets %v applied by the aggregator", s.markers), nil
}

// publishMarkers writes the student's erasure marker to every partition of enriched, once per run: a
// resumed job writes them again, which the stores apply harmlessly.
func (s *studentEraser) publishMarkers(ctx context.Context) error {
	if s.markers != nil {
		return nil
	}
	admin, err := kafkax.NewAdmin(s.kcfg, kafkax.Deps{})
	if err != nil {
		return err
	}
	defer admin.Close()
	topic := s.kcfg.Topics().Enriched
	details, err := kadm.NewClient(admin.Client).ListTopics(ctx, topic)
	if err != nil {
		return fmt.Errorf("reading the partitions of %s: %w", topic, err)
	}
	d, ok := details[topic]
	if !ok || d.Err != nil {
		return fmt.Errorf("reading the partitions of %s: %v", topic, errors.Join(d.Err, errors.New("topic not found")))
	}
	codec, err := stream.NewCodec(ctx, s.kcfg)
	if err != nil {
		return err
	}
	b, err := codec.Encode(records.NewStudentErased(uuid.NewString(), s.tenant, s.student, time.Now()))
	if err != nil {
		return err
	}
	cl, err := kafkax.NewProducer(s.kcfg, kafkax.Deps{}, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		return err
	}
	defer cl.Close()
	recs := make([]*kgo.Record, 0, len(d.Partitions))
	for _, p := range d.Partitions.Numbers() {
		recs = append(recs, &kgo.Record{Topic: topic, Partition: p, Key: []byte(s.tenant), Value: b})
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		return fmt.Errorf("publishing the erasure markers: %w", err)
	}
	s.markers = map[int32]int64{}
	for _, r := range recs {
		s.markers[r.Partition] = r.Offset
	}
	return nil
}

func (s *studentEraser) markerPartitions() []int32 {
	ps := make([]int32, 0, len(s.markers))
	for p := range s.markers {
		ps = append(ps, p)
	}
	slices.Sort(ps)
	return ps
}

func (s *studentEraser) markerOffsets() []int64 {
	out := make([]int64, 0, len(s.markers))
	for _, p := range s.markerPartitions() {
		out = append(out, s.markers[p])
	}
	return out
}
