package app

import (
	"context"
	"flag"
	"fmt"
	"github.com/edtech-analytics/platform/libs/tenancy/audit"
	"slices"
	"strings"
	"time"

	"github.com/edtech-analytics/platform/libs/kafkax"
	"github.com/edtech-analytics/platform/libs/records"
	"github.com/edtech-analytics/platform/libs/svc/stream"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kgo"
)

// deadLetter is one DLQ record as ctl shows it.
type deadLetter struct {
	Partition  int32                `json:"partition"`
	Offset     int64                `json:"offset"`
	FailedAt   time.Time            `json:"failed_at"`
	Stage      string               `json:"stage"`
	Reason     string               `json:"reason"`
	TenantID   string               `json:"tenant_id,omitempty"`
	EventID    string               `json:"event_id,omitempty"`
	Detail     string               `json:"detail"`
	Errors     []records.FieldError `json:"errors"`
	ReplayedAt *time.Time           `json:"replayed_at,omitempty"`

	key     []byte
	record  records.DLQRecord
	replays bool // replayable: an enricher dead letter with its original bytes
}

// dlqFilter selects dead letters.
type dlqFilter struct {
	tenant, reason string
}

func (f dlqFilter) match(d *deadLetter) bool {
	return (f.tenant == "" || d.TenantID == f.tenant) && (f.reason == "" || d.Reason == f.reason)
}

// dlqFlags registers the flags dlq commands share.
func dlqFlags(fs *flag.FlagSet, kcfg *kafkax.Config) *dlqFilter {
	f := &dlqFilter{}
	fs.StringVar(&f.tenant, "tenant", "", "only this tenant (district)")
	fs.StringVar(&f.reason, "reason", "", "only this reason: "+strings.Join(dlqReasons(), ", "))
	kcfg.RegisterFlags(fs)
	return f
}

func dlqReasons() []string {
	return []string{records.ReasonUndecodable, records.ReasonUnknownSchema, records.ReasonInvalidField,
		records.ReasonPolicyViolation, records.ReasonStoreRefused, records.ReasonOther}
}

func checkDLQFlags(f *dlqFilter, kcfg *kafkax.Config, limit int) error {
	if f.reason != "" && !slices.Contains(dlqReasons(), f.reason) {
		return usagef("--reason: %q is not one of %s", f.reason, strings.Join(dlqReasons(), ", "))
	}
	if limit < 1 {
		return usagef("--limit: must be at least 1")
	}
	if err := kcfg.Validate(); err != nil {
		return usagef("kafka: %w", err)
	}
	return nil
}

func runDLQList(ctx context.Context, e Env, args []string) error {
	fs, c := newFlags(e, "dlq list", "[--tenant ID] [--reason REASON] [--limit N]")
	var kcfg kafkax.Config
	f := dlqFlags(fs, &kcfg)
	limit := fs.Int("limit", 100, "show at most the last N matching dead letters")
	if err := parse(fs, c, args); err != nil {
		return err
	}
	if err := checkDLQFlags(f, &kcfg, *limit); err != nil {
		return err
	}
	var matched []*deadLetter
	total := 0
	err := readDLQ(ctx, kcfg, func(d *deadLetter) {
		if f.match(d) {
			total++
			matched = append(matched, d)
			if len(matched) > *limit {
				matched = matched[1:]
			}
		}
	})
	if err != nil {
		return err
	}
	if pool, err := connect(ctx, e, c); err == nil { // the database only adds when each was replayed
		defer pool.Close()
		if err := markReplayed(ctx, pool, kcfg.Topics().DLQ, matched); err != nil {
			return err
		}
	}
	if _, err := fmt.Fprintf(e.Stderr, "%d dead letters match; showing %d\n", total, len(matched)); err != nil {
		return err
	}
	return writeList(e.Stdout, c.output, matched, []string{"PARTITION/OFFSET", "FAILED", "STAGE", "REASON", "TENANT", "EVENT", "REPLAYED", "DETAIL"},
		func(d *deadLetter) []string {
			return []string{fmt.Sprintf("%d/%d", d.Partition, d.Offset), formatTime(&d.FailedAt), d.Stage, d.Reason,
				orDash(d.TenantID), orDash(d.EventID), formatTime(d.ReplayedAt), truncate(d.Detail, 70)}
		})
}

func runDLQReplay(ctx context.Context, e Env, args []string) error {
	fs, c := newFlags(e, "dlq replay", "[--tenant ID] [--reason REASON] [--limit N] [--again] [--dry-run]")
	var kcfg kafkax.Config
	f := dlqFlags(fs, &kcfg)
	limit := fs.Int("limit", 1_000_000, "replay at most N dead letters")
	again := fs.Bool("again", false, "also replay dead letters replayed before")
	dryRun := fs.Bool("dry-run", false, "only count what would be replayed")
	by := fs.String("by", "", "who replays, for the record (default: $USER)")
	if err := parse(fs, c, args); err != nil {
		return err
	}
	if err := checkDLQFlags(f, &kcfg, *limit); err != nil {
		return err
	}
	if *by == "" {
		*by = e.Getenv("USER")
	}
	if *by == "" {
		*by = "ctl"
	}
	pool, err := connect(ctx, e, c)
	if err != nil {
		return err
	}
	defer pool.Close()
	var matched []*deadLetter
	if err := readDLQ(ctx, kcfg, func(d *deadLetter) {
		if f.match(d) {
			matched = append(matched, d)
		}
	}); err != nil {
		return err
	}
	topics := kcfg.Topics()
	if err := markReplayed(ctx, pool, topics.DLQ, matched); err != nil {
		return fmt.Errorf("%w (has 'ctl migrate' been run?)", err)
	}
	var todo []*deadLetter
	var done, other int
	for _, d := range matched {
		switch {
		case !d.replays:
			other++
		case d.ReplayedAt != nil && !*again:
			done++
		case len(todo) < *limit:
			todo = append(todo, d)
		}
	}
	report := func(replayed int) error {
		if c.output == "json" {
			return writeJSON(e.Stdout, map[string]any{"matched": len(matched), "replayed": replayed,
				"already_replayed": done, "not_replayable": other, "dry_run": *dryRun})
		}
		verb := "replayed"
		if *dryRun {
			verb = "would replay"
		}
		_, err := fmt.Fprintf(e.Stdout, "%s %d of %d matching dead letters to %s (%d replayed before, %d not replayable: "+
			"rejected by the gateway, the client must resend them)\n", verb, replayed, len(matched), topics.Raw, done, other)
		return err
	}
	if *dryRun || len(todo) == 0 {
		return report(len(todo))
	}
	cl, err := kafkax.NewProducer(kcfg, kafkax.Deps{})
	if err != nil {
		return err
	}
	defer cl.Close()
	progress := &errWriter{w: e.Stderr} // a failed progress line is reported after the replay, not in its middle
	const chunk = 500
	for i := 0; i < len(todo); i += chunk {
		part := todo[i:min(i+chunk, len(todo))]
		recs := make([]*kgo.Record, len(part))
		for j, d := range part {
			// The original bytes and headers, keyed as before: the record takes the normal path again.
			r := &kgo.Record{Topic: topics.Raw, Key: d.key, Value: d.record.Original}
			for _, h := range d.record.Headers {
				r.Headers = append(r.Headers, kgo.RecordHeader{Key: h.Key, Value: h.Value})
			}
			recs[j] = r
		}
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			return fmt.Errorf("producing replayed records to %s: %w", topics.Raw, err)
		}
		if err := recordReplays(ctx, pool, topics.DLQ, part, *by); err != nil {
			return err
		}
		progress.printf("replayed %d/%d\n", i+len(part), len(todo))
	}
	if _, err := audit.New(pool, envAuditKeys(pool, e)).Append(ctx, "ctl", f.tenant, "dlq.replay",
		map[string]any{"replayed": len(todo), "reason": f.reason, "again": *again, "by": *by}); err != nil {
		return err
	}
	if err := report(len(todo)); err != nil {
		return err
	}
	return progress.Err()
}

// readDLQ reads the DLQ topic (read_committed) from its start to its current end and calls fn with
// each dead letter in partition order.
func readDLQ(ctx context.Context, kcfg kafkax.Config, fn func(*deadLetter)) error {
	codec, err := stream.NewCodec(ctx, kcfg)
	if err != nil {
		return err
	}
	// A stage's dead letter is identified by its stage and the record's source position: a stage that
	// crashed after sending one and before moving past the record sends it again (ADR 0005), and the
	// repeat is not listed or replayed twice.
	type identity struct {
		stage, topic string
		partition    int
		offset       int64
	}
	seen := map[identity]bool{}
	rctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	reader, err := kafkax.NewReader(kcfg, kafkax.Deps{})
	if err != nil {
		return err
	}
	defer reader.Close()
	return kafkax.ReadToEnd(rctx, reader.Client, kcfg.Topics().DLQ, nil, func(r *kgo.Record) error {
		d := &deadLetter{Partition: r.Partition, Offset: r.Offset, key: r.Key}
		if err := codec.Decode(r.Value, &d.record); err != nil {
			d.Stage, d.Reason, d.Detail = "?", "?", "undecodable dead letter: "+err.Error()
			fn(d)
			return nil
		}
		rec := d.record
		if rec.SourceTopic != nil && rec.SourcePartition != nil && rec.SourceOffset != nil {
			id := identity{rec.Stage, *rec.SourceTopic, *rec.SourcePartition, *rec.SourceOffset}
			if seen[id] {
				return nil
			}
			seen[id] = true
		}
		d.FailedAt, d.Stage, d.Reason, d.Detail, d.Errors = rec.FailedAt, rec.Stage, rec.Reason, rec.Detail, rec.Errors
		d.TenantID, d.EventID = deref(rec.TenantID), deref(rec.EventID)
		if d.TenantID == "" { // undecodable records: the key names the district (or tenant/shard)
			d.TenantID, _, _ = strings.Cut(string(r.Key), "/")
		}
		d.replays = rec.Stage == records.StageEnricher && len(rec.Original) > 0
		fn(d)
		return nil
	})
}

// markReplayed sets ReplayedAt from control.dlq_replays.
func markReplayed(ctx context.Context, pool *pgxpool.Pool, topic string, dls []*deadLetter) error {
	if len(dls) == 0 {
		return nil
	}
	byPos := map[[2]int64]*deadLetter{}
	var parts []int32
	var offsets []int64
	for _, d := range dls {
		byPos[[2]int64{int64(d.Partition), d.Offset}] = d
		parts, offsets = append(parts, d.Partition), append(offsets, d.Offset)
	}
	rows, err := pool.Query(ctx, `SELECT r.dlq_partition, r.dlq_offset, r.replayed_at FROM control.dlq_replays r
		JOIN unnest($2::int[], $3::bigint[]) AS m(p, o) ON r.dlq_partition = m.p AND r.dlq_offset = m.o
		WHERE r.dlq_topic = $1`, topic, parts, offsets)
	if err != nil {
		return fmt.Errorf("reading replays: %w", err)
	}
	var p int32
	var o int64
	var at time.Time
	_, err = pgx.ForEachRow(rows, []any{&p, &o, &at}, func() error {
		t := at
		byPos[[2]int64{int64(p), o}].ReplayedAt = &t
		return nil
	})
	if err != nil {
		return fmt.Errorf("reading replays: %w", err)
	}
	return nil
}

// recordReplays remembers that dls were replayed.
func recordReplays(ctx context.Context, pool *pgxpool.Pool, topic string, dls []*deadLetter, by string) error {
	var parts []int32
	var offsets []int64
	var tenants []string
	for _, d := range dls {
		parts, offsets, tenants = append(parts, d.Partition), append(offsets, d.Offset), append(tenants, d.TenantID)
	}
	_, err := pool.Exec(ctx, `INSERT INTO control.dlq_replays (dlq_topic, dlq_partition, dlq_offset, tenant_id, replayed_by)
		SELECT $1, p, o, nullif(t, ''), $5 FROM unnest($2::int[], $3::bigint[], $4::text[]) AS m(p, o, t)
		ON CONFLICT (dlq_topic, dlq_partition, dlq_offset) DO UPDATE SET replayed_at = now(), replayed_by = EXCLUDED.replayed_by`,
		topic, parts, offsets, tenants, by)
	if err != nil {
		return fmt.Errorf("recording replays: %w", err)
	}
	return nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func truncate(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}
