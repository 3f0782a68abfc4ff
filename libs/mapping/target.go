package mapping

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// target is where a rule writes in a record, parsed from a rule's target.
type target struct {
	canon string // the canonical spelling, e.g. roles[0].org.sourcedId
	top   int    // index of the top-level field in the collection's schema
	spec  fieldSpec
	elem  int    // for roles and userIds: the object's index; -1 otherwise
	sub   int    // for roles and userIds: index of the object's field in spec.sub; -1 otherwise
	leaf  kind   // the kind of value the rule writes (for a list, of each entry)
	name  string // the name of the field the value is written to, e.g. beginDate
	key   string // for metadata: the key
}

// maxElems bounds the index of roles[N] and userIds[N].
const maxElems = 100

// parseTarget parses a rule's target against a collection's fields.
func parseTarget(collection string, fields []fieldSpec, s string) (target, error) {
	t := target{elem: -1, sub: -1}
	name, rest := s, ""
	if i := strings.IndexAny(s, ".["); i >= 0 {
		name, rest = s[:i], s[i:]
	}
	t.top = slices.IndexFunc(fields, func(fs fieldSpec) bool { return fs.name == name })
	if t.top < 0 {
		msg := fmt.Sprintf("%s has no field %q", collection, name)
		if in := collectionsWith(name); len(in) > 0 {
			msg += fmt.Sprintf(" (%s has)", strings.Join(in, ", "))
		}
		return t, fmt.Errorf("target %q: %s", s, msg)
	}
	t.spec = fields[t.top]
	t.name, t.leaf = name, t.spec.kind
	bad := func(want string) (target, error) {
		return t, fmt.Errorf("target %q: %s is a %s: write %s", s, name, t.spec.kind, want)
	}
	switch k := t.spec.kind; k {
	case kString, kDate, kTimestamp, kBool, kNumber:
		if rest != "" {
			return bad(name)
		}
		t.canon = name
	case kRef:
		if rest != "" && rest != ".sourcedId" {
			return bad(name + ".sourcedId")
		}
		t.canon = name + ".sourcedId"
	case kStrings, kRefs:
		want := name + "[]"
		if k == kRefs {
			want += " or " + name + "[].sourcedId"
		}
		if rest != "[]" && (k != kRefs || rest != "[].sourcedId") {
			return bad(want)
		}
		t.canon = name + "[]"
		if k == kStrings {
			t.leaf = kString
		} else {
			t.leaf = kRef
		}
	case kObjects:
		return parseElem(t, s, rest)
	case kMetadata:
		key, ok := strings.CutPrefix(rest, ".")
		if !ok || key == "" {
			return bad("metadata.<key>")
		}
		t.key, t.leaf, t.canon, t.name = key, kString, "metadata."+key, "metadata."+key
	}
	return t, nil
}

// parseElem parses the rest of a target into an array of objects: [N].field or [N].org.sourcedId.
func parseElem(t target, s, rest string) (target, error) {
	var names []string
	for _, sf := range t.spec.sub {
		names = append(names, sf.name)
	}
	usage := fmt.Errorf("target %q: write %s[N].<field>, N from 0 to %d, field one of %s",
		s, t.spec.name, maxElems-1, strings.Join(names, ", "))
	inner, ok := strings.CutPrefix(rest, "[")
	if !ok {
		return t, usage
	}
	idx, after, ok := strings.Cut(inner, "].")
	if !ok {
		return t, usage
	}
	n, err := strconv.Atoi(idx)
	if err != nil || n < 0 || n >= maxElems || strconv.Itoa(n) != idx {
		return t, usage
	}
	sub, ref := after, false
	if b, ok := strings.CutSuffix(after, ".sourcedId"); ok {
		sub, ref = b, true
	}
	t.sub = slices.IndexFunc(t.spec.sub, func(fs fieldSpec) bool { return fs.name == sub })
	if t.sub < 0 || ref && t.spec.sub[t.sub].kind != kRef {
		return t, usage
	}
	sf := t.spec.sub[t.sub]
	t.elem, t.leaf, t.name = n, sf.kind, sf.name
	t.canon = fmt.Sprintf("%s[%d].%s", t.spec.name, n, sf.name)
	if sf.kind == kRef {
		t.canon += ".sourcedId"
	}
	return t, nil
}
