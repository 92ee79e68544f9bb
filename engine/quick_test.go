package engine_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/engine"
)

// quickScript is the script as an engine.QuickRunner: the steps of the types in quick are
// evaluated at once, the others are not quick.
type quickScript struct {
	*script
	quick map[string]bool
}

func (q quickScript) RunQuick(ctx context.Context, req *engine.StepRequest) (*engine.StepResult, bool, error) {
	if !q.quick[req.Step.Type] {
		return nil, false, nil
	}
	res, err := q.RunStep(ctx, req)
	return res, true, err
}

// saves records the steps' phases at every save of a run.
type saves struct {
	mu   sync.Mutex
	seen []string
}

func (s *saves) RunChanged(run *engine.Run) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seen = append(s.seen, phases(run))
}

func (s *saves) list() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.seen...)
}

// quickHarness is a harness whose runner makes the steps of the types given quick, and which
// records every save.
func quickHarness(t *testing.T, types ...string) (*harness, *saves) {
	rec := &saves{}
	h := newHarness(t, quickTypes(types...), func(o *engine.Options) {
		o.Observer = engine.Observers{o.Observer, rec}
	})
	return h, rec
}

// quickTypes makes the harness's runner a quickScript that makes the steps of the types given.
func quickTypes(types ...string) func(*engine.Options) {
	return func(o *engine.Options) {
		q := quickScript{script: o.Runner.(*script), quick: map[string]bool{}}
		for _, typ := range types {
			q.quick[typ] = true
		}
		o.Runner = q
	}
}

func TestQuickStepsAreSavedWithTheTransitionThatStartsThem(t *testing.T) {
	h, rec := quickHarness(t, "ok")
	key := h.start(`
metadata: {name: quick}
spec:
  workflowSpec:
    steps:
    - {name: a, type: ok, outputs: [{name: tag, valueFrom: x}]}
    - {name: b, type: block}
    - {name: c, type: ok, inputs: [{from: tag, parameterKey: value}]}`)
	h.waitFor(key, "b running", func(r *engine.Run) bool { return strings.Contains(phases(r), "b=running") })
	h.script.release("b")
	run := h.waitPhase(key, v1alpha1.RunSucceeded)
	if got := varOf(run, "tag"); got != `"a"` {
		t.Errorf("the quick step's output: tag = %s, want \"a\"", got)
	}
	got := rec.list()
	want := []string{
		"a=succeeded b=running c=pending",     // the run started, a made at once, b launched
		"a=succeeded b=succeeded c=succeeded", // b's result, c made at once
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("saves:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, step := range []string{"a", "b", "c"} {
		if n := h.script.count(step); n != 1 {
			t.Errorf("step %s evaluated %d times, want once", step, n)
		}
	}
}

func TestARunOfQuickStepsIsSavedEveryEightOfThem(t *testing.T) {
	h, rec := quickHarness(t, "ok")
	var steps strings.Builder
	for i := 1; i <= 10; i++ {
		fmt.Fprintf(&steps, "    - {name: s%d, type: ok}\n", i)
	}
	key := h.start("metadata: {name: chain}\nspec:\n  workflowSpec:\n    steps:\n" + steps.String())
	h.waitPhase(key, v1alpha1.RunSucceeded)
	got := rec.list()
	// Eight rounds of quick steps in the advance that started the run; the ninth is launched as
	// any step is, and its result brings the tenth.
	if len(got) != 2 || !strings.Contains(got[0], "s8=succeeded s9=running s10=pending") ||
		strings.Contains(got[1], "running") || strings.Contains(got[1], "pending") {
		t.Errorf("saves:\n%s\nwant two: s1 to s8 made at once with s9 running, then the rest", strings.Join(got, "\n"))
	}
}

// loadCounter counts the loads of each run.
type loadCounter struct {
	*memStore
	mu    sync.Mutex
	loads map[engine.Key]int
}

func (s *loadCounter) Load(ctx context.Context, key engine.Key) (*engine.Run, error) {
	s.mu.Lock()
	s.loads[key]++
	s.mu.Unlock()
	return s.memStore.Load(ctx, key)
}

func (s *loadCounter) count(key engine.Key) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.loads[key]
}

// A resume that the run finishes from (its next steps quick) leaves nothing to do: a run with no
// child runs is not queued again to see its children, which would load it for nothing.
func TestAResumeFinishingTheRunLeavesNoWork(t *testing.T) {
	loads := &loadCounter{loads: map[engine.Key]int{}}
	h := newHarness(t, quickTypes("ok", "suspend"), func(o *engine.Options) {
		loads.memStore = o.Store.(*memStore)
		o.Store = loads
	})
	key := h.start(`
metadata: {name: approve-then-go}
spec:
  workflowSpec:
    steps:
    - {name: approve, type: suspend}
    - {name: go, type: ok}`)
	h.waitFor(key, "suspended", func(r *engine.Run) bool { return r.Object.Status.Phase == v1alpha1.RunSuspending && !h.eng.Busy(key) })
	before := loads.count(key)
	if err := h.operate(key, engine.Operation{Kind: engine.OpResume}); err != nil {
		t.Fatal(err)
	}
	if got := phases(h.saved(key)); got != "approve=succeeded go=succeeded" {
		t.Fatalf("after the resume: %s, want both steps made by it", got)
	}
	h.waitFor(key, "idle", func(*engine.Run) bool { return !h.eng.Busy(key) })
	if n := loads.count(key) - before; n != 0 {
		t.Errorf("the run was loaded %d times after its resume; it had finished in it", n)
	}
}
