package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/edtech-analytics/platform/libs/archive"
	"github.com/edtech-analytics/platform/libs/kafkax"
	"github.com/edtech-analytics/platform/libs/svc/stream"
	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/edtech-analytics/platform/libs/tenancy/fleet"
	"github.com/edtech-analytics/platform/libs/tenancy/ingest"
	"github.com/edtech-analytics/platform/libs/tenancy/jobs"
	chrebuild "github.com/edtech-analytics/platform/services/aggregator/rebuild"
	"github.com/edtech-analytics/platform/services/sink/rebuild"
)

const rebuildSynopsis = "--tenant ID [--store postgres|clickhouse] [--archive.url URL] [--dry-run] [--accept-diff] [--all-partitions] [--group NAME] | --tenant ID --rollback [--dry-run] | --tenant ID --drop-old (Kafka flags: -h)"

// runRebuild rebuilds a district's sink state from a replay of the enriched topic into a shadow schema,
// verifies it against the log, compares it with the live tables and swaps it in if it is equal or the
// difference is accepted, while the sink keeps running. --rollback swaps the kept tables back, and
// --drop-old drops them.
func runRebuild(ctx context.Context, e Env, args []string) error {
	fs, c := newFlags(e, "rebuild", rebuildSynopsis)
	tenant := fs.String("tenant", "", "tenant (district) id")
	dryRun := fs.Bool("dry-run", false, "build, catch up, verify and compare, but keep the live tables")
	acceptDiff := fs.Bool("accept-diff", false, "swap the rebuilt state in even when it differs from the live one (run a dry run first and read the diff)")
	rollback := fs.Bool("rollback", false, "swap the tables the last rebuild replaced back in (caught up with what the sink wrote since)")
	dropOld := fs.Bool("drop-old", false, "drop the tables the last rebuild or rollback replaced")
	all := fs.Bool("all-partitions", false, "scan every partition, not only the district's (always for a hot district)")
	group := fs.String("group", "edtech-sink", "the live sink's consumer group (its stored offsets are caught up to)")
	truncated := fs.Bool("allow-truncated-history", false, "rebuild even if retention removed the district's first records from the topic")
	store := fs.String("store", "postgres", "the store to rebuild: postgres (the district's schema) or clickhouse (its events and rollups)")
	var ch chConfig
	ch.registerFlags(fs)
	archiveURL := fs.String("archive.url", e.Getenv("ARCHIVE_URL"), "the archive (a gocloud.dev/blob URL, as the archiver's ARCHIVE_URL): replay the district's own archived records, then the topic from where the archive ends (env ARCHIVE_URL)")
	var kcfg kafkax.Config
	kcfg.RegisterFlags(fs)
	if err := parse(fs, c, args); err != nil {
		return err
	}
	if err := required(fs, "tenant"); err != nil {
		return err
	}
	if err := tenancy.ValidTenantID(*tenant); err != nil {
		return usagef("--tenant: %w", err)
	}
	switch {
	case *store != "postgres" && *store != "clickhouse":
		return usagef("--store: %q is not postgres or clickhouse", *store)
	case *store == "clickhouse" && (*rollback || *dropOld || *truncated):
		return usagef("rebuild: --rollback, --drop-old and --allow-truncated-history apply to --store postgres")
	case *rollback && *dropOld:
		return usagef("rebuild: --rollback and --drop-old exclude each other")
	case (*rollback || *dropOld) && (*acceptDiff || *all || *truncated):
		return usagef("rebuild: --accept-diff, --all-partitions and --allow-truncated-history apply to a rebuild, not to --rollback or --drop-old")
	case *dropOld && *dryRun:
		return usagef("rebuild: --drop-old has no dry run")
	case *dryRun && *acceptDiff:
		return usagef("rebuild: --dry-run never swaps; --accept-diff would do nothing")
	}
	if err := kcfg.Validate(); err != nil {
		return usagef("kafka: %w", err)
	}
	cmd, err := openDistrictCommand(ctx, e, c, *tenant)
	if err != nil {
		return err
	}
	defer cmd.close()
	pool, instances, keys, record := cmd.pool, cmd.instances, cmd.keys, cmd.record
	if *dropOld {
		return runDropOld(ctx, e, c, instances, *tenant, record)
	}
	if *store == "clickhouse" {
		hot, err := ingest.New(pool).Settings(ctx)
		if err != nil {
			return err
		}
		for _, s := range hot {
			if s.TenantID == *tenant && s.HotShards > 0 {
				*all = true
			}
		}
		err = runRebuildClickHouse(ctx, e, c, ch, kcfg, *archiveURL, chrebuild.Config{TenantID: *tenant, AllPartitions: *all,
			DryRun: *dryRun, AcceptDiff: *acceptDiff}, record)
		if *dryRun {
			return err
		}
		// Even a failed rebuild may have swapped some partitions: caches of the district's summaries
		// recompute after either (docs/adr/0021).
		return errors.Join(err, jobs.New(pool).BumpGeneration(context.WithoutCancel(ctx), *tenant))
	}

	codec, err := stream.NewCodec(ctx, kcfg)
	if err != nil {
		return err
	}
	var arch archive.Bucket
	if *archiveURL != "" && !*rollback {
		b, err := openArchive(ctx, *archiveURL)
		if err != nil {
			return err
		}
		defer closeArchive(b, e)
		arch = archive.Blob{B: b}
	}
	progress := &errWriter{w: e.Stderr} // a failed progress line is reported after the rebuild, not in its middle
	cfg := rebuild.Config{
		TenantID: *tenant, Group: *group, Kafka: kcfg.ForService("ctl-rebuild"), AllPartitions: *all, DryRun: *dryRun,
		AcceptDiff: *acceptDiff, AllowTruncatedHistory: *truncated, Keys: keys, Archive: arch,
		Progress: func(p rebuild.Progress) {
			pct := 100.0
			if p.Target > 0 {
				pct = 100 * float64(p.Scanned) / float64(p.Target)
			}
			rate := float64(p.Scanned) / max(p.Elapsed.Seconds(), 1e-3)
			progress.printf("rebuild %s: %-8s scanned %d of %d records (%.0f%%), applied %d, %.0f records/s, %s\n",
				*tenant, p.Phase, p.Scanned, p.Target, min(pct, 100), p.Applied, rate, p.Elapsed.Round(time.Millisecond))
		},
	}
	run, action := rebuild.Run, "district.rebuild"
	if *rollback {
		run, action = rebuild.Rollback, "district.rebuild.rollback"
	}
	reader, err := kafkax.NewReader(cfg.Kafka, kafkax.Deps{}, rebuild.ReaderOptions()...) // the replay's, its own
	if err != nil {
		return err
	}
	defer reader.Close()
	report, runErr := run(ctx, instances, codec, reader.Client, cfg)
	if report.ID == "" { // refused before it began: nothing to report or audit
		return fmt.Errorf("%s district %s: %w", verb(*rollback), *tenant, runErr)
	}
	outcome := outcomeOf(report, runErr)
	auditErr := record(action, auditDetail{ID: report.ID, Instance: report.Instance, Partitions: report.Partitions,
		Applied: report.Applied, Verified: report.Verification.OK, Equal: report.Equal, Swapped: report.Swapped,
		DryRun: *dryRun, AcceptDiff: *acceptDiff, Truncated: len(report.Truncated) > 0, Outcome: outcome, Kept: report.Kept})
	var outErr error
	if c.output == "json" {
		outErr = writeJSON(e.Stdout, report)
	} else {
		outErr = writeRebuildReport(e.Stdout, report, outcome)
	}
	if runErr != nil {
		if errors.Is(runErr, rebuild.ErrDiffNotAccepted) {
			runErr = fmt.Errorf("%w; the live tables are untouched: read the diff above, then run again with --accept-diff to swap the rebuilt state in", runErr)
		}
		return errors.Join(fmt.Errorf("%s district %s: %w", verb(*rollback), *tenant, runErr), auditErr, outErr, progress.Err())
	}
	return errors.Join(auditErr, outErr, progress.Err())
}

func verb(rollback bool) string {
	if rollback {
		return "rolling back the rebuild of"
	}
	return "rebuilding"
}

// auditDetail is what the audit log records of a rebuild or rollback.
type auditDetail struct {
	ID         string        `json:"id"`
	Instance   string        `json:"instance"`
	Partitions []int32       `json:"partitions"`
	Applied    int64         `json:"applied"`
	Verified   bool          `json:"verified"`
	Equal      bool          `json:"equal"`
	Swapped    bool          `json:"swapped"`
	DryRun     bool          `json:"dry_run"`
	AcceptDiff bool          `json:"accept_diff"`
	Truncated  bool          `json:"truncated_history"`
	Outcome    string        `json:"outcome"`
	Kept       *rebuild.Kept `json:"kept,omitempty"`
}

// outcomeOf says in a few words what a rebuild or rollback did.
func outcomeOf(r rebuild.Report, err error) string {
	switch {
	case errors.Is(err, rebuild.ErrVerification):
		return "refused: the rebuilt state does not match the log; live tables untouched"
	case errors.Is(err, rebuild.ErrDiffNotAccepted):
		return "refused: the rebuilt state differs and --accept-diff was not given; live tables untouched"
	case errors.Is(err, rebuild.ErrOldTablesKept):
		return "refused: replaced tables of an earlier rebuild are still kept; live tables untouched"
	case err != nil:
		return "failed: " + err.Error()
	case !r.Swapped:
		return "dry run: live tables kept"
	case r.Action == "rollback":
		return "rolled back; the replaced tables are kept in " + r.Kept.Schema
	case r.Kept != nil:
		return "swapped in; the replaced tables are kept in " + r.Kept.Schema + " (ctl rebuild --rollback or --drop-old)"
	default:
		return "swapped in"
	}
}

// writeRebuildReport prints the verification, the comparison with the per-table diff, and the outcome.
func writeRebuildReport(w io.Writer, report rebuild.Report, outcome string) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	out := &errWriter{w: tw}
	v := report.Verification
	if len(v.Types) > 0 || len(v.Errors) > 0 {
		out.printf("RECORD TYPE\tIN LOG\tAPPLIED\tSKIPPED\n")
		for _, t := range v.Types {
			var skipped []string
			for _, reason := range slices.Sorted(maps.Keys(t.Skipped)) {
				skipped = append(skipped, fmt.Sprintf("%d %s", t.Skipped[reason], reason))
			}
			out.printf("%s\t%d\t%d\t%s\n", t.Type, t.Log, t.Applied, strings.Join(skipped, ", "))
		}
		if err := flushTable(tw, out); err != nil {
			return fmt.Errorf("writing report: %w", err)
		}
		verified := "verified against the log"
		if !v.OK {
			verified = "NOT verified against the log: " + strings.Join(v.Errors, "; ")
		}
		out.printf("%s (offsets %s; %d learning events applied, %d of them erased since, %d counted)\n\n", verified, ranges(v.Ranges),
			v.Events.Applied, v.Events.Erased, v.Events.Counted)
	}
	if len(report.Tables) > 0 {
		side := "REBUILT"
		if report.Action == "rollback" {
			side = "KEPT"
		}
		out.printf("TABLE\tLIVE ROWS\t%s ROWS\tSAME\tONLY LIVE\tONLY %s\tCHANGED\n", side, side)
		for _, t := range report.Tables {
			d := rebuild.TableDiff{}
			if t.Diff != nil {
				d = *t.Diff
			}
			out.printf("%s\t%d\t%d\t%v\t%d\t%d\t%d\n", t.Table, t.LiveRows, t.ShadowRows, t.Equal, d.OnlyLive.Count, d.OnlyShadow.Count, d.Changed.Count)
		}
		if err := flushTable(tw, out); err != nil {
			return fmt.Errorf("writing report: %w", err)
		}
		for _, t := range report.Tables {
			if t.Diff == nil {
				continue
			}
			for _, k := range []struct {
				name string
				rows rebuild.DiffRows
			}{{"only live", t.Diff.OnlyLive}, {"only " + strings.ToLower(side), t.Diff.OnlyShadow}, {"changed", t.Diff.Changed}} {
				if k.rows.Count > 0 {
					out.printf("  %s %s: %d, e.g. %s\n", t.Table, k.name, k.rows.Count, strings.Join(k.rows.Examples, "; "))
				}
			}
		}
	}
	same := "identical to"
	if !report.Equal {
		same = "different from"
	}
	what := "rebuilt state"
	if report.Action == "rollback" {
		what = "kept state"
	}
	fromArchive := ""
	if report.FromArchive > 0 {
		fromArchive = fmt.Sprintf(" (%d from the archive)", report.FromArchive)
	}
	out.printf("district %s (instance %s, partitions %v), %s %s: replayed %d of %d records%s in %s; %s %s the live one; %s\n",
		report.TenantID, report.Instance, report.Partitions, report.Action, report.ID, report.Applied, report.Scanned, fromArchive,
		report.Elapsed.Round(time.Millisecond), what, same, outcome)
	return out.Err()
}

func ranges(rs []rebuild.Range) string {
	parts := make([]string, 0, len(rs))
	for _, r := range rs {
		parts = append(parts, fmt.Sprintf("%d:[%d,%d)", r.Partition, r.From, r.To))
	}
	return strings.Join(parts, " ")
}

// runDropOld drops the tables the last rebuild or rollback replaced.
func runDropOld(ctx context.Context, e Env, c *common, instances *fleet.Fleet, tenant string, record func(string, any) error) error {
	kept, err := rebuild.DropOld(ctx, instances, tenant)
	if err != nil {
		return fmt.Errorf("dropping the kept tables of district %s: %w", tenant, err)
	}
	if err := record("district.rebuild.drop_old", kept); err != nil {
		return err
	}
	if c.output == "json" {
		return writeJSON(e.Stdout, kept)
	}
	_, err = fmt.Fprintf(e.Stdout, "district %s: dropped %s, the tables replaced by %s %s at %s\n",
		tenant, kept.Schema, kept.Action, kept.ID, kept.At.Format(time.RFC3339))
	return err
}
