// condition.go: a step's `if` expression, compiled once per generation and evaluated (EvalIf).

package step

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"cuelang.org/go/cue"
	"cuelang.org/go/cue/ast"
	"cuelang.org/go/cue/parser"
)

// maxConditions bounds the parsed `if` expressions a generation keeps.
const maxConditions = 1024

var (
	condPath    = cue.MakePath(cue.Str("$if"))
	condScopes  = []string{"status", "inputs", "context"}
	errNotBool  = errors.New("not a boolean")
	errNotValid = errors.New("not a single CUE expression")
)

// EvalIf evaluates a step's `if`, a CUE expression over scope (keys status, inputs and context),
// to a concrete boolean. Anything else, including an expression that cannot be decided, is an
// error: a condition is never taken as false by default.
func (r *Runner) EvalIf(ctx context.Context, expr string, scope map[string]any) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	if r.pool != nil {
		return r.pool.condition(ctx, r.opts.EvalTimeout, expr, scope)
	}
	return r.evalIf(scope, expr)
}

// evalIf is EvalIf in this process.
func (r *Runner) evalIf(scope map[string]any, expr string) (bool, error) {
	gen := r.generation()
	c, err := gen.condition(expr)
	if err != nil {
		return false, err
	}
	in := map[string]any{}
	for _, k := range condScopes {
		if x, ok := scope[k]; ok && x != nil {
			in[k] = plain(x)
		}
	}
	v := c.FillPath(cue.Path{}, in).LookupPath(condPath)
	if err := v.Validate(cue.Concrete(true)); err != nil {
		return false, fmt.Errorf("cannot be decided: %s", strings.ReplaceAll(describe(err).Error(), `$if: `, ""))
	}
	b, err := v.Bool()
	if err != nil {
		return false, fmt.Errorf("%w: it is %v, of kind %v", errNotBool, v, v.Kind())
	}
	return b, nil
}

// condition compiles an `if` expression once per generation, as the field "$if" of a struct
// whose fields status, inputs and context are filled at each evaluation.
func (g *generation) condition(expr string) (cue.Value, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if c, ok := g.conds[expr]; ok {
		return c, nil
	}
	src := preamble + "status: _\ninputs: _\ncontext: _\n\"$if\": (" + strings.TrimSpace(expr) + ")\n"
	f, err := parser.ParseFile(condFile, src)
	if err != nil {
		return cue.Value{}, fmt.Errorf("%w: %w", errNotValid, describe(err))
	}
	// The expression must not have closed the parenthesis to add fields of its own.
	if n := len(f.Decls); n != len(condScopes)+2 {
		return cue.Value{}, errNotValid
	}
	if fd, ok := f.Decls[len(f.Decls)-1].(*ast.Field); !ok || fd.Value == nil {
		return cue.Value{}, errNotValid
	} else if _, ok := fd.Value.(*ast.ParenExpr); !ok {
		return cue.Value{}, errNotValid
	}
	c := g.ctx.BuildFile(f, cue.InferBuiltins(true))
	if err := c.Err(); err != nil {
		return cue.Value{}, fmt.Errorf("%w: %w", errNotValid, describe(err))
	}
	if len(g.conds) < maxConditions {
		g.conds[expr] = c
	}
	return c, nil
}
