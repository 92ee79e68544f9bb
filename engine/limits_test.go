package engine_test

import (
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/engine"
)

// Each limit fails what is over it, naming the limit, and nothing else.
func TestLimits(t *testing.T) {
	h := newHarness(t, func(o *engine.Options) {
		o.Limits = engine.Limits{Steps: 3, Iterations: 2, OutputBytes: 20}
	})
	tooMany := h.start(`
metadata: {name: too-many}
spec:
  workflowSpec:
    steps:
    - {name: a, type: ok}
    - {name: g, type: step-group, subSteps: [{name: b, type: ok}, {name: c, type: ok}]}`)
	run := h.waitSettled(tooMany)
	if st := run.Object.Status; st.Phase != v1alpha1.RunFailed || !strings.Contains(st.Message, "4 steps, more than the limit of 3 steps per run") {
		t.Errorf("too many steps: %s %q", st.Phase, st.Message)
	}
	if h.script.count("a") != 0 {
		t.Error("a step of a run over the limit ran")
	}

	loop := h.start(`
metadata: {name: loop}
spec:
  workflowSpec:
    steps:
    - {name: each, type: ok, forEach: {items: [1, 2, 3]}}`)
	run = h.waitSettled(loop)
	if s := run.Object.Status.Steps[0]; s.Phase != v1alpha1.StepFailed || !strings.Contains(s.Message, "3 items, more than the limit of 2 iterations") {
		t.Errorf("loop: %s %q", s.Phase, s.Message)
	}

	big := h.start(`
metadata: {name: big}
spec:
  workflowSpec:
    steps:
    - {name: small, type: ok, properties: {value: tiny}, outputs: [{name: s, valueFrom: x}]}
    - {name: large, type: ok, properties: {value: "a value much longer than twenty bytes"}, outputs: [{name: l, valueFrom: x}]}`)
	run = h.waitSettled(big)
	if got := phases(run); got != "small=succeeded large=failed/Output" {
		t.Errorf("outputs: %s", got)
	}
	if s := run.Object.Status.Steps[1]; !strings.Contains(s.Message, `output "l" is 39 bytes, more than the limit of 20 bytes`) {
		t.Errorf("large's message %q", s.Message)
	}
	if _, ok := run.Vars["l"]; ok {
		t.Error("the output over the limit was stored")
	}
}

// A matrix of 1000^7 combinations fails its step from the lists' lengths, at once, naming the
// limit and its flag: nothing is built (before, the engine expanded the product first).
func TestAHugeMatrixFailsItsStepWithoutBeingBuilt(t *testing.T) {
	h := newHarness(t, func(o *engine.Options) { o.Limits = engine.Limits{Iterations: 100} })
	var lists []string
	for i := range 7 {
		items := make([]string, 1000)
		for j := range items {
			items[j] = strconv.Itoa(j)
		}
		lists = append(lists, fmt.Sprintf("l%d: [%s]", i, strings.Join(items, ", ")))
	}
	key := h.start(fmt.Sprintf(`
metadata: {name: huge}
spec:
  workflowSpec:
    steps:
    - {name: each, type: ok, matrix: {%s}}`, strings.Join(lists, ", ")))
	run := h.waitSettled(key)
	s := run.Object.Status.Steps[0]
	if s.Phase != v1alpha1.StepFailed || !strings.Contains(s.Message, "more than the limit of 100 iterations per loop") || !strings.Contains(s.Message, "--max-iterations") {
		t.Errorf("huge matrix: %s %q", s.Phase, s.Message)
	}
	if h.script.count("each") != 0 {
		t.Error("an iteration of the huge matrix ran")
	}
}

// A run's outputs and variables are bounded together: the step whose outputs would take the
// run beyond --max-run-data fails naming it, and none of its outputs is kept; one that sets
// an output anew counts only its new size.
func TestRunDataBound(t *testing.T) {
	h := newHarness(t, func(o *engine.Options) { o.Limits = engine.Limits{RunDataBytes: 100} })
	forty := strings.Repeat("x", 38) // 40 bytes as JSON
	key := h.start(fmt.Sprintf(`
metadata: {name: bound}
spec:
  workflowSpec:
    steps:
    - {name: a, type: ok, properties: {value: %[1]q}, outputs: [{name: o1, valueFrom: x}]}
    - {name: b, type: ok, properties: {value: %[1]q}, outputs: [{name: o2, valueFrom: x}]}
    - {name: again, type: ok, properties: {value: %[1]q}, outputs: [{name: o1, valueFrom: x}]}
    - {name: c, type: ok, properties: {value: %[1]q}, outputs: [{name: o3, valueFrom: x}]}`, forty))
	run := h.waitSettled(key)
	if got := phases(run); got != "a=succeeded b=succeeded again=succeeded c=failed/Output" {
		t.Errorf("phases: %s", got)
	}
	msg := run.Object.Status.Steps[3].Message
	if !strings.Contains(msg, "would be 120 bytes, more than the limit of 100 bytes per run") || !strings.Contains(msg, "--max-run-data") {
		t.Errorf("c's message %q", msg)
	}
	if _, ok := run.Vars["o3"]; ok {
		t.Error("the output over the bound was stored")
	}
	if got := engine.RunDataBytes(run); got != 80 {
		t.Errorf("the run holds %d bytes of outputs, want 80", got)
	}
}

// The items a forEach.from copies from a run variable into its loop's record count towards
// the run's bound: a loop over a list that would take the run beyond --max-run-data fails
// as it starts, naming it, and none of its iterations runs.
func TestRunDataBoundCountsLoopItems(t *testing.T) {
	h := newHarness(t, func(o *engine.Options) { o.Limits = engine.Limits{RunDataBytes: 200} })
	forty := strings.Repeat("x", 38) // 40 bytes as JSON
	key := h.start(fmt.Sprintf(`
metadata: {name: items}
spec:
  workflowSpec:
    steps:
    - {name: list, type: ok, properties: {value: [%[1]q, %[1]q, %[1]q]}, outputs: [{name: list, valueFrom: x}]}
    - name: each
      type: ok
      forEach: {from: list}`, forty))
	run := h.waitSettled(key)
	if got := phases(run); got != "list=succeeded each=failed/Input" {
		t.Errorf("phases: %s", got)
	}
	msg := run.Object.Status.Steps[1].Message
	if !strings.Contains(msg, "3 items: the run's outputs, variables, loop items and memos would be 244 bytes, more than the limit of 200 bytes per run") ||
		!strings.Contains(msg, "--max-run-data") {
		t.Errorf("each's message %q", msg)
	}
	if got := engine.RunDataBytes(run); got != 124 {
		t.Errorf("the run holds %d bytes, want 124 (the list alone)", got)
	}
}

// The memo of a step's side effects counts towards the run's bound: a waiting step whose
// memo would take the run beyond --max-run-data fails naming it, and its memo is not kept
// in the record.
func TestRunDataBoundCountsMemos(t *testing.T) {
	h := newHarness(t, func(o *engine.Options) { o.Limits = engine.Limits{RunDataBytes: 100} })
	key := h.start(fmt.Sprintf(`
metadata: {name: memo}
spec:
  workflowSpec:
    steps:
    - {name: small, type: ok, properties: {value: %q}, outputs: [{name: o, valueFrom: x}]}
    - {name: post, type: memo-wait, properties: {value: %q}}`, strings.Repeat("x", 38), strings.Repeat("y", 78)))
	run := h.waitSettled(key)
	if got := phases(run); got != "small=succeeded post=failed/Output" {
		t.Errorf("phases: %s", got)
	}
	msg := run.Object.Status.Steps[1].Message
	if !strings.Contains(msg, "the results of its side effects: the run's outputs, variables, loop items and memos would be 120 bytes, more than the limit of 100 bytes per run") ||
		!strings.Contains(msg, "--max-run-data") {
		t.Errorf("post's message %q", msg)
	}
	if got := engine.RunDataBytes(run); got != 40 {
		t.Errorf("the run holds %d bytes, want 40", got)
	}
}
