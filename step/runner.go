// runner.go: the Runner, its Options, and its entries for a step: RunStep and RunQuick load the
// step type and hand over to an evaluation (evaluation.go). Also the CUE contexts' generations
// as the Runner turns them over, and the failure a step ends with.

package step

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"

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
	DefaultEvalTimeout     = 5 * time.Minute
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
	// EvalTimeout bounds one evaluation of a step, its CUE and its actions: past it the step
	// fails (only that step) and its actions' context is cancelled. 0 means
	// DefaultEvalTimeout; a negative value sets none. CUE's evaluator cannot be interrupted,
	// so a definition that never terminates keeps one goroutine busy until it does; the step
	// and its run go on regardless.
	EvalTimeout time.Duration
	// MaxEvaluating is how many evaluations run CUE at once; the others wait their turn, in
	// the order they came. An evaluation lets its turn go while its actions run (their I/O),
	// so this bounds CPU work, not steps in flight. 0 means runtime.GOMAXPROCS(0) in process
	// (more only shares the same cores among more evaluations, each holding its evaluator's
	// memory longer), and with child evaluators that times the messages a child is sent
	// ahead (8): one computes while the next wait there, so that the child need not sleep
	// between them. The wait before an evaluation starts does not count towards EvalTimeout; a
	// wait after one of its actions does. An evaluation past EvalTimeout gives its turn up
	// while its evaluator finishes. Conditions (EvalIf) are short and do not wait.
	MaxEvaluating int
	// InProcess evaluates CUE in this process, as goroutines, instead of in child evaluators:
	// for debugging. Nothing then bounds an evaluation's memory, and an evaluation past
	// EvalTimeout fails its step but its CUE goes on computing until it ends; conditions and
	// checks have no time bound.
	InProcess bool
	// Evaluators bounds the child evaluators, and so the CUE computing at once: processes of
	// this same binary (started again with an environment marker, caught by this package's
	// init) that compute the CUE of one step, condition or check at a time, while the actions
	// run in this process. A child holds the steps parked at their actions meanwhile (up to
	// 64) and computes others. One child per core computes the evaluations; another is started
	// only while one computes a single message for 100 ms or more (a runaway, a big render),
	// and the new evaluations waiting behind that one go to another child (the steps parked
	// in it, after 5 s). A child is reused
	// until a caller goes away while it computes for it or a bound is passed: then it is
	// killed, the steps parked in it start again in another, and another is started for the
	// next evaluation. 0 means DefaultEvaluators().
	Evaluators int
	// EvalMemory bounds the memory of one child evaluator: its live heap (the definitions it
	// keeps compiled and the evaluation under way). Past it the child ends and the evaluation
	// fails, naming the bound; the child's address space is limited too (4×EvalMemory + 4 GiB),
	// a backstop. 0 means DefaultEvalMemory.
	EvalMemory int64
	// ObserveEvaluation, when set, is called after each evaluation of a step's template with
	// the step's type and the time the evaluation spent in CUE: compiling the definition when
	// it was not compiled yet, filling and checking the parameter, walking the template,
	// filling the actions' results back and evaluating the outputs. That is the evaluation's
	// time less the time its actions ran (their I/O, or their wait for a lock) and less the
	// time reading the definition from Definitions took. It is not called when the template
	// was not evaluated: an unknown step type, a definition that could not be read, a resumed
	// builtin suspend released without evaluating the template. It is called from the
	// evaluating goroutine, concurrently for concurrent steps, and should be quick.
	ObserveEvaluation func(typ string, d time.Duration)
	// External runs the actions of the external packages a definition imports (its
	// ExternalPackage with an Endpoint); nil fails them.
	External External
	// ObserveBound, when set, is called when an evaluation ends at a bound or loses its child
	// evaluator: "timeout" when a step's evaluation passed EvalTimeout; "memory" when a child
	// evaluator passed EvalMemory, "signal" when one was ended by a signal it was not sent by
	// this process (the kernel's OOM killer, a cgroup), "crash" when one failed otherwise. It
	// is called from the evaluating goroutine and should be quick.
	ObserveBound func(bound string)
}

// Runner evaluates steps written in CUE. It implements engine.StepRunner and
// engine.ConditionEvaluator, and is safe for concurrent use.
type Runner struct {
	opts  Options
	pool  *pool // nil with Options.InProcess
	turns *turns
	// renders are the Applications' renders made in a child evaluator (Render).
	renders renderCache
	mu      sync.Mutex
	gen     *generation
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
	if opts.EvalTimeout == 0 {
		opts.EvalTimeout = DefaultEvalTimeout
	}
	if opts.MaxEvaluating <= 0 {
		opts.MaxEvaluating = runtime.GOMAXPROCS(0)
		if !opts.InProcess {
			opts.MaxEvaluating *= depth
		}
	}
	r := &Runner{opts: opts, turns: &turns{free: opts.MaxEvaluating}}
	if !opts.InProcess {
		if r.opts.Evaluators <= 0 {
			r.opts.Evaluators = DefaultEvaluators()
		}
		if r.opts.EvalMemory <= 0 {
			r.opts.EvalMemory = DefaultEvalMemory
		}
		r.pool = newPool(r.opts)
	}
	return r
}

// target returns what an evaluation of step type typ, of template src, evaluates: the
// definition compiled here, or with child evaluators its source. A compile error here is a
// *failure; a child reports its own.
func (r *Runner) target(typ, src string) (target, error) {
	if r.pool != nil {
		key := definitionKey(typ, src)
		_, ext := Unbundle(src)
		return target{info: r.pool.info(key), typ: typ, src: src, key: key, ext: ext}, nil
	}
	gen := r.generation()
	d, err := r.compile(gen, typ, src)
	if err != nil {
		return target{}, err
	}
	return target{info: d.info, gen: gen, def: d, typ: typ, src: src, ext: d.ext}, nil
}

// generation returns the generation an evaluation runs in, counted as one of its evaluations.
func (r *Runner) generation() *generation {
	g := r.current()
	g.evals.Add(1)
	return g
}

// current returns the current generation, starting a fresh one when the current one has
// served its evaluations or holds too many definitions.
func (r *Runner) current() *generation {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.gen == nil || r.gen.evals.Load() >= int64(r.opts.ContextLifetime) || r.gen.size() >= r.opts.MaxDefinitions {
		r.gen = newGeneration()
	}
	return r.gen
}

func (g *generation) size() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.defs)
}

// template reads the template of step type typ from the definitions.
func (r *Runner) template(ctx context.Context, namespace, typ string) (string, error) {
	if r.opts.Definitions == nil {
		return "", fmt.Errorf("step type %q: %w (no definitions are configured)", typ, ErrUnknownType)
	}
	return r.opts.Definitions.Template(ctx, namespace, typ)
}

// compile returns the definition of step type typ compiled in gen; a compile error is a *failure.
func (r *Runner) compile(gen *generation, typ, src string) (*definition, error) {
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
	src, err := r.template(ctx, req.Run.Namespace, req.Step.Type)
	began := time.Now() // CUE's time starts once the definition is read
	var t target
	if err == nil {
		t, err = r.target(req.Step.Type, src)
	}
	var f *failure
	switch {
	case errors.As(err, &f):
		r.observe(req.Step.Type, time.Since(began))
		return &engine.StepResult{Outcome: engine.Failed, Reason: f.reason, Message: f.msg}, nil
	case errors.Is(err, ErrUnknownType):
		return &engine.StepResult{Outcome: engine.Failed, Reason: v1alpha1.ReasonRendering, Message: err.Error()}, nil
	case err != nil:
		return nil, fmt.Errorf("step %s: loading step type %s: %w", req.Step.Name, req.Step.Type, err)
	}
	return r.evaluate(ctx, t, req, began, false)
}

// RunQuick implements engine.QuickRunner: it makes the evaluation of req when that needs no
// I/O, its template calling only local actions (Action.Local): a step that sets its message,
// fails or suspends, a resumed suspend. For a step that reaches another action it reports
// false, the evaluation abandoned before that action ran, and the step type is not tried
// again while its definition stays compiled; so it does, with the error, for a step type
// that cannot be loaded.
func (r *Runner) RunQuick(ctx context.Context, req *engine.StepRequest) (*engine.StepResult, bool, error) {
	if err := ctx.Err(); err != nil {
		return nil, false, err
	}
	src, err := r.template(ctx, req.Run.Namespace, req.Step.Type)
	began := time.Now()
	if err != nil {
		return nil, false, err
	}
	t, err := r.target(req.Step.Type, src)
	if err != nil {
		return nil, false, err
	}
	if t.info.notLocal.Load() {
		return nil, false, errNotLocal
	}
	res, err := r.evaluate(ctx, t, req, began, true)
	if errors.Is(err, errNotLocal) || ctx.Err() != nil {
		// Not made: a caller gone (an operation's request) is not the step's error.
		return nil, false, err
	}
	return res, true, err
}

// bound reports an evaluation ended at a bound to Options.ObserveBound.
func (o *Options) bound(kind string) {
	if o.ObserveBound != nil {
		o.ObserveBound(kind)
	}
}

// observe reports the CUE time of an evaluation of a step of type typ to
// Options.ObserveEvaluation.
func (r *Runner) observe(typ string, d time.Duration) {
	if r.opts.ObserveEvaluation != nil {
		r.opts.ObserveEvaluation(typ, max(d, 0))
	}
}
