package step

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"cuelang.org/go/cue"
	"cuelang.org/go/cue/token"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/engine"
)

// evaluation is one evaluation of a step. It is the Session of the actions it runs.
type evaluation struct {
	r   *Runner
	gen *generation
	def *definition
	req *engine.StepRequest
	res engine.StepResult

	memo    map[string]json.RawMessage // the attempt's memo, with what this evaluation added
	done    map[string]bool            // the actions run in this evaluation, by path
	stopped bool                       // an action ended the evaluation
	current string                     // the path of the action running
	params  map[string]any             // and its parameters
	fills   int                        // results filled in since the template was validated
	start   time.Time
	actions time.Duration // the time the actions run in this evaluation took
	waited  time.Duration // and the time it waited for its turns (Runner.turns)
	turn    *hold         // its claim on a turn at CUE
	quick   bool          // made in the engine's worker: it ends at an action that is not local
}

// run evaluates the template: parameter first, then the actions, then the outputs. A *failure
// ends the step as failed; another error is returned from RunStep.
func (e *evaluation) run(ctx context.Context) error {
	defer e.turn.give()
	if e.quick && e.def.notLocal.Load() {
		return errNotLocal // another quick evaluation found out while this one waited its turn
	}
	e.start = time.Now()
	pp := e.def.paramPath()
	v := e.def.fill(e.req.Properties, e.req.Context)
	// Before the check: its messages may quote the values.
	e.markSensitive(v)
	if err := checkParameter(v, pp, e.req.Properties, nil); err != nil {
		return failf(v1alpha1.ReasonParameter, "%v", err)
	}
	if err := v.Validate(); err != nil {
		return failf(v1alpha1.ReasonRendering, "%v", describe(err))
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
		v, err = e.call(ctx, v, s)
		if e.fills > fills {
			// A result may have made a marked field concrete: marked before any action
			// that could show it runs.
			e.markSensitive(v)
		}
		if err != nil || e.stopped {
			return err
		}
		if last && e.fills == fills {
			break // nothing changed and nothing else was pending: another pass would find nothing
		}
	}
	if e.fills > 0 {
		if err := v.Validate(); err != nil {
			return failf(v1alpha1.ReasonRendering, "%v", describe(err))
		}
	}
	return e.outputs(v)
}

func (e *evaluation) result() *engine.StepResult {
	e.res.Memo = e.memo
	return &e.res
}

// site is an action found in the template.
type site struct {
	key    string // its path, e.g. "deploy.apply"
	value  cue.Value
	action *Action
	// legacy is the flat vela/op form: parameters are the action's own fields; otherwise
	// they are paramsValue, the action's $params.
	legacy      bool
	paramsValue cue.Value
	params      map[string]any
	// incomplete says why the parameters are not all concrete yet.
	incomplete error
}

// next finds the action to run: the first, depth first in field order, that has not run and
// whose parameters are concrete. When there is none but some action or group is not complete,
// the first incomplete action that accepts it runs; otherwise the evaluation fails naming what
// is incomplete. Nil means every action ran. last says that nothing else was pending.
func (e *evaluation) next(v cue.Value) (s *site, last bool, err error) {
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
			params, err := s.readParams(true)
			if err != nil {
				return nil, false, err
			}
			s.params = params
			return s, false, nil
		}
	}
	if len(w.blocked) > 0 {
		b := w.blocked[0]
		return nil, false, failf(v1alpha1.ReasonRendering, "%s is incomplete: %v", b.key, describe(b.incomplete))
	}
	return nil, true, nil
}

// walker is one pass over the template's fields.
type walker struct {
	e       *evaluation
	ready   *site
	blocked []*site // incomplete actions, and groups whose fields cannot all be computed yet
	others  int     // actions not run yet past the ready one
	err     error
}

func (w *walker) visit(s cue.Value, top bool) {
	for _, f := range orderedFields(s, w.e.def.filename, top) {
		if provider := f.value.LookupPath(providerPath); provider.Exists() {
			w.action(f.value, provider)
		} else {
			w.group(f.value)
		}
		if w.err != nil {
			return
		}
	}
}

// group walks into a struct that is not an action: it may hold actions.
func (w *walker) group(v cue.Value) {
	switch v.IncompleteKind() {
	case cue.StructKind:
	case cue.BottomKind:
		// An error, or a struct whose comprehension waits on something not computed yet.
		if _, err := v.Fields(); err != nil {
			return
		}
	default:
		return
	}
	if err := v.Err(); err != nil {
		if verr := v.Validate(); verr != nil {
			w.err = failf(v1alpha1.ReasonRendering, "%v", describe(verr))
			return
		}
		// A comprehension in it waits on something not computed yet.
		w.blocked = append(w.blocked, &site{key: v.Path().String(), incomplete: err})
	}
	w.visit(v, false)
}

// action looks at an action: past the first ready one, only that it is available.
func (w *walker) action(v, providerValue cue.Value) {
	key := v.Path().String()
	if w.e.done[key] {
		return
	}
	provider, perr := providerValue.String()
	do, derr := v.LookupPath(doPath).String()
	if perr != nil || derr != nil {
		w.blocked = append(w.blocked, &site{key: key, incomplete: fmt.Errorf("#provider and #do must be concrete strings")})
		return
	}
	a, ok := w.e.r.opts.Registry.Action(provider, do)
	if !ok || a.Run == nil {
		w.err = engine.Terminal(v1alpha1.ReasonExecute, fmt.Errorf("%s: action %s.%s is not available in this build", key, provider, do))
		return
	}
	if w.ready != nil {
		w.others++
		return
	}
	s := &site{key: key, value: v, action: a, paramsValue: v.LookupPath(cue.MakePath(paramsSel))}
	s.legacy = !s.paramsValue.Exists()
	params, err := s.readParams(false)
	var f *failure
	switch {
	case err == nil:
		s.params = params
		w.ready = s
	case errors.As(err, &f):
		w.err = err
	default:
		s.incomplete = err
		w.blocked = append(w.blocked, s)
	}
}

// readParams reads the action's parameters: `$params`, or in the legacy form its regular
// fields that are not results. An incomplete parameter is an error, or left out when partial;
// a parameter in error is a *failure.
func (s *site) readParams(partial bool) (map[string]any, error) {
	src := s.value
	if !s.legacy {
		src = s.paramsValue
	}
	params := map[string]any{}
	if !s.legacy && src.Validate(cue.Concrete(true)) == nil {
		if err := decode(src, &params); err != nil {
			return nil, failf(v1alpha1.ReasonRendering, "%s: parameters: %v", s.key, err)
		}
		return params, nil
	}
	it, err := src.Fields()
	if err != nil {
		return nil, fmt.Errorf("parameters: %w", err)
	}
	for it.Next() {
		name := it.Selector().Unquoted()
		if s.legacy && slices.Contains(s.action.LegacyOutputs, name) {
			continue
		}
		f := it.Value()
		if err := f.Validate(cue.Concrete(true)); err != nil {
			if verr := f.Validate(); verr != nil {
				return nil, failf(v1alpha1.ReasonRendering, "%s: %v", s.key, describe(verr))
			}
			if partial {
				continue
			}
			return nil, err
		}
		var x any
		if err := decode(f, &x); err != nil {
			return nil, failf(v1alpha1.ReasonRendering, "%s: parameter %s: %v", s.key, name, err)
		}
		params[name] = x
	}
	return params, nil
}

// decode turns a concrete CUE value into JSON-like Go values: bytes become base64 strings, as
// in JSON. (This is less work than cue.Value.Decode.)
func decode(v cue.Value, into any) error {
	b, err := v.MarshalJSON()
	if err != nil {
		return describe(err)
	}
	return json.Unmarshal(b, into)
}

// call runs an action, or replays the result a side-effecting one had earlier in the attempt,
// and fills the result back into the template.
func (e *evaluation) call(ctx context.Context, v cue.Value, s *site) (cue.Value, error) {
	if e.quick && (s.action.Local == nil || !s.action.Local(s.params)) {
		e.def.notLocal.Store(true)
		return v, errNotLocal
	}
	e.done[s.key] = true
	name := s.action.Provider + "." + s.action.Do
	sideEffect := s.action.SideEffect != nil && s.action.SideEffect(s.params)
	result, replayed := e.memo[s.key]
	if !sideEffect || !replayed {
		e.current, e.params = s.key, s.params
		back := e.turn.give() // others evaluate while the action waits on its I/O
		began := time.Now()
		out, err := s.action.Run(ctx, &Call{Params: s.params, Path: s.key, Run: e.req.Run, Step: e.req.Step.Name, Session: e})
		took := time.Since(began)
		e.actions += took
		if err == nil && out != nil {
			if result, err = json.Marshal(out); err != nil {
				err = engine.Terminal(v1alpha1.ReasonExecute, fmt.Errorf("encoding the result: %w", err))
			}
		}
		if err != nil {
			e.logAction(name, s, took, "error: "+err.Error())
			return v, fmt.Errorf("step %s: %s (%s): %w", e.req.Step.Name, s.key, name, err)
		}
		e.logAction(name, s, took, "ok")
		if out == nil {
			result = nil
		}
		if sideEffect {
			e.memo[s.key] = orNull(result)
		}
		if back {
			waitFrom := time.Now()
			if err := e.turn.take(ctx, true); err != nil {
				return v, err
			}
			e.waited += time.Since(waitFrom)
		}
	} else {
		e.logAction(name, s, 0, "replayed")
	}
	if e.stopped || result == nil || string(result) == "null" {
		return v, nil
	}
	path := s.value.Path()
	at := path
	switch {
	case !s.legacy:
		at = cue.MakePath(append(path.Selectors(), returnsSel)...)
	case s.action.LegacyResult != "":
		at = cue.MakePath(append(path.Selectors(), cue.Str(s.action.LegacyResult))...)
	}
	v = v.FillPath(at, result)
	e.fills++
	if err := v.LookupPath(path).Validate(); err != nil {
		return v, failf(v1alpha1.ReasonRendering, "%s: the result of %s does not fit the definition: %v", s.key, name, describe(err))
	}
	return v, nil
}

func orNull(b json.RawMessage) json.RawMessage {
	if b == nil {
		return json.RawMessage("null")
	}
	return b
}

func (e *evaluation) logAction(name string, s *site, took time.Duration, outcome string) {
	msg := s.key
	if s.incomplete != nil {
		msg += " (run with incomplete parameters: " + describe(s.incomplete).Error() + ")"
	}
	e.res.Logs = append(e.res.Logs, engine.LogEntry{
		Time:     e.now(),
		Step:     e.req.Step.Name,
		Action:   name,
		Duration: took,
		Outcome:  outcome,
		Message:  msg,
	})
}

// now is the engine's time at the start of the evaluation plus the time it has taken.
func (e *evaluation) now() time.Time { return e.req.Now.Add(time.Since(e.start)) }

// field is a regular field of a struct, with what orders it.
type field struct {
	name  string
	value cue.Value
	step  int64 // its @step(n), 100 without
	file  int   // 0 when declared in the template, 1 elsewhere (a package, a fill)
	pos   token.Pos
}

// orderedFields lists a struct's regular fields in the order they are written in template:
// CUE does not keep that order once a comprehension adds fields, and a fill may sort them.
// Fields with a `@step(n)` attribute come first, by n (KubeVela ranks the others 100). At the
// top, the parameter and the context are left out.
func orderedFields(s cue.Value, template string, top bool) []field {
	it, err := s.Fields()
	if err != nil {
		return nil
	}
	var fields []field
	for it.Next() {
		name := it.Selector().String()
		if top && (name == "parameter" || name == "context") {
			continue
		}
		f := field{name: name, value: it.Value(), step: 100, file: 1}
		if a := f.value.Attribute("step"); a.Err() == nil {
			if n, err := a.Int(0); err == nil {
				f.step = n
			}
		}
		if f.pos = f.value.Pos(); f.pos.Filename() == template {
			f.file = 0
		}
		fields = append(fields, f)
	}
	slices.SortStableFunc(fields, func(a, b field) int {
		return cmp.Or(cmp.Compare(a.step, b.step), cmp.Compare(a.file, b.file),
			cmp.Compare(a.pos.Line(), b.pos.Line()), cmp.Compare(a.pos.Column(), b.pos.Column()))
	})
	return fields
}
