// condition.go: a step's `if` expression and its cache key, compiled once per generation and
// evaluated (EvalIf, EvalKey).

package step

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"cuelang.org/go/cue"
	"cuelang.org/go/cue/ast"
	"cuelang.org/go/cue/parser"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/engine"
)

// maxConditions bounds the parsed `if` expressions a generation keeps.
const maxConditions = 1024

var (
	condPath    = cue.MakePath(cue.Str("$if"))
	condScopes  = []string{"status", "inputs", "context"}
	keyPath     = cue.MakePath(cue.Str("$key"))
	keyScopes   = []string{"parameter", "inputs", "context"}
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
	c, err := gen.expression("$if", condScopes, expr)
	if err != nil {
		return false, err
	}
	v := c.FillPath(cue.Path{}, fill(condScopes, scope)).LookupPath(condPath)
	if err := v.Validate(cue.Concrete(true)); err != nil {
		return false, fmt.Errorf("cannot be decided: %s", strings.ReplaceAll(describe(err).Error(), `$if: `, ""))
	}
	b, err := v.Bool()
	if err != nil {
		return false, fmt.Errorf("%w: it is %v, of kind %v", errNotBool, v, v.Kind())
	}
	return b, nil
}

// fill is what an expression's scopes are filled with: scope's values for the names given.
func fill(names []string, scope map[string]any) map[string]any {
	in := map[string]any{}
	for _, k := range names {
		if x, ok := scope[k]; ok && x != nil {
			in[k] = plain(x)
		}
	}
	return in
}

// EvalKey evaluates a step's cache key, a CUE expression over scope (keys parameter, inputs
// and context), to a concrete value, returned as JSON (implements engine.KeyEvaluator). A key
// that is not a single expression, or not concrete, is a terminal error (reason Rendering).
func (r *Runner) EvalKey(ctx context.Context, expr string, scope map[string]any) (json.RawMessage, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if r.pool != nil {
		return r.pool.key(ctx, r.opts.EvalTimeout, expr, scope)
	}
	b, err := r.evalKey(scope, expr)
	if err != nil {
		return nil, engine.Terminal(v1alpha1.ReasonRendering, err)
	}
	return b, nil
}

// evalKey is EvalKey in this process.
func (r *Runner) evalKey(scope map[string]any, expr string) (json.RawMessage, error) {
	c, err := r.generation().expression("$key", keyScopes, expr)
	if err != nil {
		return nil, err
	}
	v := c.FillPath(cue.Path{}, fill(keyScopes, scope)).LookupPath(keyPath)
	if err := v.Validate(cue.Concrete(true)); err != nil {
		return nil, fmt.Errorf("not concrete: %s", strings.ReplaceAll(describe(err).Error(), `$key: `, ""))
	}
	b, err := v.MarshalJSON()
	if err != nil {
		return nil, fmt.Errorf("not a value: %w", describe(err))
	}
	return b, nil
}

// CheckKey reports whether expr is a single CUE expression over parameter, inputs and context
// that can be a cache key (for vet): it compiles, whatever it evaluates to.
func (r *Runner) CheckKey(ctx context.Context, expr string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if r.pool != nil {
		_, err := r.pool.key(ctx, r.opts.EvalTimeout, expr, nil)
		if te, ok := errors.AsType[*engine.TerminalError](err); ok {
			return te.Err
		}
		return err
	}
	_, err := r.generation().expression("$key", keyScopes, expr)
	return err
}

// expression compiles an expression once per generation, as the field name of a struct
// whose fields scopes are filled at each evaluation.
func (g *generation) expression(name string, scopes []string, expr string) (cue.Value, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	id := name + "\x00" + expr
	if c, ok := g.conds[id]; ok {
		return c, nil
	}
	src := preamble + strings.Join(scopes, ": _\n") + ": _\n" + strconv.Quote(name) + ": (" + strings.TrimSpace(expr) + ")\n"
	f, err := parser.ParseFile(condFile, src)
	if err != nil {
		return cue.Value{}, fmt.Errorf("%w: %w", errNotValid, describe(err))
	}
	// The expression must not have closed the parenthesis to add fields of its own.
	if n := len(f.Decls); n != len(scopes)+2 {
		return cue.Value{}, errNotValid
	}
	if fd, ok := f.Decls[len(f.Decls)-1].(*ast.Field); !ok || fd.Value == nil {
		return cue.Value{}, errNotValid
	} else if _, ok := fd.Value.(*ast.ParenExpr); !ok {
		return cue.Value{}, errNotValid
	}
	c := g.ctx.BuildFile(f, cue.InferBuiltins(true))
	if err := c.Err(); err != nil {
		return cue.Value{}, fmt.Errorf("%w: %s", errNotValid, strings.ReplaceAll(describe(err).Error(), name+": ", ""))
	}
	if len(g.conds) < maxConditions {
		g.conds[id] = c
	}
	return c, nil
}
