package engine_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/engine"
)

// prefixOwner owns the runs whose names start with its prefix and hands the others to the
// other engine, as a replica's leases and its database notifications do.
type prefixOwner struct {
	mu     sync.Mutex
	prefix string
	// stale is how many more times Owns answers yes whatever the prefix: the checks an
	// engine makes just before it learns that its lease is lost.
	stale  int
	other  *harness
	handed []string
}

func (o *prefixOwner) set(prefix string) {
	o.mu.Lock()
	o.prefix = prefix
	o.mu.Unlock()
}

// lose moves the owner to prefix, answering yes stale more times first.
func (o *prefixOwner) lose(prefix string, stale int) {
	o.mu.Lock()
	o.prefix, o.stale = prefix, stale
	o.mu.Unlock()
}

func (o *prefixOwner) Owns(key engine.Key) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.stale > 0 {
		o.stale--
		return true
	}
	return strings.HasPrefix(key.Name, o.prefix)
}

// wasHanded reports whether the owner handed the run named name to the other engine.
func (o *prefixOwner) wasHanded(name string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Contains(o.handed, name)
}

func (o *prefixOwner) Elsewhere(_ context.Context, key engine.Key) {
	o.mu.Lock()
	o.handed = append(o.handed, key.Name)
	other := o.other
	o.mu.Unlock()
	other.eng.Enqueue(key)
}

// twoOwners returns two engines over one store, owning runs named a-… and b-….
func twoOwners(t *testing.T) (a, b *harness, oa, ob *prefixOwner) {
	oa, ob = &prefixOwner{prefix: "a-"}, &prefixOwner{prefix: "b-"}
	a = newHarness(t, func(o *engine.Options) { o.Owner = oa })
	b = newHarness(t, func(o *engine.Options) { o.Store = a.store; o.Owner = ob })
	b.store = a.store
	oa.other, ob.other = b, a
	return a, b, oa, ob
}

func TestARunIsAdvancedOnlyByItsOwner(t *testing.T) {
	a, b, oa, _ := twoOwners(t)
	key := a.start(`
metadata: {name: b-run}
spec:
  workflowSpec:
    steps:
    - {name: one, type: ok}
    - {name: two, type: ok}`)
	run := b.waitPhase(key, v1alpha1.RunSucceeded)
	if got := phases(run); got != "one=succeeded two=succeeded" {
		t.Errorf("steps: %s", got)
	}
	if n := a.script.count("one") + a.script.count("two"); n != 0 {
		t.Errorf("the engine that does not own the run evaluated %d steps of it", n)
	}
	if n := b.script.count("one") + b.script.count("two"); n != 2 {
		t.Errorf("the owner evaluated %d steps, want 2", n)
	}
	oa.mu.Lock()
	defer oa.mu.Unlock()
	if len(oa.handed) == 0 || oa.handed[0] != "b-run" {
		t.Errorf("the run was not handed to its owner: %v", oa.handed)
	}
}

// slowThenAfter is a run the engine owning a-… starts: slow, blocked until the test releases
// it, then after.
const slowThenAfter = `
metadata: {name: a-run}
spec:
  workflowSpec:
    steps:
    - {name: slow, type: block}
    - {name: after, type: ok}`

// evaluating starts the run doc in h and waits until h evaluates its step.
func evaluating(h *harness, doc, step string) engine.Key {
	key := h.start(doc)
	waitEvaluated(h, key, step)
	return key
}

// waitEvaluated waits until h has evaluated the run's step once.
func waitEvaluated(h *harness, key engine.Key, step string) {
	h.waitFor(key, step+" evaluated", func(*engine.Run) bool { return h.script.count(step) == 1 })
}

// takeUp makes the engine of owner o (prefixOwner of harness h) the run's owner as well, has
// it look at the run, and waits until it evaluates the step: in a try of its own.
func takeUp(h *harness, o *prefixOwner, key engine.Key, step string) {
	o.set("a-")
	h.eng.Enqueue(key)
	waitEvaluated(h, key, step)
}

// TestARunMovesWithItsOwnership: an engine that loses a run cancels the evaluation it had
// under way; the new owner evaluates the step again, in a try of its own.
func TestARunMovesWithItsOwnership(t *testing.T) {
	a, b, oa, ob := twoOwners(t)
	key := evaluating(a, slowThenAfter, "slow")

	oa.set("none-")
	ob.set("a-")
	a.eng.Enqueue(key) // what a lost lease comes to: the next look at the run finds it owned elsewhere
	waitEvaluated(b, key, "slow")
	b.script.release("slow")
	run := b.waitPhase(key, v1alpha1.RunSucceeded)
	if got := phases(run); got != "slow=succeeded after=succeeded" {
		t.Errorf("steps: %s", got)
	}
	if rec := run.Steps["slow"]; rec == nil || rec.Tries != 2 {
		t.Errorf("slow's record %+v: want 2 tries, one per engine", rec)
	}
	if n := a.script.count("after"); n != 0 {
		t.Errorf("the old owner ran the next step %d times", n)
	}
}

// TestALeaseLostWhileAdvancingSavesNothing: an engine that owned the run when it began to
// apply a result, and lost it before saving, saves nothing: the new owner, which took the step
// up in a try of its own meanwhile, is the only one to record its result and go on.
func TestALeaseLostWhileAdvancingSavesNothing(t *testing.T) {
	a, b, oa, ob := twoOwners(t)
	key := evaluating(a, slowThenAfter, "slow")

	oa.lose("none-", 1) // the check at the start of applying slow's result still says yes
	takeUp(b, ob, key, "slow")

	a.script.release("slow")
	waitUntil(t, "the first owner to hand the run over", func() bool { return oa.wasHanded("a-run") })
	run := a.saved(key)
	if got := phases(run); got != "slow=running after=pending" {
		t.Errorf("after the first owner applied its result: %s, want slow still running in the new owner's try", got)
	}
	if rec := run.Steps["slow"]; rec == nil || rec.Tries != 2 {
		t.Errorf("slow's record %+v: want the new owner's try, 2", rec)
	}

	b.script.release("slow")
	run = b.waitPhase(key, v1alpha1.RunSucceeded)
	if rec := run.Steps["slow"]; rec == nil || rec.Tries != 2 {
		t.Errorf("slow's record %+v: want 2 tries, one per engine", rec)
	}
	if n := a.script.count("after"); n != 0 {
		t.Errorf("the engine that lost the run ran the next step %d times", n)
	}
	if n := b.script.count("after"); n != 1 {
		t.Errorf("the owner ran the next step %d times, want 1", n)
	}
}

// TestAResultIsAppliedOnlyToItsTry: when two engines both believe they own a run (the worst a
// lease lost mid-advance can come to), each evaluates the step in a try it recorded, and the
// result of a try that another has superseded is dropped. A side effect's memo therefore
// never stands in the record of a try that did not make it: the evaluation of that try, still
// under way, does not make a side effect the store shows as made in it.
func TestAResultIsAppliedOnlyToItsTry(t *testing.T) {
	a, b, _, ob := twoOwners(t)
	key := evaluating(a, `
metadata: {name: a-run}
spec:
  workflowSpec:
    steps:
    - {name: deploy, type: post}`, "deploy")
	takeUp(b, ob, key, "deploy") // the first engine goes on believing it owns the run
	const secondTry = 2
	var mu sync.Mutex
	var problems []string
	b.script.mu.Lock()
	b.script.onPost = func(step string) {
		rec := a.saved(key).Steps[step]
		if rec != nil && rec.Tries == secondTry && rec.Memo["posted"] != nil {
			mu.Lock()
			problems = append(problems, fmt.Sprintf("the second engine made %s's side effect in try %d, whose record shows it made already", step, secondTry))
			mu.Unlock()
		}
	}
	b.script.mu.Unlock()

	a.script.release("deploy") // the first try's side effect, and its result
	a.waitFor(key, "the first engine's side effect recorded", func(r *engine.Run) bool {
		return r.Steps["deploy"] != nil && r.Steps["deploy"].Memo["posted"] != nil
	})
	b.script.release("deploy")
	waitUntil(t, "the second engine's side effect", func() bool { return b.script.count("deploy!") == 1 })
	mu.Lock()
	defer mu.Unlock()
	for _, p := range problems {
		t.Error(p)
	}
	if rec := a.saved(key).Steps["deploy"]; rec == nil || rec.Tries < 3 {
		t.Errorf("deploy's record %+v: want the first engine's second side effect in a try of its own, 3 or later", rec)
	}
}

// TestDropUnownedCancelsEvaluationsAtOnce: an engine told that its ownership shrank cancels the
// evaluations of the runs it lost at once, before another engine may take them up, rather
// than when it next looks at each; the runs it still owns go on.
func TestDropUnownedCancelsEvaluationsAtOnce(t *testing.T) {
	a, _, oa, _ := twoOwners(t)
	lost := a.start(`
metadata: {name: a-lost}
spec:
  workflowSpec:
    steps:
    - {name: slow, type: block}`)
	kept := a.start(`
metadata: {name: a-kept}
spec:
  workflowSpec:
    steps:
    - {name: kept, type: block}`)
	waitEvaluated(a, lost, "slow")
	waitEvaluated(a, kept, "kept")

	oa.set("a-kept")
	a.eng.DropUnowned()
	waitUntil(t, "slow's evaluation cancelled", func() bool { return a.script.count("slow cancelled") == 1 })
	if a.eng.Busy(lost) {
		t.Error("the engine still holds the run it lost")
	}
	if got := phases(a.saved(lost)); got != "slow=running" {
		t.Errorf("the lost run: %s, want it left running for its new owner", got)
	}
	if n := a.script.count("kept cancelled"); n != 0 {
		t.Errorf("the evaluation of the run still owned was cancelled %d times", n)
	}
	a.script.release("kept")
	a.waitPhase(kept, v1alpha1.RunSucceeded)
}
