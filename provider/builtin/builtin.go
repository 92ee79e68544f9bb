// Package builtin supplies the CUE package vela/builtin: the actions that steer a step (wait on
// a condition, suspend the run, end the step, set its message) and read or write run variables.
// Each one works through the step's Session; none has a side effect outside the run.
package builtin

import (
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"time"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/step"
)

//go:embed builtin.cue
var source string

// Register adds the package (import path "vela/builtin") and its actions builtin.wait,
// builtin.suspend, builtin.break, builtin.fail, builtin.message and builtin.var to r.
func Register(r *step.Registry) {
	r.AddPackage(step.Package{Path: "vela/builtin", Source: source})
	// A condition that cannot be computed yet (it reads what an action has not returned) is a
	// condition not met: the step waits rather than fails.
	r.Register(step.Action{Provider: "builtin", Do: "wait", Local: step.Always, Run: wait, AcceptIncomplete: true})
	r.Register(step.Action{Provider: "builtin", Do: "suspend", Local: step.Always, Run: suspend})
	r.Register(step.Action{Provider: "builtin", Do: "break", Local: step.Always, Run: func(_ context.Context, c *step.Call) (any, error) {
		c.Session.Break(str(c.Params, "message"))
		return nil, nil
	}})
	r.Register(step.Action{Provider: "builtin", Do: "fail", Local: step.Always, Run: func(_ context.Context, c *step.Call) (any, error) {
		c.Session.Fail(str(c.Params, "message"))
		return nil, nil
	}})
	r.Register(step.Action{Provider: "builtin", Do: "message", Local: step.Always, Run: func(_ context.Context, c *step.Call) (any, error) {
		c.Session.Message(str(c.Params, "message"))
		return nil, nil
	}})
	r.Register(step.Action{Provider: "builtin", Do: "var", Local: step.Always, Run: doVar})
}

// wait holds the step unless continue is true; a missing continue is false.
func wait(_ context.Context, c *step.Call) (any, error) {
	if ok, _ := c.Params["continue"].(bool); !ok {
		c.Session.Wait(str(c.Params, "message"))
	}
	return nil, nil
}

// suspend holds the run until a resume, or until duration has passed.
func suspend(_ context.Context, c *step.Call) (any, error) {
	var d time.Duration
	if s := str(c.Params, "duration"); s != "" {
		var err error
		if d, err = time.ParseDuration(s); err != nil || d < 0 {
			return nil, engine.Terminal(v1alpha1.ReasonExecute,
				fmt.Errorf("#Suspend: duration %q: want a Go duration such as 30s or 1h30m", s))
		}
	}
	c.Session.Suspend(d, str(c.Params, "message"))
	return nil, nil
}

// doVar reads (Get) or writes (Put) the run variable named path; a Get of a variable not set
// returns no value.
func doVar(_ context.Context, c *step.Call) (any, error) {
	path := str(c.Params, "path")
	if path == "" {
		return nil, engine.Terminal(v1alpha1.ReasonExecute, fmt.Errorf("#DoVar: path is empty"))
	}
	switch m := str(c.Params, "method"); m {
	case "Get", "":
		raw, ok := c.Session.Var(path)
		if !ok {
			return map[string]any{}, nil
		}
		var v any
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, engine.Terminal(v1alpha1.ReasonExecute, fmt.Errorf("#DoVar: variable %s: %w", path, err))
		}
		return map[string]any{"value": v}, nil
	case "Put":
		b, err := json.Marshal(c.Params["value"])
		if err != nil {
			return nil, engine.Terminal(v1alpha1.ReasonExecute, fmt.Errorf("#DoVar: variable %s: %w", path, err))
		}
		c.Session.SetVar(path, b)
		return nil, nil
	default:
		return nil, engine.Terminal(v1alpha1.ReasonExecute, fmt.Errorf("#DoVar: method %q: want Get or Put", m))
	}
}

func str(m map[string]any, key string) string {
	s, _ := m[key].(string)
	return s
}
