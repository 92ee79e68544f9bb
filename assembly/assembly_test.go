package assembly_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/yaml"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/assembly"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/store/sqlite"
)

// settled is told of every transition and closes done when the run it waits for finishes.
type settled struct {
	done chan *engine.Run
}

func (s settled) RunChanged(run *engine.Run) {
	if run.Object.Status.Finished {
		select {
		case s.done <- run:
		default:
		}
	}
}

// start assembles stepflow over a fresh embedded store, stores run (checked or not) and drives
// it to its end.
func start(t *testing.T, cfg assembly.Config, doc string, checked bool) (*assembly.Assembly, *engine.Run) {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, sqlite.Options{Path: filepath.Join(t.TempDir(), "stepflow.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	watch := settled{done: make(chan *engine.Run, 1)}
	a, err := assembly.New(cfg, assembly.Mode{Store: st, Definitions: st, Observers: []engine.Observer{watch}})
	if err != nil {
		t.Fatal(err)
	}
	var obj v1alpha1.WorkflowRun
	if err := yaml.UnmarshalStrict([]byte(doc), &obj); err != nil {
		t.Fatal(err)
	}
	if err := st.Create(ctx, &engine.Run{Object: &obj, Checked: checked}, false); err != nil {
		t.Fatal(err)
	}
	engCtx, cancel := context.WithCancel(ctx)
	stopped := make(chan struct{})
	go func() { _ = a.Engine.Start(engCtx); close(stopped) }()
	t.Cleanup(func() { cancel(); <-stopped })
	a.Engine.Enqueue(engine.Key{Namespace: obj.Namespace, Name: obj.Name})
	select {
	case run := <-watch.done:
		return a, run
	case <-time.After(30 * time.Second):
		t.Fatal("the run did not finish")
	}
	return nil, nil
}

const badRun = `
apiVersion: core.oam.dev/v1alpha1
kind: WorkflowRun
metadata: {name: bad, namespace: default}
spec:
  workflowSpec:
    steps:
    - {name: first, type: print-message-in-status, properties: {message: hello}}
    - {name: second, type: no-such-type}
`

// A run that reaches the engine unchecked (a WorkflowRun applied with kubectl, a child run) is
// checked before its first step in every mode, as the controller alone did before: nothing of
// it runs.
func TestEveryModeChecksARunBeforeItStarts(t *testing.T) {
	_, run := start(t, assembly.Config{}, badRun, false)
	st := run.Object.Status
	if st.Phase != v1alpha1.RunFailed || !strings.Contains(st.Message, "invalid WorkflowRun") || !strings.Contains(st.Message, "no-such-type") {
		t.Fatalf("phase %s, message %q: want failed as an invalid WorkflowRun naming the type", st.Phase, st.Message)
	}
	for _, s := range st.Steps {
		if s.Phase != v1alpha1.StepPending {
			t.Errorf("step %s is %s: nothing should have run before the check failed the run", s.Name, s.Phase)
		}
	}
}

// A run the front end checked on its way in is not checked again: it starts, and fails only at
// the step whose type is missing.
func TestACheckedRunIsNotCheckedAgain(t *testing.T) {
	_, run := start(t, assembly.Config{}, badRun, true)
	st := run.Object.Status
	if strings.Contains(st.Message, "invalid WorkflowRun") {
		t.Fatalf("a checked run was checked again: %q", st.Message)
	}
	phases := map[string]v1alpha1.WorkflowStepPhase{}
	for _, s := range st.Steps {
		phases[s.Name] = s.Phase
	}
	if phases["first"] != v1alpha1.StepSucceeded || phases["second"] != v1alpha1.StepFailed {
		t.Errorf("steps %v: want first succeeded, second failed", phases)
	}
}

// Metrics are wired in whichever mode sets Config.Metrics.
func TestMetricsAreWiredWhenARegistryIsGiven(t *testing.T) {
	reg := prometheus.NewRegistry()
	a, _ := start(t, assembly.Config{Metrics: reg}, strings.Replace(badRun, "no-such-type", "print-message-in-status, properties: {message: bye}", 1), true)
	if a.Metrics == nil {
		t.Fatal("no Metrics with a registry given")
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, f := range families {
		got[f.GetName()] = true
	}
	for _, want := range []string{"stepflow_runs_started_total", "stepflow_runs_finished_total", "stepflow_queue_depth"} {
		if !got[want] {
			t.Errorf("metric %s not registered", want)
		}
	}
	none, _ := start(t, assembly.Config{}, badRun, true)
	if none.Metrics != nil {
		t.Error("Metrics set without a registry")
	}
}
