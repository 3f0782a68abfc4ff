package mapping

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// source gives the values a row holds for a rule; csvFile and jsonRow implement it.
type source interface {
	// from returns the values of rule r's i-th from: one for a column or scalar, any number for a JSON
	// array. present is false when the column or key is absent (a JSON null is present and empty); ok is
	// false when the value was unusable and an error already reported.
	from(r *rule, i int) (vals []string, present, ok bool)
	// part returns the text of rule r's i-th concat item that names a column or path ("" when absent).
	part(r *rule, i int) (string, bool)
	// pos is the position of rule r's i-th from (or, for concat, the first column it reads).
	pos(r *rule, i int) Position
}

// rowState is what mapping a row builds; one is reused row after row.
type rowState struct {
	vals     []string
	spans    [][2]int // per rule: its values in vals
	sourced  []bool   // per rule: its values came from the row, not a const or default
	errs     []FieldError
	findings []Finding
	buf      []byte
	sb       strings.Builder
	// The record as values (valuesOf): its keys, and arenas for what they hold.
	top     []Value
	nested  []Value
	objs    [][]Value
	list    []string
	unsplit string // the last value of the rule being run that has no part at its split index
}

func (s *rowState) reset(rules int) {
	s.vals = s.vals[:0]
	if cap(s.spans) < rules {
		s.spans = make([][2]int, rules)
	}
	s.spans = s.spans[:rules]
	if cap(s.sourced) < rules {
		s.sourced = make([]bool, rules)
	}
	s.sourced = s.sourced[:rules]
	clear(s.sourced)
	s.errs, s.findings = nil, nil
}

func (s *rowState) fail(p Position, target, format string, args ...any) {
	s.errs = append(s.errs, FieldError{Position: p, Target: target, Message: fmt.Sprintf(format, args...)})
}

func (s *rowState) note(p Position, target, kind, msg string) {
	s.findings = append(s.findings, Finding{Position: p, Target: target, Kind: kind, Message: msg})
}

// eval runs rule r on a row: the values it writes end up in s.vals[s.spans[r.idx]].
func (s *rowState) eval(r *rule, src source) {
	start := len(s.vals)
	defer func() { s.spans[r.idx] = [2]int{start, len(s.vals)} }()
	failed, emptyAt, present := false, -1, false
	noted := len(s.findings)
	s.unsplit = ""
	switch {
	case r.hasConst:
		s.vals = append(s.vals, r.constVal)
		return
	case r.from != nil:
		for i := range r.from {
			vals, here, ok := src.from(r, i)
			if !ok {
				return
			}
			if !here {
				continue
			}
			present = true
			for _, v := range vals {
				failed = s.push(r, v, src, i) || failed
			}
			if len(s.vals) > start || failed {
				break
			}
			if emptyAt < 0 {
				emptyAt = i
			}
		}
	case r.concat != nil:
		v, ok := s.concat(r, src)
		if !ok {
			return
		}
		present = true
		failed = s.push(r, v, src, 0)
		if len(s.vals) == start && !failed {
			emptyAt = 0
		}
	}
	if len(s.vals) > start || failed {
		s.sourced[r.idx] = len(s.vals) > start
		return
	}
	switch {
	case r.hasDefault:
		s.vals = append(s.vals, r.defaultVal)
	case r.required && s.unsplit != "":
		s.fail(src.pos(r, max(emptyAt, 0)), r.tgt.canon, "is required but %q has no part %d when split on %q", s.unsplit, r.splitIndex, r.splitSep)
	case r.required && present:
		s.fail(src.pos(r, max(emptyAt, 0)), r.tgt.canon, "is required but empty")
	case r.required:
		p := src.pos(r, 0)
		s.fail(p, r.tgt.canon, "is required but %s is missing", p.Column)
	case emptyAt >= 0 && len(s.findings) == noted:
		s.note(src.pos(r, emptyAt), r.tgt.canon, FindingEmpty, "is empty")
	}
}

// concat joins a concat rule's items; ok is false when an item was unusable (already reported).
func (s *rowState) concat(r *rule, src source) (string, bool) {
	s.sb.Reset()
	columns := false
	for i, p := range r.concat {
		if p.literal {
			if !r.hasSep {
				s.sb.WriteString(p.text)
			}
			continue
		}
		v, ok := src.part(r, i)
		if !ok {
			return "", false
		}
		if r.trim {
			v = strings.TrimSpace(v)
		}
		if v == "" {
			continue
		}
		if r.hasSep && columns {
			s.sb.WriteString(r.sep)
		}
		columns = true
		s.sb.WriteString(v)
	}
	if !columns {
		return "", true
	}
	return s.sb.String(), true
}

// push runs one value through the rule's split, trim, case, map and date steps and appends the result;
// it reports whether the value was rejected (an error was added).
func (s *rowState) push(r *rule, v string, src source, from int) (failed bool) {
	if !r.split {
		return s.pushOne(r, v, src, from)
	}
	if r.splitAll {
		for part := range strings.SplitSeq(v, r.splitSep) {
			failed = s.pushOne(r, part, src, from) || failed
		}
		return failed
	}
	part, ok := nthPart(v, r.splitSep, r.splitIndex)
	if !ok {
		s.unsplit = v
		return false
	}
	return s.pushOne(r, part, src, from)
}

// nthPart returns the i-th part of v split on sep, counting from the end when i is negative.
func nthPart(v, sep string, i int) (string, bool) {
	if i < 0 {
		i += strings.Count(v, sep) + 1
		if i < 0 {
			return "", false
		}
	}
	for ; i > 0; i-- {
		_, after, found := strings.Cut(v, sep)
		if !found {
			return "", false
		}
		v = after
	}
	before, _, _ := strings.Cut(v, sep)
	return before, true
}

func (s *rowState) pushOne(r *rule, v string, src source, from int) (failed bool) {
	if r.trim {
		v = strings.TrimSpace(v)
	}
	if v == "" {
		m, ok := r.vmap[""]
		if !ok || m == "" {
			return false
		}
		return s.convert(r, m, src, from)
	}
	switch r.fold {
	case caseUpper:
		v = strings.ToUpper(v)
	case caseLower:
		v = strings.ToLower(v)
	case caseTitle:
		v = titleCase(v)
	}
	if r.vmap != nil {
		m, ok := r.vmap[v]
		if !ok {
			m, ok = r.vmapFold[strings.ToLower(v)]
		}
		switch {
		case ok:
			v = m
		case r.unmapped == unmappedError:
			s.fail(src.pos(r, from), r.tgt.canon, "value %q is not in the rule's map", v)
			return true
		case r.unmapped == unmappedKeep:
			s.note(src.pos(r, from), r.tgt.canon, FindingUnmapped, fmt.Sprintf("value %q is not in the rule's map: kept", v))
		case r.unmapped == unmappedDefault:
			s.note(src.pos(r, from), r.tgt.canon, FindingUnmapped, fmt.Sprintf("value %q is not in the rule's map: default %q", v, r.defaultVal))
			s.vals = append(s.vals, r.defaultVal)
			return false
		default:
			s.note(src.pos(r, from), r.tgt.canon, FindingUnmapped, fmt.Sprintf("value %q is not in the rule's map: dropped", v))
			return false
		}
		if v == "" {
			return false
		}
	}
	if r.date != nil {
		t, ok := r.date.parse(v)
		if !ok {
			s.fail(src.pos(r, from), r.tgt.canon, "value %q is not a date in the layout %s", v, r.date.text)
			return true
		}
		v = t.Format("2006-01-02")
		if r.tgt.leaf == kTimestamp && !dateOnlyOK(r.tgt.name) {
			v += "T00:00:00Z"
		}
		s.vals = append(s.vals, v)
		return false
	}
	return s.convert(r, v, src, from)
}

// convert appends a value in the target's form, or reports that it does not fit the target.
func (s *rowState) convert(r *rule, v string, src source, from int) (failed bool) {
	out, msg := convert(r.tgt, v)
	if msg != "" {
		s.fail(src.pos(r, from), r.tgt.canon, "value %q %s", v, msg)
		return true
	}
	s.vals = append(s.vals, out)
	return false
}

// titleCase upper-cases the first letter of each word and lower-cases the others; a word starts after
// anything that is not a letter, so o'brien-smith becomes O'Brien-Smith.
func titleCase(v string) string {
	var b strings.Builder
	b.Grow(len(v))
	start := true
	for _, c := range v {
		if unicode.IsLetter(c) {
			if start {
				b.WriteRune(unicode.ToTitle(c))
			} else {
				b.WriteRune(unicode.ToLower(c))
			}
			start = false
			continue
		}
		b.WriteRune(c)
		start = !unicode.IsDigit(c)
	}
	return b.String()
}

// parseNumber returns the canonical JSON text of a decimal number.
func parseNumber(v string) (string, bool) {
	for i := 0; i < len(v); i++ {
		c := v[i]
		if (c < '0' || c > '9') && c != '.' && c != '-' && c != '+' && c != 'e' && c != 'E' {
			return "", false // ParseFloat's hex, underscores, Inf and NaN are not JSON numbers
		}
	}
	n, err := strconv.ParseFloat(v, 64)
	if err != nil || math.IsInf(n, 0) || math.IsNaN(n) {
		return "", false
	}
	if a := math.Abs(n); a != 0 && (a < 1e-6 || a >= 1e21) {
		return strconv.FormatFloat(n, 'e', -1, 64), true
	}
	return strconv.FormatFloat(n, 'f', -1, 64), true
}

// outNode is one key of a record, with the rules that feed it, in the order records are written.
type outNode struct {
	key      string
	kind     kind
	need     bool      // a field of an object the gateway requires
	rules    []int     // scalar: one rule; list: its rules in document order
	elems    []outElem // roles, userIds: the objects in index order
	meta     []metaOut // metadata: keys sorted
	fallback string    // status: the value written when no rule gives one
	modified bool      // dateLastModified: the export's WithModified time when no rule gives one
}

// outElem is one object of roles or userIds: its index in the rules' targets, its fields, and the
// required fields no rule writes.
type outElem struct {
	index   int
	fields  []outNode
	unruled []string
}

type metaOut struct {
	key  string
	rule int
}

// buildPlan orders the rules' targets by the collection's schema.
func buildPlan(schema []fieldSpec, rules []*rule) []outNode {
	var plan []outNode
	for top, fs := range schema {
		n := outNode{key: fs.name, kind: fs.kind}
		byElem := map[int]*outElem{}
		var elemIdx []int
		for _, r := range rules {
			if r.tgt.top != top {
				continue
			}
			switch fs.kind {
			case kObjects:
				el, ok := byElem[r.tgt.elem]
				if !ok {
					el = &outElem{index: r.tgt.elem}
					byElem[r.tgt.elem] = el
					elemIdx = append(elemIdx, r.tgt.elem)
				}
				sf := fs.sub[r.tgt.sub]
				el.fields = append(el.fields, outNode{key: sf.name, kind: sf.kind, need: sf.need, rules: []int{r.idx}})
			case kMetadata:
				n.meta = append(n.meta, metaOut{key: r.tgt.key, rule: r.idx})
			default:
				n.rules = append(n.rules, r.idx)
			}
		}
		slices.Sort(elemIdx)
		for _, i := range elemIdx {
			el := byElem[i]
			slices.SortStableFunc(el.fields, func(a, b outNode) int {
				return cmp.Compare(subRank(fs.sub, a.key), subRank(fs.sub, b.key))
			})
			for _, sf := range fs.sub {
				if sf.need && !slices.ContainsFunc(el.fields, func(n outNode) bool { return n.key == sf.name }) {
					el.unruled = append(el.unruled, sf.name)
				}
			}
			n.elems = append(n.elems, *el)
		}
		slices.SortStableFunc(n.meta, func(a, b metaOut) int { return strings.Compare(a.key, b.key) })
		// status and dateLastModified, which the gateway requires, are written even when no rule gives
		// them a value: active, and the export's WithModified time.
		switch fs.name {
		case "status":
			n.fallback = "active"
		case "dateLastModified":
			n.modified = true
		}
		if len(n.rules) == 0 && len(n.elems) == 0 && len(n.meta) == 0 && n.fallback == "" && !n.modified {
			continue
		}
		plan = append(plan, n)
	}
	return plan
}

func subRank(order []fieldSpec, key string) int {
	return slices.IndexFunc(order, func(f fieldSpec) bool { return f.name == key })
}

// complete reports whether an object of roles or userIds is written: it is when a field read from the
// row has a value and every field the gateway requires has one. An object with only constants is left
// out silently, an incomplete one with a Finding.
func (s *rowState) complete(el outElem, at Position, key string) bool {
	fromRow := false
	for _, fn := range el.fields {
		ri := fn.rules[0]
		fromRow = fromRow || s.sourced[ri] && s.spans[ri][0] != s.spans[ri][1]
	}
	if !fromRow {
		return false
	}
	lacking := el.unruled
	for _, fn := range el.fields {
		if sp := s.spans[fn.rules[0]]; fn.need && sp[0] == sp[1] {
			lacking = append(lacking, fn.key)
		}
	}
	if len(lacking) == 0 {
		return true
	}
	s.note(at, fmt.Sprintf("%s[%d]", key, el.index), FindingIncomplete, "left out: it has no "+strings.Join(lacking, ", "))
	return false
}

const hexDigits = "0123456789abcdef"

// appendString writes s as a JSON string; invalid UTF-8 becomes U+FFFD.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
