// check.go: what runs nothing: Check compiles a template, CheckProperties checks properties
// against a step type's parameter, Parameters describes the parameter.

package step

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"cuelang.org/go/cue"
	"cuelang.org/go/cue/ast"
	cueerrors "cuelang.org/go/cue/errors"
	"cuelang.org/go/cue/format"

	"github.com/stepflow/stepflow/application"
)

// Check compiles a template as `stepflow vet` and apply do: the error gives each CUE problem
// with its position in the template (file named typ.cue).
func (r *Runner) Check(ctx context.Context, typ, template string) error {
	if r.pool != nil {
		return r.pool.check(ctx, r.opts.EvalTimeout, &checkRequest{source: source{Type: typ}, Compile: true}, template)
	}
	if d := r.generation().definition(r.opts.Registry, typ, template); d.err != nil {
		return d.err
	}
	return nil
}

// CheckXTemplate checks that an X-Definition's template (or a health policy or custom
// status) compiles, as application.CheckTemplate does, under the bounds of an evaluation
// (Options.EvalTimeout, EvalMemory): a template that passes one fails naming it.
func (r *Runner) CheckXTemplate(ctx context.Context, tmpl string) error {
	d, err := r.xCheck(ctx, &xRequest{Template: tmpl, Compile: true}, "the template")
	if err != nil {
		return err
	}
	if d.Error != "" {
		return errors.New(d.Error)
	}
	return nil
}

// CheckXProperties checks properties against an X-Definition's parameter, as
// application.CheckProperties does, under the bounds of an evaluation. The error is a bound
// passed (its message naming it) or one that is not about the input (NotTheInput).
func (r *Runner) CheckXProperties(ctx context.Context, tmpl string, props json.RawMessage, filled []string) ([]application.PropertyError, error) {
	if len(props) > 0 && !json.Valid(props) { // not sent: it would not encode
		return application.CheckProperties(tmpl, props, filled), nil
	}
	d, err := r.xCheck(ctx, &xRequest{Template: tmpl, Properties: props, Filled: filled}, "the properties")
	if err != nil {
		return nil, err
	}
	return d.Properties, nil
}

// xCheck makes an X-Definition's check in a child evaluator, or here evaluating in process.
func (r *Runner) xCheck(ctx context.Context, req *xRequest, what string) (*xDone, error) {
	if r.pool == nil {
		return xCheck(req), nil
	}
	return r.pool.x(ctx, r.opts.EvalTimeout, req, what)
}

// CheckProperties checks a step's properties against its type's parameter without running
// anything. Each problem names the parameter's path, e.g. parameter.url. Parameters at or under
// the keys in filled (a step's inputs' parameterKeys) are filled at run time and taken as given.
func (r *Runner) CheckProperties(ctx context.Context, namespace, typ string, props map[string]any, filled []string) error {
	p, _ := plain(props).(map[string]any)
	return r.checkProperties(ctx, namespace, typ, nil, p, filled)
}

// checkProperties is CheckProperties with props as readProperties gives them from raw, their
// JSON (nil: props encoded again).
func (r *Runner) checkProperties(ctx context.Context, namespace, typ string, raw json.RawMessage, props map[string]any, filled []string) error {
	src, err := r.template(ctx, namespace, typ)
	if err != nil {
		return err
	}
	if r.pool != nil {
		if raw == nil {
			if raw, err = json.Marshal(props); err != nil {
				return fmt.Errorf("properties: %w", err)
			}
		}
		req := &checkRequest{source: source{Type: typ}, Namespace: namespace, Properties: raw, Filled: filled}
		return r.pool.check(ctx, r.opts.EvalTimeout, req, src)
	}
	return r.checkCompiled(r.generation(), typ, src, namespace, props, filled)
}

// checkCompiled checks props against the template src of typ, compiled in gen.
func (r *Runner) checkCompiled(gen *generation, typ, src, namespace string, props map[string]any, filled []string) error {
	d, err := r.compile(gen, typ, src)
	if f, ok := errors.AsType[*failure](err); ok {
		return errors.New(f.msg)
	}
	if err != nil {
		return err
	}
	key, keyed := checkKeyOf(d, namespace, props, filled)
	if ok, err := gen.checked(key); keyed && ok {
		return err
	}
	pp := d.paramPath()
	skip := make([]string, len(filled))
	for i, k := range filled {
		skip[i] = pp.String() + "." + k
	}
	v := d.fill(props, checkContext(namespace))
	err = checkParameter(v, pp, props, skip)
	if err == nil {
		err = checkTemplate(v, pp, skip)
	}
	if keyed {
		gen.check(key, err)
	}
	return err
}

// checkKey identifies one check of properties: the same definition, namespace, properties
// and inputs give the same answer, which the generation keeps (a run created again and
// again, the steps of a loop's template).
type checkKey struct {
	def                    *definition
	namespace, props, fill string
}

// checkKeyOf returns the key of a check; ok is false when the properties cannot be encoded or
// are too long to be worth keeping.
func checkKeyOf(d *definition, namespace string, props map[string]any, filled []string) (checkKey, bool) {
	b, err := json.Marshal(props) // map keys sorted: the same properties, the same text
	if err != nil || len(b) > maxCheckedProps {
		return checkKey{}, false
	}
	return checkKey{def: d, namespace: namespace, props: string(b), fill: strings.Join(filled, "\x00")}, true
}

// maxChecks bounds the checks a generation remembers, past which they are forgotten at once,
// and maxCheckedProps the properties' JSON of a check it remembers: at most 16 MiB of keys.
const (
	maxChecks       = 1024
	maxCheckedProps = 16 << 10
)

// checked returns the answer of a check made before in this generation.
func (g *generation) checked(k checkKey) (found bool, err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	err, found = g.checks[k]
	return found, err
}

// check remembers the answer of a check.
func (g *generation) check(k checkKey, err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.checks) >= maxChecks {
		clear(g.checks)
	}
	g.checks[k] = err
}

// PropertyErrors are the values of a step's properties that its template refuses before any
// action runs: most often a value an action's $params does not accept (a field it does not
// have, a wrong type or shape), which would fail the step when it runs.
type PropertyErrors []PropertyError

// PropertyError is one refused value of a step's properties.
type PropertyError struct {
	// Path is the property's path under properties, e.g. ["request", "header"]; empty when the
	// refused value does not come from one property.
	Path []string
	// Message says what refuses it and why, e.g. `refused by req.$params.method: ...`.
	Message string
}

func (e PropertyErrors) Error() string {
	out := make([]string, len(e))
	for i, p := range e {
		out[i] = p.Message
		if len(p.Path) > 0 {
			out[i] = strings.Join(p.Path, ".") + ": " + p.Message
		}
	}
	return strings.Join(out, "; ")
}

// checkTemplate reports what the template v, filled with the properties, refuses as a whole,
// without running an action: the conflicts the evaluation would fail on (with reason
// Rendering) before its first action, most often in an action's $params. A reference to a
// field not there yet is left out, as the evaluation leaves it to the walk: an action's result
// may bring it (onlyUndefinedFields). Each conflict is put
// on the property its value comes from, found by following the template's references to the
// parameter at pp; problems at, under or above a path in skip (filled by inputs) are not
// reported.
func checkTemplate(v cue.Value, pp cue.Path, skip []string) error {
	err := v.Validate()
	if err == nil {
		return nil
	}
	var out PropertyErrors
	index := map[string]int{}
	for _, e := range cueerrors.Errors(err) {
		if onlyUndefinedFields(e) {
			continue
		}
		at := e.Path()
		prop, ok := propertyOf(v, pp, at)
		if ok && related(pp.String()+"."+strings.Join(prop, "."), skip) {
			continue
		}
		format, args := e.Msg()
		msg := fmt.Sprintf(format, args...)
		if strings.HasSuffix(msg, "errors in empty disjunction:") {
			msg = "no alternative fits" // the alternatives' errors follow
		}
		where := strings.Join(at, ".")
		k := strings.Join(prop, ".") + "\x00" + where
		if i, seen := index[k]; seen {
			if !strings.Contains(out[i].Message, msg) {
				out[i].Message += "; " + msg
			}
			continue
		}
		index[k] = len(out)
		out = append(out, PropertyError{Path: prop, Message: "refused by " + where + ": " + msg})
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// propertyOf returns the path under the parameter at pp that the value at path in v comes
// from: the nearest field at or above path that refers to a field of the parameter, followed
// by the rest of path. ok is false when no field on the way refers to the parameter.
func propertyOf(v cue.Value, pp cue.Path, path []string) (prop []string, ok bool) {
	sels := make([]cue.Selector, len(path))
	for i, p := range path {
		switch n, err := strconv.Atoi(p); {
		case err == nil:
			sels[i] = cue.Index(n)
		case strings.HasPrefix(p, "#"):
			sels[i] = cue.Def(p)
		default:
			sels[i] = cue.Str(p)
		}
	}
	params := pp.Selectors()
	under := func(x cue.Value) ([]string, bool) {
		_, ref := x.ReferencePath()
		rs := ref.Selectors()
		if len(rs) < len(params) || !slices.Equal(rs[:len(params)], params) {
			return nil, false
		}
		var out []string
		for _, s := range rs[len(params):] {
			out = append(out, s.Unquoted())
		}
		return out, true
	}
	if len(sels) >= len(params) && slices.Equal(sels[:len(params)], params) {
		return path[len(params):], true // the parameter's own field
	}
	for k := len(sels); k > 0; k-- {
		x := v.LookupPath(cue.MakePath(sels[:k]...))
		if !x.Exists() {
			continue
		}
		refs := []cue.Value{x}
		if op, args := x.Expr(); op == cue.AndOp {
			refs = append(refs, args...)
		}
		for _, r := range refs {
			if p, found := under(r); found {
				return append(p, path[k:]...), true
			}
		}
	}
	return nil, false
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
	_, ok := propertyAt(props, path)
	return ok
}

// propertyAt returns the value props hold at path, and whether they hold one.
func propertyAt(props map[string]any, path []string) (any, bool) {
	var x any = props
	for _, p := range path {
		m, ok := x.(map[string]any)
		if !ok {
			return nil, false
		}
		if x, ok = m[p]; !ok {
			return nil, false
		}
	}
	return x, true
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
