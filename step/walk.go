// walk.go: one pass over a filled template (walker), finding the actions in field order, and
// the reading of an action's parameters (site.readParams).

package step

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"cuelang.org/go/cue"
	"cuelang.org/go/cue/token"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/engine"
)

// site is an action found in the template.
type site struct {
	key    string // its path, e.g. "deploy.apply"
	value  cue.Value
	action *Action
	// legacy is the flat vela/op form: parameters are the action's own fields; otherwise
	// they are paramsValue, the action's $params.
	legacy      bool
	paramsValue cue.Value
	// raw is the parameters' JSON, read once from the template; params is raw decoded.
	raw    json.RawMessage
	params map[string]any
	// incomplete says why the parameters are not all concrete yet.
	incomplete error
}

// walker is one pass over the template's fields.
type walker struct {
	e       *cueEval
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
	if !ok {
		a = externalAction(w.e.def.ext, provider, do, nil)
		ok = a != nil
	}
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
	err := s.readParams(false)
	var f *failure
	switch {
	case err == nil:
		w.ready = s
	case errors.As(err, &f):
		w.err = err
	default:
		s.incomplete = err
		w.blocked = append(w.blocked, s)
	}
}

// call is the action's call, for an actor to run.
func (s *site) call() *actionCall {
	c := &actionCall{Path: s.key, Provider: s.action.Provider, Do: s.action.Do, Params: s.raw, params: s.params}
	if s.incomplete != nil {
		c.Incomplete = describe(s.incomplete).Error()
	}
	return c
}

// readParams reads the action's parameters, `$params` or in the legacy form its regular fields
// that are not results, as a JSON object into s.raw, once, and decoded into s.params. An
// incomplete parameter is an error, or left out when partial; a parameter in error is a
// *failure.
func (s *site) readParams(partial bool) error {
	src := s.value
	if !s.legacy {
		src = s.paramsValue
	}
	var raw []byte
	if !s.legacy && src.Validate(cue.Concrete(true)) == nil {
		b, err := src.MarshalJSON()
		if err != nil {
			return failf(v1alpha1.ReasonRendering, "%s: parameters: %v", s.key, describe(err))
		}
		raw = b
	} else {
		it, err := src.Fields()
		if err != nil {
			return fmt.Errorf("parameters: %w", err)
		}
		raw = append(raw, '{')
		for it.Next() {
			name := it.Selector().Unquoted()
			if s.legacy && slices.Contains(s.action.LegacyOutputs, name) {
				continue
			}
			f := it.Value()
			if err := f.Validate(cue.Concrete(true)); err != nil {
				if verr := f.Validate(); verr != nil {
					return failf(v1alpha1.ReasonRendering, "%s: %v", s.key, describe(verr))
				}
				if partial {
					continue
				}
				return err
			}
			b, err := f.MarshalJSON()
			if err != nil {
				return failf(v1alpha1.ReasonRendering, "%s: parameter %s: %v", s.key, name, describe(err))
			}
			if len(raw) > 1 {
				raw = append(raw, ',')
			}
			raw = append(append(appendKey(raw, name), ':'), b...)
		}
		raw = append(raw, '}')
	}
	// Bytes are base64 strings in JSON, as they are here. (Less work than cue.Value.Decode.)
	params := map[string]any{}
	if err := json.Unmarshal(raw, &params); err != nil {
		return failf(v1alpha1.ReasonRendering, "%s: parameters: %v", s.key, err)
	}
	s.raw, s.params = raw, params
	return nil
}

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
