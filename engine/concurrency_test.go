package engine_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/step"
	"github.com/stepflow/stepflow/store"
	"github.com/stepflow/stepflow/store/sqlite"
)

// slotsHarness is a harness whose engine keeps concurrency keys' slots in a real SQLite
// store's records (store.Slots), the keys evaluated by the real step runtime. The steps are
// the script's: a suspend step holds its run running until it is resumed.
func slotsHarness(t *testing.T, configure ...func(*engine.Options)) (*harness, *store.Slots) {
	t.Helper()
	st, err := sqlite.Open(context.Background(), sqlite.Options{Path: filepath.Join(t.TempDir(), "stepflow.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	slots := &store.Slots{Records: st}
	h := newHarness(t, append([]func(*engine.Options){func(o *engine.Options) {
		o.Slots = slots
		o.CacheKeys = step.NewRunner(step.Options{Evaluators: 1})
	}}, configure...)...)
	return h, slots
}

// held lists the runs holding a slot, sorted, as "key:run"; and fails the test when a key
// has more holders than limit.
func held(t *testing.T, slots *store.Slots, limit int) []string {
	t.Helper()
	hs, err := slots.Holders(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	per := map[string]int{}
	for _, h := range hs {
		if h.Held {
			out = append(out, h.Key+":"+h.Run)
			per[h.Key]++
			if per[h.Key] > limit {
				t.Errorf("key %s has %d holders, more than its limit %d", h.Key, per[h.Key], limit)
			}
		}
	}
	slices.Sort(out)
	return out
}

// queuedRun is a run of the template gated (limit 1, key from parameter env), with a priority.
func queuedRun(name, env string, priority int) string {
	return fmt.Sprintf(`metadata: {name: %s}
spec:
  workflowRef: gated
  priority: %d
  context: {env: %s}`, name, priority, env)
}

func (h *harness) gatedTemplate(onLimit string) {
	h.template("gated", fmt.Sprintf(`
concurrency: {key: '"deploy-" + parameter.env', limit: 1, onLimit: %s}
steps:
- {name: approve, type: suspend}
- {name: deploy, type: ok}`, onLimit))
}

func (h *harness) waitMessage(key engine.Key, phase v1alpha1.WorkflowRunPhase, msg string) *engine.Run {
	h.t.Helper()
	return h.waitFor(key, fmt.Sprintf("%s (%s)", phase, msg), func(r *engine.Run) bool {
		return r.Object.Status.Phase == phase && r.Object.Status.Message == msg && !h.eng.Busy(key)
	})
}

// Runs of a template with a concurrency key of limit 1: the first runs, the others wait in
// phase queued with the key and their place, a higher priority ahead of an earlier run; a run
// of another key is not held up. Each finish (success, terminate) starts the next in line, and
// never does a key have more than one holder.
func TestConcurrencyQueueByPriority(t *testing.T) {
	h, slots := slotsHarness(t)
	h.gatedTemplate("queue")
	a := h.start(queuedRun("a", "prod", 0))
	h.waitPhase(a, v1alpha1.RunSuspending)
	b := h.start(queuedRun("b", "prod", 0))
	h.waitMessage(b, v1alpha1.RunQueued, "queued on concurrency key deploy-prod: place 1")
	c := h.start(queuedRun("c", "prod", 5))
	h.waitMessage(c, v1alpha1.RunQueued, "queued on concurrency key deploy-prod: place 1")
	d := h.start(queuedRun("d", "dev", 0))
	h.waitPhase(d, v1alpha1.RunSuspending)
	if got := h.script.count("approve"); got != 2 {
		t.Fatalf("approve evaluated %d times, want 2 (a and d): queued runs started a step", got)
	}
	// b asks again by itself and finds c ahead of it.
	h.clock.Advance(engine.QueuedRecheck)
	h.waitMessage(b, v1alpha1.RunQueued, "queued on concurrency key deploy-prod: place 2")
	if got, want := held(t, slots, 1), []string{"deploy-dev:d", "deploy-prod:a"}; !slices.Equal(got, want) {
		t.Fatalf("held %v, want %v", got, want)
	}

	if err := h.operate(a, engine.Operation{Kind: engine.OpResume}); err != nil {
		t.Fatal(err)
	}
	h.waitPhase(a, v1alpha1.RunSucceeded)
	h.waitPhase(c, v1alpha1.RunSuspending) // the higher priority first
	// b's place is as it last asked, until it asks again.
	h.clock.Advance(engine.QueuedRecheck)
	h.waitMessage(b, v1alpha1.RunQueued, "queued on concurrency key deploy-prod: place 1")
	if got, want := held(t, slots, 1), []string{"deploy-dev:d", "deploy-prod:c"}; !slices.Equal(got, want) {
		t.Fatalf("held %v, want %v", got, want)
	}

	if err := h.operate(c, engine.Operation{Kind: engine.OpTerminate}); err != nil {
		t.Fatal(err)
	}
	h.waitPhase(c, v1alpha1.RunTerminated)
	h.waitPhase(b, v1alpha1.RunSuspending)
	if err := h.operate(b, engine.Operation{Kind: engine.OpResume}); err != nil {
		t.Fatal(err)
	}
	h.waitPhase(b, v1alpha1.RunSucceeded)
	if got, want := held(t, slots, 1), []string{"deploy-dev:d"}; !slices.Equal(got, want) {
		t.Fatalf("held %v, want %v", got, want)
	}
}

// Every way a run ends gives up what it held: a failure, a terminate while it runs, a
// terminate while it waits in line (its place), a delete (by the sweep) and a run that
// finished in a process that died before it gave its slot up (by the sweep).
func TestConcurrencyReleasedOnEveryTerminalPath(t *testing.T) {
	h, slots := slotsHarness(t)
	h.template("gated", `
concurrency: {key: context.env, limit: 1}
steps:
- {name: approve, type: suspend}
- {name: deploy, type: fail}`)
	run := func(name string) engine.Key {
		return h.start(fmt.Sprintf("metadata: {name: %s}\nspec: {workflowRef: gated, context: {env: prod}}", name))
	}
	// A failure.
	a := run("a")
	h.waitPhase(a, v1alpha1.RunSuspending)
	b := run("b")
	h.waitPhase(b, v1alpha1.RunQueued)
	c := run("c")
	h.waitPhase(c, v1alpha1.RunQueued)
	if err := h.operate(a, engine.Operation{Kind: engine.OpResume}); err != nil {
		t.Fatal(err)
	}
	h.waitPhase(a, v1alpha1.RunFailed)
	h.waitPhase(b, v1alpha1.RunSuspending)

	// A terminate in line: c leaves the line, and runs no step.
	if err := h.operate(c, engine.Operation{Kind: engine.OpTerminate}); err != nil {
		t.Fatal(err)
	}
	h.waitPhase(c, v1alpha1.RunTerminated)
	if hs, _ := slots.Holders(context.Background()); slices.ContainsFunc(hs, func(x engine.SlotHolder) bool { return x.Run == "c" }) {
		t.Errorf("terminated run c still in line: %v", hs)
	}

	// A delete: b is gone from the store while it holds the slot; the sweep gives it up and
	// the next in line starts.
	d := run("d")
	h.waitPhase(d, v1alpha1.RunQueued)
	h.store.mu.Lock()
	delete(h.store.runs, b)
	h.store.mu.Unlock()
	if n, err := h.eng.SweepSlots(context.Background()); err != nil || n != 1 {
		t.Fatalf("sweep gave up %d slots (%v), want 1", n, err)
	}
	h.waitPhase(d, v1alpha1.RunSuspending)

	// A crash: run e finished in the store but its process died before it gave its slot up
	// (held here as that process left it); the sweep gives it up.
	h.store.mu.Lock()
	delete(h.store.runs, d)
	h.store.mu.Unlock()
	if _, err := h.eng.SweepSlots(context.Background()); err != nil {
		t.Fatal(err)
	}
	e := run("e")
	h.waitPhase(e, v1alpha1.RunSuspending)
	stored := h.saved(e)
	stored.Object.Status.Phase, stored.Object.Status.Finished = v1alpha1.RunFailed, true
	if err := h.store.Save(context.Background(), stored, nil); err != nil {
		t.Fatal(err)
	}
	f := run("f")
	h.waitPhase(f, v1alpha1.RunQueued)
	if n, err := h.eng.SweepSlots(context.Background()); err != nil || n != 1 {
		t.Fatalf("sweep gave up %d slots (%v), want 1", n, err)
	}
	h.waitPhase(f, v1alpha1.RunSuspending)
	if got, want := held(t, slots, 1), []string{"prod:f"}; !slices.Equal(got, want) {
		t.Fatalf("held %v, want %v", got, want)
	}
	// Nothing left for a sweep: no slot is held by a run that is not running.
	if n, err := h.eng.SweepSlots(context.Background()); err != nil || n != 0 {
		t.Fatalf("sweep gave up %d slots (%v), want 0", n, err)
	}
}

// onLimit cancel-new: a run that finds its key at its limit ends terminated at once, with a
// message naming the key, and runs no step.
func TestConcurrencyCancelNew(t *testing.T) {
	h, slots := slotsHarness(t)
	h.gatedTemplate("cancel-new")
	a := h.start(queuedRun("a", "prod", 0))
	h.waitPhase(a, v1alpha1.RunSuspending)
	b := h.start(queuedRun("b", "prod", 9))
	run := h.waitPhase(b, v1alpha1.RunTerminated)
	if msg := run.Object.Status.Message; msg != "cancelled: concurrency key deploy-prod is at its limit of 1 (onLimit cancel-new)" {
		t.Errorf("message %q", msg)
	}
	if got := h.script.count("approve"); got != 1 {
		t.Errorf("approve evaluated %d times, want once (a)", got)
	}
	if got, want := held(t, slots, 1), []string{"deploy-prod:a"}; !slices.Equal(got, want) {
		t.Fatalf("held %v, want %v", got, want)
	}
	if hs, _ := slots.Holders(context.Background()); len(hs) != 1 {
		t.Errorf("holders and line %v, want a alone", hs)
	}
}

// A key that cannot be evaluated fails the run before any step, saying why.
func TestConcurrencyBadKeyFailsTheRun(t *testing.T) {
	h, _ := slotsHarness(t)
	key := h.start(`metadata: {name: r}
spec:
  concurrency: {key: parameter.missing, limit: 1}
  workflowSpec: {steps: [{name: a, type: ok}]}`)
	run := h.waitPhase(key, v1alpha1.RunFailed)
	if msg := run.Object.Status.Message; !strings.Contains(msg, "spec.concurrency.key") {
		t.Errorf("message %q does not name spec.concurrency.key", msg)
	}
	if got := h.script.count("a"); got != 0 {
		t.Errorf("a evaluated %d times", got)
	}
}

// A run without a concurrency key behaves as before: no slot asked for.
func TestConcurrencyNoKeyNoSlot(t *testing.T) {
	h, slots := slotsHarness(t)
	key := h.start(`metadata: {name: r}
spec: {workflowSpec: {steps: [{name: a, type: ok}]}}`)
	h.waitPhase(key, v1alpha1.RunSucceeded)
	if hs, _ := slots.Holders(context.Background()); len(hs) != 0 {
		t.Errorf("slots %v", hs)
	}
}

// running counts, from every saved transition as observers see it, the runs that hold a
// slot and have not finished, and keeps the most it saw at once.
type running struct {
	mu   sync.Mutex
	now  map[engine.Key]bool
	peak int
	done int
}

func (r *running) RunChanged(run *engine.Run) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case run.Object.Status.Finished:
		if r.now[run.Key()] || run.Admitted {
			r.done++
		}
		delete(r.now, run.Key())
	case run.Admitted:
		r.now[run.Key()] = true
	}
	r.peak = max(r.peak, len(r.now))
}

// Many runs on one key of limit 10: checked at every saved transition, never more than 10
// hold a slot and run at once, and all of them finish.
func TestConcurrencyManyRunsOneKey(t *testing.T) {
	const runs, limit = 200, 10
	st, err := sqlite.Open(context.Background(), sqlite.Options{Path: filepath.Join(t.TempDir(), "stepflow.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	r := &running{now: map[engine.Key]bool{}}
	h := newHarness(t, func(o *engine.Options) {
		o.Slots = &store.Slots{Records: st}
		o.CacheKeys = step.NewRunner(step.Options{Evaluators: 1})
		o.Observer = engine.Observers{o.Observer, r}
	})
	// Each run's step blocks until released; a stand-in for work that takes a while, released
	// every 50 ms (real time) so that runs overlap.
	var keys []engine.Key
	for i := range runs {
		keys = append(keys, h.start(fmt.Sprintf(`metadata: {name: r%d}
spec:
  concurrency: {key: '"one"', limit: %d}
  workflowSpec: {steps: [{name: s%d, type: block}, {name: t%d, type: ok}]}`, i, limit, i, i)))
	}
	stop := make(chan struct{})
	released := make(chan struct{})
	go func() {
		defer close(released)
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			h.script.mu.Lock()
			var names []string
			for name := range h.script.blocked {
				names = append(names, name)
			}
			h.script.mu.Unlock()
			for _, name := range names {
				h.script.release(name)
			}
		}
	}()
	defer func() { close(stop); <-released }()
	for _, k := range keys {
		h.waitPhase(k, v1alpha1.RunSucceeded)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.peak > limit || r.peak < 2 {
		t.Errorf("%d runs held a slot at once, want at most %d and more than one", r.peak, limit)
	}
	if r.done != runs {
		t.Errorf("%d runs finished holding a slot, want %d", r.done, runs)
	}
	t.Logf("at most %d running at once", r.peak)
}

// onLimit cancel-running: a run that finds its key at the limit has the run holding it
// terminated, by the key and naming itself, and takes the slot it frees; a run of another key
// is left alone.
func TestConcurrencyCancelRunning(t *testing.T) {
	h, slots := slotsHarness(t)
	h.gatedTemplate("cancel-running")
	a := h.start(queuedRun("a", "prod", 0))
	h.waitPhase(a, v1alpha1.RunSuspending)
	other := h.start(queuedRun("other", "staging", 0))
	h.waitPhase(other, v1alpha1.RunSuspending)
	b := h.start(queuedRun("b", "prod", 0))
	run := h.waitPhase(a, v1alpha1.RunTerminated)
	if msg := run.Object.Status.Message; msg != "terminated by concurrency key deploy-prod: replaced by run b (onLimit cancel-running)" {
		t.Errorf("a's message %q", msg)
	}
	h.waitPhase(b, v1alpha1.RunSuspending)
	if got, want := held(t, slots, 1), []string{"deploy-prod:b", "deploy-staging:other"}; !slices.Equal(got, want) {
		t.Fatalf("held %v, want %v", got, want)
	}
	if ph := h.saved(other).Object.Status.Phase; ph != v1alpha1.RunSuspending {
		t.Errorf("the run of another key is %s", ph)
	}
}
