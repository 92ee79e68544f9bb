// evaluation.go: one evaluation of a step, in the order it goes: the Runner starts it (evaluate,
// bounded), run fills the parameter and context and checks them, next finds the action to run
// (its walk over the template is in walk.go), call runs it and fills its result back, outputs
// evaluates the outputs; then what an action may do to the evaluation (Session), and the
// release of a lone suspend without evaluating the template.

package step

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"cuelang.org/go/cue"
	cueerrors "cuelang.org/go/cue/errors"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/redact"
)

// evaluation is one evaluation of a step, as the Runner sees it: the Session of the actions it
// runs, with the memo, the log and the outcome. Its CUE half (cueEval) runs in the Runner's
// process or in a child evaluator (evaluators.go), calling the actions back through act.
type evaluation struct {
	r   *Runner
	t   target
	req *engine.StepRequest
	res engine.StepResult

	memo    map[string]json.RawMessage // the attempt's memo, with what this evaluation added
	stopped bool                       // an action ended the evaluation
	current string                     // the path of the action running
	params  json.RawMessage            // and its parameters' JSON
	report  *Report                    // what the action running said of itself (Session.Report)
	start   time.Time
	actions time.Duration // the time the actions run in this evaluation took
	waited  time.Duration // and the time it waited for its turns (Runner.turns)
	turn    *hold         // its claim on a turn at CUE
	child   *child        // the child evaluator taken for it, until pool.step takes it over
	quick   bool          // made in the engine's worker: it ends at an action that is not local
}

// target is the definition an evaluation evaluates: compiled in this process (gen and def), or
// its type and source, which a child evaluator compiles (key is their hash).
type target struct {
	info *defInfo
	gen  *generation
	def  *definition
	typ  string
	src  string
	key  [32]byte
	// ext are the external packages src came with (Bundle), whose actions the evaluation may run.
	ext []ExternalPackage
}

// evaluate evaluates req with its definition t; began is when its CUE time started. A quick
// evaluation (RunQuick) returns errNotLocal, and nothing else, when the template calls an
// action that is not local.
func (r *Runner) evaluate(ctx context.Context, t target, req *engine.StepRequest, began time.Time, quick bool) (*engine.StepResult, error) {
	e := &evaluation{r: r, t: t, req: req, quick: quick, memo: map[string]json.RawMessage{}, turn: &hold{t: r.turns}}
	maps.Copy(e.memo, req.Memo)
	released, err := e.releaseSuspend(ctx)
	if !released {
		waitFrom := time.Now()
		// A quick evaluation holds the engine's worker: it goes before evaluations starting.
		if err := e.turn.take(ctx, quick); err != nil {
			return nil, err
		}
		// With its turn, so that the pool sees only the evaluations about to compute: a
		// child evaluator's start is not the evaluation's time.
		if t.def == nil {
			if e.child, err = r.pool.get(ctx); err != nil {
				e.turn.give()
				return nil, err
			}
		}
		e.waited += time.Since(waitFrom) // e.run gives the turn back
		var timedOut bool
		if timedOut, err = r.bounded(ctx, e); timedOut {
			r.opts.bound("timeout")
			return &engine.StepResult{Outcome: engine.Failed, Reason: v1alpha1.ReasonExecute, Message: r.timeLimit("the step")}, nil
		}
		if errors.Is(err, errNotLocal) {
			return nil, err
		}
		r.observe(req.Step.Type, time.Since(began)-e.actions-e.waited)
	}
	res := e.result()
	if f, ok := errors.AsType[*failure](err); ok {
		res.Outcome, res.Reason, res.Message = engine.Failed, f.reason, f.msg
		return res, nil
	}
	return res, err
}

// errNotLocal ends a quick evaluation (RunQuick) at an action that is not local.
var errNotLocal = errors.New("the step calls an action that is not local")

// errEvalTimeout is the cause of an evaluation's context ending at Options.EvalTimeout.
var errEvalTimeout = errors.New("the evaluation's time limit passed")

// bounded runs the evaluation within Options.EvalTimeout. When the time passes first it
// returns timedOut and leaves the evaluation to end on its own with its context cancelled;
// the caller must not read e then.
func (r *Runner) bounded(ctx context.Context, e *evaluation) (timedOut bool, err error) {
	if r.opts.EvalTimeout < 0 {
		return false, e.run(ctx)
	}
	ctx, cancel := context.WithTimeoutCause(ctx, r.opts.EvalTimeout, errEvalTimeout)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- e.run(ctx) }()
	select {
	case err := <-done:
		if errors.Is(context.Cause(ctx), errEvalTimeout) {
			return true, nil // a child evaluator killed at the limit
		}
		return false, err
	case <-ctx.Done():
		if errors.Is(context.Cause(ctx), errEvalTimeout) {
			e.turn.abandon()
			return true, nil
		}
		return false, <-done // cancelled by the engine: the actions see it and return
	}
}

// timeLimit is the message of an evaluation of what that ran past Options.EvalTimeout.
func (r *Runner) timeLimit(what string) string {
	return fmt.Sprintf("evaluating %s took longer than %s, the limit of one evaluation (step.Options.EvalTimeout, --eval-timeout)", what, r.opts.EvalTimeout)
}

// run evaluates the template, in this process or in a child evaluator. A *failure ends the
// step as failed; another error is returned from RunStep.
func (e *evaluation) run(ctx context.Context) error {
	defer e.turn.give()
	defer func() {
		if e.child != nil { // not taken by pool.step
			e.r.pool.put(e.child, true, true)
		}
	}()
	if e.quick && e.t.info.notLocal.Load() {
		return errNotLocal // another quick evaluation found out while this one waited its turn
	}
	e.start = time.Now()
	if e.t.def == nil {
		return e.r.pool.step(ctx, e)
	}
	c := &cueEval{r: e.r, gen: e.t.gen, def: e.t.def, props: e.req.Properties, context: e.req.Context, wants: e.req.Step.Outputs, act: e}
	err := c.run(ctx)
	e.res.Outputs = c.results
	return err
}

// cueEval is the CUE half of an evaluation of a step: it fills the template, finds the actions,
// has them run by act and fills their results back, then evaluates the outputs. It runs where
// the CUE runs: in the Runner's process, or in a child evaluator, whose act calls the Runner.
type cueEval struct {
	r       *Runner
	gen     *generation
	def     *definition
	props   json.RawMessage
	context map[string]any
	wants   v1alpha1.StepOutputs // the step's outputs
	act     actor

	done    map[string]bool // the actions run in this evaluation, by path
	fills   int             // results filled in since the template was validated
	results map[string]json.RawMessage
}

// actor runs the actions of an evaluation: the evaluation itself, or in a child evaluator its
// messages to the Runner.
type actor interface {
	// act runs an action (or replays its memo) and says what to fill back.
	act(ctx context.Context, c *actionCall) (acted, error)
	// sensitive marks values as secrets.
	sensitive(values ...string)
}

// actionCall is an action the walk found: its path, its action and its parameters' JSON.
type actionCall struct {
	Path       string          `json:"path"`
	Provider   string          `json:"provider"`
	Do         string          `json:"do"`
	Params     json.RawMessage `json:"params"`
	Incomplete string          `json:"incomplete,omitempty"` // why some parameters were left out
	params     map[string]any  // Params decoded, when the walk decoded them
}

// acted is what an action did to the evaluation: the result to fill back (none when nil or
// null), whether it ended the evaluation, and whether the outputs are still to be evaluated,
// not strictly (a step that failed or waits).
type acted struct {
	Result  json.RawMessage `json:"result,omitempty"`
	Stopped bool            `json:"stopped,omitempty"`
	Outputs bool            `json:"outputs,omitempty"`
}

// run evaluates the template: parameter first, then the actions, then the outputs.
func (e *cueEval) run(ctx context.Context) error {
	e.done = map[string]bool{}
	props, err := readProperties(e.props)
	if err != nil {
		return failf(v1alpha1.ReasonParameter, "properties: %v", err)
	}
	pp := e.def.paramPath()
	v := e.def.fill(props, e.context)
	// Before the check: its messages may quote the values.
	e.markSensitive(v)
	if err := checkParameter(v, pp, props, nil); err != nil {
		return failf(v1alpha1.ReasonParameter, "%v", err)
	}
	// An error that needs the parameter to show fails before any action runs, unless an
	// action's result may resolve it: a reference to a field of what an apply returns
	// (KubeVela's apply-app waits on app.apply.value.metadata.generation), which a closed
	// struct reports as undefined until the result is filled. KubeVela evaluates in order and
	// meets such a reference only after the action ran; so does the walk, which fails at an
	// error where it reaches it, and the whole is validated again at the end.
	invalid := false
	if err := v.Validate(); err != nil {
		if !onlyUndefinedFields(err) {
			return failf(v1alpha1.ReasonRendering, "%v", describe(err))
		}
		invalid = true
	}
	for n := 0; ; n++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		s, last, err := e.next(v)
		if err != nil {
			return err
		}
		if s == nil {
			break
		}
		if n == e.r.opts.MaxActions {
			return failf(v1alpha1.ReasonRendering, "more than %d actions in one evaluation", e.r.opts.MaxActions)
		}
		fills := e.fills
		var out acted
		v, out, err = e.call(ctx, v, s)
		if e.fills > fills {
			// A result may have made a marked field concrete: marked before any action
			// that could show it runs.
			e.markSensitive(v)
		}
		if err != nil || out.Stopped {
			if err == nil && out.Outputs {
				// KubeVela takes the outputs of a step that failed or timed out, so that a
				// later step can say why; the engine keeps a waiting step's for its timeout.
				_ = e.outputs(v, false) // not strict: what cannot be evaluated is null, never an error
			}
			return err
		}
		if last && e.fills == fills {
			break // nothing changed and nothing else was pending: another pass would find nothing
		}
	}
	if e.fills > 0 || invalid {
		if err := v.Validate(); err != nil {
			return failf(v1alpha1.ReasonRendering, "%v", describe(err))
		}
	}
	return e.outputs(v, true)
}

// next finds the action to run: the first, depth first in field order, that has not run and
// whose parameters are concrete. When there is none but some action or group is not complete,
// the first incomplete action that accepts it runs; otherwise the evaluation fails naming what
// is incomplete. Nil means every action ran. last says that nothing else was pending.
func (e *cueEval) next(v cue.Value) (s *site, last bool, err error) {
	w := &walker{e: e}
	w.visit(e.def.rootOf(v), true)
	switch {
	case w.err != nil:
		return nil, false, w.err
	case w.ready != nil:
		return w.ready, w.others == 0 && len(w.blocked) == 0, nil
	}
	for _, s := range w.blocked {
		if s.action != nil && s.action.AcceptIncomplete {
			if err := s.readParams(true); err != nil {
				return nil, false, err
			}
			return s, false, nil
		}
	}
	if len(w.blocked) > 0 {
		b := w.blocked[0]
		return nil, false, failf(v1alpha1.ReasonRendering, "%s is incomplete: %v", b.key, describe(b.incomplete))
	}
	return nil, true, nil
}

// call has the action at s run (act) and fills its result back into the template.
func (e *cueEval) call(ctx context.Context, v cue.Value, s *site) (cue.Value, acted, error) {
	e.done[s.key] = true
	out, err := e.act.act(ctx, s.call())
	if err != nil || out.Stopped || out.Result == nil || string(out.Result) == "null" {
		return v, out, err
	}
	path := s.value.Path()
	at := path
	switch {
	case !s.legacy:
		at = cue.MakePath(append(path.Selectors(), returnsSel)...)
	case s.action.LegacyResult != "":
		at = cue.MakePath(append(path.Selectors(), cue.Str(s.action.LegacyResult))...)
	}
	v = v.FillPath(at, out.Result)
	e.fills++
	if err := v.LookupPath(path).Validate(); err != nil {
		name := s.action.Provider + "." + s.action.Do
		return v, out, failf(v1alpha1.ReasonRendering, "%s: the result of %s does not fit the definition: %v", s.key, name, describe(err))
	}
	return v, out, nil
}

// act runs an action, or replays the result a side-effecting one had earlier in the attempt:
// the evaluation is the actor of its CUE half.
func (e *evaluation) act(ctx context.Context, c *actionCall) (acted, error) {
	a, ok := e.r.opts.Registry.Action(c.Provider, c.Do)
	if !ok {
		a = externalAction(e.t.ext, c.Provider, c.Do, e.r.opts.External)
		ok = a != nil
	}
	if !ok || a.Run == nil {
		return acted{}, engine.Terminal(v1alpha1.ReasonExecute, fmt.Errorf("%s: action %s.%s is not available in this build", c.Path, c.Provider, c.Do))
	}
	params := c.params
	if params == nil {
		if err := json.Unmarshal(c.Params, &params); err != nil || params == nil {
			return acted{}, failf(v1alpha1.ReasonRendering, "%s: parameters: not a JSON object", c.Path)
		}
	}
	if e.quick && (a.Local == nil || !a.Local(params)) {
		e.t.info.notLocal.Store(true)
		return acted{}, errNotLocal
	}
	name := a.Provider + "." + a.Do
	// An idempotent action runs again (a stored memo of it, from before it was marked so, is
	// not replayed); other side effects run once per try.
	sideEffect := !a.Idempotent && a.SideEffect != nil && a.SideEffect(params)
	result, replayed := e.memo[c.Path]
	if !sideEffect || !replayed {
		e.current, e.params = c.Path, c.Params
		back := e.turn.give() // others evaluate while the action waits on its I/O
		began := time.Now()
		out, err := a.Run(ctx, &Call{Params: params, raw: c.Params, Path: c.Path, Run: e.req.Run, Step: e.req.Step.Name, Execution: e.req.Execution, Context: e.req.Context, Session: e, Runner: e.r})
		took := time.Since(began)
		e.actions += took
		if err == nil && out != nil {
			if result, err = json.Marshal(out); err != nil {
				err = engine.Terminal(v1alpha1.ReasonExecute, fmt.Errorf("encoding the result: %w", err))
			}
		}
		if err != nil {
			e.logAction(name, c, took, "failed", err)
			return acted{}, fmt.Errorf("step %s: %s (%s): %w", e.req.Step.Name, c.Path, name, err)
		}
		e.logAction(name, c, took, "ok", nil)
		if out == nil {
			result = nil
		}
		if sideEffect {
			e.memo[c.Path] = orNull(result)
		} else if a.Idempotent {
			delete(e.memo, c.Path) // a memo kept from before it was idempotent is stale now
		}
		if back {
			waitFrom := time.Now()
			if err := e.turn.take(ctx, true); err != nil {
				return acted{}, err
			}
			e.waited += time.Since(waitFrom)
		}
	} else {
		e.logAction(name, c, 0, "replayed", nil)
	}
	if e.stopped {
		return acted{Stopped: true, Outputs: e.res.Outcome == engine.Failed || e.res.Outcome == engine.Waiting}, nil
	}
	return acted{Result: result}, nil
}

// sensitive implements actor.
func (e *evaluation) sensitive(values ...string) { e.Sensitive(values...) }

func orNull(b json.RawMessage) json.RawMessage {
	if b == nil {
		return json.RawMessage("null")
	}
	return b
}

// logAction adds the line of an action that ran (or was replayed) to the log: its path in the
// definition, what it reported of itself (Session.Report), and the error it failed with.
func (e *evaluation) logAction(name string, c *actionCall, took time.Duration, outcome string, err error) {
	rep := e.report
	e.report = nil
	msg := c.Path
	entry := engine.LogEntry{Time: e.now(), Step: e.req.Step.Name, Severity: engine.SeverityInfo, Action: name, Duration: took, Outcome: outcome}
	if rep != nil {
		if rep.Summary != "" {
			msg += ": " + rep.Summary
		}
		if rep.Severity != "" {
			entry.Severity = rep.Severity
		}
		entry.Data = logData(rep.Data)
	}
	if c.Incomplete != "" {
		msg += " (run with incomplete parameters: " + c.Incomplete + ")"
	}
	if err != nil {
		entry.Severity = engine.SeverityError
		msg += ": " + err.Error()
	}
	entry.Message = msg
	e.res.Logs = append(e.res.Logs, entry)
}

// logData encodes the data of a log line; nil for none.
func logData(data any) json.RawMessage {
	if data == nil {
		return nil
	}
	b, err := json.Marshal(data)
	if err != nil {
		b, _ = json.Marshal(map[string]string{"error": "data cannot be encoded: " + err.Error()})
	}
	return b
}

// now is the engine's time at the start of the evaluation plus the time it has taken.
func (e *evaluation) now() time.Time { return e.req.Now.Add(time.Since(e.start)) }

// outputs evaluates the step's outputs over the evaluated template. Strict, an output that
// cannot be evaluated fails the step; otherwise (a step that failed or waits) it is null, as
// KubeVela stores it.
func (e *cueEval) outputs(v cue.Value, strict bool) error {
	if len(e.wants) == 0 {
		return nil
	}
	if !e.def.usesContext { // outputs may read it all the same
		v = v.FillPath(contextPath, plain(e.context))
	}
	scope := e.def.rootOf(v)
	e.results = make(map[string]json.RawMessage, len(e.wants))
	for _, o := range e.wants {
		// Most outputs are paths (response.tag); compiling an expression in the scope of the
		// evaluated template keeps that evaluation in the context, so it is the fallback.
		var val cue.Value
		if p := cue.ParsePath(o.ValueFrom); p.Err() == nil {
			val = lookupOutput(scope, p)
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
		switch {
		case err != nil && strict:
			return failf(v1alpha1.ReasonOutput, "output %s: valueFrom %q: %v", o.Name, o.ValueFrom, describe(err))
		case err != nil:
			b = json.RawMessage("null")
		}
		e.results[o.Name] = b
	}
	return nil
}

// lookupOutput finds the value at p in the evaluated template. A path written against an
// action's legacy shape (output.value.data) finds what the action returned under $returns
// (output.$returns.value.data), as valueFrom does in KubeVela on definitions of either form.
func lookupOutput(scope cue.Value, p cue.Path) cue.Value {
	if v := scope.LookupPath(p); v.Exists() {
		return v
	}
	sels := p.Selectors()
	for i := 1; i < len(sels); i++ {
		if sels[i] == returnsSel {
			break
		}
		at := append(slices.Clone(sels[:i]), returnsSel)
		if scope.LookupPath(cue.MakePath(at...)).Exists() {
			return scope.LookupPath(cue.MakePath(append(at, sels[i:]...)...))
		}
	}
	return cue.Value{}
}

func (e *evaluation) result() *engine.StepResult {
	e.res.Memo = e.memo
	return &e.res
}

// markSensitive marks the values of the template's fields that carry @sensitive() and are
// concrete in v, the template as filled so far. Templates without the attribute cost nothing.
func (e *cueEval) markSensitive(v cue.Value) {
	if e.def.sensitive {
		e.act.sensitive(sensitiveValues(e.def.rootOf(v))...)
	}
}

// Now implements Session: the engine clock's time at the start of the evaluation.
func (e *evaluation) Now() time.Time { return e.req.Now }

// Wait implements Session.
func (e *evaluation) Wait(message string) { e.stop(engine.Waiting, v1alpha1.ReasonWait, message) }

// Fail implements Session.
func (e *evaluation) Fail(message string) {
	if message == "" {
		message = "failed by the action at " + e.current
	}
	e.stop(engine.Failed, v1alpha1.ReasonAction, message)
}

// Break implements Session.
func (e *evaluation) Break(message string) { e.stop(engine.Broke, "", message) }

// Message implements Session.
func (e *evaluation) Message(message string) { e.res.Message = message }

func (e *evaluation) stop(o engine.Outcome, reason, message string) {
	e.stopped = true
	e.res.Outcome, e.res.Reason = o, reason
	if message != "" {
		e.res.Message = message
	}
}

// suspension is what the memo keeps of a suspend action during an attempt.
type suspension struct {
	// Until is when the suspend releases itself; zero waits for a resume.
	Until time.Time `json:"until,omitzero"`
	// Released is set once a resume or the end of the duration released it.
	Released bool `json:"released,omitempty"`
	// Params are the parameters of the suspend action that held the step, for releasing it
	// without evaluating the template again (evaluation.releaseSuspend).
	Params json.RawMessage `json:"params,omitempty"`
}

// Suspend implements Session. The first time a suspend is reached it holds the step; on a later
// evaluation a resume, or its duration having passed, releases it, and the memo remembers that
// for the rest of the attempt so that the actions after it run.
func (e *evaluation) Suspend(d time.Duration, message string) bool {
	key := e.current + "#suspend"
	var s suspension
	raw, seen := e.memo[key]
	if seen && json.Unmarshal(raw, &s) != nil {
		seen = false
	}
	switch {
	case !seen && d > 0:
		s.Until = e.req.Now.Add(d)
	case seen && !s.Released:
		s.Released = e.req.Resumed || (!s.Until.IsZero() && !e.req.Now.Before(s.Until))
	}
	if !s.Released && s.Params == nil {
		s.Params = e.params
	}
	e.memo[key], _ = json.Marshal(s)
	if s.Released {
		return true
	}
	e.stop(engine.Suspended, v1alpha1.ReasonSuspend, message)
	e.res.SuspendUntil = s.Until
	return false
}

// Var implements Session: the run variables, with the writes of this evaluation.
func (e *evaluation) Var(name string) (json.RawMessage, bool) {
	if v, ok := e.res.VarWrites[name]; ok {
		return v, true
	}
	v, ok := e.req.Vars[name]
	return v, ok
}

// SetVar implements Session.
func (e *evaluation) SetVar(name string, value json.RawMessage) {
	if e.res.VarWrites == nil {
		e.res.VarWrites = map[string]json.RawMessage{}
	}
	e.res.VarWrites[name] = value
}

// Sensitive implements Session.
func (e *evaluation) Sensitive(values ...string) {
	e.res.Sensitive = redact.Merge(e.res.Sensitive, values...)
}

// Log implements Session.
func (e *evaluation) Log(level int, message string, data any) {
	e.res.Logs = append(e.res.Logs, engine.LogEntry{Time: e.now(), Step: e.req.Step.Name, Severity: engine.SeverityInfo, Level: level, Message: message, Data: logData(data)})
}

// Report implements Session.
func (e *evaluation) Report(r Report) { e.report = &r }

// Redact implements Session.
func (e *evaluation) Redact(s string) string {
	return redact.New(append(slices.Clip(e.req.Sensitive), e.res.Sensitive...)...).String(s)
}

// releaseSuspend evaluates a resumed step whose template is a lone builtin suspend
// (definition.loneSuspend) held by that suspend without evaluating the template again: it
// runs the suspend action with the parameters it had when it suspended the step, which
// releases it, and nothing follows it. It reports false, having done nothing, for any other
// step (and for a suspend recorded without its parameters).
func (e *evaluation) releaseSuspend(ctx context.Context) (bool, error) {
	key := e.t.info.lone()
	if key == "" || !e.req.Resumed || len(e.req.Step.Outputs) > 0 {
		return false, nil
	}
	a, ok := e.r.opts.Registry.Action("builtin", "suspend")
	if !ok || a.Run == nil {
		return false, nil
	}
	raw, params, ok := suspendParams(e.memo[key+"#suspend"])
	if !ok {
		return false, nil
	}
	e.start = time.Now()
	_, err := e.act(ctx, &actionCall{Path: key, Provider: a.Provider, Do: a.Do, Params: raw, params: params})
	return true, err
}

// suspendParams reads the parameters a suspend recorded when it held a step, as JSON and
// decoded; false when the record is missing, released already, or holds none.
func suspendParams(raw json.RawMessage) (json.RawMessage, map[string]any, bool) {
	var s suspension
	if len(raw) == 0 || json.Unmarshal(raw, &s) != nil || s.Released {
		return nil, nil, false
	}
	var params map[string]any
	if json.Unmarshal(s.Params, &params) != nil || params == nil {
		return nil, nil, false
	}
	return s.Params, params, true
}

// onlyUndefinedFields reports whether every error of err is a reference to a field that is not
// there (yet): one that filling a result may resolve, where a conflict cannot be.
func onlyUndefinedFields(err error) bool {
	for _, e := range cueerrors.Errors(err) {
		if format, _ := e.Msg(); !strings.HasPrefix(format, "undefined field") {
			return false
		}
	}
	return true
}
