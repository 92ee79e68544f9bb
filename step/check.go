// check.go: what runs nothing: Check compiles a template, CheckProperties checks properties
// against a step type's parameter, Parameters describes the parameter.

package step

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"cuelang.org/go/cue"
	"cuelang.org/go/cue/ast"
	cueerrors "cuelang.org/go/cue/errors"
	"cuelang.org/go/cue/format"
)

// Check compiles a template as `stepflow vet` and apply do: the error gives each CUE problem
// with its position in the template (file named typ.cue).
func (r *Runner) Check(_ context.Context, typ, template string) error {
	if d := r.generation().definition(r.opts.Registry, typ, template); d.err != nil {
		return d.err
	}
	return nil
}

// CheckProperties checks a step's properties against its type's parameter without running
// anything. Each problem names the parameter's path, e.g. parameter.url. Parameters at or under
// the keys in filled (a step's inputs' parameterKeys) are filled at run time and taken as given.
func (r *Runner) CheckProperties(ctx context.Context, namespace, typ string, props map[string]any, filled []string) error {
	p, _ := plain(props).(map[string]any)
	return r.checkProperties(ctx, namespace, typ, p, filled)
}

// checkProperties is CheckProperties with props as readProperties gives them.
func (r *Runner) checkProperties(ctx context.Context, namespace, typ string, props map[string]any, filled []string) error {
	d, err := r.load(ctx, r.generation(), namespace, typ)
	if f, ok := errors.AsType[*failure](err); ok {
		return errors.New(f.msg)
	}
	if err != nil {
		return err
	}
	pp := d.paramPath()
	skip := make([]string, len(filled))
	for i, k := range filled {
		skip[i] = pp.String() + "." + k
	}
	v := d.fill(props, checkContext(namespace))
	return checkParameter(v, pp, props, skip)
}

// checkContext stands in for a step's context when its properties are checked before the run:
// KubeVela's definitions default parameters to context fields (`*context.namespace | string`),
// which must then be concrete. Only the namespace is known; the other keys are placeholders.
func checkContext(namespace string) map[string]any {
	return map[string]any{
		"name": "run", "namespace": namespace, "workflowName": "run", "publishVersion": "",
		"stepName": "step", "stepSessionID": "step", "spanID": "",
	}
}

// checkParameter reports, for the parameter at pp of the template v filled with props, each
// field that conflicts with its schema and each required field left without a value, by path.
// Problems at, under or above a path in skip are not reported.
func checkParameter(v cue.Value, pp cue.Path, props map[string]any, skip []string) error {
	p := v.LookupPath(pp)
	if !p.Exists() {
		return nil
	}
	err := p.Validate(cue.Concrete(true))
	if err == nil {
		return nil
	}
	var paths []string
	msgs := map[string][]string{}
	for _, e := range cueerrors.Errors(err) {
		path := strings.Join(e.Path(), ".")
		if related(path, skip) {
			continue
		}
		format, args := e.Msg()
		msg := fmt.Sprintf(format, args...)
		if want, ok := strings.CutPrefix(msg, "incomplete value "); ok {
			if given(props, e.Path()[len(pp.Selectors()):]) {
				msg = "the value given is incomplete or matches more than one alternative: " + want
			} else {
				msg = "required, not set (want " + want + ")"
			}
		}
		if strings.HasSuffix(msg, "errors in empty disjunction:") {
			msg = "no alternative fits:" // the alternatives' errors follow
		}
		if _, ok := msgs[path]; !ok {
			paths = append(paths, path)
		}
		if !slices.Contains(msgs[path], msg) {
			msgs[path] = append(msgs[path], msg)
		}
	}
	if len(paths) == 0 {
		return nil
	}
	out := make([]string, len(paths))
	for i, p := range paths {
		out[i] = p + ": " + strings.TrimSuffix(strings.Replace(strings.Join(msgs[p], "; "), ":; ", ": ", 1), ":")
	}
	return errors.New(strings.Join(out, "; "))
}

// given reports whether props hold a value at path.
func given(props map[string]any, path []string) bool {
	var x any = props
	for _, p := range path {
		m, ok := x.(map[string]any)
		if !ok {
			return false
		}
		if x, ok = m[p]; !ok {
			return false
		}
	}
	return true
}

// related reports whether path is one of paths, under one, or above one.
func related(path string, paths []string) bool {
	for _, p := range paths {
		if path == p || strings.HasPrefix(path, p+".") || strings.HasPrefix(p, path+".") {
			return true
		}
	}
	return false
}

// Parameter describes one field of a step type's parameter.
type Parameter struct {
	// Name is the field's path under parameter, e.g. "url" or "url.value".
	Name string `json:"name"`
	// Type is the field's CUE type as written, e.g. `*"GET" | "POST"`, or its kind when long.
	Type string `json:"type"`
	// Default is the default value as JSON, empty when there is none.
	Default string `json:"default,omitempty"`
	// Required is set for a field that must be given: not optional and without a default.
	Required bool `json:"required"`
	// Usage is the text of the field's `// +usage=` comment.
	Usage string `json:"usage,omitempty"`
}

// Parameters describes the fields of a step type's parameter, nested structs included, for
// `stepflow def show`.
func (r *Runner) Parameters(ctx context.Context, namespace, typ string) ([]Parameter, error) {
	d, err := r.load(ctx, r.generation(), namespace, typ)
	if f, ok := errors.AsType[*failure](err); ok {
		return nil, errors.New(f.msg)
	}
	if err != nil {
		return nil, err
	}
	var out []Parameter
	describeFields(d.file.LookupPath(d.paramPath()), "", &out)
	return out, nil
}

func describeFields(s cue.Value, prefix string, out *[]Parameter) {
	it, err := s.Fields(cue.Optional(true))
	if err != nil {
		return
	}
	for it.Next() {
		v := it.Value()
		p := Parameter{Name: prefix + it.Selector().Unquoted(), Type: TypeOf(v), Usage: Usage(v)}
		if d, ok := v.Default(); ok && d.IsConcrete() {
			if b, err := d.MarshalJSON(); err == nil {
				p.Default = string(b)
			}
		}
		p.Required = it.Selector().ConstraintType() != cue.OptionalConstraint && p.Default == "" &&
			v.Validate(cue.Concrete(true)) != nil
		*out = append(*out, p)
		if p.Type == "struct" {
			describeFields(v, p.Name+".", out)
		}
	}
}

// TypeOf returns the type of v, a field of a CUE schema, on one line: "struct" for a struct
// with at least one field; else the field's value as written (formatted, white space folded)
// when that is 60 characters or fewer, e.g. `*"GET" | "POST"` or "#Secret"; else its kind,
// e.g. "string" or "(string|struct)". A choice of structs is one of these too: a caller that
// lists the alternatives' fields (definitions.Describe) does so before calling TypeOf.
func TypeOf(v cue.Value) string {
	if v.IncompleteKind() == cue.StructKind {
		if it, err := v.Fields(cue.Optional(true)); err == nil && it.Next() {
			return "struct"
		}
	}
	src := v.Source()
	if f, ok := src.(*ast.Field); ok {
		src = f.Value
	}
	if src != nil {
		if b, err := format.Node(src); err == nil {
			if s := strings.Join(strings.Fields(string(b)), " "); len(s) <= 60 {
				return s
			}
		}
	}
	return v.IncompleteKind().String()
}

// Usage returns the text of the `// +usage=` comment on v, a field of a CUE schema, trimmed;
// "" when it has none.
func Usage(v cue.Value) string {
	for _, cg := range v.Doc() {
		for line := range strings.SplitSeq(cg.Text(), "\n") {
			if _, after, ok := strings.Cut(line, "+usage="); ok {
				return strings.TrimSpace(after)
			}
		}
	}
	return ""
}
