package step

import (
	"context"
	"errors"
	"testing"
	"time"
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
