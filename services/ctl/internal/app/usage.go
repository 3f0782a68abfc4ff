package app

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/edtech-analytics/platform/libs/tenancy"
	"github.com/edtech-analytics/platform/libs/tenancy/fleet"
	"github.com/edtech-analytics/platform/libs/usage"
)

const usageSynopsis = "--month YYYY-MM [--tenant ID] [--output text|json|csv] [--clickhouse.addr HOST:PORT]"

// usageAudit is what the audit log records of a usage report: who read which districts' usage, of
// which month.
type usageAudit struct {
	Period    string `json:"period"`
	Tenant    string `json:"tenant,omitempty"`
	Districts int    `json:"districts"`
	Via       string `json:"via"`
}

func runUsageReport(ctx context.Context, e Env, args []string) error {
	fs, c := newFlags(e, "usage report", usageSynopsis)
	c.outputs = []string{"table", "csv"}
	fs.Lookup("output").Usage = "output format: text (a table; also 'table'), json, or csv (a header row, then a row per district)"
	month := fs.String("month", "", "the UTC month, YYYY-MM")
	tenantID := fs.String("tenant", "", "one district (default: every district that existed in the month)")
	var ch chConfig
	ch.registerFlags(fs)
	if err := parse(fs, c, args); err != nil {
		return err
	}
	if err := required(fs, "month"); err != nil {
		return err
	}
	period, err := usage.Month(*month)
	if err != nil {
		return usagef("--month: %w", err)
	}
	var ids []string
	if *tenantID != "" {
		if err := tenancy.ValidTenantID(*tenantID); err != nil {
			return usagef("--tenant: %w", err)
		}
		ids = []string{*tenantID}
	}
	return withControl(ctx, e, c, func(cp controlPlane) (err error) {
		conn, err := ch.open(ctx)
		if err != nil {
			return err
		}
		defer func() {
			if cerr := conn.Close(); cerr != nil {
				err = errors.Join(err, fmt.Errorf("closing clickhouse connection: %w", cerr))
			}
		}()
		rep, err := usage.New(cp.pool, fleet.NewDistrictPools(cp.fleet), conn).WithNodes(ch.openAt).Report(ctx, period, ids...)
		if err != nil {
			return flagError("tenant", err)
		}
		// A read across districts: recorded before it is shown.
		if err := cp.record(ctx, *tenantID, "usage.read", usageAudit{Period: rep.Period, Tenant: *tenantID,
			Districts: len(rep.Districts), Via: "ctl"}); err != nil {
			return err
		}
		switch c.output {
		case "json":
			return writeJSON(e.Stdout, rep)
		case "csv":
			return usage.WriteCSV(e.Stdout, rep)
		}
		return writeUsageTable(e, rep)
	})
}

// writeUsageTable prints a report as a table, with a column for each event type some district sent.
func writeUsageTable(e Env, rep *usage.Report) error {
	out := &errWriter{w: e.Stdout}
	out.printf("usage of %s (%s to %s), measured %s; clickhouse bytes are apportioned shares of shared tables\n",
		rep.Period, rep.Start.Format(time.RFC3339), rep.End.Format(time.RFC3339), rep.MeasuredAt.Format(time.RFC3339))
	var types []string
	for _, t := range usage.EventTypes() {
		if slices.ContainsFunc(rep.Districts, func(d usage.District) bool { return d.Events[t] > 0 }) {
			types = append(types, t)
		}
	}
	var others []string
	for _, d := range rep.Districts {
		for t := range d.Events {
			if !slices.Contains(others, t) && !slices.Contains(usage.EventTypes(), t) {
				others = append(others, t)
			}
		}
	}
	slices.Sort(others)
	types = append(types, others...)
	header := []string{"TENANT", "STATUS", "EVENTS"}
	for _, t := range types {
		header = append(header, strings.ToUpper(t))
	}
	header = append(header, "ACTIVE_STUDENTS", "ROSTER_STUDENTS", "POSTGRESQL_BYTES", "CLICKHOUSE_BYTES_APPORTIONED",
		"EXPORTS_STUDENT", "EXPORTS_DISTRICT", "ERASURES_STUDENT", "ERASURES_DISTRICT")
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	tout := &errWriter{w: tw}
	tout.printf("%s\n", strings.Join(header, "\t"))
	n := func(v int64) string { return strconv.FormatInt(v, 10) }
	for _, d := range rep.Districts {
		row := []string{d.TenantID, d.Status, n(d.EventsTotal)}
		for _, t := range types {
			row = append(row, n(d.Events[t]))
		}
		row = append(row, n(d.ActiveStudents), n(d.RosterStudents), n(d.PostgreSQLBytes), n(d.ClickHouseBytesApportioned),
			n(d.ExportsStudent), n(d.ExportsDistrict), n(d.ErasuresStudent), n(d.ErasuresDistrict))
		tout.printf("%s\n", strings.Join(row, "\t"))
	}
	if err := flushTable(tw, tout); err != nil {
		return err
	}
	return out.Err()
}
