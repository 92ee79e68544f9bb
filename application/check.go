package application

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	"cuelang.org/go/cue"
	"cuelang.org/go/cue/ast"
	"cuelang.org/go/cue/cuecontext"
	"cuelang.org/go/cue/parser"
)

// PropertyError is one property a definition's parameter refuses.
type PropertyError struct {
	// Path is the property's path under properties ("env", "0", "name"); empty for the whole.
	Path []string
	// Message says why.
	Message string
}

// CheckTemplate reports whether an X-Definition's template (or a health policy or custom
// status) compiles, with `context` and `parameter` left open as they are before rendering.
func CheckTemplate(tmpl string) (err error) {
	defer guard(&err)
	src := preamble + tmpl + "\ncontext: _\nparameter: _\n"
	v := cuecontext.New().CompileString(src, cue.Filename("template.cue"))
	if err := v.Err(); err != nil {
		return describe(err)
	}
	return nil
}

// CheckProperties checks properties against a template's `parameter`, as Render would take
// them: each value the parameter refuses, each required field missing, and each property the
// parameter does not declare (where the parameter is a plain struct that declares its fields,
// without `...` or patterns). Paths at or under one of filled (dotted, as inputs'
// parameterKey) are taken as given by inputs when the workflow runs.
func CheckProperties(tmpl string, props json.RawMessage, filled []string) (out []PropertyError) {
	defer func() {
		if r := recover(); r != nil { // as guard does
			out = []PropertyError{{Message: fmt.Sprintf("the CUE evaluator failed: %v", r)}}
		}
	}()
	if len(props) == 0 {
		props = json.RawMessage("{}")
	}
	var given map[string]any
	if err := json.Unmarshal(props, &given); err != nil {
		return []PropertyError{{Message: "properties must be an object: " + err.Error()}}
	}
	v, err := evaluateForCheck(tmpl, props)
	if err != nil {
		return []PropertyError{{Message: err.Error()}}
	}
	if p := v.LookupPath(cue.ParsePath("parameter")); p.Exists() {
		out = parameterErrors(p, given, filled)
	}
	if len(out) == 0 {
		// A conflict outside the parameter, which the properties lead to; not what is only
		// incomplete for want of the component (a trait's reads of context.output).
		if err := v.Validate(cue.Hidden(true)); err != nil {
			out = append(out, PropertyError{Message: describe(err).Error()})
		}
	}
	out = append(out, undeclared(tmpl, given)...)
	sort.SliceStable(out, func(i, j int) bool { return strings.Join(out[i].Path, ".") < strings.Join(out[j].Path, ".") })
	return out
}

// evaluateForCheck compiles the template with the properties and a stand-in context: the
// names are placeholders, as the check runs before there is a cluster or a revision. The
// value's errors are left to the caller.
func evaluateForCheck(tmpl string, props json.RawMessage) (cue.Value, error) {
	ctx := map[string]any{
		"name": "component", "appName": "app", "namespace": "default", "appRevision": "app-v1",
		"appRevisionNum": 1, "revision": "app-v1", "cluster": "", "components": []any{},
		"clusterVersion": map[string]any{"major": "1", "minor": "0", "gitVersion": "v1.0.0", "platform": ""},
		"appLabels":      map[string]any{}, "appAnnotations": map[string]any{}, "workflowName": "app",
		"stepName": "deploy", "publishVersion": "", "replicaKey": "",
	}
	src, err := source(tmpl, ctx, props)
	if err != nil {
		return cue.Value{}, err
	}
	// A trait reads the workload and objects its component rendered (context.output,
	// context.outputs): open here, as there is no component yet, so that what reads them is
	// incomplete, not an error.
	src += "context: output: _\ncontext: outputs: _\n"
	return cuecontext.New().CompileString(src, cue.Filename("template.cue")), nil
}

// parameterErrors lists what the filled parameter p refuses, by property path.
func parameterErrors(p cue.Value, given map[string]any, filled []string) []PropertyError {
	err := p.Validate(cue.Concrete(true))
	if err == nil {
		return nil
	}
	var out []PropertyError
	index := map[string]int{}
	for _, e := range cueErrors(err) {
		path := e.Path()
		if len(path) > 0 && path[0] == "parameter" {
			path = path[1:]
		}
		dotted := strings.Join(path, ".")
		if isFilled(dotted, filled) {
			continue
		}
		format, args := e.Msg()
		msg := fmt.Sprintf(format, args...)
		if strings.HasSuffix(msg, "errors in empty disjunction:") {
			continue
		}
		if want, ok := strings.CutPrefix(msg, "incomplete value "); ok {
			if _, set := ValueAt(given, path); set {
				msg = "the value given matches more than one alternative: " + want
			} else {
				msg = "required, not set (want " + want + ")"
			}
		}
		if i, seen := index[dotted]; seen {
			if !strings.Contains(out[i].Message, msg) {
				out[i].Message += "; " + msg
			}
			continue
		}
		index[dotted] = len(out)
		out = append(out, PropertyError{Path: path, Message: msg})
	}
	return out
}

// isFilled reports whether path is at, under or above a path inputs fill.
func isFilled(path string, filled []string) bool {
	for _, f := range filled {
		f = strings.NewReplacer("[", ".", "]", "").Replace(f)
		if path == f || strings.HasPrefix(path, f+".") || strings.HasPrefix(f, path+".") {
			return true
		}
	}
	return false
}

// ValueAt finds the value at path in a decoded JSON value (a list's items by their index);
// ok is false when there is none.
func ValueAt(x any, path []string) (v any, ok bool) {
	for _, p := range path {
		switch v := x.(type) {
		case map[string]any:
			var ok bool
			if x, ok = v[p]; !ok {
				return nil, false
			}
		case []any:
			i, err := strconv.Atoi(p)
			if err != nil || i < 0 || i >= len(v) {
				return nil, false
			}
			x = v[i]
		default:
			return nil, false
		}
	}
	return x, true
}

// Undeclared lists the properties (a JSON object) that the template's parameter does not
// declare. It reads the template's text and evaluates nothing, so it is bounded by the
// template's size: see undeclared.
func Undeclared(tmpl string, props json.RawMessage) []PropertyError {
	var given map[string]any
	if len(props) == 0 || json.Unmarshal(props, &given) != nil {
		return nil
	}
	return undeclared(tmpl, given)
}

// undeclared lists the properties the template's parameter does not declare, read from the
// template's text: only where the parameter is written as struct literals (and lists of
// them) is a field known to be undeclared; a reference, a pattern, `...` or a comprehension
// lets anything through.
func undeclared(tmpl string, given map[string]any) []PropertyError {
	f, err := parser.ParseFile("template.cue", tmpl)
	if err != nil {
		return nil
	}
	var param []ast.Expr
	for _, d := range f.Decls {
		if fd, ok := d.(*ast.Field); ok {
			if name, _, _ := ast.LabelName(fd.Label); name == "parameter" {
				param = append(param, fd.Value)
			}
		}
	}
	if len(param) != 1 {
		return nil
	}
	var out []PropertyError
	walkUndeclared(param[0], given, nil, &out)
	return out
}

func walkUndeclared(schema ast.Expr, value any, path []string, out *[]PropertyError) {
	switch s := schema.(type) {
	case *ast.StructLit:
		m, ok := value.(map[string]any)
		if !ok {
			return
		}
		fields := map[string]ast.Expr{}
		for _, e := range s.Elts {
			fd, ok := e.(*ast.Field)
			if !ok {
				return // `...`, an embedding or a comprehension: anything may be allowed
			}
			name, isIdent, err := ast.LabelName(fd.Label)
			if err != nil || (!isIdent && name == "") {
				return // a pattern such as [string]: T
			}
			if strings.HasPrefix(name, "#") || strings.HasPrefix(name, "_") {
				continue
			}
			fields[name] = fd.Value
		}
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			sub, ok := fields[k]
			p := append(slices.Clone(path), k)
			if !ok {
				*out = append(*out, PropertyError{Path: p, Message: "unknown property: the parameter declares " + declared(fields)})
				continue
			}
			walkUndeclared(sub, m[k], p, out)
		}
	case *ast.ListLit:
		items, ok := value.([]any)
		if !ok || len(s.Elts) != 1 {
			return
		}
		el, ok := s.Elts[0].(*ast.Ellipsis)
		if !ok || el.Type == nil {
			return
		}
		for i, item := range items {
			walkUndeclared(el.Type, item, append(slices.Clone(path), fmt.Sprint(i)), out)
		}
	case *ast.BinaryExpr:
		// A default list or struct (`*[] | [...{...}]`): the last alternative is the schema.
		if s.Op.String() == "|" {
			walkUndeclared(s.Y, value, path, out)
		}
	}
}

// declared names the fields a struct declares, for a message.
func declared(fields map[string]ast.Expr) string {
	names := make([]string, 0, len(fields))
	for k := range fields {
		names = append(names, k)
	}
	sort.Strings(names)
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}
