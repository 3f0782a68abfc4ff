package mapping

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// segment is one step of a JSON path: an object key, or an array index when key is "" and index >= 0.
type segment struct {
	key   string
	index int
}

// jsonPath is a compiled JSON path such as $.name.first, $.ids[0] or $["first name"].
type jsonPath struct {
	text string
	segs []segment
}

// parsePath compiles a JSON path: "$" then any of .key, ["key"] (a JSON string) and [N].
func parsePath(s string) (jsonPath, error) {
	p := jsonPath{text: s}
	rest, ok := strings.CutPrefix(s, "$")
	if !ok {
		return p, fmt.Errorf("JSON path %q must start with $", s)
	}
	for rest != "" {
		switch rest[0] {
		case '.':
			rest = rest[1:]
			end := strings.IndexAny(rest, ".[")
			if end < 0 {
				end = len(rest)
			}
			if end == 0 {
				return p, fmt.Errorf("JSON path %q has an empty key", s)
			}
			p.segs = append(p.segs, segment{key: rest[:end], index: -1})
			rest = rest[end:]
		case '[':
			end := strings.IndexByte(rest, ']')
			if strings.HasPrefix(rest, `["`) {
				end = closingQuote(rest)
			}
			if end < 0 {
				return p, fmt.Errorf("JSON path %q has an unclosed [", s)
			}
			inner := rest[1:end]
			rest = rest[end+1:]
			if strings.HasPrefix(inner, `"`) {
				var key string
				if err := json.Unmarshal([]byte(inner), &key); err != nil || key == "" {
					return p, fmt.Errorf("JSON path %q has a bad quoted key %s", s, inner)
				}
				p.segs = append(p.segs, segment{key: key, index: -1})
				continue
			}
			n, err := strconv.Atoi(inner)
			if err != nil || n < 0 || strconv.Itoa(n) != inner {
				return p, fmt.Errorf("JSON path %q: [%s] must be an index such as [0] or a key such as [\"name\"]", s, inner)
			}
			p.segs = append(p.segs, segment{index: n})
		default:
			return p, fmt.Errorf("JSON path %q: expected . or [ at %q", s, rest)
		}
	}
	return p, nil
}

// closingQuote returns the index of the ] closing a ["..."] segment, or -1.
func closingQuote(s string) int {
	for i := 2; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '"':
			if i+1 < len(s) && s[i+1] == ']' {
				return i + 1
			}
			return -1
		}
	}
	return -1
}

var errNotFound = errors.New("not found")

// lookup follows p from a record, whose top-level keys are already split into top.
func (p jsonPath) lookup(top map[string]json.RawMessage, record json.RawMessage) (json.RawMessage, error) {
	cur := record
	for i, s := range p.segs {
		if s.index < 0 {
			m := top
			if i > 0 {
				m = nil
				if json.Unmarshal(cur, &m) != nil {
					return nil, errNotFound
				}
			}
			v, ok := m[s.key]
			if !ok {
				return nil, errNotFound
			}
			cur = v
			continue
		}
		var elems []json.RawMessage
		if json.Unmarshal(cur, &elems) != nil || s.index >= len(elems) {
			return nil, errNotFound
		}
		cur = elems[s.index]
	}
	return cur, nil
}
