// registry.go: what providers plug in: Action, Handler, Call, Session, Package, Registry.

package step

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/stepflow/stepflow/engine"
)

// Handler runs one action: it reads the action's parameters and returns what the action returns
// (a JSON-like Go value: map[string]any, []any, string, float64, bool, nil, or a struct that
// encodes to one), which is unified back into the definition under `$returns`.
//
// An error means the call failed: by default the engine retries the step with backoff; wrap it
// with engine.Terminal to fail the step at once.
type Handler func(ctx context.Context, call *Call) (any, error)

// Action describes an action a definition calls by its hidden fields `#provider` and `#do`.
type Action struct {
	// Provider and Do are the values of the action's `#provider` and `#do`.
	Provider string
	Do       string
	// Run does the work.
	Run Handler
	// SideEffect reports whether a call with these parameters changes something outside the
	// step. Such a call runs once per step attempt; its result is replayed on re-evaluation.
	// Nil means the action never has side effects (a read).
	SideEffect func(params map[string]any) bool
	// Idempotent says that a repeat with the same parameters changes nothing more (a
	// server-side apply): the action runs on every evaluation and is not memoized, so that
	// what it returns is the world as it is now (an applied object's current status), as
	// KubeVela's actions are. It overrides SideEffect's memo; the once-per-try guarantee
	// stays with the actions that are not idempotent (HTTP writes, notifications, deletes).
	Idempotent bool
	// Local reports whether a call with these parameters does all its work within the step:
	// no I/O, nothing outside the run read or changed (the builtin actions, conversions of
	// strings and times). A step whose evaluation calls only local actions is made before the
	// engine saves the transition that starts it (Runner.RunQuick), so that its start and its
	// result are saved as one. Nil means never.
	Local func(params map[string]any) bool
	// LegacyResult says where the result goes in the flat vela/op form: "" spreads the fields of
	// the result into the action (op.#Read's value), a name puts the whole result under that
	// field (op.#HTTPGet's response).
	LegacyResult string
	// LegacyOutputs are the flat fields of the vela/op form that are results, never parameters.
	LegacyOutputs []string
	// AcceptIncomplete lets the action run with the parameters that are concrete when nothing
	// else in the step can run: the others are left out of Call.Params. #ConditionalWait uses
	// it, so that a condition on a field an earlier action has not returned yet
	// (`continue: apply.$returns.value.status.readyReplicas == 3`) is a condition not met.
	AcceptIncomplete bool
}

// Always is true whatever the parameters: the SideEffect of an action that always changes
// something, the Local of one that never leaves the step.
func Always(map[string]any) bool { return true }

// Call is one invocation of an action.
type Call struct {
	// Params are the action's parameters: `$params`, or the flat fields of the legacy form.
	Params map[string]any
	// Path is the action's field path in the definition, e.g. "apply" or "#Steps.read".
	Path string
	// Run is the run the step belongs to; Step is the step's name.
	Run  engine.Key
	Step string
	// Execution names the step's execution (engine.StepRequest.Execution): the same in every
	// evaluation of one attempt's try, whichever process makes it.
	Execution string
	// Context is the step's CUE context (the built-in keys and the run's spec.context), for
	// actions that act on what the run was started for (vela/oam reads the Application a
	// delivering run carries); read it, never change it. Nil in a call made otherwise.
	Context map[string]any
	// Session gives access to the step evaluation: control outcomes, variables and the log.
	Session Session
	// Runner is the Runner evaluating the step: an action that evaluates CUE of its own (vela/oam
	// renders components and judges their health) does it through it, under the bounds of an
	// evaluation. Nil in a call made otherwise.
	Runner *Runner

	// raw is the JSON Params were decoded from, as the definition gave it; nil when the call
	// was made otherwise (a test's).
	raw json.RawMessage
}

// Decode reads the call's parameters into the struct into points at, through their JSON form;
// a parameter of the wrong type is reported by name. It decodes the JSON the definition gave
// (changes made to Params are not seen), or, when that has a float, Params encoded again: a
// whole float (CUE's 3.0) then fits an int field, as Params' float64 does.
func (c *Call) Decode(into any) error {
	b := c.raw
	if fraction, _ := numberForms(b); b == nil || fraction {
		var err error
		if b, err = json.Marshal(c.Params); err != nil {
			return fmt.Errorf("reading parameters: %w", err)
		}
	}
	if err := json.Unmarshal(b, into); err != nil {
		if te, ok := errors.AsType[*json.UnmarshalTypeError](err); ok {
			return fmt.Errorf("parameter %s: got %s, want %s", te.Field, te.Value, te.Type)
		}
		return fmt.Errorf("reading parameters: %w", err)
	}
	return nil
}

// Sensitive marks values as secrets through the call's session (Session.Sensitive); a call
// without a session, as a test may make, marks nothing.
func (c *Call) Sensitive(values ...string) {
	if c.Session != nil {
		c.Session.Sensitive(values...)
	}
}

// Report is what an action says of what it did, for its line in the step's log: the request
// it made and the answer's gist, so that a person reading the log of a failed step sees why.
type Report struct {
	// Summary is one line, e.g. "GET api.example.com/v1/items → 503 Service Unavailable".
	Summary string
	// Severity is engine.SeverityWarning for an answer that says something went wrong;
	// empty is engine.SeverityInfo. An action that returns an error is an error whatever
	// its report says.
	Severity string
	// Data is a bounded detail, encoded as JSON: an excerpt of the answer, the object's
	// version. Redacted as the log is.
	Data any
}

// Report tells the call's session what the action did (Session.Report); a call without a
// session, as a test may make, reports nothing.
func (c *Call) Report(r Report) {
	if c.Session != nil {
		c.Session.Report(r)
	}
}

// Redact hides the run's known secrets in s (Session.Redact); a call without a session hides
// nothing.
func (c *Call) Redact(s string) string {
	if c.Session != nil {
		return c.Session.Redact(s)
	}
	return s
}

// Session is what an action may do to the step evaluating it besides returning a value.
type Session interface {
	// Now is the engine clock's time.
	Now() time.Time
	// Wait ends the evaluation: the step waits and is evaluated again later.
	Wait(message string)
	// Suspend ends the evaluation unless this suspend was already released; it reports whether
	// the step goes on (released by a resume or by its duration passing).
	Suspend(duration time.Duration, message string) (goOn bool)
	// Fail ends the evaluation: the step fails with reason Action.
	Fail(message string)
	// Break ends the evaluation: the step succeeds and the run is terminated.
	Break(message string)
	// Message sets the step's status message.
	Message(message string)
	// Var reads a run variable; ok is false when it is not set.
	Var(name string) (value json.RawMessage, ok bool)
	// SetVar writes a run variable.
	SetVar(name string, value json.RawMessage)
	// Log adds an entry to the step's log.
	Log(level int, message string, data any)
	// Report describes the action being run in its own line of the log; the last report of
	// the action is kept.
	Report(r Report)
	// Redact hides in s the values the run and this evaluation know are secrets, for an
	// action that decides what of its request it may show.
	Redact(s string) string
	// Sensitive marks values as secrets: the run keeps them for the steps (in variables,
	// outputs, results) but redacts them in its status, its log and whatever shows it. An
	// action that reads a secret marks it before anything could show it, also when it then
	// fails. Values shorter than redact.MinLength are ignored.
	Sensitive(values ...string)
}

// Package is a CUE package supplied to definitions under an import path such as "vela/http".
type Package struct {
	// Path is the import path.
	Path string
	// Source is the package's CUE source, one file; it may import other supplied packages.
	Source string
}

// Registry holds the actions and CUE packages that definitions may use.
type Registry struct {
	actions  map[actionID]*Action
	packages map[string]Package
}

type actionID struct{ provider, do string }

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{actions: map[actionID]*Action{}, packages: map[string]Package{}}
}

// Register adds an action; registering the same provider and do twice is a programming error.
func (r *Registry) Register(a Action) {
	id := actionID{a.Provider, a.Do}
	if _, dup := r.actions[id]; dup {
		panic(fmt.Sprintf("step: action %s.%s registered twice", a.Provider, a.Do))
	}
	r.actions[id] = &a
}

// AddPackage supplies a CUE package under its import path.
func (r *Registry) AddPackage(p Package) {
	if _, dup := r.packages[p.Path]; dup {
		panic(fmt.Sprintf("step: package %q added twice", p.Path))
	}
	r.packages[p.Path] = p
}

// Action returns the action registered for provider and do.
func (r *Registry) Action(provider, do string) (*Action, bool) {
	a, ok := r.actions[actionID{provider, do}]
	return a, ok
}

// Package returns the package supplied under path.
func (r *Registry) Package(path string) (Package, bool) {
	p, ok := r.packages[path]
	return p, ok
}

// PackagePaths lists the supplied import paths, sorted.
func (r *Registry) PackagePaths() []string {
	paths := make([]string, 0, len(r.packages))
	for p := range r.packages {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	return paths
}

// Actions lists the registered actions, sorted by provider and do.
func (r *Registry) Actions() []*Action {
	out := make([]*Action, 0, len(r.actions))
	for _, a := range r.actions {
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Provider != out[j].Provider {
			return out[i].Provider < out[j].Provider
		}
		return out[i].Do < out[j].Do
	})
	return out
}
