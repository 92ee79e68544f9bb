package engine_test

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/engine"
)

// stored returns every run in the store, by name.
func (s *memStore) stored(t *testing.T) map[string]*engine.Run {
	t.Helper()
	s.mu.Lock()
	keys := make([]engine.Key, 0, len(s.runs))
	for k := range s.runs {
		keys = append(keys, k)
	}
	s.mu.Unlock()
	out := map[string]*engine.Run{}
	for _, k := range keys {
		run, err := s.Load(context.Background(), k)
		if err != nil {
			t.Fatal(err)
		}
		out[k.Name] = run
	}
	return out
}

// saying returns the names of the runs whose record mentions text.
func saying(t *testing.T, runs map[string]*engine.Run, text string) []string {
	t.Helper()
	var out []string
	for name, run := range runs {
		b, _ := json.Marshal(run)
		if strings.Contains(string(b), text) {
			out = append(out, name)
		}
	}
	return out
}

// A template that runs itself stops at the depth limit: the step that would start a run one
// level deeper fails, naming the limit and its flag, and so does every run above it. Before,
// such a template made thousands of nested runs.
func TestSubWorkflowRecursionStopsAtTheDepthLimit(t *testing.T) {
	h := newHarness(t, func(o *engine.Options) { o.Limits.WorkflowDepth = 3 })
	h.template("again", `
steps:
- {name: sub, type: workflow, properties: {name: again}}`)
	key := h.start(`
metadata: {name: rel}
spec: {workflowRef: again}`)
	h.waitPhase(key, v1alpha1.RunFailed)
	runs := h.store.stored(t)
	if len(runs) != 4 {
		t.Errorf("%d runs, want the root and 3 nested ones", len(runs))
	}
	deepest := runs["rel-sub-sub-sub"]
	if deepest == nil {
		t.Fatal("no run at depth 3")
	}
	msg := deepest.Object.Status.Steps[0].Message
	if !strings.Contains(msg, "would be 4 workflow steps deep, more than the limit of 3") || !strings.Contains(msg, "--max-workflow-depth") {
		t.Errorf("the deepest run's step: %q", msg)
	}
	if d := deepest.Object.Annotations["stepflow.dev/workflow-depth"]; d != "3" {
		t.Errorf("depth annotation %q", d)
	}
}

// The child runs under one root run, at every depth, are bounded: the step that would start
// one more fails, naming the limit and its flag.
func TestChildRunsOfOneRootAreBounded(t *testing.T) {
	h := newHarness(t, func(o *engine.Options) { o.Limits.ChildRuns = 5 })
	h.template("leaf", `
steps:
- {name: inner, type: ok}`)
	h.template("pair", `
steps:
- {name: left, type: workflow, properties: {name: leaf}}
- {name: right, type: workflow, properties: {name: leaf}}`)
	key := h.start(`
metadata: {name: rel}
spec:
  workflowSpec:
    steps:
    - {name: each, type: workflow, forEach: {items: [1, 2, 3], parallelism: 3, failFast: false}, properties: {name: pair}}`)
	h.waitPhase(key, v1alpha1.RunFailed)
	runs := h.store.stored(t)
	if len(runs) != 6 {
		t.Errorf("%d runs, want the root and 5 child runs", len(runs))
	}
	if n := runs["rel"].ChildRuns; n != 5 {
		t.Errorf("the root counted %d child runs", n)
	}
	if got := saying(t, runs, "has started 5 child runs under it, the limit (the engine's Limits.ChildRuns, --max-child-runs)"); len(got) == 0 {
		t.Error("no step failed at the limit of child runs")
	}
}

// Child runs' names are Kubernetes object names of at most 63 characters (the parent label of
// their own children), whatever the parent's and the step's names, and stay distinct.
func TestChildRunNamesAreValidKubernetesNames(t *testing.T) {
	h := newHarness(t)
	h.template("leaf", `
steps:
- {name: inner, type: ok}`)
	parent := strings.Repeat("a", 60)
	key := h.start(`
metadata: {name: ` + parent + `}
spec:
  workflowSpec:
    steps:
    - {name: Deploy_App, type: workflow, forEach: {items: [1, 2], parallelism: 2}, properties: {name: leaf}}`)
	run := h.waitPhase(key, v1alpha1.RunSucceeded)
	seen := map[string]bool{}
	for _, it := range run.Loops["Deploy_App"].Iterations {
		name := it.Status.ChildRun
		if len(name) > 63 || len(validation.IsDNS1123Subdomain(name)) > 0 || seen[name] {
			t.Errorf("child run name %q (%d characters): %v", name, len(name), validation.IsDNS1123Subdomain(name))
		}
		seen[name] = true
		if c := h.saved(engine.Key{Namespace: "default", Name: name}); c.Object.Labels[v1alpha1.LabelParentRun] != parent {
			t.Errorf("child %s: labels %v", name, c.Object.Labels)
		}
	}
	if len(seen) != 2 {
		t.Errorf("child runs %v", seen)
	}
}

// createGate holds the creation of one run (its first save) until the test lets it go.
type createGate struct {
	*memStore
	key           engine.Key
	once          sync.Once
	held, release chan struct{}
}

func (s *createGate) Save(ctx context.Context, run *engine.Run, logs []engine.LogEntry) error {
	if run.Key() == s.key && run.Version == 0 {
		s.once.Do(func() {
			close(s.held)
			<-s.release
		})
	}
	return s.memStore.Save(ctx, run, logs)
}

// A terminate of the parent, by another process over the same store, that comes while its
// step is creating the child run (so that it does not find the child) still ends the child,
// before any of its steps runs. Before, the child ran on, and its own `workflow` steps on.
func TestTerminateReachesAChildStartedMeanwhile(t *testing.T) {
	childKey := engine.Key{Namespace: "default", Name: "rel-sub"}
	gate := &createGate{key: childKey, held: make(chan struct{}), release: make(chan struct{})}
	h := newHarness(t, func(o *engine.Options) {
		gate.memStore = o.Store.(*memStore)
		o.Store = gate
	})
	key := startSlow(h)
	select {
	case <-gate.held:
	case <-time.After(10 * time.Second):
		t.Fatal("the child run was never created")
	}
	other := engine.New(engine.Options{Store: gate.memStore, Runner: h.script, Clock: h.clock})
	if _, err := other.Operate(context.Background(), key, engine.Operation{Kind: engine.OpTerminate, By: "alice"}); err != nil {
		t.Fatal(err)
	}
	close(gate.release)
	child := h.waitPhase(childKey, v1alpha1.RunTerminated)
	if !strings.Contains(child.Object.Status.Message, "its parent run rel ended") {
		t.Errorf("child's message %q", child.Object.Status.Message)
	}
	if n := h.script.count("hold"); n != 0 {
		t.Errorf("the child's step ran %d times", n)
	}
	h.waitPhase(key, v1alpha1.RunTerminated)
}

// A child run left unfinished under a terminated parent (stored before the terminate, and taken
// up again by a process that recovers unfinished runs) does not start.
func TestAChildOfATerminatedRunDoesNotStart(t *testing.T) {
	h := newHarness(t)
	slowTemplate(h)
	meta := func(name string) metav1.ObjectMeta { return metav1.ObjectMeta{Name: name, Namespace: "default"} }
	parent := &engine.Run{Object: &v1alpha1.WorkflowRun{ObjectMeta: meta("rel"),
		Status: v1alpha1.WorkflowRunStatus{Phase: v1alpha1.RunTerminated, Terminated: true, Finished: true}}}
	child := &engine.Run{Object: &v1alpha1.WorkflowRun{ObjectMeta: meta("rel-sub"), Spec: v1alpha1.WorkflowRunSpec{WorkflowRef: "slow"}}}
	child.Object.Labels = map[string]string{v1alpha1.LabelParentRun: "rel"}
	for _, r := range []*engine.Run{parent, child} {
		if err := h.store.Save(context.Background(), r, nil); err != nil {
			t.Fatal(err)
		}
	}
	h.eng.Enqueue(child.Key())
	run := h.waitPhase(child.Key(), v1alpha1.RunFailed)
	if msg := run.Object.Status.Message; !strings.Contains(msg, "its parent run rel was terminated") {
		t.Errorf("message %q", msg)
	}
	if n := h.script.count("hold"); n != 0 {
		t.Errorf("the child's step ran %d times", n)
	}
}
