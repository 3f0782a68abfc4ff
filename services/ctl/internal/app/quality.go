package app

import (
	"context"
	"errors"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/edtech-analytics/platform/libs/quality"
	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/edtech-analytics/platform/libs/tenancy/fleet"
	"github.com/edtech-analytics/platform/libs/tenancy/rosters"
)

// qualityReport is the report 'quality report' prints: the roster report, whose findings also list the
// event checks' (check volume or completeness), and the event checks' details when ClickHouse is
// configured.
type qualityReport struct {
	*rosters.Report
	Events *quality.Report `json:"events,omitempty"`
}

const qualitySynopsis = "--tenant ID [--since DURATION] [--clickhouse.addr HOST:PORT [--at TIME]]"

func runQualityReport(ctx context.Context, e Env, args []string) error {
	fs, c := newFlags(e, "quality report", qualitySynopsis)
	tenantID := fs.String("tenant", "", "tenant (district) id")
	since := fs.Duration("since", 7*24*time.Hour, "uploads received within this long (held ones whenever), and personal data found in free text since that day")
	var ch chConfig
	ch.registerFlagsAddr(fs, "", "ClickHouse native-protocol address, host:port; empty: no event checks (volume, completeness)")
	at := fs.String("at", "", "check events as of this time (RFC 3339; default now): volume on the last UTC day closed by then (--settle), completeness on the --days closed days up to it")
	var cfg quality.Config
	fs.IntVar(&cfg.Volume.Weeks, "volume-weeks", 8, "how many previous same weekdays a day's event count is compared with")
	fs.Float64Var(&cfg.Volume.Z, "volume-z", 3, "least |z-score| that is a volume anomaly")
	fs.Float64Var(&cfg.Volume.Floor, "volume-floor", 50, "least difference in events from the baseline mean that is a volume anomaly")
	fs.IntVar(&cfg.Days, "days", 7, "how many closed days completeness compares")
	fs.DurationVar(&cfg.Settle, "settle", time.Hour, "how long after a UTC day's end it is closed")
	if err := parse(fs, c, args); err != nil {
		return err
	}
	if err := requiredTenant(fs, *tenantID); err != nil {
		return err
	}
	now := time.Now()
	if *at != "" {
		t, err := time.Parse(time.RFC3339, *at)
		if err != nil {
			return usagef("--at: %w", err)
		}
		now = t
	}
	if err := cfg.Validate(); err != nil {
		return usagef("%w", err)
	}
	return withControl(ctx, e, c, func(cp controlPlane) (err error) {
		rep := qualityReport{}
		if rep.Report, err = rosterStore(cp).Quality(ctx, *tenantID, time.Now().Add(-*since)); err != nil {
			return err
		}
		if ch.addr != "" {
			if rep.Events, err = checkEvents(ctx, cp, ch, *tenantID, now, cfg); err != nil {
				return err
			}
			for _, f := range rep.Events.Findings(cfg.Volume) {
				rep.Findings = append(rep.Findings, rosters.Finding(f))
			}
		}
		if c.output == "json" {
			return writeJSON(e.Stdout, rep)
		}
		out := &errWriter{w: e.Stdout}
		out.printf("district %s, rosters since %s: uploads %v; rows received %d, accepted %d, rejected %d, held %d\n", rep.TenantID,
			formatTime(&rep.Since), rep.Uploads, rep.Rows["received"], rep.Rows["accepted"], rep.Rows["rejected"], rep.Rows["held"])
		if ev := rep.Events; ev != nil {
			out.printf("events: volume of %s against %d previous %ss: %d sources and types, %d anomalies", ev.Day.Format(time.DateOnly),
				cfg.Volume.Weeks, ev.Day.Weekday(), len(ev.Volume), ev.Anomalies())
			if g, ok := ev.LastGap(); ok {
				out.printf("; %s %s of %s: %d in clickhouse, %d stored", quality.ComparedType, quality.ComparedUnit, g.Day.Format(time.DateOnly),
					g.ClickHouse, g.Stored)
			}
			out.printf("\n")
		}
		tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		tout := &errWriter{w: tw}
		if len(rep.Days) > 0 {
			tout.printf("%s\n", "DAY\tUPLOADS\tRECEIVED\tACCEPTED\tREJECTED\tHELD\tFINDINGS")
			for _, d := range rep.Days {
				tout.printf("%s\t%d\t%d\t%d\t%d\t%d\t%d\n", d.Day, d.Uploads, d.Received, d.Accepted, d.Rejected, d.Held, d.Findings)
			}
			if err := flushTable(tw, tout); err != nil {
				return err
			}
		}
		if len(rep.Findings) == 0 {
			out.printf("no findings\n")
			return out.err
		}
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

// checkEvents runs the district's event checks (libs/quality) over ClickHouse and its schema.
func checkEvents(ctx context.Context, cp controlPlane, ch chConfig, tenantID string, now time.Time, cfg quality.Config) (_ *quality.Report, err error) {
	conn, err := ch.open(ctx)
	if err != nil {
		return nil, err
	}
	defer func() {
		if cerr := conn.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("closing clickhouse connection: %w", cerr))
		}
	}()
	rep, err := quality.NewChecker(conn, fleet.NewDistrictPools(cp.fleet), tenancy.SchemaName, cfg).Check(ctx, tenantID, now)
	if err != nil {
		return nil, fmt.Errorf("event checks: %w", err)
	}
	return rep, nil
}
