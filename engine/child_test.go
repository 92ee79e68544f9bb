package engine_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/engine"
)

// A workflow step runs a template as a child run, waits for it, and outputs its variables.
func TestSubWorkflowRunsAChildRun(t *testing.T) {
	h := newHarness(t)
	h.template("build", `
steps:
- {name: compile, type: ok, properties: {value: {image: app, tag: v9}}, outputs: [{name: artifact, valueFrom: x}]}`)
	key := h.start(`
metadata: {name: rel}
spec:
  workflowSpec:
    steps:
    - name: build
      type: workflow
      properties: {name: build, context: {env: prod}}
      outputs:
      - {name: built, valueFrom: variables.artifact}
      - {name: tag, valueFrom: variables.artifact.tag}
    - {name: deploy, type: ok, inputs: [{from: tag, parameterKey: value}], outputs: [{name: deployed, valueFrom: x}]}`)
	run := h.waitPhase(key, v1alpha1.RunSucceeded)
	if got := phases(run); got != "build=succeeded deploy=succeeded" {
		t.Errorf("steps: %s", got)
	}
	if got := run.Object.Status.Steps[0].ChildRun; got != "rel-build" {
		t.Errorf("childRun %q, want rel-build", got)
	}
	if got := varOf(run, "built"); got != `{"image":"app","tag":"v9"}` {
		t.Errorf("built = %s", got)
	}
	if got := varOf(run, "deployed"); got != `"v9"` {
		t.Errorf("deployed = %s", got)
	}
	child := h.saved(engine.Key{Namespace: "default", Name: "rel-build"})
	if child.Object.Labels[v1alpha1.LabelParentRun] != "rel" || child.Object.Spec.WorkflowRef != "build" {
		t.Errorf("child: labels %v, workflowRef %q", child.Object.Labels, child.Object.Spec.WorkflowRef)
	}
	if c := string(child.Object.Spec.Context.Raw); c != `{"env":"prod"}` {
		t.Errorf("child context %s", c)
	}
	if child.Object.Status.Phase != v1alpha1.RunSucceeded {
		t.Errorf("child %s", child.Object.Status.Phase)
	}
}

// A failing child fails its step, with the child's message.
func TestSubWorkflowFailsWithItsChild(t *testing.T) {
	h := newHarness(t)
	h.template("broken", `
steps:
- {name: boom, type: fail}`)
	key := h.start(`
metadata: {name: rel}
spec:
  workflowSpec:
    steps:
    - {name: sub, type: workflow, properties: {name: broken}}
    - {name: notify, type: ok, if: status.sub.failed}`)
	run := h.waitPhase(key, v1alpha1.RunFailed)
	if got := phases(run); got != "sub=failed/Execute notify=succeeded" {
		t.Errorf("steps: %s", got)
	}
	if msg := run.Object.Status.Steps[0].Message; msg != "child run rel-sub failed: step boom failed" {
		t.Errorf("message %q", msg)
	}
}

// A missing template fails the child run, and so the step.
func TestSubWorkflowOfAMissingTemplate(t *testing.T) {
	h := newHarness(t)
	key := h.start(`
metadata: {name: rel}
spec:
  workflowSpec:
    steps:
    - {name: sub, type: workflow, properties: {name: nowhere}}`)
	run := h.waitPhase(key, v1alpha1.RunFailed)
	if msg := run.Object.Status.Steps[0].Message; !strings.Contains(msg, "nowhere") {
		t.Errorf("message %q", msg)
	}
}

// startGated starts run rel, whose one step runs template gated as its child run rel-sub: a
// suspend step, then one that succeeds.
func startGated(h *harness) engine.Key {
	h.template("gated", `
steps:
- {name: approve, type: suspend}
- {name: go, type: ok}`)
	return h.start(`
metadata: {name: rel}
spec:
  workflowSpec:
    steps:
    - {name: sub, type: workflow, properties: {name: gated}}`)
}

// Suspend and resume of the parent pass through to the child; the child's own suspend step is
// released by resuming the parent.
func TestSubWorkflowSuspendResumePassThrough(t *testing.T) {
	h := newHarness(t)
	key := startGated(h)
	childKey := engine.Key{Namespace: "default", Name: "rel-sub"}
	h.waitFor(childKey, "child suspended", func(r *engine.Run) bool { return r.Object.Status.Phase == v1alpha1.RunSuspending })
	if err := h.operate(key, engine.Operation{Kind: engine.OpSuspend}); err != nil {
		t.Fatal(err)
	}
	if child := h.saved(childKey); !child.ManualSuspend {
		t.Error("suspending the parent did not suspend the child")
	}
	if err := h.operate(key, engine.Operation{Kind: engine.OpResume}); err != nil {
		t.Fatal(err)
	}
	run := h.waitPhase(key, v1alpha1.RunSucceeded)
	if got := phases(run); got != "sub=succeeded" {
		t.Errorf("steps: %s", got)
	}
	if child := h.saved(childKey); phases(child) != "approve=succeeded go=succeeded" {
		t.Errorf("child steps: %s", phases(child))
	}
}

// slowTemplate stores template slow, whose one step, hold, waits for ever.
func slowTemplate(h *harness) {
	h.template("slow", `
steps:
- {name: hold, type: wait, properties: {until: never}}`)
}

// startSlow starts run rel, whose one step runs template slow as its child run rel-sub.
func startSlow(h *harness) engine.Key {
	slowTemplate(h)
	return h.start(`
metadata: {name: rel}
spec:
  workflowSpec:
    steps:
    - {name: sub, type: workflow, properties: {name: slow}}`)
}

// Terminating the parent terminates the child.
func TestSubWorkflowTerminatePassThrough(t *testing.T) {
	h := newHarness(t)
	key := startSlow(h)
	childKey := engine.Key{Namespace: "default", Name: "rel-sub"}
	h.waitFor(childKey, "child waiting", func(r *engine.Run) bool { return strings.Contains(phases(r), "hold=running/Wait") })
	if err := h.operate(key, engine.Operation{Kind: engine.OpTerminate}); err != nil {
		t.Fatal(err)
	}
	run := h.waitPhase(key, v1alpha1.RunTerminated)
	if got := phases(run); got != "sub=failed/Terminate" {
		t.Errorf("steps: %s", got)
	}
	child := h.waitPhase(childKey, v1alpha1.RunTerminated)
	if got := phases(child); got != "hold=failed/Terminate" {
		t.Errorf("child steps: %s", got)
	}
}

// Restarting the parent runs the child again.
func TestSubWorkflowRestartPassThrough(t *testing.T) {
	h := newHarness(t)
	h.template("once", `
steps:
- {name: inner, type: ok}`)
	key := h.start(`
metadata: {name: rel}
spec:
  workflowSpec:
    steps:
    - {name: sub, type: workflow, properties: {name: once}}`)
	h.waitPhase(key, v1alpha1.RunSucceeded)
	if err := h.operate(key, engine.Operation{Kind: engine.OpRestart}); err != nil {
		t.Fatal(err)
	}
	h.waitFor(key, "ran again", func(r *engine.Run) bool {
		return r.Object.Status.Phase == v1alpha1.RunSucceeded && h.script.count("inner") == 2 && !h.eng.Busy(key)
	})
}

// A workflow step in a loop starts one child run per iteration.
func TestSubWorkflowPerIteration(t *testing.T) {
	h := newHarness(t)
	h.template("per-cluster", `
steps:
- {name: inner, type: ok, properties: {value: done}, outputs: [{name: result, valueFrom: x}]}`)
	key := h.start(`
metadata: {name: rel}
spec:
  workflowSpec:
    steps:
    - name: sub
      type: workflow
      forEach: {items: [eu, us], parallelism: 2}
      properties: {name: per-cluster}
      inputs: [{from: item, parameterKey: context.cluster}]
      outputs: [{name: results, valueFrom: variables.result}]`)
	run := h.waitPhase(key, v1alpha1.RunSucceeded)
	if got := varOf(run, "results"); got != `["done","done"]` {
		t.Errorf("results = %s", got)
	}
	for i, cluster := range []string{"eu", "us"} {
		name := []string{"rel-sub-0", "rel-sub-1"}[i]
		if got := run.Loops["sub"].Iterations[i].Status.ChildRun; got != name {
			t.Errorf("iteration %d childRun %q", i, got)
		}
		child := h.saved(engine.Key{Namespace: "default", Name: name})
		if c := string(child.Object.Spec.Context.Raw); c != `{"cluster":"`+cluster+`"}` {
			t.Errorf("%s context %s", name, c)
		}
	}
}

// gatedStore holds the first load of a run that finds it held by a suspend until the test
// lets it go: the load a parent's `workflow` step makes of its child.
type gatedStore struct {
	*memStore
	key     engine.Key
	once    sync.Once
	loaded  chan struct{}
	release chan struct{}
}

func (s *gatedStore) Load(ctx context.Context, key engine.Key) (*engine.Run, error) {
	run, err := s.memStore.Load(ctx, key)
	if err == nil && key == s.key && run.Object.Status.Phase == v1alpha1.RunSuspending {
		s.once.Do(func() {
			close(s.loaded)
			<-s.release
		})
	}
	return run, err
}

// A child that finishes while its parent's step is looking at it, having found it suspended,
// cannot release the step (it is not suspended yet): the parent looks again, and does not
// stay suspended on a child that has finished.
func TestAChildFinishingWhileItsParentLooksReleasesTheParent(t *testing.T) {
	childKey := engine.Key{Namespace: "default", Name: "rel-sub"}
	gate := &gatedStore{key: childKey, loaded: make(chan struct{}), release: make(chan struct{})}
	h := newHarness(t, func(o *engine.Options) {
		gate.memStore = o.Store.(*memStore)
		o.Store = gate
	})
	key := startGated(h)
	select {
	case <-gate.loaded: // the parent's step found the child suspended
	case <-time.After(10 * time.Second):
		t.Fatal("the parent's step never looked at its suspended child")
	}
	if err := h.operate(childKey, engine.Operation{Kind: engine.OpResume}); err != nil {
		t.Fatal(err)
	}
	h.waitPhase(childKey, v1alpha1.RunSucceeded)
	close(gate.release)
	run := h.waitPhase(key, v1alpha1.RunSucceeded)
	if got := phases(run); got != "sub=succeeded" {
		t.Errorf("steps: %s", got)
	}
}
