package engine_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/engine"
)

// outcomes is a StepRunner whose steps end as the test says: "bad" fails and "slow" waits,
// both with the output why; "use" outputs the input it took.
type outcomes struct{}

func (outcomes) RunStep(_ context.Context, req *engine.StepRequest) (*engine.StepResult, error) {
	switch req.Step.Name {
	case "bad":
		return &engine.StepResult{Outcome: engine.Failed, Reason: v1alpha1.ReasonAction, Message: "refused",
			Outputs: map[string]json.RawMessage{"why": json.RawMessage(`"quota"`)}}, nil
	case "slow":
		return &engine.StepResult{Outcome: engine.Waiting, Message: "not ready", WaitHint: time.Hour,
			Outputs: map[string]json.RawMessage{"why": json.RawMessage(`"pending"`)}}, nil
	}
	b, err := json.Marshal(req.Inputs["why"])
	return &engine.StepResult{Outcome: engine.Succeeded, Outputs: map[string]json.RawMessage{"seen": b}}, err
}

// The outputs of a step that failed, or that timed out while waiting (those of its last
// evaluation), stay available to the steps that take them, as in KubeVela, where a later step
// diagnoses a timed-out step from its output.
func TestOutputsOfFailedAndTimedOutSteps(t *testing.T) {
	for _, c := range []struct{ first, want, phases string }{
		{"bad", `"quota"`, "bad=failed/Action use=succeeded"},
		{"slow", `"pending"`, "slow=failed/Timeout use=succeeded"},
	} {
		t.Run(c.first, func(t *testing.T) {
			h := newHarness(t, func(o *engine.Options) { o.Runner = outcomes{} })
			key := h.start(`metadata: {name: r}
spec:
  workflowSpec:
    steps:
    - {name: ` + c.first + `, type: t, timeout: 1m, outputs: [{name: why, valueFrom: why}]}
    - {name: use, type: t, if: always, inputs: [{from: why}], outputs: [{name: seen, valueFrom: seen}]}
`)
			if c.first == "slow" {
				h.waitFor(key, "waiting", func(r *engine.Run) bool {
					return r.Object.Status.Steps[0].Reason == v1alpha1.ReasonWait && !h.eng.Busy(key)
				})
				h.clock.Advance(time.Minute)
			}
			run := h.waitFor(key, "finished", func(r *engine.Run) bool { return r.Object.Status.Finished && !h.eng.Busy(key) })
			if got := phases(run); got != c.phases {
				t.Fatalf("steps: %s, want %s\n%s", got, c.phases, dump(run))
			}
			for name, want := range map[string]string{"why": c.want, "seen": c.want} {
				if got := varOf(run, name); got != want {
					t.Errorf("var %s = %s, want %s", name, got, want)
				}
			}
		})
	}
}
