package engine_test

import (
	"testing"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/engine"
)

// A Wake evaluates a waiting step at once, without its backoff passing, and only once.
func TestWakeEvaluatesWaitingStepNow(t *testing.T) {
	h := newHarness(t)
	key := h.start(`
metadata: {name: r}
spec:
  workflowSpec:
    steps:
    - {name: w, type: wait, properties: {until: ready}}`)
	h.waitFor(key, "waiting", func(r *engine.Run) bool {
		return r.Object.Status.Steps[0].Reason == v1alpha1.ReasonWait
	})
	h.eng.Wake(key)
	h.waitFor(key, "evaluated again on wake", func(*engine.Run) bool { return h.script.count("w") == 2 })
	h.waitFor(key, "waiting again", func(r *engine.Run) bool { return r.Steps["w"] != nil && r.Steps["w"].Waits == 2 })
	if n := h.script.count("w"); n != 2 {
		t.Fatalf("evaluated %d times after one wake, want 2", n)
	}
	h.script.release("ready")
	h.eng.Wake(key)
	run := h.waitPhase(key, v1alpha1.RunSucceeded)
	if got := phases(run); got != "w=succeeded" {
		t.Errorf("steps: %s", got)
	}
}
