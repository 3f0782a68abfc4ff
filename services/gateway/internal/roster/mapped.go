package roster

import (
	"encoding/json"
	"fmt"
	"strconv"
	"unicode/utf8"

	"github.com/edtech-analytics/platform/libs/mapping"
	"github.com/edtech-analytics/platform/libs/records"
)

// valuesSource is a record the mapping engine produced (libs/mapping), read from its values rather
// than by parsing its JSON: it answers every getter as jsonSource answers over the record's JSON
// (mapping writes that JSON from the same values). A getter that meets a value of another form than it
// reads asks jsonSource over the JSON, so even that case answers the same.
type valuesSource struct {
	prefix string // the record's path; for a role, its user's
	vals   []mapping.Value
	record []byte        // the record's JSON
	parent *valuesSource // of a role: its user, and its index in roles
	index  int
	parsed *jsonSource // the JSON parsed, once a getter needed it
}

// newValuesSource returns the source of a mapped record, or false when there are no values or a value
// holds what its JSON would not give back as it is (invalid UTF-8, a key twice, a boolean or number
// that is not one), so the caller reads the JSON instead.
func newValuesSource(prefix string, vals []mapping.Value, record []byte) (*valuesSource, bool) {
	if vals == nil || !plainValues(vals, 0) {
		return nil, false
	}
	return &valuesSource{prefix: prefix, vals: vals, record: record}, true
}

// json returns the same record parsed from its JSON, for a value of a form the getters do not read.
// (A record that is not the values' JSON, which DecodeMapped's callers never pass, reads as empty.)
func (s *valuesSource) json() *jsonSource {
	if s.parsed != nil {
		return s.parsed
	}
	if s.parent == nil {
		s.parsed, _ = newJSONSource(s.prefix, s.record) // plainValues: the JSON is an object
	} else if roles, _ := s.parent.json().roles(); s.index < len(roles) {
		s.parsed, _ = roles[s.index].(*jsonSource)
	}
	if s.parsed == nil {
		s.parsed = &jsonSource{prefix: s.where()}
	}
	return s.parsed
}

// plainValues reports whether the values' JSON gives back exactly their texts, each key once.
func plainValues(vals []mapping.Value, depth int) bool {
	for i := range vals {
		v := &vals[i]
		for j := range i {
			if vals[j].Key == v.Key {
				return false
			}
		}
		if !utf8.ValidString(v.Key) || !utf8.ValidString(v.Text) {
			return false
		}
		switch v.Kind {
		case mapping.ValueText, mapping.ValueRef:
		case mapping.ValueBool:
			if v.Text != "true" && v.Text != "false" {
				return false
			}
		case mapping.ValueNumber:
			if !json.Valid([]byte(v.Text)) {
				return false
			}
			if _, err := strconv.ParseFloat(v.Text, 64); err != nil {
				return false
			}
		case mapping.ValueTexts, mapping.ValueRefs:
			for _, t := range v.List {
				if !utf8.ValidString(t) {
					return false
				}
			}
		case mapping.ValueMetadata:
			if depth > 0 || !plainValues(v.Fields, depth+1) {
				return false
			}
			for _, m := range v.Fields {
				if m.Kind != mapping.ValueText {
					return false
				}
			}
		case mapping.ValueObjects:
			if depth > 0 {
				return false
			}
			for _, o := range v.Objects {
				if !plainValues(o, depth+1) {
					return false
				}
			}
		default:
			return false
		}
	}
	return true
}

// get returns the value of a key; kind is false when it holds another form than want.
func (s *valuesSource) get(f field, want mapping.ValueKind) (v *mapping.Value, kind bool) {
	for i := range s.vals {
		if s.vals[i].Key == f.json {
			return &s.vals[i], s.vals[i].Kind == want
		}
	}
	return nil, true
}

func (s *valuesSource) at(f field) string { return s.where() + "." + f.json }

func (s *valuesSource) where() string {
	if s.parent != nil {
		return fmt.Sprintf("%s.roles[%d]", s.parent.where(), s.index)
	}
	return s.prefix
}

func (s *valuesSource) problem() string { return "" }

func (s *valuesSource) text(f field) (string, string) {
	v, ok := s.get(f, mapping.ValueText)
	switch {
	case !ok:
		return s.json().text(f)
	case v == nil:
		return "", ""
	}
	return v.Text, ""
}

func (s *valuesSource) texts(f field) ([]string, string) {
	v, ok := s.get(f, mapping.ValueTexts)
	switch {
	case !ok:
		return s.json().texts(f)
	case v == nil:
		return []string{}, ""
	}
	out := make([]string, 0, len(v.List))
	for _, t := range v.List {
		if t != "" {
			out = append(out, t)
		}
	}
	return out, ""
}

func (s *valuesSource) ref(f field) (string, string) {
	v, ok := s.get(f, mapping.ValueRef)
	switch {
	case !ok:
		return s.json().ref(f)
	case v == nil:
		return "", ""
	case v.Text == "":
		return "", `must be an object with a "sourcedId" string`
	}
	return v.Text, ""
}

func (s *valuesSource) refs(f field) ([]string, string) {
	v, ok := s.get(f, mapping.ValueRefs)
	switch {
	case !ok:
		return s.json().refs(f)
	case v == nil:
		return []string{}, ""
	}
	for _, id := range v.List {
		if id == "" {
			return nil, `must be an array of objects with a "sourcedId" string`
		}
	}
	return append([]string(nil), v.List...), ""
}

func (s *valuesSource) flag(f field) (*bool, string) {
	v, ok := s.get(f, mapping.ValueBool)
	switch {
	case !ok:
		return s.json().flag(f)
	case v == nil:
		return nil, ""
	}
	b := v.Text == "true"
	return &b, ""
}

func (s *valuesSource) number(f field) (*float64, string) {
	v, ok := s.get(f, mapping.ValueNumber)
	switch {
	case !ok:
		return s.json().number(f)
	case v == nil:
		return nil, ""
	}
	n, err := strconv.ParseFloat(v.Text, 64) // as encoding/json reads a number; checked by plainValues
	if err != nil {
		return s.json().number(f)
	}
	return &n, ""
}

func (s *valuesSource) userIDs(f field) ([]records.RosterUserID, string) {
	v, ok := s.get(f, mapping.ValueObjects)
	switch {
	case !ok:
		return s.json().userIDs(f)
	case v == nil:
		return []records.RosterUserID{}, ""
	}
	out := make([]records.RosterUserID, 0, len(v.Objects))
	for _, o := range v.Objects {
		var id records.RosterUserID
		for _, sub := range o {
			switch {
			case sub.Key != "type" && sub.Key != "identifier" || sub.Kind != mapping.ValueText:
				return s.json().userIDs(f) // encoding/json matches other keys ignoring case
			case sub.Key == "type":
				id.Type = sub.Text
			default:
				id.Identifier = sub.Text
			}
		}
		out = append(out, id)
	}
	return out, ""
}

func (s *valuesSource) metadata() (map[string]string, string) {
	f := same("metadata")
	v, ok := s.get(f, mapping.ValueMetadata)
	switch {
	case !ok:
		return s.json().metadata()
	case v == nil:
		return map[string]string{}, ""
	}
	out := make(map[string]string, len(v.Fields))
	for _, m := range v.Fields {
		out[m.Key] = m.Text
	}
	return out, ""
}

func (s *valuesSource) roles() ([]source, string) {
	f := field{"roles", ""}
	v, ok := s.get(f, mapping.ValueObjects)
	switch {
	case !ok:
		return s.json().roles()
	case v == nil:
		return []source{}, ""
	}
	subs := make([]valuesSource, len(v.Objects))
	out := make([]source, len(v.Objects))
	for i, o := range v.Objects {
		subs[i] = valuesSource{vals: o, parent: s, index: i}
		out[i] = &subs[i]
	}
	return out, ""
}
