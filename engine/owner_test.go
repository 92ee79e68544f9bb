package engine_test

import (
	"context"
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
	other  *harness
	handed []string
}

func (o *prefixOwner) set(prefix string) {
	o.mu.Lock()
	o.prefix = prefix
	o.mu.Unlock()
}

func (o *prefixOwner) Owns(key engine.Key) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return strings.HasPrefix(key.Name, o.prefix)
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

// TestARunMovesWithItsOwnership: an engine that loses a run cancels the evaluation it had
// under way; the new owner evaluates the step again, in a try of its own.
func TestARunMovesWithItsOwnership(t *testing.T) {
	a, b, oa, ob := twoOwners(t)
	key := a.start(`
metadata: {name: a-run}
spec:
  workflowSpec:
    steps:
    - {name: slow, type: block}
    - {name: after, type: ok}`)
	a.waitFor(key, "slow running in the first owner", func(*engine.Run) bool { return a.script.count("slow") == 1 })

	oa.set("none-")
	ob.set("a-")
	a.eng.Enqueue(key) // what a lost lease comes to: the next look at the run finds it owned elsewhere
	b.waitFor(key, "slow evaluated by the new owner", func(*engine.Run) bool { return b.script.count("slow") == 1 })
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
