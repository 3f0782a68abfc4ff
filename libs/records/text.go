package records

import (
	"math"
	"reflect"
	"strings"
	"sync"
)

// TextErrors checks every string v holds (structs by their Avro field names, pointers, slices, and maps of
// strings, keys included) as Multiline text of any length (CheckText), what every store can hold, and
// returns a field error for each that fails, its field named
// from path down (e.g. roster_user.given_name, roster_user.metadata.grade).
func TextErrors(v any, path string) []FieldError {
	var errs []FieldError
	var stack [8]string
	w := textWalk{errs: &errs, path: stack[:0]}
	if path != "" {
		w.path = append(w.path, path)
	}
	w.walk(reflect.ValueOf(v))
	return errs
}

// textWalk walks a value; the field path is joined only for a field that fails.
type textWalk struct {
	errs *[]FieldError
	path []string
}

func (w textWalk) fail(msg string) {
	*w.errs = append(*w.errs, FieldError{Field: strings.Join(w.path, "."), Message: msg})
}

// into is the walk of a field: its path shares the parent's array, which is safe because the walk is
// depth-first and a path is read only while its own field is walked.
func (w textWalk) into(name string) textWalk {
	return textWalk{errs: w.errs, path: append(w.path, name)}
}

func (w textWalk) walk(v reflect.Value) {
	switch v.Kind() {
	case reflect.String:
		if msg := CheckText(v.String(), math.MaxInt, Multiline); msg != "" {
			w.fail(msg)
		}
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			w.walk(v.Elem())
		}
	case reflect.Struct:
		for _, f := range textFields(v.Type()) {
			if fv := v.Field(f.index); !isNilRef(fv) {
				w.into(f.name).walk(fv)
			}
		}
	case reflect.Slice, reflect.Array:
		for i := range v.Len() {
			w.walk(v.Index(i))
		}
	case reflect.Map:
		iter := v.MapRange()
		for iter.Next() {
			if k := iter.Key(); k.Kind() == reflect.String {
				if msg := CheckText(k.String(), math.MaxInt, Multiline); msg != "" {
					w.fail("keys " + msg)
					continue
				}
				w.into(k.String()).walk(iter.Value())
			}
		}
	}
}

// isNilRef tells a nil pointer, slice or map, which holds no text (skipped without building its path).
func isNilRef(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface, reflect.Slice, reflect.Map:
		return v.IsNil()
	}
	return false
}

// textField is a field of a struct that may hold text, by its Avro name.
type textField struct {
	index int
	name  string
}

// fieldCache maps a struct type to its textFields.
var fieldCache sync.Map

// textFields lists the exported, Avro-named fields of struct type t that can hold a string, once per type.
func textFields(t reflect.Type) []textField {
	if cached, ok := fieldCache.Load(t); ok {
		return cached.([]textField)
	}
	var out []textField
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("avro"), ",")
		if f.IsExported() && name != "" && name != "-" && mayHoldText(f.Type, 0) {
			out = append(out, textField{i, name})
		}
	}
	fieldCache.Store(t, out)
	return out
}

// mayHoldText tells whether a value of type t can hold a string.
func mayHoldText(t reflect.Type, depth int) bool {
	if depth > 8 {
		return true
	}
	switch t.Kind() {
	case reflect.String, reflect.Interface:
		return true
	case reflect.Pointer, reflect.Slice, reflect.Array:
		return t.Elem().Kind() != reflect.Uint8 && mayHoldText(t.Elem(), depth+1)
	case reflect.Map:
		return t.Key().Kind() == reflect.String || mayHoldText(t.Elem(), depth+1)
	case reflect.Struct:
		for i := range t.NumField() {
			if f := t.Field(i); f.IsExported() && f.Tag.Get("avro") != "" && mayHoldText(f.Type, depth+1) {
				return true
			}
		}
	}
	return false
}
