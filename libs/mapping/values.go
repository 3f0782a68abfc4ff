package mapping

// ValueKind is how a Value is written in the record's JSON.
type ValueKind uint8

const (
	ValueText     ValueKind = iota // a JSON string, Text: text, a date or a timestamp
	ValueBool                      // a JSON boolean: Text is true or false
	ValueNumber                    // a JSON number: Text is its JSON text
	ValueRef                       // a reference, {"sourcedId": Text}
	ValueTexts                     // an array of strings: List
	ValueRefs                      // an array of references: List holds their sourcedIds
	ValueObjects                   // an array of objects (roles, userIds): Objects, each its fields (ValueText or ValueRef)
	ValueMetadata                  // an object of strings: Fields, each a ValueText
)

// Value is one key of a mapped record as Row.Record writes it, so that a caller that reads the record
// field by field (the gateway's decoder) can take it from Row.Values without parsing the JSON. The
// record's JSON is written from these values: both always say the same.
type Value struct {
	Key     string
	Kind    ValueKind
	Text    string    // ValueText, ValueBool, ValueNumber, ValueRef
	List    []string  // ValueTexts, ValueRefs
	Fields  []Value   // ValueMetadata
	Objects [][]Value // ValueObjects
}

// WithValues returns a copy of the export whose rows also carry their record as Values. A row's Values
// are the engine's own, valid until the callback returns: the next row reuses them (Record, a copy,
// may be kept).
func (e *Export) WithValues() *Export {
	c := *e
	c.values = true
	return &c
}

func valueKind(k kind) ValueKind {
	switch k {
	case kBool:
		return ValueBool
	case kNumber:
		return ValueNumber
	case kRef:
		return ValueRef
	case kStrings:
		return ValueTexts
	case kRefs:
		return ValueRefs
	case kObjects:
		return ValueObjects
	case kMetadata:
		return ValueMetadata
	}
	return ValueText
}

// record returns a copy of the row's record the caller may keep, and its values, valid until the next
// row, when the export was asked for them (WithValues).
func (e *Export) record(s *rowState, at Position) (json []byte, values []Value) {
	vs := e.valuesOf(s, at)
	s.buf = appendRecord(s.buf[:0], vs)
	json = append([]byte(nil), s.buf...)
	if e.values {
		values = vs
	}
	return json, values
}

// valuesOf builds the row's record, its keys in the order the plan writes them, in s's arenas: valid
// until the next row.
func (e *Export) valuesOf(s *rowState, at Position) []Value {
	nested, objs := 0, 0
	for i := range e.plan {
		n := &e.plan[i]
		nested += len(n.meta)
		objs += len(n.elems)
		for _, el := range n.elems {
			nested += len(el.fields)
		}
	}
	// The arenas never grow while the row is built: the values' slices into them stay valid.
	if cap(s.nested) < nested {
		s.nested = make([]Value, 0, nested)
	}
	if cap(s.objs) < objs {
		s.objs = make([][]Value, 0, objs)
	}
	if cap(s.list) < len(s.vals) {
		s.list = make([]string, 0, len(s.vals))
	}
	s.top, s.nested, s.objs, s.list = s.top[:0], s.nested[:0], s.objs[:0], s.list[:0]
	for i := range e.plan {
		n := &e.plan[i]
		switch {
		case (n.fallback != "" || n.modified) && (len(n.rules) == 0 || s.spans[n.rules[0]][0] == s.spans[n.rules[0]][1]):
			v := n.fallback
			if n.modified {
				v = e.modified
			}
			if v != "" {
				s.top = append(s.top, Value{Key: n.key, Text: v})
			}
		case n.kind == kObjects:
			from := len(s.objs)
			for _, el := range n.elems {
				if !s.complete(el, at, n.key) {
					continue
				}
				start := len(s.nested)
				for _, fn := range el.fields {
					sp := s.spans[fn.rules[0]]
					if sp[0] == sp[1] {
						continue
					}
					s.nested = append(s.nested, Value{Key: fn.key, Kind: valueKind(fn.kind), Text: s.vals[sp[0]]})
				}
				s.objs = append(s.objs, s.nested[start:len(s.nested):len(s.nested)])
			}
			if len(s.objs) > from {
				s.top = append(s.top, Value{Key: n.key, Kind: ValueObjects, Objects: s.objs[from:len(s.objs):len(s.objs)]})
			}
		case n.kind == kMetadata:
			start := len(s.nested)
			for _, m := range n.meta {
				if sp := s.spans[m.rule]; sp[0] != sp[1] {
					s.nested = append(s.nested, Value{Key: m.key, Text: s.vals[sp[0]]})
				}
			}
			if len(s.nested) > start {
				s.top = append(s.top, Value{Key: n.key, Kind: ValueMetadata, Fields: s.nested[start:len(s.nested):len(s.nested)]})
			}
		case n.kind.list():
			start := len(s.list)
			for _, ri := range n.rules {
				sp := s.spans[ri]
				s.list = append(s.list, s.vals[sp[0]:sp[1]]...)
			}
			if len(s.list) > start {
				s.top = append(s.top, Value{Key: n.key, Kind: valueKind(n.kind), List: s.list[start:len(s.list):len(s.list)]})
			}
		default:
			if sp := s.spans[n.rules[0]]; sp[0] != sp[1] {
				s.top = append(s.top, Value{Key: n.key, Kind: valueKind(n.kind), Text: s.vals[sp[0]]})
			}
		}
	}
	return s.top
}

// AppendJSON appends values as the JSON object a Row's Record holds for them.
func AppendJSON(b []byte, vals []Value) []byte { return appendRecord(b, vals) }

// appendRecord writes values as a JSON object.
func appendRecord(b []byte, vs []Value) []byte {
	b = append(b, '{')
	for i := range vs {
		v := &vs[i]
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, v.Key)
		b = append(b, ':')
		switch v.Kind {
		case ValueBool, ValueNumber:
			b = append(b, v.Text...)
		case ValueRef:
			b = appendRef(b, v.Text)
		case ValueTexts, ValueRefs:
			b = append(b, '[')
			for j, t := range v.List {
				if j > 0 {
					b = append(b, ',')
				}
				if v.Kind == ValueRefs {
					b = appendRef(b, t)
				} else {
					b = appendString(b, t)
				}
			}
			b = append(b, ']')
		case ValueObjects:
			b = append(b, '[')
			for j, o := range v.Objects {
				if j > 0 {
					b = append(b, ',')
				}
				b = appendRecord(b, o)
			}
			b = append(b, ']')
		case ValueMetadata:
			b = appendRecord(b, v.Fields)
		default:
			b = appendString(b, v.Text)
		}
	}
	return append(b, '}')
}

func appendRef(b []byte, id string) []byte {
	b = append(b, `{"sourcedId":`...)
	b = appendString(b, id)
	return append(b, '}')
}
