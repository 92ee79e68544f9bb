package engine_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/step"
)

// cueDefs serves step types written in CUE.
type cueDefs map[string]string

func (d cueDefs) Template(_ context.Context, _, typ string) (string, error) {
	if t, ok := d[typ]; ok {
		return t, nil
	}
	return "", fmt.Errorf("step type %q: %w", typ, step.ErrUnknownType)
}

// An input with a parameterKey sets a property that the CUE runner reads as an int when it
// is a whole number, whether it came from an output, a run variable or an iteration; the other
// properties reach it as they are written, a long integer with its digits.
func TestInputsFillIntegerParameters(t *testing.T) {
	h := newHarness(t, func(o *engine.Options) {
		o.Runner = step.NewRunner(step.Options{Definitions: cueDefs{
			"double": `
parameter: {n: int, by: *2 | int, ratio: *0.5 | float, big?: int}
out: n: parameter.n * parameter.by`,
		}})
	})
	key := h.start(`metadata: {name: r}
spec:
  workflowSpec:
    steps:
    - {name: a, type: double, properties: {n: 3, ratio: 2.5, big: 1234567890123456789}, outputs: [{name: six, valueFrom: out.n}, {name: a, valueFrom: parameter}]}
    - {name: b, type: double, properties: {n: 0, by: 10}, inputs: [{from: six, parameterKey: n}], outputs: [{name: sixty, valueFrom: out.n}]}
    - name: c
      type: double
      forEach: {items: [{n: 1}, {n: 2}]}
      inputs: [{from: item.n, parameterKey: n}, {from: index, parameterKey: by}]
      outputs: [{name: each, valueFrom: out.n}]
`)
	run := h.waitFor(key, "finished", func(r *engine.Run) bool { return r.Object.Status.Finished && !h.eng.Busy(key) })
	if got := run.Object.Status.Phase; got != v1alpha1.RunSucceeded {
		t.Fatalf("phase %s\n%s", got, dump(run))
	}
	for name, want := range map[string]string{"six": `6`, "sixty": `60`, "a": `{"big":1234567890123456789,"by":2,"n":3,"ratio":2.5}`} {
		if got := varOf(run, name); got != want {
			t.Errorf("var %s = %s, want %s", name, got, want)
		}
	}
}
