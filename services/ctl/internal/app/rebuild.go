package app

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/edtech-analytics/platform/libs/kafkax"
	"github.com/edtech-analytics/platform/libs/svc"
	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/edtech-analytics/platform/services/sink/rebuild"
)

const rebuildSynopsis = "--tenant ID [--dry-run] [--all-partitions] [--group NAME] (Kafka flags: -h)"

// runRebuild rebuilds a district's sink state from a replay of the enriched topic into a shadow schema,
// compares it with the live tables and swaps it in, while the sink keeps running.
func runRebuild(ctx context.Context, e Env, args []string) error {
	fs, c := newFlags(e, "rebuild", rebuildSynopsis)
	tenant := fs.String("tenant", "", "tenant (district) id")
	dryRun := fs.Bool("dry-run", false, "build, catch up and compare, but keep the live tables")
	all := fs.Bool("all-partitions", false, "scan every partition, not only the district's (always for a hot district)")
	group := fs.String("group", "edtech-sink", "the live sink's consumer group (its stored offsets are caught up to)")
	truncated := fs.Bool("allow-truncated-history", false, "rebuild even if retention removed the start of the topic")
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
	if err := kcfg.Validate(); err != nil {
		return usagef("kafka: %w", err)
	}
	pool, err := connect(ctx, e, c)
	if err != nil {
		return err
	}
	defer pool.Close()
	fleet := tenancy.NewFleet(pool, e.Getenv)
	defer fleet.Close()
	codec, err := svc.NewCodec(ctx, kcfg)
	if err != nil {
		return err
	}
	kcfg = kcfg.ForService("ctl-rebuild")
	progress := &errWriter{w: e.Stderr} // a failed progress line is reported after the rebuild, not in its middle
	report, err := rebuild.Run(ctx, fleet, codec, rebuild.Config{
		TenantID: *tenant, Group: *group, Kafka: kcfg, AllPartitions: *all, DryRun: *dryRun,
		AllowTruncatedHistory: *truncated,
		Progress: func(p rebuild.Progress) {
			pct := 100.0
			if p.Target > 0 {
				pct = 100 * float64(p.Scanned) / float64(p.Target)
			}
			rate := float64(p.Scanned) / max(p.Elapsed.Seconds(), 1e-3)
			progress.printf("rebuild %s: %-8s scanned %d of %d records (%.0f%%), applied %d, %.0f records/s, %s\n",
				*tenant, p.Phase, p.Scanned, p.Target, min(pct, 100), p.Applied, rate, p.Elapsed.Round(time.Millisecond))
		},
	})
	if err != nil {
		return fmt.Errorf("rebuilding district %s: %w", *tenant, err)
	}
	if _, err := tenancy.NewFleetStore(fleet).AppendAudit(ctx, "ctl", *tenant, "district.rebuild", struct {
		Instance   string  `json:"instance"`
		Partitions []int32 `json:"partitions"`
		Applied    int64   `json:"applied"`
		Equal      bool    `json:"equal"`
		Swapped    bool    `json:"swapped"`
	}{report.Instance, report.Partitions, report.Applied, report.Equal, report.Swapped}); err != nil {
		return err
	}
	if c.output == "json" {
		if err := writeJSON(e.Stdout, report); err != nil {
			return err
		}
		return progress.Err()
	}
	tw := tabwriter.NewWriter(e.Stdout, 0, 4, 2, ' ', 0)
	out := &errWriter{w: tw}
	out.printf("TABLE\tLIVE ROWS\tREBUILT ROWS\tSAME\n")
	for _, t := range report.Tables {
		out.printf("%s\t%d\t%d\t%v\n", t.Table, t.LiveRows, t.ShadowRows, t.Equal)
	}
	if err := flushTable(tw, out); err != nil {
		return fmt.Errorf("writing report: %w", err)
	}
	outcome := "swapped in"
	if !report.Swapped {
		outcome = "dry run: live tables kept"
	}
	same := "identical to"
	if !report.Equal {
		same = "different from"
	}
	_, err = fmt.Fprintf(e.Stdout, "district %s (instance %s, partitions %v): replayed %d of %d records in %s; rebuilt state %s the live one; %s\n",
		report.TenantID, report.Instance, report.Partitions, report.Applied, report.Scanned,
		report.Elapsed.Round(time.Millisecond), same, outcome)
	if err != nil {
		return err
	}
	return progress.Err()
}
