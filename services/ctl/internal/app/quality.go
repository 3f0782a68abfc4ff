package app

import (
	"context"
	"text/tabwriter"
	"time"
)

func runQualityReport(ctx context.Context, e Env, args []string) error {
	fs, c := newFlags(e, "quality report", "--tenant ID [--since DURATION]")
	tenantID := fs.String("tenant", "", "tenant (district) id")
	since := fs.Duration("since", 7*24*time.Hour, "uploads received within this long (held ones whenever), and personal data found in free text since that day")
	if err := parse(fs, c, args); err != nil {
		return err
	}
	if err := requiredTenant(fs, *tenantID); err != nil {
		return err
	}
	return withControl(ctx, e, c, func(cp controlPlane) error {
		rep, err := rosterStore(cp).Quality(ctx, *tenantID, time.Now().Add(-*since))
		if err != nil {
			return err
		}
		if c.output == "json" {
			return writeJSON(e.Stdout, rep)
		}
		out := &errWriter{w: e.Stdout}
		out.printf("district %s, rosters since %s: uploads %v; rows received %d, accepted %d, rejected %d, held %d\n", rep.TenantID,
			formatTime(&rep.Since), rep.Uploads, rep.Rows["received"], rep.Rows["accepted"], rep.Rows["rejected"], rep.Rows["held"])
		if len(rep.Findings) == 0 {
			out.printf("no findings\n")
			return out.err
		}
		tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		tout := &errWriter{w: tw}
		tout.printf("%s\n", "SEVERITY\tCHECK\tSOURCE\tENTITY\tFINDING")
		for _, f := range rep.Findings {
			tout.printf("%s\t%s\t%s\t%s\t%s\n", f.Severity, f.Check, f.Source, f.Entity, f.Message)
		}
		if err := flushTable(tw, tout); err != nil {
			return err
		}
		return out.err
	})
}
