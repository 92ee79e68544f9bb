package step

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/engine"
)

// TestTurnsComeBackFirst: with one turn held, an evaluation coming back from its actions is
// let in before one that asked earlier to start; one whose context ends while it waits gets
// no turn and takes none from the others.
func TestTurnsComeBackFirst(t *testing.T) {
	ts := &turns{free: 1}
	ctx := context.Background()
	if err := ts.take(ctx, false); err != nil {
		t.Fatal(err)
	}
	order := make(chan string, 3)
	waitFor := func(name string, back bool) {
		go func() {
			if err := ts.take(ctx, back); err != nil {
				t.Error(err)
			}
			order <- name
		}()
	}
	waitFor("start", false)
	waitUntil(t, func() bool { return ts.waitingIn(1) == 1 })
	cancelled, cancel := context.WithCancel(ctx)
	gaveUp := make(chan error, 1)
	go func() { gaveUp <- ts.take(cancelled, true) }()
	waitFor("back", true)
	waitUntil(t, func() bool { return ts.waitingIn(0) == 2 })
	cancel()
	if err := <-gaveUp; !errors.Is(err, context.Canceled) {
		t.Fatalf("a wait whose context ended: %v", err)
	}

	ts.give()
	if got := <-order; got != "back" {
		t.Fatalf("first let in: %s, want the evaluation coming back", got)
	}
	select {
	case got := <-order:
		t.Fatalf("%s let in while the only turn is held", got)
	case <-time.After(20 * time.Millisecond):
	}
	ts.give()
	if got := <-order; got != "start" {
		t.Fatalf("then: %s", got)
	}
	ts.give()
	if ts.free != 1 {
		t.Fatalf("%d turns free at the end, want 1", ts.free)
	}
}

func (t *turns) waitingIn(line int) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.waiting[line])
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 5s")
		}
	}
}

// templates is a Definitions of step types by name.
type templates map[string]string

func (d templates) Template(_ context.Context, _, typ string) (string, error) {
	if t, ok := d[typ]; ok {
		return t, nil
	}
	return "", ErrUnknownType
}

// TestTimedOutEvaluationGivesUpItsTurn: with one evaluation at a time in CUE, an evaluation
// whose CUE runs past EvalTimeout fails its step and gives its turn up at once, though the
// evaluator goes on computing (it cannot be interrupted): another step is evaluated meanwhile.
func TestTimedOutEvaluationGivesUpItsTurn(t *testing.T) {
	r := NewRunner(Options{MaxEvaluating: 1, EvalTimeout: 20 * time.Millisecond, Definitions: templates{
		// A quarter of a second of CUE or more (several under -race).
		"slow": `import "list"
parameter: {}
sum: list.Sum([for i in list.Range(0, 10000, 1) {i * 2}])`,
		"quick": `parameter: {}
out: 1`,
	}})
	ctx := context.Background()
	req := func(typ string) *engine.StepRequest {
		return &engine.StepRequest{Run: engine.Key{Namespace: "default", Name: "run"}, Step: v1alpha1.WorkflowStepBase{Name: typ, Type: typ}}
	}
	res, err := r.RunStep(ctx, req("slow"))
	if err != nil || res.Outcome != engine.Failed || !strings.Contains(res.Message, "longer than 20ms") {
		t.Fatalf("the slow step: %+v %v", res, err)
	}
	r.turns.mu.Lock()
	free := r.turns.free
	r.turns.mu.Unlock()
	if free != 1 {
		t.Fatalf("%d turns free once the slow step failed, want 1", free)
	}
	if res, err := r.RunStep(ctx, req("quick")); err != nil || res.Outcome != engine.Succeeded {
		t.Fatalf("another step meanwhile: %+v %v", res, err)
	}
}
