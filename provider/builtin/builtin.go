// Package builtin is the vela/builtin CUE package: the actions that steer a step (wait, suspend,
// break, fail, message) and read or write run variables.
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

// Register adds the package "vela/builtin" and its actions to r.
func Register(r *step.Registry) {
	r.AddPackage(step.Package{Path: "vela/builtin", Source: source})
	add := func(do string, run step.Handler) {
		r.Register(step.Action{Provider: "builtin", Do: do, Run: run})
	}
	add("wait", func(_ context.Context, c *step.Call) (any, error) {
		if ok, _ := c.Params["continue"].(bool); !ok {
			c.Session.Wait(str(c.Params, "message"))
		}
		return nil, nil
	})
	add("suspend", func(_ context.Context, c *step.Call) (any, error) {
		var d time.Duration
		if s := str(c.Params, "duration"); s != "" {
			var err error
			if d, err = time.ParseDuration(s); err != nil || d < 0 {
				return nil, engine.Terminal(v1alpha1.ReasonExecute, fmt.Errorf("duration %q: want a Go duration such as 30s", s))
			}
		}
		c.Session.Suspend(d, str(c.Params, "message"))
		return nil, nil
	})
	add("break", func(_ context.Context, c *step.Call) (any, error) {
		c.Session.Break(str(c.Params, "message"))
		return nil, nil
	})
	add("fail", func(_ context.Context, c *step.Call) (any, error) {
		c.Session.Fail(str(c.Params, "message"))
		return nil, nil
	})
	add("message", func(_ context.Context, c *step.Call) (any, error) {
		c.Session.Message(str(c.Params, "message"))
		return nil, nil
	})
	add("var", doVar)
}

func doVar(_ context.Context, c *step.Call) (any, error) {
	path := str(c.Params, "path")
	if path == "" {
		return nil, engine.Terminal(v1alpha1.ReasonExecute, fmt.Errorf("#DoVar: path is empty"))
	}
	switch str(c.Params, "method") {
	case "Get":
		raw, ok := c.Session.Var(path)
		if !ok {
			return map[string]any{}, nil
		}
		var v any
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, engine.Terminal(v1alpha1.ReasonExecute, fmt.Errorf("variable %s: %w", path, err))
		}
		return map[string]any{"value": v}, nil
	case "Put":
		b, err := json.Marshal(c.Params["value"])
		if err != nil {
			return nil, engine.Terminal(v1alpha1.ReasonExecute, fmt.Errorf("variable %s: %w", path, err))
		}
		c.Session.SetVar(path, b)
		return nil, nil
	}
	return nil, engine.Terminal(v1alpha1.ReasonExecute, fmt.Errorf("#DoVar: method %q: want Get or Put", c.Params["method"]))
}

func str(m map[string]any, key string) string {
	s, _ := m[key].(string)
	return s
}
