package engine_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/engine"
)

// iterations renders "name=phase[/reason]" for every iteration of the looping step, with the
// sub-steps of a group's iterations after their iteration.
func iterations(run *engine.Run, step string) string {
	l := run.Loops[step]
	if l == nil {
		return "<no loop>"
	}
	var parts []string
	add := func(s v1alpha1.StepStatus) {
		p := s.Name + "=" + string(s.Phase)
		if s.Reason != "" {
			p += "/" + s.Reason
		}
		parts = append(parts, p)
	}
	for _, it := range l.Iterations {
		add(it.Status)
		for _, s := range it.SubSteps {
			add(s)
		}
	}
	return strings.Join(parts, " ")
}

// TestFlowControl covers the stepflow extensions that run to their end without help: loops,
// matrices, Switch groups; what each step and iteration ends as, and the variables output.
func TestFlowControl(t *testing.T) {
	cases := []struct {
		name  string
		spec  string
		phase v1alpha1.WorkflowRunPhase
		steps string
		iters map[string]string
		vars  map[string]string
		// ran are evaluation counts by step and index, as a[1].
		ran map[string]int
	}{{
		name: "forEach runs each item in order, item as an input, outputs gathered as a list",
		spec: `
steps:
- name: deploy
  type: ok
  forEach: {items: [eu, us, asia]}
  inputs: [{from: item, parameterKey: value}]
  outputs: [{name: done, valueFrom: x}]
- {name: after, type: ok, inputs: [{from: done, parameterKey: value}], outputs: [{name: copy, valueFrom: x}]}`,
		phase: v1alpha1.RunSucceeded,
		steps: "deploy=succeeded after=succeeded",
		iters: map[string]string{"deploy": "deploy[0]=succeeded deploy[1]=succeeded deploy[2]=succeeded"},
		vars:  map[string]string{"done": `["eu","us","asia"]`, "copy": `["eu","us","asia"]`},
		ran:   map[string]int{"deploy[0]": 1, "deploy[1]": 1, "deploy[2]": 1, "deploy": 3},
	}, {
		name: "index and item fields as inputs",
		spec: `
steps:
- name: n
  type: ok
  forEach: {items: [{region: eu}, {region: us}]}
  inputs: [{from: item.region, parameterKey: value}]
  outputs: [{name: regions, valueFrom: x}]
- name: i
  type: ok
  forEach: {items: [a, b]}
  inputs: [{from: index, parameterKey: value}]
  outputs: [{name: indexes, valueFrom: x}]`,
		phase: v1alpha1.RunSucceeded,
		steps: "n=succeeded i=succeeded",
		vars:  map[string]string{"regions": `["eu","us"]`, "indexes": `[0,1]`},
	}, {
		name: "forEach from a run variable",
		spec: `
steps:
- {name: list, type: ok, properties: {value: [1, 2]}, outputs: [{name: clusters, valueFrom: x}]}
- name: each
  type: ok
  forEach: {from: clusters}
  inputs: [{from: item, parameterKey: value}]
  outputs: [{name: got, valueFrom: x}]`,
		phase: v1alpha1.RunSucceeded,
		steps: "list=succeeded each=succeeded",
		vars:  map[string]string{"got": `[1,2]`},
	}, {
		name: "forEach from a variable that is not a list fails the step with reason Input",
		spec: `
steps:
- {name: one, type: ok, properties: {value: solo}, outputs: [{name: clusters, valueFrom: x}]}
- {name: each, type: ok, forEach: {from: clusters}}`,
		phase: v1alpha1.RunFailed,
		steps: "one=succeeded each=failed/Input",
	}, {
		name: "an empty list succeeds at once with an empty list as output",
		spec: `
steps:
- {name: none, type: ok, forEach: {items: []}, outputs: [{name: out, valueFrom: x}]}`,
		phase: v1alpha1.RunSucceeded,
		steps: "none=succeeded",
		vars:  map[string]string{"out": `[]`},
	}, {
		name: "failFast stops starting iterations after a failure",
		spec: `
steps:
- name: each
  type: by-item
  forEach: {items: [ok, fail, ok, ok]}
  inputs: [{from: item, parameterKey: kind}]
- {name: cleanup, type: ok, if: always}`,
		phase: v1alpha1.RunFailed,
		steps: "each=failed/Execute cleanup=succeeded",
		iters: map[string]string{"each": "each[0]=succeeded each[1]=failed/Action"},
		ran:   map[string]int{"each[2]": 0, "each[3]": 0},
	}, {
		name: "failFast false runs every iteration, then fails",
		spec: `
steps:
- name: each
  type: by-item
  forEach: {items: [ok, fail, ok, fail], failFast: false, parallelism: 2}
  inputs: [{from: item, parameterKey: kind}]`,
		phase: v1alpha1.RunFailed,
		steps: "each=failed/Execute",
		iters: map[string]string{"each": "each[0]=succeeded each[1]=failed/Action each[2]=succeeded each[3]=failed/Action"},
	}, {
		name: "if is decided per iteration, over context.index",
		spec: `
steps:
- name: each
  type: ok
  if: context.index != 1
  forEach: {items: [a, b, c]}
  inputs: [{from: item, parameterKey: value}]
  outputs: [{name: out, valueFrom: x}]`,
		phase: v1alpha1.RunSucceeded,
		steps: "each=succeeded",
		iters: map[string]string{"each": "each[0]=succeeded each[1]=skipped/Skip each[2]=succeeded"},
		vars:  map[string]string{"out": `["a",null,"c"]`},
	}, {
		name: "a loop whose every iteration is skipped is skipped",
		spec: `
steps:
- {name: each, type: ok, if: context.item == "z", forEach: {items: [a, b]}}`,
		phase: v1alpha1.RunSucceeded,
		steps: "each=skipped/Skip",
	}, {
		name: "matrix iterates over the product, item.<name> as inputs",
		spec: `
steps:
- name: m
  type: ok
  matrix: {region: [eu, us], tier: [a, b]}
  inputs: [{from: item, parameterKey: value}]
  outputs: [{name: combos, valueFrom: x}]`,
		phase: v1alpha1.RunSucceeded,
		steps: "m=succeeded",
		vars: map[string]string{"combos": `[{"region":"eu","tier":"a"},{"region":"eu","tier":"b"},` +
			`{"region":"us","tier":"a"},{"region":"us","tier":"b"}]`},
	}, {
		name: "a looping step-group runs its sub-steps per iteration, passing outputs within it",
		spec: `
steps:
- name: g
  type: step-group
  mode: StepByStep
  forEach: {items: [x, y]}
  subSteps:
  - {name: make, type: ok, inputs: [{from: item, parameterKey: value}], outputs: [{name: made, valueFrom: x}]}
  - {name: use, type: ok, inputs: [{from: made, parameterKey: value}], outputs: [{name: used, valueFrom: x}]}
- {name: after, type: ok, inputs: [{from: used, parameterKey: value}], outputs: [{name: all, valueFrom: x}]}`,
		phase: v1alpha1.RunSucceeded,
		steps: "g=succeeded make=succeeded use=succeeded after=succeeded",
		iters: map[string]string{"g": "g[0]=succeeded make[0]=succeeded use[0]=succeeded g[1]=succeeded make[1]=succeeded use[1]=succeeded"},
		vars:  map[string]string{"all": `["x","y"]`, "made": `["x","y"]`},
	}, {
		name: "a looping step-group fails with its failed iteration; its sub-steps sum theirs up",
		spec: `
steps:
- name: g
  type: step-group
  forEach: {items: [ok, fail]}
  subSteps:
  - {name: s, type: by-item, inputs: [{from: item, parameterKey: kind}]}
- {name: after, type: ok}`,
		phase: v1alpha1.RunFailed,
		steps: "g=failed/Execute s=failed/Action after=skipped/Skip",
		iters: map[string]string{"g": "g[0]=succeeded s[0]=succeeded g[1]=failed/Execute s[1]=failed/Action"},
	}, {
		name: "a loop inside a step-group",
		spec: `
steps:
- name: g
  type: step-group
  subSteps:
  - {name: each, type: ok, forEach: {items: [1, 2]}, inputs: [{from: item, parameterKey: value}], outputs: [{name: out, valueFrom: x}]}
  - {name: other, type: ok}`,
		phase: v1alpha1.RunSucceeded,
		steps: "g=succeeded each=succeeded other=succeeded",
		vars:  map[string]string{"out": `[1,2]`},
	}, {
		name: "Switch runs the first case whose if holds and skips the others",
		spec: `
context: {env: prod}
workflowSpec:
  steps:
  - name: sw
    type: step-group
    mode: Switch
    subSteps:
    - {name: dev, type: ok, if: context.env == "dev"}
    - {name: prod, type: ok, if: context.env == "prod"}
    - {name: also-prod, type: ok, if: context.env == "prod"}
    - {name: fallback, type: ok}`,
		phase: v1alpha1.RunSucceeded,
		steps: "sw=succeeded dev=skipped/Skip prod=succeeded also-prod=skipped/Skip fallback=skipped/Skip",
	}, {
		name: "Switch takes the default when no case holds",
		spec: `
steps:
- name: sw
  type: step-group
  mode: Switch
  subSteps:
  - {name: dev, type: ok, if: context.env == "dev"}
  - {name: fallback, type: ok}`,
		phase: v1alpha1.RunSucceeded,
		steps: "sw=succeeded dev=skipped/Skip fallback=succeeded",
	}, {
		name: "Switch with no case holding and no default skips all and succeeds",
		spec: `
steps:
- name: sw
  type: step-group
  mode: Switch
  subSteps:
  - {name: dev, type: ok, if: context.env == "dev"}
- {name: after, type: ok}`,
		phase: v1alpha1.RunSucceeded,
		steps: "sw=succeeded dev=skipped/Skip after=succeeded",
	}, {
		name: "Switch fails with its case",
		spec: `
steps:
- name: sw
  type: step-group
  mode: Switch
  subSteps:
  - {name: boom, type: fail}
  - {name: other, type: ok}`,
		phase: v1alpha1.RunFailed,
		steps: "sw=failed/Execute boom=failed/Action other=skipped/Skip",
	}, {
		name: "a Switch group in a loop chooses per iteration",
		spec: `
steps:
- name: sw
  type: step-group
  mode: Switch
  forEach: {items: [a, b]}
  subSteps:
  - {name: is-a, type: ok, if: context.item == "a"}
  - {name: not-a, type: ok}`,
		phase: v1alpha1.RunSucceeded,
		steps: "sw=succeeded is-a=succeeded not-a=succeeded",
		iters: map[string]string{"sw": "sw[0]=succeeded is-a[0]=succeeded not-a[0]=skipped/Skip sw[1]=succeeded is-a[1]=skipped/Skip not-a[1]=succeeded"},
	}, {
		name: "retry limit 0 on the step fails at the first provider error",
		spec: `
steps:
- {name: e, type: error, retry: {limit: 0}}`,
		phase: v1alpha1.RunFailed,
		steps: "e=failed/FailedAfterRetries",
		ran:   map[string]int{"e": 1},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			spec := tc.spec
			if strings.HasPrefix(strings.TrimSpace(spec), "steps:") {
				spec = "workflowSpec:\n" + indent(spec)
			}
			key := h.start("metadata: {name: r}\nspec:\n" + indent(spec))
			run := h.waitFor(key, "finished", func(r *engine.Run) bool { return r.Object.Status.Finished && !h.eng.Busy(key) })
			if got := run.Object.Status.Phase; got != tc.phase {
				t.Errorf("phase %s, want %s\n%s", got, tc.phase, dump(run))
			}
			if got := phases(run); got != tc.steps {
				t.Errorf("steps\n got  %s\n want %s", got, tc.steps)
			}
			for step, want := range tc.iters {
				if got := iterations(run, step); got != want {
					t.Errorf("iterations of %s\n got  %s\n want %s", step, got, want)
				}
			}
			for k, want := range tc.vars {
				if got := varOf(run, k); got != want {
					t.Errorf("var %s = %s, want %s", k, got, want)
				}
			}
			for k, want := range tc.ran {
				if got := h.script.count(k); got != want {
					t.Errorf("%s evaluated %d times, want %d", k, got, want)
				}
			}
		})
	}
}

// Switch names the case taken in the message of the cases skipped.
func TestSwitchSaysWhichCaseWasTaken(t *testing.T) {
	h := newHarness(t)
	key := h.start(`
metadata: {name: r}
spec:
  workflowSpec:
    steps:
    - name: sw
      type: step-group
      mode: Switch
      subSteps:
      - {name: dev, type: ok, if: context.env == "dev"}
      - {name: fallback, type: ok}`)
	run := h.waitPhase(key, v1alpha1.RunSucceeded)
	if msg := run.Object.Status.Steps[0].SubStepsStatus[0].Message; msg != "case fallback was taken" {
		t.Errorf("skipped case says %q", msg)
	}
}

// Parallelism bounds the iterations under way: with 2, the third starts only when one of the
// first two finished.
func TestForEachParallelism(t *testing.T) {
	h := newHarness(t)
	key := h.start(`
metadata: {name: r}
spec:
  workflowSpec:
    steps:
    - name: w
      type: wait
      forEach: {items: [a, b, c, d, e], parallelism: 2}
      inputs: [{from: item, parameterKey: until}]`)
	run := h.waitFor(key, "two iterations waiting", func(r *engine.Run) bool {
		return strings.Count(iterations(r, "w"), "running") == 2 && !h.eng.Busy(key)
	})
	if got := iterations(run, "w"); got != "w[0]=running/Wait w[1]=running/Wait" {
		t.Fatalf("iterations: %s", got)
	}
	if it := run.Object.Status.Steps[0].Iterations; it == nil || it.Total != 5 || it.Running != 2 {
		t.Errorf("status summary: %+v", it)
	}
	h.script.release("b")
	h.eng.Wake(key)
	run = h.waitFor(key, "c started after b finished", func(r *engine.Run) bool {
		return strings.Contains(iterations(r, "w"), "w[1]=succeeded w[2]=running")
	})
	if strings.Contains(iterations(run, "w"), "w[3]") {
		t.Errorf("more than 2 under way: %s", iterations(run, "w"))
	}
	for _, k := range []string{"a", "c", "d", "e"} {
		h.script.release(k)
	}
	h.eng.Wake(key)
	for !strings.Contains(phases(h.saved(key)), "w=succeeded") {
		h.clock.Advance(4 * time.Second)
		h.waitFor(key, "moved", func(r *engine.Run) bool { return !h.eng.Busy(key) })
	}
	h.waitPhase(key, v1alpha1.RunSucceeded)
	if h.script.peak > 2 {
		t.Errorf("peak concurrency %d, want at most 2", h.script.peak)
	}
}

// A loop of 1,000 iterations with parallelism 50 finishes, keeps every iteration in the engine's
// record, and keeps the WorkflowRun status small.
func TestLargeLoopKeepsStatusSmall(t *testing.T) {
	h := newHarness(t)
	items := make([]int, 1000)
	for i := range items {
		items[i] = i
	}
	b, _ := json.Marshal(items)
	key := h.start(fmt.Sprintf(`
metadata: {name: r}
spec:
  workflowSpec:
    steps:
    - name: each
      type: by-item
      forEach: {items: %s, parallelism: 50, failFast: false}
      properties: {kind: ok}
      inputs: [{from: item, parameterKey: value}]
      outputs: [{name: out, valueFrom: x}]`, b))
	run := h.waitPhase(key, v1alpha1.RunSucceeded)
	if n := len(run.Loops["each"].Iterations); n != 1000 {
		t.Errorf("the record keeps %d iterations, want 1000", n)
	}
	if got := varOf(run, "out"); got != string(b) {
		t.Errorf("outputs not gathered in order: %.80s...", got)
	}
	sum := run.Object.Status.Steps[0].Iterations
	if sum == nil || sum.Total != 1000 || sum.Succeeded != 1000 || len(sum.Entries) > 20 {
		t.Fatalf("status summary: total %d, succeeded %d, %d entries", sum.Total, sum.Succeeded, len(sum.Entries))
	}
	if last := sum.Entries[len(sum.Entries)-1]; last.Index != 999 || last.Name != "each[999]" {
		t.Errorf("the most recent iteration is not listed last: %+v", last)
	}
	status, _ := json.Marshal(run.Object.Status)
	if len(status) > 16<<10 {
		t.Errorf("status is %d bytes", len(status))
	}
	if h.script.peak > 50 {
		t.Errorf("peak concurrency %d, want at most 50", h.script.peak)
	}
}

// The status lists failed iterations before the most recent ones.
func TestLoopStatusKeepsFailedIterations(t *testing.T) {
	h := newHarness(t)
	kinds := make([]string, 100)
	for i := range kinds {
		kinds[i] = "ok"
	}
	kinds[3] = "fail"
	b, _ := json.Marshal(kinds)
	key := h.start(fmt.Sprintf(`
metadata: {name: r}
spec:
  workflowSpec:
    steps:
    - name: each
      type: by-item
      forEach: {items: %s, parallelism: 10, failFast: false}
      inputs: [{from: item, parameterKey: kind}]`, b))
	run := h.waitPhase(key, v1alpha1.RunFailed)
	sum := run.Object.Status.Steps[0].Iterations
	if sum.Failed != 1 || sum.Succeeded != 99 || len(sum.Entries) != 20 {
		t.Fatalf("summary: failed %d succeeded %d entries %d", sum.Failed, sum.Succeeded, len(sum.Entries))
	}
	if e := sum.Entries[0]; e.Index != 3 || e.Phase != v1alpha1.StepFailed || e.Message != "boom" {
		t.Errorf("first entry: %+v", e)
	}
	if msg := run.Object.Status.Steps[0].Message; !strings.Contains(msg, "iteration each[3] failed: boom") {
		t.Errorf("step message: %q", msg)
	}
}

// Each iteration has its own step record (so its own memo) and its own log lines.
func TestIterationsHaveTheirOwnRecordsAndLogs(t *testing.T) {
	h := newHarness(t)
	key := h.start(`
metadata: {name: r}
spec:
  workflowSpec:
    steps:
    - {name: each, type: ok, forEach: {items: [a, b]}}`)
	run := h.waitPhase(key, v1alpha1.RunSucceeded)
	for _, name := range []string{"each[0]", "each[1]"} {
		if rec := run.Steps[name]; rec == nil || rec.Attempt != 1 {
			t.Errorf("record of %s: %+v", name, rec)
		}
	}
	h.store.mu.Lock()
	logs := h.store.logs[key]
	h.store.mu.Unlock()
	var steps []string
	for _, l := range logs {
		steps = append(steps, l.Step)
	}
	if got := strings.Join(steps, " "); got != "each[0] each[1]" {
		t.Errorf("log lines name %q, want each[0] each[1]", got)
	}
}

// Each iteration is named for people by its item, in the status's entries and the loop's
// records: strings as they are, objects by their name or fields, long ones cut.
func TestIterationsAreNamedByTheirItems(t *testing.T) {
	h := newHarness(t)
	long := strings.Repeat("x", 100)
	key := h.start(`
metadata: {name: r}
spec:
  workflowSpec:
    steps:
    - {name: each, type: ok, forEach: {items: [us-east-1, 3, {name: web, port: 80}, {region: eu, env: prod, tags: [a]}, ` + long + `]}}`)
	run := h.waitPhase(key, v1alpha1.RunSucceeded)
	want := []string{"us-east-1", "3", "web", "env=prod, region=eu", strings.Repeat("x", 61) + "…"}
	var got []string
	for _, e := range run.Object.Status.Steps[0].Iterations.Entries {
		got = append(got, e.Item)
	}
	if !slices.Equal(got, want) {
		t.Errorf("the status names the iterations %q, want %q", got, want)
	}
	got = got[:0]
	for _, it := range run.Loops["each"].Iterations {
		got = append(got, it.Item)
	}
	if !slices.Equal(got, want) {
		t.Errorf("the loop's records name the iterations %q, want %q", got, want)
	}
}

// A memo recorded by an iteration is given back to that iteration only when it is retried.
func TestIterationMemoIsPerIteration(t *testing.T) {
	h := newHarness(t)
	key := h.start(`
metadata: {name: r}
spec:
  workflowSpec:
    steps:
    - {name: each, type: memo-then-error, forEach: {items: [a, b], parallelism: 2}}`)
	h.waitFor(key, "both errored once", func(r *engine.Run) bool {
		return h.script.count("each[0]") == 1 && h.script.count("each[1]") == 1 && !h.eng.Busy(key)
	})
	h.clock.Advance(time.Second)
	run := h.waitPhase(key, v1alpha1.RunSucceeded)
	if h.script.count("each[0]") != 2 || h.script.count("each[1]") != 2 {
		t.Errorf("each iteration should be retried once, with its memo: %d, %d", h.script.count("each[0]"), h.script.count("each[1]"))
	}
	_ = run
}

// A step's retry policy overrides the engine's: its own limit and backoff.
func TestStepRetryPolicy(t *testing.T) {
	h := newHarness(t) // the engine's: 2 retries from 1s
	key := h.start(`
metadata: {name: r}
spec:
  workflowSpec:
    steps:
    - {name: e, type: error, retry: {limit: 4, backoff: {initial: 1m, factor: 3, max: 2m}}}`)
	h.waitFor(key, "first error", func(r *engine.Run) bool { return h.script.count("e") == 1 && !h.eng.Busy(key) })
	h.clock.Advance(59 * time.Second)
	if n := h.script.count("e"); n != 1 {
		t.Fatalf("retried after %d evaluations before its 1m backoff", n)
	}
	h.clock.Advance(time.Second)
	h.waitFor(key, "first retry", func(*engine.Run) bool { return h.script.count("e") == 2 && !h.eng.Busy(key) })
	// Then 3m capped at 2m, three times.
	for i := 3; i <= 5; i++ {
		h.clock.Advance(2 * time.Minute)
		h.waitFor(key, "retry", func(*engine.Run) bool { return h.script.count("e") == i && !h.eng.Busy(key) })
	}
	run := h.waitPhase(key, v1alpha1.RunFailed)
	if got := phases(run); got != "e=failed/FailedAfterRetries" {
		t.Errorf("steps: %s", got)
	}
	if !strings.Contains(run.Object.Status.Steps[0].Message, "failed after 4 retries") {
		t.Errorf("message: %q", run.Object.Status.Steps[0].Message)
	}
}

// Restarting from a failed iteration runs its loop again, keeping what succeeded before it.
func TestRestartFromAFailedLoop(t *testing.T) {
	h := newHarness(t)
	key := h.start(`
metadata: {name: r}
spec:
  workflowSpec:
    steps:
    - {name: first, type: ok}
    - name: each
      type: by-item
      forEach: {items: [ok, wait]}
      inputs: [{from: item, parameterKey: kind}]
      properties: {until: go}
      timeout: 1m`)
	h.waitFor(key, "waiting", func(r *engine.Run) bool {
		return strings.Contains(iterations(r, "each"), "each[1]=running") && !h.eng.Busy(key)
	})
	h.clock.Advance(time.Minute)
	run := h.waitPhase(key, v1alpha1.RunFailed)
	if got := phases(run); got != "first=succeeded each=failed/Timeout" {
		t.Fatalf("steps: %s", got)
	}
	h.script.release("go") // before the restart, which evaluates each[1] at once
	if err := h.operate(key, engine.Operation{Kind: engine.OpRestart, Step: "each[1]"}); err != nil {
		t.Fatal(err)
	}
	run = h.waitPhase(key, v1alpha1.RunSucceeded)
	if h.script.count("first") != 1 || h.script.count("each[0]") != 2 {
		t.Errorf("first ran %d times, each[0] %d times; want 1 and 2", h.script.count("first"), h.script.count("each[0]"))
	}
	if got := iterations(run, "each"); got != "each[0]=succeeded each[1]=succeeded" {
		t.Errorf("iterations: %s", got)
	}
}
