package engine_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/step"
)

// stepRun is a run (DAG mode, context env) whose step NAME-<run> of type typ has the
// concurrency key "db-" + context.env with limit, beside a step other-<run> that has none.
func stepRun(run, env, typ string, limit int, extra string) string {
	return fmt.Sprintf(`metadata: {name: %s}
spec:
  mode: {steps: DAG}
  context: {env: %s}
  workflowSpec:
    steps:
    - {name: deploy-%s, type: %s, concurrency: {key: '"db-" + context.env', limit: %d}%s}
    - {name: other-%s, type: ok}`, run, env, run, typ, limit, extra, run)
}

// stepStatus returns the status of the run's step by name.
func stepStatus(run *engine.Run, name string) v1alpha1.StepStatus {
	for _, s := range run.Object.Status.Steps {
		if s.Name == name {
			return s.StepStatus
		}
	}
	return v1alpha1.StepStatus{}
}

// waitStep waits until the run's step has the phase and the message.
func (h *harness) waitStep(key engine.Key, name string, phase v1alpha1.WorkflowStepPhase, msg string) *engine.Run {
	h.t.Helper()
	return h.waitFor(key, fmt.Sprintf("step %s %s (%s)", name, phase, msg), func(r *engine.Run) bool {
		s := stepStatus(r, name)
		return s.Phase == phase && s.Message == msg && !h.eng.Busy(key)
	})
}

// stepsRunning watches every saved transition and keeps the most steps named deploy-* of runs
// in env prod (of key db-prod) it saw running at once across runs.
type stepsRunning struct {
	mu   sync.Mutex
	now  map[string]bool
	peak int
}

func (s *stepsRunning) RunChanged(run *engine.Run) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := run.Object.Spec.Context; c == nil || !strings.Contains(string(c.Raw), `"prod"`) {
		return
	}
	for _, st := range run.Object.Status.Steps {
		if !strings.HasPrefix(st.Name, "deploy-") {
			continue
		}
		id := run.Object.Name + "/" + st.Name
		if st.Phase == v1alpha1.StepRunning || st.Phase == v1alpha1.StepSuspending {
			s.now[id] = true
		} else {
			delete(s.now, id)
		}
	}
	s.peak = max(s.peak, len(s.now))
}

func (s *stepsRunning) max() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peak
}

// stepSlotsHarness is slotsHarness with a stepsRunning observer.
func stepSlotsHarness(t *testing.T) (*harness, *stepsRunning, func(int) []string) {
	r := &stepsRunning{now: map[string]bool{}}
	h, slots := slotsHarness(t, func(o *engine.Options) { o.Observer = engine.Observers{o.Observer, r} })
	return h, r, func(limit int) []string { return held(t, slots, limit) }
}

// A step semaphore of limit 1 is a mutex across runs: the second run's step waits pending,
// its message naming the key and its place, while that run goes on with its other step; it
// runs once the first ends, and never are both running.
func TestStepConcurrencyMutex(t *testing.T) {
	h, r, held := stepSlotsHarness(t)
	a := h.start(stepRun("a", "prod", "block", 1, ""))
	h.waitFor(a, "deploy-a running", func(*engine.Run) bool { return h.script.count("deploy-a") == 1 })
	b := h.start(stepRun("b", "prod", "block", 1, ""))
	run := h.waitStep(b, "deploy-b", v1alpha1.StepPending, "waiting for concurrency key db-prod: place 1")
	if ph := stepStatus(run, "other-b").Phase; ph != v1alpha1.StepSucceeded {
		t.Errorf("other-b is %s: the run did not go on with its other step", ph)
	}
	if run.Object.Status.Phase != v1alpha1.RunExecuting {
		t.Errorf("run b is %s, want executing", run.Object.Status.Phase)
	}
	// Another key's step is not held up.
	c := h.start(stepRun("c", "dev", "ok", 1, ""))
	h.waitPhase(c, v1alpha1.RunSucceeded)
	// The waiting step asks again by itself, and still waits.
	h.clock.Advance(engine.QueuedRecheck)
	h.waitStep(b, "deploy-b", v1alpha1.StepPending, "waiting for concurrency key db-prod: place 1")
	if got := h.script.count("deploy-b"); got != 0 {
		t.Fatalf("deploy-b evaluated %d times while deploy-a held the key", got)
	}
	if got, want := held(1), []string{"step:db-prod:a/deploy-a"}; !slices.Equal(got, want) {
		t.Fatalf("held %v, want %v", got, want)
	}

	h.script.release("deploy-a")
	h.waitPhase(a, v1alpha1.RunSucceeded)
	h.waitFor(b, "deploy-b running", func(*engine.Run) bool { return h.script.count("deploy-b") == 1 })
	if got, want := held(1), []string{"step:db-prod:b/deploy-b"}; !slices.Equal(got, want) {
		t.Fatalf("held %v, want %v", got, want)
	}
	h.script.release("deploy-b")
	h.waitPhase(b, v1alpha1.RunSucceeded)
	if got := held(1); len(got) != 0 {
		t.Errorf("held %v after both ended", got)
	}
	if p := r.max(); p != 1 {
		t.Errorf("%d deploy steps ran at once, want 1", p)
	}
	if s := h.saved(b).StepSlots; len(s) != 0 {
		t.Errorf("run b still records step slots %v", s)
	}
}

// Limit 2 of 3: two steps run at once, the third waits in line until one of them ends.
func TestStepConcurrencyLimitTwoOfThree(t *testing.T) {
	h, r, held := stepSlotsHarness(t)
	a := h.start(stepRun("a", "prod", "block", 2, ""))
	b := h.start(stepRun("b", "prod", "block", 2, ""))
	h.waitFor(a, "deploy-a and deploy-b running", func(*engine.Run) bool {
		return h.script.count("deploy-a") == 1 && h.script.count("deploy-b") == 1
	})
	c := h.start(stepRun("c", "prod", "block", 2, ""))
	h.waitStep(c, "deploy-c", v1alpha1.StepPending, "waiting for concurrency key db-prod: place 1")
	if got, want := held(2), []string{"step:db-prod:a/deploy-a", "step:db-prod:b/deploy-b"}; !slices.Equal(got, want) {
		t.Fatalf("held %v, want %v", got, want)
	}
	h.script.release("deploy-b")
	h.waitPhase(b, v1alpha1.RunSucceeded)
	h.waitFor(c, "deploy-c running", func(*engine.Run) bool { return h.script.count("deploy-c") == 1 })
	if got, want := held(2), []string{"step:db-prod:a/deploy-a", "step:db-prod:c/deploy-c"}; !slices.Equal(got, want) {
		t.Fatalf("held %v, want %v", got, want)
	}
	h.script.release("deploy-a")
	h.script.release("deploy-c")
	h.waitPhase(a, v1alpha1.RunSucceeded)
	h.waitPhase(c, v1alpha1.RunSucceeded)
	if p := r.max(); p != 2 {
		t.Errorf("%d deploy steps ran at once, want 2", p)
	}
	if got := held(2); len(got) != 0 {
		t.Errorf("held %v after all ended", got)
	}
}

// Every way a step or its run ends gives up its slot or its place in line: the step's
// failure, its timeout, the run terminated while the step holds the slot, the run
// terminated while the step waits in line, the run deleted (by the sweep) and a run that
// finished in a process that died before it gave the slot up (by the sweep).
func TestStepConcurrencyReleasedOnEveryTerminalPath(t *testing.T) {
	// held fails the test whenever the key has more than one holder. (A count of the steps
	// running as saved would see the deleted run's step running still.)
	h, _, held := stepSlotsHarness(t)
	ctx := context.Background()

	// The step fails.
	a := h.start(stepRun("a", "prod", "fail", 1, ""))
	h.waitPhase(a, v1alpha1.RunFailed)
	if got := held(1); len(got) != 0 {
		t.Fatalf("held %v after the step failed", got)
	}

	// The step times out while another waits for the key.
	b := h.start(stepRun("b", "prod", "wait", 1, ", timeout: 5s, properties: {until: never}"))
	h.waitFor(b, "deploy-b waiting", func(r *engine.Run) bool { return stepStatus(r, "deploy-b").Reason == v1alpha1.ReasonWait })
	c := h.start(stepRun("c", "prod", "block", 1, ""))
	h.waitStep(c, "deploy-c", v1alpha1.StepPending, "waiting for concurrency key db-prod: place 1")
	h.clock.Advance(5 * time.Second)
	h.waitPhase(b, v1alpha1.RunFailed)
	h.waitFor(c, "deploy-c running", func(*engine.Run) bool { return h.script.count("deploy-c") == 1 })

	// The run is terminated while its step holds the slot; then one terminated in line.
	d := h.start(stepRun("d", "prod", "block", 1, ""))
	h.waitStep(d, "deploy-d", v1alpha1.StepPending, "waiting for concurrency key db-prod: place 1")
	e := h.start(stepRun("e", "prod", "block", 1, ""))
	h.waitStep(e, "deploy-e", v1alpha1.StepPending, "waiting for concurrency key db-prod: place 2")
	if err := h.operate(c, engine.Operation{Kind: engine.OpTerminate}); err != nil {
		t.Fatal(err)
	}
	h.waitPhase(c, v1alpha1.RunTerminated)
	h.waitFor(d, "deploy-d running", func(*engine.Run) bool { return h.script.count("deploy-d") == 1 })
	if err := h.operate(e, engine.Operation{Kind: engine.OpTerminate}); err != nil {
		t.Fatal(err)
	}
	run := h.waitPhase(e, v1alpha1.RunTerminated)
	if ph := stepStatus(run, "deploy-e").Phase; ph != v1alpha1.StepSkipped {
		t.Errorf("deploy-e, terminated in line, is %s, want skipped", ph)
	}
	if got := h.script.count("deploy-e"); got != 0 {
		t.Errorf("deploy-e evaluated %d times", got)
	}
	if got, want := held(1), []string{"step:db-prod:d/deploy-d"}; !slices.Equal(got, want) {
		t.Fatalf("held %v, want %v", got, want)
	}

	// The run is deleted while its step holds the slot: the sweep gives it up, and the step
	// waiting takes it.
	f := h.start(stepRun("f", "prod", "block", 1, ""))
	h.waitStep(f, "deploy-f", v1alpha1.StepPending, "waiting for concurrency key db-prod: place 1")
	if n, err := h.eng.SweepSlots(ctx); err != nil || n != 0 {
		t.Fatalf("sweep gave up %d slots (%v) of running steps, want 0", n, err)
	}
	h.store.mu.Lock()
	delete(h.store.runs, d)
	h.store.mu.Unlock()
	if n, err := h.eng.SweepSlots(ctx); err != nil || n != 1 {
		t.Fatalf("sweep gave up %d slots (%v), want 1", n, err)
	}
	h.waitFor(f, "deploy-f running", func(*engine.Run) bool { return h.script.count("deploy-f") == 1 })

	// A run that finished in a process that died before it gave its step's slot up, as that
	// process left it in the store: the sweep gives it up.
	g := h.start(stepRun("g", "prod", "block", 1, ""))
	h.waitStep(g, "deploy-g", v1alpha1.StepPending, "waiting for concurrency key db-prod: place 1")
	stored := h.saved(f)
	stored.Object.Status.Phase, stored.Object.Status.Finished = v1alpha1.RunFailed, true
	if err := h.store.Save(ctx, stored, nil); err != nil {
		t.Fatal(err)
	}
	if n, err := h.eng.SweepSlots(ctx); err != nil || n != 1 {
		t.Fatalf("sweep gave up %d slots (%v), want 1", n, err)
	}
	h.waitFor(g, "deploy-g running", func(*engine.Run) bool { return h.script.count("deploy-g") == 1 })
	h.script.release("deploy-g")
	h.waitPhase(g, v1alpha1.RunSucceeded)
	if got := held(1); len(got) != 0 {
		t.Errorf("held %v after the last ended", got)
	}
	// Nothing is left for a sweep: no slot held by a step that is not running.
	if n, err := h.eng.SweepSlots(ctx); err != nil || n != 0 {
		t.Fatalf("sweep gave up %d slots (%v), want 0", n, err)
	}
}

// A process dies while a step holds the slot: its slot survives it (the run's, not the
// process's), the step waiting stays waiting, and the process that takes the runs up goes on
// with the step and gives the slot up as it ends.
func TestStepConcurrencyCrashAndRecover(t *testing.T) {
	h, slots := slotsHarness(t)
	a := h.start(stepRun("a", "prod", "block", 1, ""))
	h.waitFor(a, "deploy-a running", func(*engine.Run) bool { return h.script.count("deploy-a") == 1 })
	b := h.start(stepRun("b", "prod", "block", 1, ""))
	h.waitStep(b, "deploy-b", v1alpha1.StepPending, "waiting for concurrency key db-prod: place 1")
	h.stop() // the process dies

	h2 := newHarness(t, func(o *engine.Options) {
		o.Store, o.Clock = h.store, h.clock
		o.Slots = slots
		o.CacheKeys = step.NewRunner(step.Options{Evaluators: 1})
	})
	h2.store, h2.clock = h.store, h.clock
	h2.eng.Enqueue(a)
	h2.eng.Enqueue(b)
	h2.waitFor(a, "deploy-a evaluated again", func(*engine.Run) bool { return h2.script.count("deploy-a") == 1 })
	h2.clock.Advance(engine.QueuedRecheck)
	if s := stepStatus(h2.saved(b), "deploy-b"); s.Phase != v1alpha1.StepPending || s.Message != "waiting for concurrency key db-prod: place 1" {
		t.Errorf("deploy-b after the crash: %s (%s)", s.Phase, s.Message)
	}
	if got, want := held(t, slots, 1), []string{"step:db-prod:a/deploy-a"}; !slices.Equal(got, want) {
		t.Fatalf("held %v, want %v", got, want)
	}
	if got := h2.script.count("deploy-b"); got != 0 {
		t.Fatalf("deploy-b evaluated %d times after the crash while deploy-a held the key", got)
	}
	h2.script.release("deploy-a")
	h2.waitPhase(a, v1alpha1.RunSucceeded)
	h2.waitFor(b, "deploy-b running", func(*engine.Run) bool { return h2.script.count("deploy-b") == 1 })
	h2.script.release("deploy-b")
	h2.waitPhase(b, v1alpha1.RunSucceeded)
	if got := held(t, slots, 1); len(got) != 0 {
		t.Errorf("held %v after both ended", got)
	}
}

// A forEach step holds one slot for the whole loop, taken as it starts: its iterations run
// as its parallelism says, and another run's loop waits until it ends.
func TestStepConcurrencyLoopHoldsOneSlot(t *testing.T) {
	h, _, held := stepSlotsHarness(t)
	loop := func(run string) string {
		return fmt.Sprintf(`metadata: {name: %s}
spec:
  workflowSpec:
    steps:
    - name: deploy-%s
      type: by-item
      concurrency: {key: '"one"', limit: 1}
      forEach: {items: [wait, wait], parallelism: 2}
      inputs: [{from: item, parameterKey: kind}]
      properties: {until: go-%s}`, run, run, run)
	}
	a := h.start(loop("a"))
	h.waitFor(a, "both iterations evaluated", func(*engine.Run) bool {
		return h.script.count("deploy-a[0]") >= 1 && h.script.count("deploy-a[1]") >= 1
	})
	b := h.start(loop("b"))
	h.waitStep(b, "deploy-b", v1alpha1.StepPending, "waiting for concurrency key one: place 1")
	if got, want := held(1), []string{"step:one:a/deploy-a"}; !slices.Equal(got, want) {
		t.Fatalf("held %v, want %v", got, want)
	}
	h.script.release("go-a")
	h.clock.Advance(5 * time.Second)
	h.waitPhase(a, v1alpha1.RunSucceeded)
	h.waitFor(b, "b's iterations evaluated", func(*engine.Run) bool { return h.script.count("deploy-b[1]") >= 1 })
	h.script.release("go-b")
	h.clock.Advance(5 * time.Second)
	h.waitPhase(b, v1alpha1.RunSucceeded)
	if got := held(1); len(got) != 0 {
		t.Errorf("held %v after both loops ended", got)
	}
}

// A key that cannot be evaluated fails the step, naming concurrency.key, without running it.
func TestStepConcurrencyBadKeyFailsTheStep(t *testing.T) {
	h, _ := slotsHarness(t)
	key := h.start(`metadata: {name: r}
spec:
  workflowSpec: {steps: [{name: a, type: ok, concurrency: {key: parameter.missing, limit: 1}}]}`)
	run := h.waitPhase(key, v1alpha1.RunFailed)
	if msg := stepStatus(run, "a").Message; !strings.Contains(msg, "concurrency.key") {
		t.Errorf("message %q does not name concurrency.key", msg)
	}
	if got := h.script.count("a"); got != 0 {
		t.Errorf("a evaluated %d times", got)
	}
}

// An engine without Slots runs such a step without its semaphore, and says so in its log.
func TestStepConcurrencyWithoutSlotsWarns(t *testing.T) {
	h := newHarness(t)
	key := h.start(`metadata: {name: r}
spec:
  workflowSpec: {steps: [{name: a, type: ok, concurrency: {key: '"k"', limit: 1}}]}`)
	h.waitPhase(key, v1alpha1.RunSucceeded)
	h.store.mu.Lock()
	logs := slices.Clone(h.store.logs[key])
	h.store.mu.Unlock()
	if !slices.ContainsFunc(logs, func(l engine.LogEntry) bool {
		return l.Step == "a" && l.Severity == engine.SeverityWarning && strings.Contains(l.Message, "without its semaphore")
	}) {
		t.Errorf("no warning in the log: %+v", logs)
	}
}

// A sub-step of a step-group takes its slot as any step does: the other run's sub-step waits
// pending, its message naming the key, and runs once the first has ended.
func TestStepConcurrencySubStep(t *testing.T) {
	h, _, held := stepSlotsHarness(t)
	grouped := func(run string) string {
		return fmt.Sprintf(`metadata: {name: %s}
spec:
  context: {env: prod}
  workflowSpec:
    steps:
    - name: g-%s
      type: step-group
      subSteps:
      - {name: deploy-%s, type: block, concurrency: {key: '"db-" + context.env', limit: 1}}`, run, run, run)
	}
	subStatus := func(run *engine.Run) v1alpha1.StepStatus {
		if len(run.Object.Status.Steps) == 0 || len(run.Object.Status.Steps[0].SubStepsStatus) == 0 {
			return v1alpha1.StepStatus{}
		}
		return run.Object.Status.Steps[0].SubStepsStatus[0]
	}
	a := h.start(grouped("a"))
	h.waitFor(a, "deploy-a running", func(*engine.Run) bool { return h.script.count("deploy-a") == 1 })
	b := h.start(grouped("b"))
	h.waitFor(b, "deploy-b waiting for the key", func(r *engine.Run) bool {
		s := subStatus(r)
		return s.Phase == v1alpha1.StepPending && s.Message == "waiting for concurrency key db-prod: place 1"
	})
	if got, want := held(1), []string{"step:db-prod:a/deploy-a"}; !slices.Equal(got, want) {
		t.Fatalf("held %v, want %v", got, want)
	}
	h.script.release("deploy-a")
	h.waitPhase(a, v1alpha1.RunSucceeded)
	h.waitFor(b, "deploy-b running", func(*engine.Run) bool { return h.script.count("deploy-b") == 1 })
	h.script.release("deploy-b")
	h.waitPhase(b, v1alpha1.RunSucceeded)
	if got := held(1); len(got) != 0 {
		t.Errorf("held %v after both ended", got)
	}
}
