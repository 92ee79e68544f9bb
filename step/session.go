package step

import (
	"context"
	"encoding/json"
	"time"

	"cuelang.org/go/cue"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/redact"
)

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
		s.Params, _ = json.Marshal(e.params)
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
	entry := engine.LogEntry{Time: e.now(), Step: e.req.Step.Name, Level: level, Message: message}
	if data != nil {
		b, err := json.Marshal(data)
		if err != nil {
			b, _ = json.Marshal(map[string]string{"error": "data cannot be encoded: " + err.Error()})
		}
		entry.Data = b
	}
	e.res.Logs = append(e.res.Logs, entry)
}

// releaseSuspend evaluates a resumed step whose template is a lone builtin suspend
// (definition.loneSuspend) held by that suspend without evaluating the template again: it
// runs the suspend action with the parameters it had when it suspended the step, which
// releases it, and nothing follows it. It reports false, having done nothing, for any other
// step (and for a suspend recorded without its parameters).
func (e *evaluation) releaseSuspend(ctx context.Context) (bool, error) {
	key := e.def.loneSuspend
	if key == "" || !e.req.Resumed || len(e.req.Step.Outputs) > 0 {
		return false, nil
	}
	a, ok := e.r.opts.Registry.Action("builtin", "suspend")
	if !ok || a.Run == nil {
		return false, nil
	}
	params, ok := suspendParams(e.memo[key+"#suspend"])
	if !ok {
		return false, nil
	}
	e.start = time.Now()
	_, err := e.call(ctx, cue.Value{}, &site{key: key, action: a, params: params})
	return true, err
}

// suspendParams reads the parameters a suspend recorded when it held a step; false when the
// record is missing, released already, or holds none.
func suspendParams(raw json.RawMessage) (map[string]any, bool) {
	var s suspension
	if len(raw) == 0 || json.Unmarshal(raw, &s) != nil || s.Released {
		return nil, false
	}
	var params map[string]any
	if json.Unmarshal(s.Params, &params) != nil || params == nil {
		return nil, false
	}
	return params, true
}
