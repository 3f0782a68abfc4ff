package mapping

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"path"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// The rules document as written. Decoding is strict: a key outside these structs is an error.
type rulesDoc struct {
	Version int         `yaml:"version"`
	Actors  *Actors     `yaml:"actors"`
	Exports []exportDoc `yaml:"exports"`
}

type exportDoc struct {
	Name       string     `yaml:"name"`
	Match      string     `yaml:"match"`
	Format     string     `yaml:"format"`
	Records    *string    `yaml:"records"`
	Delimiter  *string    `yaml:"delimiter"`
	Collection string     `yaml:"collection"`
	Fields     []fieldDoc `yaml:"fields"`
}

type fieldDoc struct {
	Target   string            `yaml:"target"`
	From     sources           `yaml:"from"`
	Const    *string           `yaml:"const"`
	Concat   []concatPart      `yaml:"concat"`
	Sep      *string           `yaml:"sep"`
	Required bool              `yaml:"required"`
	Trim     *bool             `yaml:"trim"`
	Split    *splitDoc         `yaml:"split"`
	Case     string            `yaml:"case"`
	Map      map[string]string `yaml:"map"`
	Unmapped string            `yaml:"unmapped"`
	Date     string            `yaml:"date"`
	Default  *string           `yaml:"default"`
}

type splitDoc struct {
	Sep   string `yaml:"sep"`
	Index *int   `yaml:"index"`
}

// sources is a rule's from: one column (or JSON path), or a list of them, the first non-empty winning.
type sources []string

func (s *sources) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		*s = sources{n.Value}
		return nil
	case yaml.SequenceNode:
		out := make(sources, 0, len(n.Content))
		for _, c := range n.Content {
			if c.Kind != yaml.ScalarNode {
				return fmt.Errorf("line %d: from: each entry must be a column name or a JSON path", c.Line)
			}
			out = append(out, c.Value)
		}
		if len(out) == 0 {
			return fmt.Errorf("line %d: from: the list is empty", n.Line)
		}
		*s = out
		return nil
	}
	return fmt.Errorf("line %d: from must be a column name, a JSON path or a list of them", n.Line)
}

// concatPart is one item of a concat: a column (or JSON path) when written plain, a literal when quoted.
type concatPart struct {
	text    string
	literal bool
}

func (p *concatPart) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: concat: each item must be a column name or a quoted literal", n.Line)
	}
	p.text = n.Value
	p.literal = n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle) != 0
	return nil
}

// caseFold is a rule's case conversion.
type caseFold int

const (
	caseNone caseFold = iota
	caseUpper
	caseLower
	caseTitle
)

// unmappedMode is what a rule does with a value its map lacks.
type unmappedMode int

const (
	unmappedError unmappedMode = iota
	unmappedKeep
	unmappedDefault
	unmappedDrop
)

// rule is one compiled field rule.
type rule struct {
	idx      int // position among the export's rules
	line     int
	tgt      target
	required bool

	from     []string   // columns (CSV) or path texts (JSON)
	paths    []jsonPath // JSON: the from paths
	hasConst bool
	constVal string // converted to the target's form
	concat   []concatPart
	parts    []jsonPath // JSON: the concat paths (zero for literals)
	sep      string
	hasSep   bool

	trim       bool
	split      bool
	splitSep   string
	splitIndex int
	splitAll   bool // a list target takes every part
	fold       caseFold
	vmap       map[string]string
	vmapFold   map[string]string // keys lowercased, for the case-insensitive fallback
	unmapped   unmappedMode
	date       *dateLayout
	hasDefault bool
	defaultVal string // converted to the target's form
}

// Parse reads and compiles a rules document. Errors wrap ErrInvalidRules and name the YAML line, the
// export and the field rule; all problems found are reported together. lim bounds what mapping a file
// reads (zero fields take DefaultLimits).
func Parse(src []byte, lim Limits) (*Rules, error) {
	var doc rulesDoc
	dec := yaml.NewDecoder(bytes.NewReader(src))
	dec.KnownFields(true)
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%w: the document is empty", ErrInvalidRules)
		}
		return nil, fmt.Errorf("%w: %s", ErrInvalidRules, yamlMessage(err))
	}
	var root yaml.Node
	if err := yaml.Unmarshal(src, &root); err != nil { // cannot fail: the same bytes decoded above
		return nil, fmt.Errorf("%w: %s", ErrInvalidRules, yamlMessage(err))
	}
	c := &compiler{lim: lim.withDefaults()}
	return c.compile(&doc, docLines(&root))
}

// yamlMessage rewrites the decoder's Go type names into the names of the rules format.
func yamlMessage(err error) string {
	return strings.NewReplacer(
		"yaml: ", "",
		"unmarshal errors:\n  ", "",
		"\n  ", "; ",
		"mapping.rulesDoc", "the rules document",
		"mapping.exportDoc", "an export",
		"mapping.Actors", "actors",
		"mapping.fieldDoc", "a field rule",
		"mapping.splitDoc", "split",
		" not found in type ", " is not a key of ",
	).Replace(err.Error())
}

// lines are the YAML lines of an export or field rule: of the item, and of each of its keys.
type lines struct {
	at   int
	keys map[string]int
}

func (l lines) of(key string) int {
	if n, ok := l.keys[key]; ok {
		return n
	}
	return l.at
}

type exportLines struct {
	lines
	fields []lines
}

// docLines finds the lines of every export and field rule in the parsed document.
func docLines(root *yaml.Node) []exportLines {
	var out []exportLines
	if root.Kind != yaml.DocumentNode || len(root.Content) == 0 {
		return nil
	}
	exports := mappingValue(root.Content[0], "exports")
	if exports == nil || exports.Kind != yaml.SequenceNode {
		return nil
	}
	for _, e := range exports.Content {
		el := exportLines{lines: nodeLines(e)}
		if fs := mappingValue(e, "fields"); fs != nil && fs.Kind == yaml.SequenceNode {
			for _, f := range fs.Content {
				el.fields = append(el.fields, nodeLines(f))
			}
		}
		out = append(out, el)
	}
	return out
}

func mappingValue(n *yaml.Node, key string) *yaml.Node {
	if n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

func nodeLines(n *yaml.Node) lines {
	l := lines{at: n.Line, keys: map[string]int{}}
	if n.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(n.Content); i += 2 {
			l.keys[n.Content[i].Value] = n.Content[i].Line
		}
	}
	return l
}

type compiler struct {
	lim  Limits
	errs []error
}

func (c *compiler) fail(line int, where, format string, args ...any) {
	c.errs = append(c.errs, fmt.Errorf("%w: line %d: %s: %s", ErrInvalidRules, line, where, fmt.Sprintf(format, args...)))
}

func (c *compiler) compile(doc *rulesDoc, ls []exportLines) (*Rules, error) {
	if doc.Version != 1 {
		c.errs = append(c.errs, fmt.Errorf("%w: version must be 1, the rules format this package reads", ErrInvalidRules))
	}
	if len(doc.Exports) == 0 && doc.Actors == nil {
		c.errs = append(c.errs, fmt.Errorf("%w: exports: the document defines no export", ErrInvalidRules))
	}
	c.actors(doc.Actors)
	rules := &Rules{}
	if doc.Actors != nil {
		rules.actors = *doc.Actors
	}
	for i, ed := range doc.Exports {
		el := exportLines{lines: lines{at: 1}}
		if i < len(ls) {
			el = ls[i]
		}
		where := fmt.Sprintf("export %d", i+1)
		if ed.Name != "" {
			where = fmt.Sprintf("export %q", ed.Name)
		}
		if slices.ContainsFunc(rules.exports, func(e *Export) bool { return e.name == ed.Name }) {
			c.fail(el.of("name"), where, "another export has this name")
		}
		if e := c.export(ed, el, where); e != nil {
			rules.exports = append(rules.exports, e)
		}
	}
	if len(c.errs) > 0 {
		return nil, errors.Join(c.errs...)
	}
	return rules, nil
}

func (c *compiler) export(ed exportDoc, el exportLines, where string) *Export {
	e := &Export{name: ed.Name, collection: ed.Collection, match: strings.ToLower(ed.Match), comma: ',', lim: c.lim}
	if ed.Name == "" {
		c.fail(el.at, where, "name is required")
	}
	if e.match != "" {
		if _, err := path.Match(e.match, ""); err != nil {
			c.fail(el.of("match"), where, "match %q is not a valid glob", ed.Match)
		}
	}
	switch ed.Format {
	case "csv":
		if ed.Records != nil {
			c.fail(el.of("records"), where, "records is for JSON exports")
		}
		if d := ed.Delimiter; d != nil {
			r, n := utf8.DecodeRuneInString(*d)
			if n == 0 || n != len(*d) || r == '"' || r == '\r' || r == '\n' || r == utf8.RuneError {
				c.fail(el.of("delimiter"), where, "delimiter must be one character other than a quote or line break")
			}
			e.comma = r
		}
	case "json":
		e.format = formatJSON
		if ed.Delimiter != nil {
			c.fail(el.of("delimiter"), where, "delimiter is for CSV exports")
		}
		records := "$"
		if ed.Records != nil {
			records = *ed.Records
		}
		p, err := parsePath(records)
		if err != nil {
			c.fail(el.of("records"), where, "records: %v", err)
		}
		e.records = p
	default:
		c.fail(el.of("format"), where, "format must be csv or json")
	}
	schema, ok := schemaOf(ed.Collection)
	if !ok {
		c.fail(el.of("collection"), where, "collection %q is not one of %s", ed.Collection, knownCollections())
		return nil
	}
	if len(ed.Fields) == 0 {
		c.fail(el.at, where, "fields: the export has no field rule")
		return nil
	}
	seen := map[string]int{}
	for i, fd := range ed.Fields {
		fl := lines{at: el.at}
		if i < len(el.fields) {
			fl = el.fields[i]
		}
		fwhere := fmt.Sprintf("%s, field %d", where, i+1)
		if fd.Target != "" {
			fwhere += " (" + fd.Target + ")"
		}
		r := c.field(e, schema, fd, fl, fwhere)
		if r == nil {
			continue
		}
		r.idx, r.line = len(e.rules), fl.at
		if !r.tgt.leafList() {
			if prev, dup := seen[r.tgt.canon]; dup {
				c.fail(fl.of("target"), fwhere, "field %d already writes %s", prev, r.tgt.canon)
				continue
			}
			seen[r.tgt.canon] = i + 1
		}
		e.rules = append(e.rules, r)
	}
	if _, ok := seen["sourcedId"]; !ok {
		c.fail(el.at, where, "no field rule writes sourcedId, which every record needs")
	}
	e.plan = buildPlan(schema, e.rules)
	return e
}

// leafList reports whether the target appends to a list (grades[], terms[]).
func (t target) leafList() bool { return t.spec.kind.list() }

func (c *compiler) field(e *Export, schema []fieldSpec, fd fieldDoc, fl lines, where string) *rule {
	before := len(c.errs)
	if fd.Target == "" {
		c.fail(fl.at, where, "target is required")
		return nil
	}
	t, err := parseTarget(e.collection, schema, fd.Target)
	if err != nil {
		c.fail(fl.of("target"), where, "%v", err)
		return nil
	}
	r := &rule{tgt: t, required: fd.Required, trim: fd.Trim == nil || *fd.Trim}

	// The value's source: exactly one of from, const and concat, or none when a default gives the value.
	var given []string
	for _, s := range []struct {
		name string
		set  bool
	}{{"from", fd.From != nil}, {"const", fd.Const != nil}, {"concat", fd.Concat != nil}} {
		if s.set {
			given = append(given, s.name)
		}
	}
	switch {
	case len(given) > 1:
		c.fail(fl.of(given[1]), where, "%s cannot both be set: give one source", strings.Join(given, " and "))
	case len(given) == 0 && fd.Default == nil:
		c.fail(fl.at, where, "give the value's source: from, const, concat or default")
	}
	if fd.Sep != nil && fd.Concat == nil {
		c.fail(fl.of("sep"), where, "sep is for concat")
	}
	if fd.Const != nil {
		for _, k := range []string{"split", "case", "map", "unmapped", "date", "default", "trim"} {
			if _, set := fl.keys[k]; set {
				c.fail(fl.of(k), where, "%s does not apply to a const", k)
			}
		}
	}

	for _, s := range fd.From {
		if s == "" {
			c.fail(fl.of("from"), where, "from names an empty column")
			continue
		}
		r.from = append(r.from, s)
		if e.format == formatJSON {
			p, err := c.recordPath(s)
			if err != nil {
				c.fail(fl.of("from"), where, "%v", err)
			}
			r.paths = append(r.paths, p)
		}
	}
	if fd.Concat != nil {
		if len(fd.Concat) == 0 {
			c.fail(fl.of("concat"), where, "concat is empty")
		}
		columns := 0
		for _, p := range fd.Concat {
			var jp jsonPath
			if !p.literal {
				columns++
				if e.format == formatJSON {
					if jp, err = c.recordPath(p.text); err != nil {
						c.fail(fl.of("concat"), where, "%v (quote literal text)", err)
					}
				}
			}
			r.concat = append(r.concat, p)
			r.parts = append(r.parts, jp)
		}
		if len(fd.Concat) > 0 && columns == 0 {
			c.fail(fl.of("concat"), where, "concat has only literals: name a column, or use const")
		}
		if fd.Sep != nil {
			r.sep, r.hasSep = *fd.Sep, true
		}
	}

	if fd.Split != nil {
		sp := fd.Split
		r.split, r.splitSep = true, sp.Sep
		if sp.Sep == "" {
			c.fail(fl.of("split"), where, "split: sep is required")
		}
		switch {
		case sp.Index != nil:
			r.splitIndex = *sp.Index
		case t.leafList():
			r.splitAll = true
		default:
			c.fail(fl.of("split"), where, "split: index is required unless the target is a list such as grades[]")
		}
	}
	switch fd.Case {
	case "":
	case "upper":
		r.fold = caseUpper
	case "lower":
		r.fold = caseLower
	case "title":
		r.fold = caseTitle
	default:
		c.fail(fl.of("case"), where, "case must be upper, lower or title")
	}
	if fd.Map != nil {
		r.vmap = fd.Map
		r.vmapFold = make(map[string]string, len(fd.Map))
		for _, k := range slices.Sorted(maps.Keys(fd.Map)) {
			lk := strings.ToLower(k)
			if _, dup := r.vmapFold[lk]; !dup {
				r.vmapFold[lk] = fd.Map[k]
			}
		}
	}
	switch fd.Unmapped {
	case "", "error":
	case "keep":
		r.unmapped = unmappedKeep
	case "default":
		r.unmapped = unmappedDefault
		if fd.Default == nil {
			c.fail(fl.of("unmapped"), where, "unmapped: default needs a default")
		}
	case "drop":
		r.unmapped = unmappedDrop
	default:
		c.fail(fl.of("unmapped"), where, "unmapped must be error, keep, default or drop")
	}
	if fd.Unmapped != "" && fd.Map == nil {
		c.fail(fl.of("unmapped"), where, "unmapped needs a map")
	}
	if fd.Date != "" {
		switch t.leaf {
		case kString, kDate, kTimestamp:
			l, err := parseLayout(fd.Date)
			if err != nil {
				c.fail(fl.of("date"), where, "%v", err)
			}
			r.date = l
		default:
			c.fail(fl.of("date"), where, "date does not apply to %s, a %s", t.name, t.leaf)
		}
	}

	// Constants, defaults and map values are checked against the target now, not on every row.
	if fd.Const != nil {
		r.hasConst = true
		r.constVal = c.literal(t, *fd.Const, fl.of("const"), where, "const")
	}
	if fd.Default != nil {
		r.hasDefault = true
		r.defaultVal = c.literal(t, *fd.Default, fl.of("default"), where, "default")
	}
	if r.vmap != nil && r.date == nil && (t.leaf == kBool || t.leaf == kNumber) {
		for _, k := range slices.Sorted(maps.Keys(r.vmap)) {
			c.literal(t, r.vmap[k], fl.of("map"), where, fmt.Sprintf("map value for %q", k))
		}
	}
	if len(c.errs) > before {
		return nil
	}
	return r
}

// recordPath compiles a JSON path relative to a record; it must name something inside it.
func (c *compiler) recordPath(s string) (jsonPath, error) {
	p, err := parsePath(s)
	if err == nil && len(p.segs) == 0 {
		err = fmt.Errorf("JSON path %q names the whole record: name a value inside it, e.g. $.id", s)
	}
	return p, err
}

// literal converts a const, default or map value to the target's form, failing the rule when it does
// not fit (a boolean that is not true or false, a date that is not YYYY-MM-DD).
func (c *compiler) literal(t target, v string, line int, where, what string) string {
	if v == "" {
		c.fail(line, where, "%s is empty: leave the rule out instead", what)
		return ""
	}
	out, msg := convert(t, v)
	if msg != "" {
		c.fail(line, where, "%s %q %s", what, v, msg)
	}
	return out
}

// convert checks a final value against the target's kind and returns the form it is written in: a
// boolean as true or false, a number in canonical form; msg says what is wrong otherwise.
func convert(t target, v string) (out, msg string) {
	switch t.leaf {
	case kBool:
		switch {
		case strings.EqualFold(v, "true"):
			return "true", ""
		case strings.EqualFold(v, "false"):
			return "false", ""
		}
		return "", "is not true or false (a map can translate other values)"
	case kNumber:
		n, ok := parseNumber(v)
		if !ok {
			return "", "is not a number"
		}
		return n, ""
	case kDate:
		if _, err := time.Parse(time.DateOnly, v); err != nil {
			return "", "is not a date such as 2026-09-01 (a date rule can read other layouts)"
		}
	case kTimestamp:
		if _, err := time.Parse(time.RFC3339Nano, v); err != nil {
			if _, derr := time.Parse(time.DateOnly, v); derr != nil || !dateOnlyOK(t.name) {
				return "", "is not an RFC 3339 timestamp such as 2026-09-01T08:30:00Z"
			}
		}
	}
	return v, ""
}
