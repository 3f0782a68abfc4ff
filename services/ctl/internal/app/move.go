package app

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/edtech-analytics/platform/libs/kafkax"
	"github.com/edtech-analytics/platform/libs/svc/stream"
	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/edtech-analytics/platform/libs/tenancy/fleet"
	"github.com/edtech-analytics/platform/services/sink/rebuild"
)

const moveSynopsis = "--id ID --to INSTANCE [--group NAME] | --id ID --drop-old (Kafka flags: -h)"

// runTenantMove moves a district's schema to another PostgreSQL instance while ingestion goes on
// (docs/runbooks/move.md), or with --drop-old drops the copy its last move left on the old instance.
// Run again after an interruption, it finishes or rolls back what the interrupted move left first.
func runTenantMove(ctx context.Context, e Env, args []string) error {
	fs, c := newFlags(e, "tenant move", moveSynopsis)
	id := fs.String("id", "", "tenant (district) id")
	to := fs.String("to", "", "the instance to move the district to (ctl instance list)")
	dropOld := fs.Bool("drop-old", false, "drop the copy the district's last move kept on the instance it left (moved_<id>)")
	group := fs.String("group", "edtech-sink", "the live sink's consumer group (its stored offsets are caught up to)")
	var kcfg kafkax.Config
	kcfg.RegisterFlags(fs)
	if err := parse(fs, c, args); err != nil {
		return err
	}
	if err := required(fs, "id"); err != nil {
		return err
	}
	if err := tenancy.ValidTenantID(*id); err != nil {
		return usagef("--id: %w", err)
	}
	switch {
	case *dropOld && *to != "":
		return usagef("tenant move: --drop-old and --to exclude each other")
	case !*dropOld && *to == "":
		return usagef("tenant move: --to INSTANCE is required (or --drop-old)")
	case *to != "":
		if err := fleet.ValidInstanceName(*to); err != nil {
			return usagef("--to: %w", err)
		}
	}
	if !*dropOld {
		if err := kcfg.Validate(); err != nil {
			return usagef("kafka: %w", err)
		}
	}
	cmd, err := openDistrictCommand(ctx, e, c, *id)
	if err != nil {
		return err
	}
	defer cmd.close()
	instances, keys, record := cmd.instances, cmd.keys, cmd.record
	if *dropOld {
		report, err := rebuild.DropMoved(ctx, instances, *id)
		if err != nil {
			return fmt.Errorf("dropping the old copy of district %s: %w", *id, err)
		}
		if err := record("tenant.move.drop_old", map[string]string{"instance": report.From, "schema": report.OldSchema}); err != nil {
			return err
		}
		if c.output == "json" {
			return writeJSON(e.Stdout, report)
		}
		_, err = fmt.Fprintf(e.Stdout, "district %s: dropped %s on instance %s (the copy its move to %s left)\n",
			*id, report.OldSchema, report.From, report.To)
		return err
	}

	codec, err := stream.NewCodec(ctx, kcfg)
	if err != nil {
		return err
	}
	progress := &errWriter{w: e.Stderr}
	cfg := rebuild.MoveConfig{TenantID: *id, To: *to, Group: *group, Kafka: kcfg.ForService("ctl-move"), Keys: keys,
		Progress: func(p rebuild.Progress) {
			progress.printf("move %s: %-8s scanned %d of %d records, applied %d, %s\n",
				*id, p.Phase, p.Scanned, p.Target, p.Applied, p.Elapsed.Round(time.Millisecond))
		}}
	reader, err := kafkax.NewReader(cfg.Kafka, kafkax.Deps{}, rebuild.ReaderOptions()...) // the catch-up's, its own
	if err != nil {
		return err
	}
	defer reader.Close()
	report, runErr := rebuild.Move(ctx, instances, codec, reader.Client, cfg)
	outcome := moveOutcome(report, runErr)
	var auditErr error
	if report.From != "" { // refused before it began: nothing to audit
		auditErr = record("tenant.move", moveAudit{ID: report.ID, From: report.From, To: report.To, Recovered: report.Recovered,
			Partitions: report.Partitions, Offsets: report.Offsets, Applied: report.Applied, Verified: report.Verification.OK,
			Moved: report.Moved, OldSchema: report.OldSchema, PausedMS: report.Paused.Milliseconds(), Outcome: outcome})
	}
	var outErr error
	if c.output == "json" {
		outErr = writeJSON(e.Stdout, report)
	} else {
		outErr = writeMoveReport(e, report, outcome)
	}
	if runErr != nil {
		return errors.Join(fmt.Errorf("moving district %s: %w", *id, runErr), auditErr, outErr, progress.Err())
	}
	return errors.Join(auditErr, outErr, progress.Err())
}

// moveAudit is what the audit log records of a move.
type moveAudit struct {
	ID         string               `json:"id"`
	From       string               `json:"from"`
	To         string               `json:"to"`
	Recovered  string               `json:"recovered,omitempty"`
	Partitions []int32              `json:"partitions"`
	Offsets    []rebuild.MoveOffset `json:"offsets,omitempty"`
	Applied    int64                `json:"applied"`
	Verified   bool                 `json:"verified"`
	Moved      bool                 `json:"moved"`
	OldSchema  string               `json:"old_schema,omitempty"`
	PausedMS   int64                `json:"paused_ms"`
	Outcome    string               `json:"outcome"`
}

func moveOutcome(r rebuild.MoveReport, err error) string {
	switch {
	case errors.Is(err, rebuild.ErrMoveDiffers):
		return "refused: the copy differs from the source; the district stays where it was"
	case err != nil:
		return "failed: " + err.Error()
	case r.Moved:
		return "moved; the old copy is kept as " + r.OldSchema + " on " + r.From + " (ctl tenant move --drop-old)"
	case r.Recovered == "finished":
		return "finished the interrupted move; the old copy is kept as " + r.OldSchema + " on " + r.From
	default:
		return "already on " + r.To
	}
}

func writeMoveReport(e Env, r rebuild.MoveReport, outcome string) error {
	out := &errWriter{w: e.Stdout}
	if r.Recovered != "" {
		out.printf("an interrupted move was found and %s\n", r.Recovered)
	}
	var copied int64
	for _, n := range r.Copied {
		copied += n
	}
	var offsets []string
	for _, o := range r.Offsets {
		offsets = append(offsets, fmt.Sprintf("%d: source %d, target %d, floor %d", o.Partition, o.Source, o.Target, o.Floor))
	}
	var differ []string
	for _, t := range r.Tables {
		if !t.Equal {
			differ = append(differ, fmt.Sprintf("%s (%d rows on the source, %d in the copy)", t.Table, t.LiveRows, t.ShadowRows))
		}
	}
	if len(differ) > 0 {
		out.printf("tables that differ: %s\n", strings.Join(differ, "; "))
	}
	out.printf("district %s, move %s from %s to %s: copied %d rows, then applied %d of %d records read; offsets %s; writes paused %s, took %s; %s\n",
		r.TenantID, r.ID, r.From, r.To, copied, r.Applied, r.Scanned, strings.Join(offsets, "; "),
		r.Paused.Round(time.Millisecond), r.Elapsed.Round(time.Millisecond), outcome)
	return out.Err()
}
