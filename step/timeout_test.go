package step_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stepflow/stepflow/definitions"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/provider/builtin"
	"github.com/stepflow/stepflow/step"
)

// An evaluation that outlives EvalTimeout fails its step with a message naming the limit, and
// its action's context is cancelled, so that the action stops too.
func TestEvaluationTimeLimit(t *testing.T) {
	var cancelled atomic.Bool
	reg := step.NewRegistry()
	reg.AddPackage(step.Package{Path: "vela/test", Source: testPackage})
	reg.Register(step.Action{Provider: "test", Do: "get", Run: func(ctx context.Context, _ *step.Call) (any, error) {
		<-ctx.Done() // an action that would never answer
		cancelled.Store(true)
		return nil, ctx.Err()
	}})
	r := step.NewRunner(step.Options{Registry: reg, EvalTimeout: 100 * time.Millisecond, Definitions: defs{"hang": `
import "vela/test"
got: test.#Get & {$params: key: "k"}
`}})
	start := time.Now()
	res, err := r.RunStep(context.Background(), request("hang", nil))
	if err != nil {
		t.Fatal(err)
	}
	if res.Outcome != engine.Failed || !strings.Contains(res.Message, "longer than 100ms, the limit of one evaluation") {
		t.Errorf("outcome %v %q", res.Outcome, res.Message)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("the step took %s to fail", took)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !cancelled.Load() && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if !cancelled.Load() {
		t.Error("the action's context was not cancelled")
	}

	// A negative limit sets none; an evaluation within the limit is untouched.
	quick := step.NewRunner(step.Options{Registry: reg, EvalTimeout: time.Minute, Definitions: defs{"quick": `parameter: {}
out: 1`}})
	if res, err := quick.RunStep(context.Background(), request("quick", nil)); err != nil || res.Outcome != engine.Succeeded {
		t.Errorf("quick: %v %v", res, err)
	}
}

// TestOneTurnIsNotHeldThroughActions: with one evaluation at a time in CUE
// (Options.MaxEvaluating 1), a step whose action is waiting on its I/O does not keep another
// step from being evaluated, and goes on once its action returns.
func TestOneTurnIsNotHeldThroughActions(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	reg := step.NewRegistry()
	builtin.Register(reg)
	reg.AddPackage(step.Package{Path: "vela/test", Source: testPackage})
	reg.Register(step.Action{Provider: "test", Do: "get", Run: func(context.Context, *step.Call) (any, error) {
		close(entered)
		<-release
		return map[string]any{"v": "late"}, nil
	}})
	msg, _ := definitions.Template("print-message-in-status")
	r := step.NewRunner(step.Options{Registry: reg, MaxEvaluating: 1, Definitions: defs{
		"print-message-in-status": msg,
		"slow": `import ("vela/test", "vela/builtin")
get: test.#Get & {$params: key: "k"}
say: builtin.#Message & {$params: message: get.$returns.v}`,
	}})
	slow := make(chan *engine.StepResult, 1)
	go func() {
		res, err := r.RunStep(context.Background(), request("slow", nil))
		if err != nil {
			t.Error(err)
		}
		slow <- res
	}()
	<-entered
	res := mustRun(t, r, request("print-message-in-status", map[string]any{"message": "meanwhile"}))
	if res.Outcome != engine.Succeeded || res.Message != "meanwhile" {
		t.Fatalf("the other step, while the first one's action waits: %+v", res)
	}
	close(release)
	if res := <-slow; res == nil || res.Outcome != engine.Succeeded || res.Message != "late" {
		t.Fatalf("the first step once its action returned: %+v", res)
	}
}
