package step

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"cuelang.org/go/cue"
	cueerrors "cuelang.org/go/cue/errors"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/engine"
)

// Definitions is where step types come from.
type Definitions interface {
	// Template returns the CUE template of step type typ as seen from a run in namespace, or an
	// error wrapping ErrUnknownType.
	Template(ctx context.Context, namespace, typ string) (string, error)
}

// ErrUnknownType is returned, wrapped, for a step type no definition declares.
var ErrUnknownType = errors.New("unknown step type")

// Options configure a Runner. Registry and Definitions are required.
type Options struct {
	Registry    *Registry
	Definitions Definitions
	// ContextLifetime is how many evaluations share one cue.Context before it is replaced;
	// default 20,000.
	ContextLifetime int
	// MaxActions bounds the actions one evaluation runs; default 1,000.
	MaxActions int
}

// Runner evaluates steps: it implements engine.StepRunner and engine.ConditionEvaluator.
type Runner struct {
	opts Options
	mu   sync.Mutex
	gen  *generation
}

// NewRunner returns a Runner.
func NewRunner(opts Options) *Runner {
	if opts.ContextLifetime <= 0 {
		opts.ContextLifetime = 20000
	}
	if opts.MaxActions <= 0 {
		opts.MaxActions = 1000
	}
	return &Runner{opts: opts}
}

// generation returns the current cue.Context generation, starting a new one when it is used up.
func (r *Runner) generation() *generation {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.gen == nil || r.gen.uses.Add(1) > int64(r.opts.ContextLifetime) {
		r.gen = newGeneration()
		r.gen.uses.Add(1)
	}
	return r.gen
}

var (
	parameterPath = cue.MakePath(cue.Str("parameter"))
	contextPath   = cue.MakePath(cue.Str("context"))
	doPath        = cue.MakePath(cue.Def("#do"))
	providerPath  = cue.MakePath(cue.Def("#provider"))
	paramsLabel   = cue.Str("$params")
	returnsLabel  = cue.Str("$returns")
)

func failed(reason, message string) *engine.StepResult {
	return &engine.StepResult{Outcome: engine.Failed, Reason: reason, Message: message}
}

// template loads and compiles a step type.
func (r *Runner) template(ctx context.Context, gen *generation, namespace, typ string) (cue.Value, error) {
	src, err := r.opts.Definitions.Template(ctx, namespace, typ)
	if err != nil {
		return cue.Value{}, err
	}
	v, err := gen.compile(r.opts.Registry, src)
	if err != nil {
		return cue.Value{}, fmt.Errorf("definition %s: %s", typ, describe(err))
	}
	return v, nil
}

// RunStep evaluates a step once: it checks the parameter, runs the actions in field order and,
// when they all ran, evaluates the outputs.
func (r *Runner) RunStep(ctx context.Context, req *engine.StepRequest) (*engine.StepResult, error) {
	gen := r.generation()
	base, err := r.template(ctx, gen, req.Run.Namespace, req.Step.Type)
	if err != nil {
		if errors.Is(err, ErrUnknownType) || !isStoreError(err) {
			return failed(v1alpha1.ReasonRendering, err.Error()), nil
		}
		return nil, err
	}
	v := base.FillPath(contextPath, asJSON(req.Context)).FillPath(parameterPath, asJSON(req.Properties))
	if msg := checkParameter(v, nil); msg != "" {
		return failed(v1alpha1.ReasonParameter, msg), nil
	}
	ev := &evaluation{req: req, memo: map[string]json.RawMessage{}, res: &engine.StepResult{Outcome: engine.Succeeded}}
	for k, m := range req.Memo {
		ev.memo[k] = m
	}
	v, err = ev.walk(ctx, r.opts.Registry, r.opts.MaxActions, v)
	ev.res.Memo = ev.memo
	if err != nil {
		var te *engine.TerminalError
		if errors.As(err, &te) || ctx.Err() != nil {
			return ev.res, err
		}
		return ev.res, err
	}
	if ev.stopped {
		return ev.res, nil
	}
	if len(req.Step.Outputs) > 0 {
		ev.res.Outputs = map[string]json.RawMessage{}
	}
	for _, o := range req.Step.Outputs {
		val := gen.ctx.CompileString(o.ValueFrom, cue.Scope(v), cue.InferBuiltins(true))
		b, err := val.MarshalJSON()
		if err != nil {
			return failed(v1alpha1.ReasonOutput, fmt.Sprintf("output %s (valueFrom %q): %s", o.Name, o.ValueFrom, describe(err))), nil
		}
		ev.res.Outputs[o.Name] = b
	}
	return ev.res, nil
}

// asJSON turns a JSON-like Go value into JSON for filling into CUE, so that whole numbers stay
// integers (encoding/json decodes every number as float64).
func asJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		return json.RawMessage("null")
	}
	return b
}

// isStoreError tells a failure to read definitions (worth retrying) from a bad definition.
func isStoreError(err error) bool {
	return !strings.HasPrefix(err.Error(), "definition ")
}

// checkParameter reports what in the parameter is missing or wrong, naming each path; paths
// under skip are taken as given (they are filled by inputs at run time).
func checkParameter(v cue.Value, skip []string) string {
	p := v.LookupPath(parameterPath)
	if !p.Exists() {
		return ""
	}
	err := p.Validate(cue.Concrete(true))
	if err == nil {
		return ""
	}
	var msgs []string
	seen := map[string]bool{}
	for _, e := range cueerrors.Errors(err) {
		path := strings.Join(e.Path(), ".")
		if underAny(path, skip) {
			continue
		}
		format, args := e.Msg()
		m := path + ": " + fmt.Sprintf(format, args...)
		if !seen[m] {
			seen[m] = true
			msgs = append(msgs, m)
		}
	}
	return strings.Join(msgs, "; ")
}

func underAny(path string, prefixes []string) bool {
	for _, p := range prefixes {
		if path == p || strings.HasPrefix(path, p+".") {
			return true
		}
	}
	return false
}

// describe renders a CUE error with its positions, one problem per line.
func describe(err error) string {
	return strings.TrimSpace(cueerrors.Details(err, nil))
}

// EvalIf evaluates a step's `if` over scope to a concrete boolean.
func (r *Runner) EvalIf(_ context.Context, expr string, scope map[string]any) (bool, error) {
	gen := r.generation()
	sv := gen.ctx.Encode(asJSON(scope))
	val := gen.ctx.CompileString(expr, cue.Scope(sv), cue.InferBuiltins(true))
	if err := val.Err(); err != nil {
		return false, errors.New(describe(err))
	}
	b, err := val.Bool()
	if err != nil {
		return false, fmt.Errorf("not a concrete boolean: %s", describe(err))
	}
	return b, nil
}

// Check compiles a template as apply and vet do.
func (r *Runner) Check(_ context.Context, typ, template string) error {
	if _, err := r.generation().compile(r.opts.Registry, template); err != nil {
		return errors.New(describe(err))
	}
	return nil
}

// CheckProperties checks a step's properties against its type's parameter without running
// anything; parameters under the keys in filled come from inputs and are taken as given.
func (r *Runner) CheckProperties(ctx context.Context, namespace, typ string, props map[string]any, filled []string) error {
	gen := r.generation()
	base, err := r.template(ctx, gen, namespace, typ)
	if err != nil {
		return err
	}
	skip := make([]string, len(filled))
	for i, f := range filled {
		skip[i] = "parameter." + f
	}
	if msg := checkParameter(base.FillPath(parameterPath, asJSON(props)), skip); msg != "" {
		return errors.New(msg)
	}
	return nil
}

// Parameter describes one field of a step type's parameter.
type Parameter struct {
	Name     string `json:"name"`
	Type     string `json:"type"`
	Default  string `json:"default,omitempty"`
	Required bool   `json:"required"`
	Usage    string `json:"usage,omitempty"`
}

// Parameters describes a step type's parameter, for `stepflow def show`.
func (r *Runner) Parameters(ctx context.Context, namespace, typ string) ([]Parameter, error) {
	gen := r.generation()
	base, err := r.template(ctx, gen, namespace, typ)
	if err != nil {
		return nil, err
	}
	p := base.LookupPath(parameterPath)
	if !p.Exists() {
		return nil, nil
	}
	it, err := p.Fields(cue.Optional(true))
	if err != nil {
		return nil, err
	}
	var out []Parameter
	for it.Next() {
		fv := it.Value()
		sel := it.Selector()
		par := Parameter{Name: sel.Unquoted(), Type: kindName(fv)}
		optional := sel.ConstraintType() == cue.OptionalConstraint
		if d, ok := fv.Default(); ok && d.IsConcrete() {
			if b, err := d.MarshalJSON(); err == nil {
				par.Default = string(b)
			}
		}
		par.Required = !optional && par.Default == "" && !fv.IsConcrete()
		par.Usage = usage(fv)
		out = append(out, par)
	}
	return out, nil
}

func kindName(v cue.Value) string {
	k := v.IncompleteKind()
	if k == cue.TopKind {
		return "any"
	}
	return strings.ReplaceAll(k.String(), "|", " | ")
}

// usage extracts the text of a `// +usage=...` comment.
func usage(v cue.Value) string {
	for _, cg := range v.Doc() {
		for _, line := range strings.Split(cg.Text(), "\n") {
			if _, after, ok := strings.Cut(line, "+usage="); ok {
				return strings.TrimSpace(after)
			}
		}
	}
	return ""
}

// evaluation is one evaluation of a step: what it ran and how it ended. It is the Session the
// actions it runs see.
type evaluation struct {
	req     *engine.StepRequest
	res     *engine.StepResult
	memo    map[string]json.RawMessage
	stopped bool
	// current is the path of the action running.
	current string
}

// pending is an action found by the walk, ready to run.
type pending struct {
	value  cue.Value
	key    string
	action *Action
	legacy bool
	params map[string]any
}

// walk runs the template's actions in field order until all ran or one ends the evaluation.
func (ev *evaluation) walk(ctx context.Context, reg *Registry, maxActions int, v cue.Value) (cue.Value, error) {
	done := map[string]bool{}
	for n := 0; ; n++ {
		if err := ctx.Err(); err != nil {
			return v, err
		}
		if n >= maxActions {
			return v, engine.Terminal(v1alpha1.ReasonRendering, fmt.Errorf("more than %d actions in one evaluation", maxActions))
		}
		next, incomplete, err := findAction(reg, v, done)
		if err != nil {
			return v, err
		}
		if next == nil {
			if incomplete != nil {
				ev.stop(engine.Failed, v1alpha1.ReasonRendering, incomplete.Error())
				return v, nil
			}
			if err := v.Validate(); err != nil {
				ev.stop(engine.Failed, v1alpha1.ReasonRendering, describe(err))
			}
			return v, nil
		}
		done[next.key] = true
		v, err = ev.run(ctx, v, next)
		if err != nil || ev.stopped {
			return v, err
		}
	}
}

// findAction returns the first action not yet run whose parameters are complete, depth first in
// field order; incomplete is the first action passed over because its parameters were not.
func findAction(reg *Registry, root cue.Value, done map[string]bool) (next *pending, incomplete error, err error) {
	var visit func(s cue.Value, top bool) *pending
	visit = func(s cue.Value, top bool) *pending {
		for _, f := range orderedFields(s) {
			name := f.sel.String()
			if top && (name == "parameter" || name == "context") {
				continue
			}
			fv := f.value
			if fv.LookupPath(doPath).Exists() && fv.LookupPath(providerPath).Exists() {
				key := fv.Path().String()
				if done[key] {
					continue
				}
				p, perr := actionAt(reg, fv, key)
				if perr != nil {
					var te *engine.TerminalError
					if errors.As(perr, &te) {
						err = perr
						return nil
					}
					if incomplete == nil {
						incomplete = perr
					}
					continue
				}
				return p
			}
			if fv.IncompleteKind() == cue.StructKind {
				if p := visit(fv, false); p != nil || err != nil {
					return p
				}
			}
		}
		return nil
	}
	next = visit(root, true)
	return next, incomplete, err
}

type field struct {
	sel   cue.Selector
	value cue.Value
	order int64
}

// orderedFields lists a struct's regular fields in order, honouring @step(n) attributes.
func orderedFields(s cue.Value) []field {
	it, err := s.Fields()
	if err != nil {
		return nil
	}
	var fields []field
	attrs := false
	for it.Next() {
		f := field{sel: it.Selector(), value: it.Value()}
		if a := f.value.Attribute("step"); a.Err() == nil {
			if n, err := a.Int(0); err == nil {
				f.order, attrs = n, true
			}
		}
		fields = append(fields, f)
	}
	if attrs {
		sort.SliceStable(fields, func(i, j int) bool { return fields[i].order < fields[j].order })
	}
	return fields
}

// actionAt reads the action at fv: which Go action it calls and its parameters. An error that is
// not terminal means the parameters are not complete yet.
func actionAt(reg *Registry, fv cue.Value, key string) (*pending, error) {
	provider, _ := fv.LookupPath(providerPath).String()
	do, _ := fv.LookupPath(doPath).String()
	act, ok := reg.Action(provider, do)
	if !ok {
		return nil, engine.Terminal(v1alpha1.ReasonRendering, fmt.Errorf("%s: action %s.%s is not available in this build", key, provider, do))
	}
	p := &pending{value: fv, key: key, action: act}
	params := map[string]any{}
	if pv := fv.LookupPath(cue.MakePath(paramsLabel)); pv.Exists() {
		if err := pv.Validate(cue.Concrete(true)); err != nil {
			return nil, fmt.Errorf("%s: %s", key, describe(err))
		}
		if err := pv.Decode(&params); err != nil {
			return nil, fmt.Errorf("%s: %s", key, describe(err))
		}
		p.params = params
		return p, nil
	}
	p.legacy = true
	it, err := fv.Fields()
	if err != nil {
		return nil, fmt.Errorf("%s: %s", key, describe(err))
	}
	for it.Next() {
		name := it.Selector().Unquoted()
		if contains(act.LegacyOutputs, name) {
			continue
		}
		f := it.Value()
		if err := f.Validate(cue.Concrete(true)); err != nil {
			return nil, fmt.Errorf("%s: %s", key, describe(err))
		}
		var x any
		if err := f.Decode(&x); err != nil {
			return nil, fmt.Errorf("%s: %s", key, describe(err))
		}
		params[name] = x
	}
	p.params = params
	return p, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// run calls one action, or replays its memoized result, and fills the result back.
func (ev *evaluation) run(ctx context.Context, v cue.Value, p *pending) (cue.Value, error) {
	act := p.action
	name := act.Provider + "." + act.Do
	side := act.SideEffect != nil && act.SideEffect(p.params)
	var result json.RawMessage
	start := time.Now()
	if raw, ok := ev.memo[p.key]; side && ok {
		result = raw
		ev.log(name, p.key, 0, "replayed")
	} else {
		ev.current = p.key
		out, err := act.Run(ctx, &Call{Params: p.params, Path: p.key, Run: ev.req.Run, Step: ev.req.Step.Name, Session: ev})
		took := time.Since(start)
		if err != nil {
			ev.log(name, p.key, took, "error: "+err.Error())
			return v, fmt.Errorf("%s (%s): %w", p.key, name, err)
		}
		ev.log(name, p.key, took, "ok")
		result = json.RawMessage("null")
		if out != nil {
			if result, err = json.Marshal(out); err != nil {
				return v, engine.Terminal(v1alpha1.ReasonExecute, fmt.Errorf("%s: result: %w", p.key, err))
			}
		}
		if side {
			ev.memo[p.key] = result
		}
	}
	if ev.stopped || string(result) == "null" {
		return v, nil
	}
	base := p.value.Path().Selectors()
	switch {
	case !p.legacy:
		v = v.FillPath(cue.MakePath(append(base, returnsLabel)...), result)
	case act.LegacyResult != "":
		v = v.FillPath(cue.MakePath(append(base, cue.Str(act.LegacyResult))...), result)
	default:
		var m map[string]json.RawMessage
		if err := json.Unmarshal(result, &m); err != nil {
			return v, engine.Terminal(v1alpha1.ReasonExecute, fmt.Errorf("%s: result is not an object", p.key))
		}
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			v = v.FillPath(cue.MakePath(append(base, cue.Str(k))...), m[k])
		}
	}
	return v, nil
}

func (ev *evaluation) log(action, path string, took time.Duration, outcome string) {
	ev.res.Logs = append(ev.res.Logs, engine.LogEntry{
		Time: ev.req.Now.Add(time.Duration(len(ev.res.Logs))), Step: ev.req.Step.Name,
		Action: action + " " + path, Duration: took, Outcome: outcome,
	})
}

func (ev *evaluation) stop(o engine.Outcome, reason, message string) {
	ev.stopped = true
	ev.res.Outcome = o
	ev.res.Reason = reason
	ev.res.Message = message
}

// Now implements Session.
func (ev *evaluation) Now() time.Time { return ev.req.Now }

// Wait implements Session.
func (ev *evaluation) Wait(message string) { ev.stop(engine.Waiting, v1alpha1.ReasonWait, message) }

// Fail implements Session.
func (ev *evaluation) Fail(message string) { ev.stop(engine.Failed, v1alpha1.ReasonAction, message) }

// Break implements Session.
func (ev *evaluation) Break(message string) { ev.stop(engine.Broke, "", message) }

// Message implements Session.
func (ev *evaluation) Message(message string) { ev.res.Message = message }

type suspendState struct {
	Until    time.Time `json:"until,omitzero"`
	Released bool      `json:"released,omitempty"`
}

// Suspend implements Session: the first time a suspend is reached it holds the step; a resume
// or the end of its duration releases it, and that is remembered for the attempt.
func (ev *evaluation) Suspend(d time.Duration, message string) bool {
	key := ev.current + "#suspend"
	var st suspendState
	raw, seen := ev.memo[key]
	if seen {
		_ = json.Unmarshal(raw, &st)
	}
	if seen && !st.Released && (ev.req.Resumed || (!st.Until.IsZero() && !ev.req.Now.Before(st.Until))) {
		st.Released = true
	}
	if !seen && d > 0 {
		st.Until = ev.req.Now.Add(d)
	}
	b, _ := json.Marshal(st)
	ev.memo[key] = b
	if st.Released {
		return true
	}
	ev.stop(engine.Suspended, v1alpha1.ReasonSuspend, message)
	ev.res.SuspendUntil = st.Until
	return false
}

// Var implements Session.
func (ev *evaluation) Var(name string) (json.RawMessage, bool) {
	if v, ok := ev.res.VarWrites[name]; ok {
		return v, true
	}
	v, ok := ev.req.Vars[name]
	return v, ok
}

// SetVar implements Session.
func (ev *evaluation) SetVar(name string, value json.RawMessage) {
	if ev.res.VarWrites == nil {
		ev.res.VarWrites = map[string]json.RawMessage{}
	}
	ev.res.VarWrites[name] = value
}

// Log implements Session.
func (ev *evaluation) Log(level int, message string, data any) {
	e := engine.LogEntry{Time: ev.req.Now, Step: ev.req.Step.Name, Level: level, Message: message, Action: "log"}
	if data != nil {
		if b, err := json.Marshal(data); err == nil {
			e.Data = b
		}
	}
	ev.res.Logs = append(ev.res.Logs, e)
}
