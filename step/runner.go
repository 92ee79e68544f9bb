package step

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"sync"

	"cuelang.org/go/cue"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/engine"
)

// Definitions is where step types come from.
type Definitions interface {
	// Template returns the CUE template of step type typ as seen from a run in namespace:
	// looked up in namespace, then "vela-system", then the built-ins. The error wraps
	// ErrUnknownType when none has it.
	Template(ctx context.Context, namespace, typ string) (string, error)
}

// ErrUnknownType is returned, wrapped, for a step type no definition declares.
var ErrUnknownType = errors.New("unknown step type")

// Defaults used when the corresponding Options field is zero.
const (
	DefaultContextLifetime = 5000
	DefaultMaxDefinitions  = 256
	DefaultMaxActions      = 1000
)

// compileWeight is what compiling an output expression counts for in a context's lifetime: the
// context keeps the evaluated template it was compiled against (some 60 KB for a small one),
// where an evaluation alone leaves nothing behind.
const compileWeight = 10

// Options configure a Runner; the zero value works (with no actions and no step types).
type Options struct {
	// Registry holds the actions and packages definitions may use; nil means an empty one.
	Registry *Registry
	// Definitions finds step types; nil means none (only Check works).
	Definitions Definitions
	// ContextLifetime is how many evaluations (steps and conditions) share one cue.Context
	// before the runner starts a fresh one and compiles definitions again: a context keeps
	// what is compiled in it. An output that is an expression rather than a path counts ten.
	// 0 means DefaultContextLifetime.
	ContextLifetime int
	// MaxDefinitions is how many compiled templates a context holds before a fresh one is
	// started. 0 means DefaultMaxDefinitions.
	MaxDefinitions int
	// MaxActions bounds the actions one evaluation of a step runs. 0 means DefaultMaxActions.
	MaxActions int
}

// Runner evaluates steps written in CUE. It implements engine.StepRunner and
// engine.ConditionEvaluator, and is safe for concurrent use.
type Runner struct {
	opts Options
	mu   sync.Mutex
	gen  *generation
}

// NewRunner returns a Runner.
func NewRunner(opts Options) *Runner {
	if opts.Registry == nil {
		opts.Registry = NewRegistry()
	}
	if opts.ContextLifetime <= 0 {
		opts.ContextLifetime = DefaultContextLifetime
	}
	if opts.MaxDefinitions <= 0 {
		opts.MaxDefinitions = DefaultMaxDefinitions
	}
	if opts.MaxActions <= 0 {
		opts.MaxActions = DefaultMaxActions
	}
	return &Runner{opts: opts}
}

// generation returns the generation an evaluation runs in, starting a fresh one when the
// current one has served its evaluations or holds too many definitions.
func (r *Runner) generation() *generation {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.gen == nil || r.gen.evals.Load() >= int64(r.opts.ContextLifetime) || r.gen.size() >= r.opts.MaxDefinitions {
		r.gen = newGeneration()
	}
	r.gen.evals.Add(1)
	return r.gen
}

func (g *generation) size() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.defs)
}

// load finds step type typ and compiles it. A compile error is returned as a *failure.
func (r *Runner) load(ctx context.Context, gen *generation, namespace, typ string) (*definition, error) {
	if r.opts.Definitions == nil {
		return nil, fmt.Errorf("step type %q: %w (no definitions are configured)", typ, ErrUnknownType)
	}
	src, err := r.opts.Definitions.Template(ctx, namespace, typ)
	if err != nil {
		return nil, err
	}
	d := gen.definition(r.opts.Registry, typ, src)
	if d.err != nil {
		return nil, &failure{reason: v1alpha1.ReasonRendering, msg: fmt.Sprintf("definition %s: %v", typ, d.err)}
	}
	return d, nil
}

// failure is an evaluation that ended the step as failed, with a KubeVela reason.
type failure struct{ reason, msg string }

func (f *failure) Error() string { return f.reason + ": " + f.msg }

func failf(reason, format string, args ...any) *failure {
	return &failure{reason: reason, msg: fmt.Sprintf(format, args...)}
}

// RunStep evaluates a step once: it checks the parameter, runs the actions in field order and,
// when all ran, evaluates the outputs. A bad template, parameter or output is a Failed result.
// It returns an error for a provider error (an engine.TerminalError, wrapped, when trying again
// cannot help, as for an action not in this build), a failure to read the definitions, or the
// end of ctx; the result returned with the error holds the logs and the memo so far.
func (r *Runner) RunStep(ctx context.Context, req *engine.StepRequest) (*engine.StepResult, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	gen := r.generation()
	d, err := r.load(ctx, gen, req.Run.Namespace, req.Step.Type)
	var f *failure
	switch {
	case errors.As(err, &f):
		return &engine.StepResult{Outcome: engine.Failed, Reason: f.reason, Message: f.msg}, nil
	case errors.Is(err, ErrUnknownType):
		return &engine.StepResult{Outcome: engine.Failed, Reason: v1alpha1.ReasonRendering, Message: err.Error()}, nil
	case err != nil:
		return nil, fmt.Errorf("step %s: loading step type %s: %w", req.Step.Name, req.Step.Type, err)
	}
	e := &evaluation{r: r, gen: gen, def: d, req: req, memo: map[string]json.RawMessage{}, done: map[string]bool{}}
	maps.Copy(e.memo, req.Memo)
	released, err := e.releaseSuspend(ctx)
	if !released {
		err = e.run(ctx)
	}
	res := e.result()
	if errors.As(err, &f) {
		res.Outcome, res.Reason, res.Message = engine.Failed, f.reason, f.msg
		return res, nil
	}
	return res, err
}

// outputs evaluates the step's outputs over the evaluated template.
func (e *evaluation) outputs(v cue.Value) error {
	if len(e.req.Step.Outputs) == 0 {
		return nil
	}
	if !e.def.usesContext { // outputs may read it all the same
		v = v.FillPath(contextPath, plain(e.req.Context))
	}
	scope := e.def.rootOf(v)
	e.res.Outputs = make(map[string]json.RawMessage, len(e.req.Step.Outputs))
	for _, o := range e.req.Step.Outputs {
		// Most outputs are paths (response.tag); compiling an expression in the scope of the
		// evaluated template keeps that evaluation in the context, so it is the fallback.
		var val cue.Value
		if p := cue.ParsePath(o.ValueFrom); p.Err() == nil {
			val = scope.LookupPath(p)
		}
		if !val.Exists() {
			e.gen.mu.Lock()
			val = e.gen.ctx.CompileString(o.ValueFrom, cue.Scope(scope), cue.InferBuiltins(true), cue.Filename("valueFrom"))
			e.gen.mu.Unlock()
			e.gen.evals.Add(compileWeight)
		}
		err := val.Validate(cue.Concrete(true))
		var b []byte
		if err == nil {
			b, err = val.MarshalJSON()
		}
		if err != nil {
			return failf(v1alpha1.ReasonOutput, "output %s: valueFrom %q: %v", o.Name, o.ValueFrom, describe(err))
		}
		e.res.Outputs[o.Name] = b
	}
	return nil
}

// plain turns a JSON-like Go value into one that CUE reads as JSON would be: encoding/json
// decodes every number as float64, which CUE would take as a float and not unify with int.
func plain(x any) any {
	switch x := x.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, v := range x {
			out[k] = plain(v)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, v := range x {
			out[i] = plain(v)
		}
		return out
	case float64:
		if x == math.Trunc(x) && math.Abs(x) < 1<<53 {
			return int64(x)
		}
	}
	return x
}
