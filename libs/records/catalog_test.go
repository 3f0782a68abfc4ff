package records

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/hamba/avro/v2"

	"github.com/edtech-analytics/platform/schemas"
)

const snapshotHint = "run `go run ./libs/records/cmd/schemasnap` from the repository root (or `go generate ./...` in libs/records)"

func TestSourcesParse(t *testing.T) {
	files, err := fs.Glob(schemas.FS, "*.avsc")
	if err != nil {
		t.Fatal(err)
	}
	current, err := ParseSources(schemas.FS)
	if err != nil {
		t.Fatalf("parsing schemas/*.avsc: %v", err)
	}
	if len(current) != len(files) || len(files) < 18 {
		t.Fatalf("parsed %d schemas from %d files, want every file (at least 18)", len(current), len(files))
	}
	for name, s := range current {
		rec, ok := s.(*avro.RecordSchema)
		if !ok {
			t.Errorf("%s.avsc: top-level type %s, want a record", name, s.Type())
			continue
		}
		if rec.Namespace() != "edtech.v1" {
			t.Errorf("%s.avsc: namespace %q, want edtech.v1", name, rec.Namespace())
		}
		if strings.HasPrefix(name, "roster_") {
			for _, f := range []string{"sourced_id", "status", "date_last_modified"} {
				if !hasField(rec, f) {
					t.Errorf("%s.avsc: OneRoster entity without %s", name, f)
				}
			}
		}
	}
}

func TestParseSourcesReportsBrokenFile(t *testing.T) {
	fsys := fstest.MapFS{
		"a.avsc": {Data: []byte(`{"type":"record","name":"A","fields":[{"name":"b","type":"B"}]}`)},
		"b.avsc": {Data: []byte(`{"type":"record","name":"B","fields":[{"name":"x","type":"nope"}]}`)},
	}
	_, err := ParseSources(fsys)
	if err == nil || !strings.Contains(err.Error(), "b.avsc") || !strings.Contains(err.Error(), "nope") {
		t.Fatalf("ParseSources = %v, want an error naming b.avsc and the unknown type", err)
	}
}

func TestEnvelopesMatchLatestSnapshot(t *testing.T) {
	current := sources(t)
	catalog := embeddedCatalog(t)
	for _, kind := range Kinds() {
		name := kind.SchemaName()
		latest, ok := catalog.Latest(name)
		if !ok {
			t.Errorf("%s has no snapshot in schemas/versions: %s", name, snapshotHint)
			continue
		}
		text, err := CanonicalJSON(current[name])
		if err != nil {
			t.Fatal(err)
		}
		if text != latest.JSON {
			t.Errorf("schemas/%s.avsc (with the payloads it names) differs from its latest snapshot %s: %s",
				name, latest.FileName(), snapshotHint)
		}
	}
}

func TestSnapshotsCompatibleBothWays(t *testing.T) {
	catalog := embeddedCatalog(t)
	compat := avro.NewSchemaCompatibility()
	for _, name := range catalog.Names() {
		vs := catalog.Versions(name)
		for i := 1; i < len(vs); i++ {
			prev, next := vs[i-1], vs[i]
			if err := compat.Compatible(next.Schema, prev.Schema); err != nil {
				t.Errorf("%s cannot read data written with %s: %v", next.FileName(), prev.FileName(), err)
			}
			if err := compat.Compatible(prev.Schema, next.Schema); err != nil {
				t.Errorf("%s cannot read data written with %s: %v", prev.FileName(), next.FileName(), err)
			}
		}
	}
}

// Every event type has its payload field, named after the type, in both event envelopes, and the two
// envelopes carry the same payload block.
func TestPayloadFieldsFollowEventTypes(t *testing.T) {
	current := sources(t)
	payloadFields := func(name string) []string {
		var out []string
		for _, f := range current[name].(*avro.RecordSchema).Fields() {
			if u, ok := f.Type().(*avro.UnionSchema); ok && u.Nullable() && u.Types()[1].Type() == avro.Record {
				out = append(out, f.Name())
			}
		}
		return out
	}
	var want []string
	for _, typ := range EventTypes() {
		want = append(want, strings.ReplaceAll(typ, ".", "_"))
	}
	for _, name := range []string{"raw_event", "enriched_event"} {
		if got := payloadFields(name); !slices.Equal(got, want) {
			t.Errorf("%s payload fields = %v, want %v (one per EventTypes entry, in order)", name, got, want)
		}
	}
}

func TestLoadCatalog(t *testing.T) {
	rec := func(name string) *fstest.MapFile {
		return &fstest.MapFile{Data: []byte(`{"type":"record","name":"` + name + `","fields":[{"name":"a","type":"string"}]}`)}
	}
	tests := []struct {
		name    string
		fsys    fstest.MapFS
		wantErr string
	}{
		{"ok", fstest.MapFS{"versions/0001_x_v1.avsc": rec("X"), "versions/0002_x_v2.avsc": rec("X"), "versions/0003_y_v1.avsc": rec("Y")}, ""},
		{"bad name", fstest.MapFS{"versions/x_v1.avsc": rec("X")}, "<id>_<name>_v<N>"},
		{"duplicate id", fstest.MapFS{"versions/0001_x_v1.avsc": rec("X"), "versions/001_y_v1.avsc": rec("Y")}, "already used"},
		{"version gap", fstest.MapFS{"versions/0001_x_v1.avsc": rec("X"), "versions/0002_x_v3.avsc": rec("X")}, "expected version 2"},
		{"zero id", fstest.MapFS{"versions/0000_x_v1.avsc": rec("X")}, "positive"},
		{"not self-contained", fstest.MapFS{"versions/0001_x_v1.avsc": {Data: []byte(`{"type":"record","name":"X","fields":[{"name":"a","type":"Y"}]}`)}}, "unknown type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := LoadCatalog(tt.fsys)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("LoadCatalog = %v, want error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if latest, ok := c.Latest("x"); !ok || latest.ID != 2 || latest.Version != 2 {
				t.Fatalf("Latest(x) = %+v, want id 2 v2", latest)
			}
			if s, ok := c.ByID(3); !ok || s.Name != "y" {
				t.Fatalf("ByID(3) = %+v, want y", s)
			}
			if got := c.Names(); !slices.Equal(got, []string{"x", "y"}) {
				t.Fatalf("Names = %v", got)
			}
		})
	}
}

func TestPlan(t *testing.T) {
	catalog := embeddedCatalog(t)
	current := sources(t)
	maxID := uint32(0)
	for _, name := range catalog.Names() {
		for _, s := range catalog.Versions(name) {
			maxID = max(maxID, s.ID)
		}
	}
	rawLatest, _ := catalog.Latest("raw_event")
	with := func(change func(fields []any) []any) map[string]avro.Schema {
		out := map[string]avro.Schema{}
		for k, v := range current {
			out[k] = v
		}
		out["raw_event"] = editRecord(t, rawLatest.JSON, change)
		return out
	}
	tests := []struct {
		name    string
		current map[string]avro.Schema
		wantErr []string
		want    int // snapshots planned
	}{
		{"unchanged", current, nil, 0},
		{"optional field added", with(func(f []any) []any {
			return append(f, map[string]any{"name": "extra", "type": []any{"null", "string"}, "default": nil})
		}), nil, 1},
		{"required field added", with(func(f []any) []any {
			return append(f, map[string]any{"name": "extra", "type": "string"})
		}), []string{fmt.Sprintf("the new schema cannot read data written with v%d", rawLatest.Version), "extra"}, 0},
		{"required field removed", with(func(f []any) []any {
			return slices.DeleteFunc(f, func(x any) bool { return x.(map[string]any)["name"] == "tenant_id" })
		}), []string{fmt.Sprintf("v%d readers", rawLatest.Version), "tenant_id"}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			plan, err := catalog.Plan(tt.current)
			if tt.wantErr != nil {
				if err == nil {
					t.Fatal("Plan accepted an incompatible change")
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("Plan error %q does not mention %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(plan) != tt.want {
				t.Fatalf("planned %d snapshots, want %d", len(plan), tt.want)
			}
			for _, s := range plan {
				if s.Name != "raw_event" || s.Version != rawLatest.Version+1 || s.ID != maxID+1 {
					t.Errorf("planned %s, want raw_event v%d with id %d", s.FileName(), rawLatest.Version+1, maxID+1)
				}
				content, err := s.FileContent()
				if err != nil {
					t.Fatal(err)
				}
				if _, err := avro.ParseBytesWithCache(content, "", &avro.SchemaCache{}); err != nil {
					t.Errorf("planned snapshot is not self-contained: %v", err)
				}
			}
		})
	}
}

func TestPlanFirstRelease(t *testing.T) {
	current := sources(t)
	empty, err := LoadCatalog(fstest.MapFS{})
	if err != nil {
		t.Fatal(err)
	}
	plan, err := empty.Plan(current)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range plan {
		got = append(got, s.FileName())
	}
	want := []string{"0001_raw_event_v1.avsc", "0002_enriched_event_v1.avsc", "0003_dlq_record_v1.avsc", "0004_control_command_v1.avsc"}
	if !slices.Equal(got, want) {
		t.Fatalf("first release plan = %v, want %v", got, want)
	}
}

func hasField(rec *avro.RecordSchema, name string) bool {
	return slices.ContainsFunc(rec.Fields(), func(f *avro.Field) bool { return f.Name() == name })
}

// editRecord parses a record schema's JSON, lets change edit its field list and parses the result.
func editRecord(t *testing.T, text string, change func(fields []any) []any) avro.Schema {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(text), &m); err != nil {
		t.Fatal(err)
	}
	m["fields"] = change(m["fields"].([]any))
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	s, err := avro.ParseBytesWithCache(b, "", &avro.SchemaCache{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestIncompatibility(t *testing.T) {
	const inner = `{"type":"record","name":"P","fields":[{"name":"n","type":%s}%s]}`
	schema := func(innerType, extra, outerExtra string) avro.Schema {
		t.Helper()
		p := strings.Replace(strings.Replace(inner, "%s", innerType, 1), "%s", extra, 1)
		s, err := avro.ParseBytesWithCache([]byte(`{"type":"record","name":"E","fields":[{"name":"p","type":["null",`+p+`],"default":null}`+outerExtra+`]}`), "", &avro.SchemaCache{})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	base := schema(`"int"`, "", "")
	tests := []struct {
		name           string
		reader, writer avro.Schema
		want           string
	}{
		{"same", base, base, ""},
		{"int promotes to long", schema(`"long"`, "", ""), base, ""},
		{"optional field added", schema(`"int"`, `,{"name":"o","type":["null","int"],"default":null}`, ""), base, ""},
		{"required field added", schema(`"int"`, `,{"name":"r","type":"int"}`, ""), base, "p.r: added without a default"},
		{"type narrowed", base, schema(`"long"`, "", ""), "p.n: "},
		{"top-level field added", schema(`"int"`, "", `,{"name":"x","type":"string"}`), base, "x: added without a default"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Incompatibility(tt.reader, tt.writer)
			if (tt.want == "") != (got == "") || !strings.HasPrefix(got, tt.want) {
				t.Fatalf("Incompatibility = %q, want %q", got, tt.want)
			}
		})
	}
}
