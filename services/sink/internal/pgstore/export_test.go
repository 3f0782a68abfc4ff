package pgstore

import "github.com/hamba/avro/v2"

// RosterColumn is one column of a roster table as the sink writes it: the Avro type of the schema field
// that fills it, nil for internal_id.
type RosterColumn struct {
	Name string
	Avro avro.Schema
}

// RosterColumns returns the columns the sink writes, by roster table.
func RosterColumns() (map[string][]RosterColumn, error) {
	tables, err := rosterTables()
	if err != nil {
		return nil, err
	}
	out := map[string][]RosterColumn{}
	for _, t := range tables {
		for _, c := range t.columns {
			out[t.name] = append(out[t.name], RosterColumn{Name: c.name, Avro: c.avro})
		}
	}
	return out, nil
}
