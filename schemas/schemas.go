// Package schemas embeds the platform's Avro schemas so every service reads the same source of truth.
//
// The top directory holds the source schemas: one file per payload record and OneRoster entity, and the
// four topic envelopes (raw_event, enriched_event, dlq_record, control_command) that refer to them by
// name. versions/ holds every released version of each envelope as a self-contained snapshot named
// <id>_<name>_v<N>.avsc; the id is the schema id written in the Confluent frame when no registry is
// configured. Snapshots are written by libs/records/cmd/schemasnap and never edited by hand.
package schemas

import "embed"

// FS holds *.avsc (sources) and versions/*.avsc (released snapshots).
//
//go:embed *.avsc versions/*.avsc
var FS embed.FS
