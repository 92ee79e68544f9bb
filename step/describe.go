// describe.go: the description of a definition's parameter (stepflow def show, the API's
// definition), evaluated in a child evaluator like every CUE a user may write.

package step

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"cuelang.org/go/cue"
	"cuelang.org/go/cue/ast"
	"cuelang.org/go/cue/cuecontext"
	"cuelang.org/go/cue/parser"
)

// Parameter documents one field of a step type's parameter.
type Parameter struct {
	// Name is the field's path under parameter: "url", "url.secretRef.name", and "[]" for the
	// elements of a list, as in "storage.secret[].name".
	Name string `json:"name"`
	// Type is the field's CUE type as written, on one line; a struct is "struct", and a choice
	// of structs lists the fields of each, e.g. "{value} | {secretRef}".
	Type string `json:"type"`
	// Default is the default value as JSON; empty when there is none.
	Default string `json:"default,omitempty"`
	// Required is set for a field that must be given: not optional and without a default.
	Required bool `json:"required"`
	// Usage is the text of the field's `// +usage=` comment.
	Usage string `json:"usage,omitempty"`
}

// Describe documents the parameter of a template, nested fields included, from the template's
// text alone: the parameter and the template's #definitions are compiled without the rest, so
// that no package the template imports is needed. It evaluates under the bounds of an
// evaluation (Options.EvalTimeout, EvalMemory), in a child evaluator unless the Runner
// evaluates in process: the parameter is CUE its writer chose.
func (r *Runner) Describe(ctx context.Context, template string) ([]Parameter, error) {
	if r.pool == nil {
		return describeParameter(template)
	}
	d, err := r.pool.describe(ctx, r.opts.EvalTimeout, template)
	if err != nil {
		return nil, err
	}
	if d.Error != "" {
		return nil, errors.New(d.Error)
	}
	return d.Parameters, nil
}

// describeParameter is Describe, in this process.
func describeParameter(template string) ([]Parameter, error) {
	f, err := parser.ParseFile("template.cue", template, parser.ParseComments)
	if err != nil {
		return nil, fmt.Errorf("parsing the template: %w", err)
	}
	decls := f.Decls
	if tmpl := topField(decls, "template"); tmpl != nil && topField(decls, "parameter") == nil {
		if s, ok := tmpl.Value.(*ast.StructLit); ok {
			decls = s.Elts
		}
	}
	param := topField(decls, "parameter")
	if param == nil {
		return nil, nil
	}
	// context is given by the engine: a parameter may default to context.namespace.
	kept := []ast.Decl{&ast.Field{Label: ast.NewIdent("context"), Value: ast.NewIdent("_")}, param}
	for _, d := range decls {
		if fd, ok := d.(*ast.Field); ok {
			if name, _, _ := ast.LabelName(fd.Label); strings.HasPrefix(name, "#") {
				kept = append(kept, fd)
			}
		}
	}
	v := cuecontext.New().BuildFile(&ast.File{Decls: kept})
	if err := v.Err(); err != nil {
		return nil, fmt.Errorf("compiling the parameter: %w", err)
	}
	var out []Parameter
	seen := map[string]bool{}
	describeValue(v.LookupPath(cue.ParsePath("parameter")), "", &out, seen)
	return out, nil
}

// topField finds the top-level field name among decls.
func topField(decls []ast.Decl, name string) *ast.Field {
	for _, d := range decls {
		if f, ok := d.(*ast.Field); ok {
			if n, _, _ := ast.LabelName(f.Label); n == name {
				return f
			}
		}
	}
	return nil
}

// describeValue lists the fields of v, a struct or a choice of structs, under prefix.
func describeValue(v cue.Value, prefix string, out *[]Parameter, seen map[string]bool) {
	for _, alt := range alternatives(v) {
		it, err := alt.Fields(cue.Optional(true))
		if err != nil {
			continue
		}
		for it.Next() {
			f := it.Value()
			p := Parameter{Name: prefix + it.Selector().Unquoted(), Type: typeOf(f), Usage: Usage(f)}
			if seen[p.Name] {
				continue
			}
			seen[p.Name] = true
			if d, ok := f.Default(); ok && d.IsConcrete() && d.Kind() != cue.StructKind && d.Kind() != cue.ListKind {
				if b, err := d.MarshalJSON(); err == nil {
					p.Default = string(b)
				}
			}
			p.Required = it.Selector().ConstraintType() != cue.OptionalConstraint && p.Default == "" &&
				f.Validate(cue.Concrete(true)) != nil
			*out = append(*out, p)
			describeValue(f, p.Name+".", out, seen)
			if f.IncompleteKind() == cue.ListKind {
				describeValue(f.LookupPath(cue.MakePath(cue.AnyIndex)), p.Name+"[].", out, seen)
			}
		}
	}
}

// choices returns the alternatives of a disjunction, also one written as a reference to a
// definition (url: #Secret); ok is false for any other value.
func choices(v cue.Value) (args []cue.Value, ok bool) {
	op, args := v.Expr()
	if op != cue.OrOp {
		op, args = v.Eval().Expr()
	}
	return args, op == cue.OrOp
}

// alternatives are the structs a value may be: itself, or each struct of a disjunction.
func alternatives(v cue.Value) []cue.Value {
	if args, ok := choices(v); ok {
		var out []cue.Value
		for _, a := range args {
			out = append(out, alternatives(a)...)
		}
		return out
	}
	if v.IncompleteKind()&cue.StructKind != 0 {
		return []cue.Value{v}
	}
	return nil
}

// typeOf renders a field's type on one line: a choice of structs as "{a, b} | {c}", the names
// of each one's fields (a choice of a struct and another type as "{a} | string"), anything
// else as step.TypeOf does.
func typeOf(v cue.Value) string {
	if args, ok := choices(v); ok {
		var parts []string
		structs := 0
		for _, a := range args {
			if names := fieldNames(a); names != nil {
				parts = append(parts, "{"+strings.Join(names, ", ")+"}")
				structs++
			} else {
				parts = append(parts, typeOf(a))
			}
		}
		if structs > 0 {
			return strings.Join(parts, " | ")
		}
	}
	return TypeOf(v)
}

// fieldNames lists the fields of a struct that has some; nil otherwise.
func fieldNames(v cue.Value) []string {
	if v.IncompleteKind() != cue.StructKind {
		return nil
	}
	it, err := v.Fields(cue.Optional(true))
	if err != nil {
		return nil
	}
	var names []string
	for it.Next() {
		names = append(names, it.Selector().Unquoted())
	}
	return names
}
