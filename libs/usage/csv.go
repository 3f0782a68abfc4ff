package usage

import (
	"encoding/csv"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/edtech-analytics/platform/libs/records"
)

// EventTypes are the event types a report has a column for whether or not they occurred: the learning
// event types (roster records are not events in ClickHouse). A type outside them that a district sent
// gets its own column after them.
func EventTypes() []string {
	var out []string
	for _, t := range records.EventTypes() {
		if !records.IsRosterType(t) {
			out = append(out, t)
		}
	}
	return out
}

// EventColumn names the CSV column of an event type's count.
func EventColumn(typ string) string { return "events_" + typ }

// Columns returns the CSV header of a report: one row per district, a column per event type (EventTypes,
// then any other type the report holds, sorted), so that a billing system reads a fixed set of columns
// for the known types and finds a new type's column by name.
func Columns(rep *Report) []string {
	cols := []string{"period", "period_start", "period_end", "measured_at", "tenant_id", "status", "events_total"}
	for _, t := range eventTypesOf(rep) {
		cols = append(cols, EventColumn(t))
	}
	return append(cols, "active_students", "roster_students", "postgresql_bytes", "clickhouse_bytes_apportioned",
		"exports_student", "exports_district", "erasures_student", "erasures_district")
}

func eventTypesOf(rep *Report) []string {
	types := EventTypes()
	extra := map[string]bool{}
	for _, d := range rep.Districts {
		for t := range d.Events {
			if !slices.Contains(types, t) {
				extra[t] = true
			}
		}
	}
	return append(types, slices.Sorted(maps.Keys(extra))...)
}

// WriteCSV writes the report as CSV: the header (Columns), then a row per district.
func WriteCSV(w io.Writer, rep *Report) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(Columns(rep)); err != nil {
		return fmt.Errorf("writing csv: %w", err)
	}
	types := eventTypesOf(rep)
	n := func(v int64) string { return strconv.FormatInt(v, 10) }
	for _, d := range rep.Districts {
		row := []string{rep.Period, rep.Start.Format(time.RFC3339), rep.End.Format(time.RFC3339), rep.MeasuredAt.Format(time.RFC3339),
			d.TenantID, d.Status, n(d.EventsTotal)}
		for _, t := range types {
			row = append(row, n(d.Events[t]))
		}
		row = append(row, n(d.ActiveStudents), n(d.RosterStudents), n(d.PostgreSQLBytes), n(d.ClickHouseBytesApportioned),
			n(d.ExportsStudent), n(d.ExportsDistrict), n(d.ErasuresStudent), n(d.ErasuresDistrict))
		if err := cw.Write(row); err != nil {
			return fmt.Errorf("writing csv: %w", err)
		}
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return fmt.Errorf("writing csv: %w", err)
	}
	return nil
}
