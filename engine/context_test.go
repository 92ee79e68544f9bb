package engine_test

import (
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/step"
)

// An input from context.<path> reads the step's context (the run's spec.context and the
// built-in keys), as KubeVela resolves an input no variable holds, and can set a parameter.
func TestInputsFromContext(t *testing.T) {
	h := newHarness(t, func(o *engine.Options) {
		o.Runner = step.NewRunner(step.Options{Definitions: cueDefs{
			"echo": `
parameter: {msg: string}
out: parameter.msg`,
		}})
	})
	key := h.start(`metadata: {name: r}
spec:
  context: {env: {tier: prod}}
  workflowSpec:
    steps:
    - name: a
      type: echo
      properties: {msg: x}
      inputs: [{from: context.env.tier, parameterKey: msg}]
      outputs: [{name: tier, valueFrom: out}]
    - name: b
      type: echo
      properties: {msg: x}
      inputs: [{from: context.name, parameterKey: msg}]
      outputs: [{name: name, valueFrom: out}]
`)
	run := h.waitFor(key, "finished", func(r *engine.Run) bool { return r.Object.Status.Finished && !h.eng.Busy(key) })
	if got := run.Object.Status.Phase; got != v1alpha1.RunSucceeded {
		t.Fatalf("phase %s\n%s", got, dump(run))
	}
	for name, want := range map[string]string{"tier": `"prod"`, "name": `"r"`} {
		if got := varOf(run, name); got != want {
			t.Errorf("var %s = %s, want %s", name, got, want)
		}
	}
}

// A context.<path> the context does not hold fails the step with reason Input, naming it.
func TestInputsFromMissingContext(t *testing.T) {
	h := newHarness(t, func(o *engine.Options) {
		o.Runner = step.NewRunner(step.Options{Definitions: cueDefs{"echo": `parameter: {msg: string}`}})
	})
	key := h.start(`metadata: {name: r}
spec:
  workflowSpec:
    steps:
    - {name: a, type: echo, properties: {msg: x}, inputs: [{from: context.nothere, parameterKey: msg}]}
`)
	run := h.waitFor(key, "finished", func(r *engine.Run) bool { return r.Object.Status.Finished && !h.eng.Busy(key) })
	s := run.Object.Status.Steps[0]
	if s.Phase != v1alpha1.StepFailed || s.Reason != v1alpha1.ReasonInput || !strings.Contains(s.Message, "context.nothere") {
		t.Fatalf("step %s/%s %q, want failed/Input naming context.nothere\n%s", s.Phase, s.Reason, s.Message, dump(run))
	}
}

// Each step's context.spanID is the run's trace id, a dot and the step's id, as KubeVela
// forks each step's tracer from the run's: the steps of one run share the prefix, and a run's
// prefix is the same at every evaluation.
func TestSpanIDSharesTheRunsPrefix(t *testing.T) {
	h := newHarness(t, func(o *engine.Options) {
		o.Runner = step.NewRunner(step.Options{Definitions: cueDefs{"span": `out: {span: context.spanID, id: context.stepSessionID}`}})
	})
	key := h.start(`metadata: {name: r}
spec:
  workflowSpec:
    steps:
    - {name: a, type: span, outputs: [{name: a, valueFrom: out}]}
    - {name: b, type: span, outputs: [{name: b, valueFrom: out}]}
`)
	run := h.waitFor(key, "finished", func(r *engine.Run) bool { return r.Object.Status.Finished && !h.eng.Busy(key) })
	prefix := run.SpanPrefix()
	if !regexp.MustCompile(`^i-[a-z0-9]{8}$`).MatchString(prefix) {
		t.Fatalf("run's span prefix %q, want i- and eight letters or digits", prefix)
	}
	for _, name := range []string{"a", "b"} {
		var got struct{ Span, ID string }
		v := varOf(run, name)
		for _, f := range []struct {
			key string
			to  *string
		}{{`"span":`, &got.Span}, {`"id":`, &got.ID}} {
			_, rest, _ := strings.Cut(v, f.key)
			s, err := strconv.QuotedPrefix(rest)
			if err != nil {
				t.Fatalf("var %s = %s: %v", name, v, err)
			}
			*f.to, _ = strconv.Unquote(s)
		}
		if want := prefix + "." + got.ID; got.Span != want || got.ID == "" {
			t.Errorf("step %s: spanID %q, want %q (the run's prefix, a dot, the step's id)", name, got.Span, want)
		}
	}
}
