package manifest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/stepflow/stepflow/api/v1alpha1"
)

var unmarshalerType = reflect.TypeFor[json.Unmarshaler]()

// value decodes node n into v, which must be settable, as encoding/json would decode the JSON form
// of n, but strictly: unknown fields, wrong types and duplicate keys are problems.
func (w *walker) value(n *yaml.Node, v reflect.Value, path *field.Path) {
	n, vis, ok := w.enter(n, path)
	if !ok {
		return
	}
	defer w.leave(vis)
	w.decode(n, v, path)
}

// decode is value for a node already entered.
func (w *walker) decode(n *yaml.Node, v reflect.Value, path *field.Path) {
	if isNull(n) {
		v.SetZero()
		return
	}
	if v.Kind() == reflect.Pointer {
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		w.decode(n, v.Elem(), path)
		return
	}
	if reflect.PointerTo(v.Type()).Implements(unmarshalerType) {
		// metav1.Time, runtime.RawExtension and the like read their own JSON.
		raw, ok := w.json(n, path)
		if !ok {
			return
		}
		if err := v.Addr().Interface().(json.Unmarshaler).UnmarshalJSON(raw); err != nil {
			w.errorf(n, path, "invalid %s: %v", v.Type().Name(), err)
		}
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		w.object(n, v, path)
	case reflect.Map:
		w.mapping(n, v, path)
	case reflect.Slice:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			w.viaJSON(n, v, path) // []byte is base64 text in JSON
			return
		}
		w.list(n, v, path)
	case reflect.Interface:
		w.viaJSON(n, v, path)
	default:
		w.scalar(n, v, path)
	}
}

// object decodes a mapping into a struct, by the struct's json tags.
func (w *walker) object(n *yaml.Node, v reflect.Value, path *field.Path) {
	if n.Kind != yaml.MappingNode {
		w.typeError(n, path, "an object")
		return
	}
	fields := w.fieldsOf(v.Type())
	for _, e := range w.entries(n, path) {
		child := freeChild(path, e.key)
		index, ok := fields[e.key]
		if !ok {
			w.errorf(e.keyNode, child, "unknown field %q%s", e.key, hint(v.Type(), e.key, fields))
			continue
		}
		w.value(e.val, fieldByIndex(v, index), child)
	}
}

// mapping decodes a mapping into a map with string keys.
func (w *walker) mapping(n *yaml.Node, v reflect.Value, path *field.Path) {
	if n.Kind != yaml.MappingNode {
		w.typeError(n, path, "an object")
		return
	}
	t := v.Type()
	if t.Key().Kind() != reflect.String {
		w.errorf(n, path, "cannot decode into Go type %s", t)
		return
	}
	m := reflect.MakeMapWithSize(t, len(n.Content)/2)
	for _, e := range w.entries(n, path) {
		ev := reflect.New(t.Elem()).Elem()
		w.value(e.val, ev, path.Key(e.key))
		m.SetMapIndex(reflect.ValueOf(e.key).Convert(t.Key()), ev)
	}
	v.Set(m)
}

// list decodes a sequence into a slice.
func (w *walker) list(n *yaml.Node, v reflect.Value, path *field.Path) {
	if n.Kind != yaml.SequenceNode {
		w.typeError(n, path, "a list")
		return
	}
	s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	for i, item := range n.Content {
		w.value(item, s.Index(i), path.Index(i))
	}
	v.Set(s)
}

// scalar decodes a string, boolean or number. As in JSON, a quoted "5" is not a number and an
// unquoted 5 is not a string.
func (w *walker) scalar(n *yaml.Node, v reflect.Value, path *field.Path) {
	tag := ""
	if n.Kind == yaml.ScalarNode {
		tag = n.ShortTag()
	}
	switch v.Kind() {
	case reflect.String:
		if tag != strTag && tag != timestampTag {
			w.typeError(n, path, "a string")
			return
		}
		v.SetString(n.Value)
	case reflect.Bool:
		var b bool
		if tag != boolTag || n.Decode(&b) != nil {
			w.typeError(n, path, "a boolean")
			return
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		var i int64
		if tag != intTag || n.Decode(&i) != nil || v.OverflowInt(i) {
			w.typeError(n, path, fmt.Sprintf("an integer that fits %s", v.Kind()))
			return
		}
		v.SetInt(i)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		var u uint64
		if tag != intTag || n.Decode(&u) != nil || v.OverflowUint(u) {
			w.typeError(n, path, fmt.Sprintf("a non-negative integer that fits %s", v.Kind()))
			return
		}
		v.SetUint(u)
	case reflect.Float32, reflect.Float64:
		var f float64
		if (tag != intTag && tag != floatTag) || n.Decode(&f) != nil || v.OverflowFloat(f) {
			w.typeError(n, path, "a number")
			return
		}
		v.SetFloat(f)
	default:
		w.errorf(n, path, "cannot decode into Go type %s", v.Type())
	}
}

// viaJSON decodes n through its JSON form with encoding/json, for types without a field structure
// of their own (interfaces, []byte).
func (w *walker) viaJSON(n *yaml.Node, v reflect.Value, path *field.Path) {
	raw, ok := w.json(n, path)
	if !ok {
		return
	}
	if err := json.Unmarshal(raw, v.Addr().Interface()); err != nil {
		w.errorf(n, path, "invalid value: %v", err)
	}
}

func (w *walker) typeError(n *yaml.Node, path *field.Path, want string) {
	w.errorf(n, path, "expected %s, got %s", want, describe(n))
}

// fieldsOf returns the JSON names of the fields of struct type t, embedded structs without a name
// (`json:",inline"`) flattened in, each with the index path to reach it. As in encoding/json, the
// shallower of two fields with the same name wins.
func (w *walker) fieldsOf(t reflect.Type) map[string][]int {
	if f, ok := w.fields[t]; ok {
		return f
	}
	out := map[string][]int{}
	var walk func(t reflect.Type, index []int)
	walk = func(t reflect.Type, index []int) {
		for i := range t.NumField() {
			f := t.Field(i)
			tag := f.Tag.Get("json")
			if tag == "-" {
				continue
			}
			name, _, _ := strings.Cut(tag, ",")
			at := append(slices.Clone(index), i)
			if f.Anonymous && name == "" {
				ft := f.Type
				if ft.Kind() == reflect.Pointer {
					ft = ft.Elem()
				}
				if ft.Kind() == reflect.Struct {
					walk(ft, at)
					continue
				}
			}
			if !f.IsExported() {
				continue
			}
			if name == "" {
				name = f.Name
			}
			if prev, ok := out[name]; ok && len(prev) <= len(at) {
				continue
			}
			out[name] = at
		}
	}
	walk(t, nil)
	w.fields[t] = out
	return out
}

// fieldByIndex is reflect.Value.FieldByIndex, allocating embedded pointers on the way.
func fieldByIndex(v reflect.Value, index []int) reflect.Value {
	for _, i := range index {
		if v.Kind() == reflect.Pointer {
			if v.IsNil() {
				v.Set(reflect.New(v.Type().Elem()))
			}
			v = v.Elem()
		}
		v = v.Field(i)
	}
	return v
}

// hint suggests what an unknown field name of struct type t was meant to be.
func hint(t reflect.Type, name string, fields map[string][]int) string {
	switch {
	case t == reflect.TypeFor[v1alpha1.Workflow]() && name == "spec":
		return ": a Workflow has mode and steps at the top level, without spec"
	case t == reflect.TypeFor[v1alpha1.WorkflowStepBase]() && (name == "subSteps" || name == "mode"):
		return ": step-groups do not nest, a sub-step cannot have " + name
	case t == reflect.TypeFor[v1alpha1.OutputItem]() && (name == "exportKey" || name == "fromKey"):
		return ": write the expression as valueFrom"
	}
	for known := range fields {
		if strings.EqualFold(known, name) {
			return fmt.Sprintf(" (did you mean %q?)", known)
		}
	}
	return ""
}

// json returns the JSON form of node n (already entered), for free-form fields such as
// properties. It reports false, with the problems recorded, when n has no JSON form.
func (w *walker) json(n *yaml.Node, path *field.Path) ([]byte, bool) {
	before := len(w.errs)
	var b bytes.Buffer
	w.writeJSON(&b, n, path)
	return b.Bytes(), len(w.errs) == before && !w.stopped
}

func (w *walker) writeJSONChild(b *bytes.Buffer, n *yaml.Node, path *field.Path) {
	n, vis, ok := w.enter(n, path)
	if !ok {
		return
	}
	defer w.leave(vis)
	w.writeJSON(b, n, path)
}

func (w *walker) writeJSON(b *bytes.Buffer, n *yaml.Node, path *field.Path) {
	switch n.Kind {
	case yaml.MappingNode:
		b.WriteByte('{')
		for i, e := range w.entries(n, path) {
			if i > 0 {
				b.WriteByte(',')
			}
			writeJSONString(b, e.key)
			b.WriteByte(':')
			w.writeJSONChild(b, e.val, freeChild(path, e.key))
		}
		b.WriteByte('}')
	case yaml.SequenceNode:
		b.WriteByte('[')
		for i, item := range n.Content {
			if i > 0 {
				b.WriteByte(',')
			}
			w.writeJSONChild(b, item, path.Index(i))
		}
		b.WriteByte(']')
	case yaml.ScalarNode:
		w.writeJSONScalar(b, n, path)
	default:
		w.errorf(n, path, "unexpected YAML node")
	}
}

func (w *walker) writeJSONScalar(b *bytes.Buffer, n *yaml.Node, path *field.Path) {
	var v any
	switch tag := n.ShortTag(); tag {
	case strTag, timestampTag:
		writeJSONString(b, n.Value)
		return
	case nullTag:
		b.WriteString("null")
		return
	case boolTag:
		var x bool
		if n.Decode(&x) != nil {
			w.errorf(n, path, "invalid boolean %q", n.Value)
			return
		}
		v = x
	case intTag:
		if n.Decode(&v) != nil {
			w.errorf(n, path, "invalid integer %q", n.Value)
			return
		}
	case floatTag:
		var x float64
		if n.Decode(&x) != nil {
			w.errorf(n, path, "invalid number %q", n.Value)
			return
		}
		if math.IsNaN(x) || math.IsInf(x, 0) {
			w.errorf(n, path, "%s is not a number JSON can hold", n.Value)
			return
		}
		if x == 0 {
			x = 0 // -0 reads back as the integer 0
		}
		v = x
	default:
		w.errorf(n, path, "unsupported YAML tag %s", tag)
		return
	}
	out, err := json.Marshal(v)
	if err != nil {
		w.errorf(n, path, "%s has no JSON form: %v", n.Value, err)
		return
	}
	b.Write(out)
}

// writeJSONString writes s as a JSON string. Like encoding/json it escapes control characters,
// U+2028 and U+2029 and replaces invalid UTF-8, but it leaves <, > and & as they are.
func writeJSONString(b *bytes.Buffer, s string) {
	const hex = "0123456789abcdef"
	b.WriteByte('"')
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteByte(byte(r))
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20 || r == 0x2028 || r == 0x2029:
			b.WriteString(`\u`)
			for shift := 12; shift >= 0; shift -= 4 {
				b.WriteByte(hex[r>>shift&0xF])
			}
		case r == utf8.RuneError && size == 1:
			b.WriteString(`\ufffd`)
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	b.WriteByte('"')
}
