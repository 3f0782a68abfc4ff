package records

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/hamba/avro/v2"

	"github.com/edtech-analytics/platform/schemas"
)

// VersionsDir is the folder, inside a schemas file system, that holds the released snapshots.
const VersionsDir = "versions"

// Snapshot is one released version of a top-level schema: a self-contained schema with a stable id.
type Snapshot struct {
	ID      uint32 // unique across the catalog; the id in the Confluent frame without a registry
	Name    string // schema name, e.g. raw_event (see Kind.SchemaName)
	Version int    // 1, 2, ... per name
	Schema  avro.Schema
	// JSON is the canonical text of the schema: the full resolved schema (docs, defaults, logical
	// types) as compact JSON. Two snapshots are the same schema exactly when their JSON is equal.
	JSON string
}

// FileName returns the snapshot's file name inside VersionsDir: <id>_<name>_v<version>.avsc.
func (s *Snapshot) FileName() string {
	return fmt.Sprintf("%04d_%s_v%d.avsc", s.ID, s.Name, s.Version)
}

// FileContent returns the snapshot file's content: the canonical JSON, indented.
func (s *Snapshot) FileContent() ([]byte, error) {
	var buf bytes.Buffer
	if err := json.Indent(&buf, []byte(s.JSON), "", "  "); err != nil {
		return nil, fmt.Errorf("indenting %s: %w", s.FileName(), err)
	}
	buf.WriteByte('\n')
	return buf.Bytes(), nil
}

// Catalog maps schema ids to released snapshots and each name to its versions.
type Catalog struct {
	byID   map[uint32]*Snapshot
	byName map[string][]*Snapshot // ascending version
}

// EmbeddedCatalog loads the catalog embedded from the schemas module.
func EmbeddedCatalog() (*Catalog, error) {
	return LoadCatalog(schemas.FS)
}

// LoadCatalog reads every VersionsDir/<id>_<name>_v<N>.avsc in fsys. Each snapshot must parse on its
// own; ids must be unique and each name's versions must run 1..N.
func LoadCatalog(fsys fs.FS) (*Catalog, error) {
	files, err := fs.Glob(fsys, path.Join(VersionsDir, "*.avsc"))
	if err != nil {
		return nil, fmt.Errorf("listing snapshots: %w", err)
	}
	fileName := regexp.MustCompile(`^(\d+)_([a-z0-9_]+)_v(\d+)\.avsc$`)
	c := &Catalog{byID: map[uint32]*Snapshot{}, byName: map[string][]*Snapshot{}}
	for _, file := range files {
		m := fileName.FindStringSubmatch(path.Base(file))
		if m == nil {
			return nil, fmt.Errorf("snapshot %s: name is not <id>_<name>_v<N>.avsc", file)
		}
		id, err := strconv.ParseUint(m[1], 10, 32)
		if err != nil || id == 0 {
			return nil, fmt.Errorf("snapshot %s: id must be a positive 32-bit number", file)
		}
		version, err := strconv.Atoi(m[3])
		if err != nil {
			return nil, fmt.Errorf("snapshot %s: version: %w", file, err)
		}
		if prev, ok := c.byID[uint32(id)]; ok {
			return nil, fmt.Errorf("snapshot %s: id %d already used by %s", file, id, prev.FileName())
		}
		data, err := fs.ReadFile(fsys, file)
		if err != nil {
			return nil, fmt.Errorf("reading snapshot: %w", err)
		}
		schema, err := avro.ParseBytesWithCache(data, "", &avro.SchemaCache{})
		if err != nil {
			return nil, fmt.Errorf("parsing snapshot %s: %w", file, err)
		}
		text, err := CanonicalJSON(schema)
		if err != nil {
			return nil, fmt.Errorf("snapshot %s: %w", file, err)
		}
		s := &Snapshot{ID: uint32(id), Name: m[2], Version: version, Schema: schema, JSON: text}
		c.byID[s.ID] = s
		c.byName[s.Name] = append(c.byName[s.Name], s)
	}
	for name, vs := range c.byName {
		slices.SortFunc(vs, func(a, b *Snapshot) int { return a.Version - b.Version })
		for i, s := range vs {
			if s.Version != i+1 {
				return nil, fmt.Errorf("snapshots of %s: expected version %d, found %s", name, i+1, s.FileName())
			}
		}
	}
	return c, nil
}

// ByID returns the snapshot with the given id.
func (c *Catalog) ByID(id uint32) (*Snapshot, bool) {
	s, ok := c.byID[id]
	return s, ok
}

// Latest returns the newest version of the named schema.
func (c *Catalog) Latest(name string) (*Snapshot, bool) {
	vs := c.byName[name]
	if len(vs) == 0 {
		return nil, false
	}
	return vs[len(vs)-1], true
}

// Versions returns every version of the named schema, oldest first.
func (c *Catalog) Versions(name string) []*Snapshot {
	return slices.Clone(c.byName[name])
}

// Names returns the names of the schemas in the catalog, sorted.
func (c *Catalog) Names() []string {
	names := make([]string, 0, len(c.byName))
	for name := range c.byName {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// Plan compares the current schemas (name -> resolved schema, as from ParseSources) of every Kind with
// their latest snapshots and returns the snapshots to add, with fresh ids. A changed schema must be
// compatible both ways with its latest snapshot (old readers read new data and new readers read old
// data); otherwise Plan returns an error that says why and plans nothing.
func (c *Catalog) Plan(current map[string]avro.Schema) ([]*Snapshot, error) {
	var nextID uint32
	for id := range c.byID {
		nextID = max(nextID, id)
	}
	var plan []*Snapshot
	var errs []error
	for _, kind := range Kinds() {
		name := kind.SchemaName()
		schema, ok := current[name]
		if !ok {
			return nil, fmt.Errorf("no source schema %s.avsc", name)
		}
		text, err := CanonicalJSON(schema)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		version := 1
		if latest, ok := c.Latest(name); ok {
			if latest.JSON == text {
				continue
			}
			if why := Incompatibility(schema, latest.Schema); why != "" {
				errs = append(errs, fmt.Errorf("%s: the new schema cannot read data written with v%d (%s): %s",
					name, latest.Version, latest.FileName(), why))
			}
			if why := Incompatibility(latest.Schema, schema); why != "" {
				errs = append(errs, fmt.Errorf("%s: v%d readers (%s) cannot read data written with the new schema: %s",
					name, latest.Version, latest.FileName(), why))
			}
			version = latest.Version + 1
		}
		nextID++
		plan = append(plan, &Snapshot{ID: nextID, Name: name, Version: version, Schema: schema, JSON: text})
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return plan, nil
}

// Incompatibility returns "" when reader can read data written with writer, and otherwise the path of
// the first field that breaks it with the reason, e.g. "attendance.room: added without a default".
func Incompatibility(reader, writer avro.Schema) string {
	compat := avro.NewSchemaCompatibility()
	if compat.Compatible(reader, writer) == nil {
		return ""
	}
	return incompatibility(compat, reader, writer, "")
}

// incompatibility walks reader and writer side by side to the innermost incompatible pair; the pair
// is known to be incompatible.
func incompatibility(compat *avro.SchemaCompatibility, reader, writer avro.Schema, path string) string {
	reader, writer = deref(reader), deref(writer)
	at := func(name string) string {
		if path == "" {
			return name
		}
		return path + "." + name
	}
	switch r := reader.(type) {
	case *avro.RecordSchema:
		w, ok := writer.(*avro.RecordSchema)
		if !ok || r.FullName() != w.FullName() {
			break
		}
		for _, rf := range r.Fields() {
			i := slices.IndexFunc(w.Fields(), func(f *avro.Field) bool { return f.Name() == rf.Name() })
			if i < 0 {
				if !rf.HasDefault() {
					return at(rf.Name()) + ": added without a default"
				}
				continue
			}
			if compat.Compatible(rf.Type(), w.Fields()[i].Type()) != nil {
				return incompatibility(compat, rf.Type(), w.Fields()[i].Type(), at(rf.Name()))
			}
		}
	case *avro.UnionSchema:
		w, ok := writer.(*avro.UnionSchema)
		if !ok {
			break
		}
		for _, wt := range w.Types() {
			for _, rt := range r.Types() {
				if sameType(rt, wt) && compat.Compatible(rt, wt) != nil {
					return incompatibility(compat, rt, wt, path)
				}
			}
		}
	}
	if path == "" {
		path = "(top level)"
	}
	if err := compat.Compatible(reader, writer); err != nil {
		return path + ": " + err.Error()
	}
	return path + ": incompatible"
}

func deref(s avro.Schema) avro.Schema {
	if ref, ok := s.(*avro.RefSchema); ok {
		return ref.Schema()
	}
	return s
}

// sameType reports whether two union branches are the same type: same Avro type and, when named,
// same full name.
func sameType(a, b avro.Schema) bool {
	a, b = deref(a), deref(b)
	if a.Type() != b.Type() {
		return false
	}
	na, aNamed := a.(avro.NamedSchema)
	nb, bNamed := b.(avro.NamedSchema)
	return aNamed == bNamed && (!aNamed || na.FullName() == nb.FullName())
}

// ParseSources parses every *.avsc at the top of fsys (the source schemas) and returns each resolved,
// self-contained schema by file name without the extension. Files may refer to named types defined
// in other files in any order.
func ParseSources(fsys fs.FS) (map[string]avro.Schema, error) {
	files, err := fs.Glob(fsys, "*.avsc")
	if err != nil {
		return nil, fmt.Errorf("listing schemas: %w", err)
	}
	if len(files) == 0 {
		return nil, errors.New("no *.avsc schemas found")
	}
	cache := &avro.SchemaCache{}
	out := make(map[string]avro.Schema, len(files))
	pending := map[string]error{}
	for _, f := range files {
		pending[f] = nil
	}
	// Parse in passes until nothing is left or a pass makes no progress: a file that names a type from
	// a file not yet parsed fails this pass and succeeds in a later one.
	for progress := true; progress && len(pending) > 0; {
		progress = false
		for _, f := range files {
			if _, ok := pending[f]; !ok {
				continue
			}
			data, err := fs.ReadFile(fsys, f)
			if err != nil {
				return nil, fmt.Errorf("reading schema: %w", err)
			}
			s, err := avro.ParseBytesWithCache(data, "", cache)
			if err != nil {
				pending[f] = err
				continue
			}
			out[strings.TrimSuffix(f, ".avsc")] = s
			delete(pending, f)
			progress = true
		}
	}
	if len(pending) > 0 {
		var errs []error
		for _, f := range files {
			if err, ok := pending[f]; ok {
				errs = append(errs, fmt.Errorf("parsing %s: %w", f, err))
			}
		}
		return nil, errors.Join(errs...)
	}
	return out, nil
}

// CanonicalJSON returns the schema's canonical text: its full JSON form (docs, defaults, logical types)
// with every named type defined inline at its first use.
func CanonicalJSON(s avro.Schema) (string, error) {
	b, err := json.Marshal(s)
	if err != nil {
		return "", fmt.Errorf("marshaling schema: %w", err)
	}
	return string(b), nil
}
