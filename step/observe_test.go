package step_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/provider/builtin"
	"github.com/stepflow/stepflow/step"
)

// evaluations records what Options.ObserveEvaluation is told.
type evaluations struct {
	mu    sync.Mutex
	types []string
	times []time.Duration
}

func (e *evaluations) observe(typ string, d time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.types = append(e.types, typ)
	e.times = append(e.times, d)
}

// TestObserveEvaluationLeavesTheActionsOut: the time reported is the evaluation's less what its
// actions took, once per evaluation of a template, and nothing for a type that does not exist.
func TestObserveEvaluationLeavesTheActionsOut(t *testing.T) {
	const nap = 300 * time.Millisecond
	reg := step.NewRegistry()
	builtin.Register(reg)
	reg.AddPackage(step.Package{Path: "vela/slow", Source: `
#Nap: {
	#provider: "slow"
	#do:       "nap"
	$params: {}
	$returns?: {done: bool}
	...
}`})
	reg.Register(step.Action{Provider: "slow", Do: "nap", Run: func(ctx context.Context, _ *step.Call) (any, error) {
		select {
		case <-time.After(nap):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return map[string]any{"done": true}, nil
	}})
	var seen evaluations
	r := step.NewRunner(step.Options{Registry: reg, ObserveEvaluation: seen.observe, Definitions: defs{
		"slow": `
import "vela/slow"

parameter: {}
a: slow.#Nap & {$params: {}}
b: slow.#Nap & {$params: {}, _after: a.$returns.done}
`,
		"broken": `parameter: {x: int} & {x: string}`,
	}})

	began := time.Now()
	res := mustRun(t, r, request("slow", map[string]any{}))
	took := time.Since(began)
	wantOutcome(t, res, engine.Succeeded, "")
	mustRun(t, r, request("no-such-type", map[string]any{}))
	res = mustRun(t, r, request("broken", map[string]any{}))
	wantOutcome(t, res, engine.Failed, v1alpha1.ReasonRendering)

	seen.mu.Lock()
	defer seen.mu.Unlock()
	if len(seen.types) != 2 || seen.types[0] != "slow" || seen.types[1] != "broken" {
		t.Fatalf("observed types %q, want [slow broken] (nothing for an unknown type)", seen.types)
	}
	// The two naps took at least 2×nap of the evaluation; CUE took the rest of it, at most.
	if d := seen.times[0]; d <= 0 || d > took-2*nap {
		t.Errorf("CUE time of the slow step %v: want more than 0 and at most %v (%v in all, less two naps of %v)", d, took-2*nap, took, nap)
	}
	if seen.times[1] <= 0 {
		t.Errorf("CUE time of a definition that does not compile %v, want more than 0", seen.times[1])
	}
}
