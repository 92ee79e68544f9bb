// turns.go: the turns at CUE that bound how many evaluations run CUE at once.

package step

import (
	"context"
	"errors"
	"slices"
	"sync"
)

// turns admits evaluations to CUE, a fixed number at a time. An evaluation coming back from
// its actions goes before one not started yet: finishing what is started keeps fewer evaluations
// half done, each holding its evaluator's memory, and ends each step sooner. Within each kind,
// first come, first served.
type turns struct {
	mu      sync.Mutex
	free    int
	waiting [2][]chan struct{} // [0] coming back from actions, [1] starting
}

// take waits for a turn, or for the end of ctx; back says the evaluation is coming back from
// its actions.
func (t *turns) take(ctx context.Context, back bool) error {
	line := 1
	if back {
		line = 0
	}
	t.mu.Lock()
	if t.free > 0 {
		t.free--
		t.mu.Unlock()
		return nil
	}
	ch := make(chan struct{})
	t.waiting[line] = append(t.waiting[line], ch)
	t.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
	}
	t.mu.Lock()
	if i := slices.Index(t.waiting[line], ch); i >= 0 {
		t.waiting[line] = slices.Delete(t.waiting[line], i, i+1)
		t.mu.Unlock()
		return ctx.Err()
	}
	t.mu.Unlock()
	t.give() // handed over as ctx ended: passed on
	return ctx.Err()
}

// give hands a turn back: to the first in line, if any.
func (t *turns) give() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for line := range t.waiting {
		if w := t.waiting[line]; len(w) > 0 {
			close(w[0])
			w[0] = nil
			t.waiting[line] = w[1:]
			return
		}
	}
	t.free++
}

// hold is one evaluation's claim on a turn. The evaluation takes and gives its turn through
// it; when the evaluation runs past EvalTimeout the step is failed and the hold abandoned: its
// turn goes back at once, though the evaluator may go on computing (it cannot be interrupted),
// and the evaluation takes no turn again. Two runaway definitions therefore cannot stop every
// other step.
type hold struct {
	t         *turns
	mu        sync.Mutex
	held      bool
	abandoned bool
}

// errAbandoned ends an evaluation whose step was already failed at EvalTimeout.
var errAbandoned = errors.New("the evaluation ran past its time limit")

// take waits for a turn for the evaluation (see turns.take).
func (h *hold) take(ctx context.Context, back bool) error {
	if err := h.t.take(ctx, back); err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.abandoned {
		h.t.give()
		return errAbandoned
	}
	h.held = true
	return nil
}

// give gives the evaluation's turn back, if it holds one, and reports whether it did.
func (h *hold) give() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.held {
		return false
	}
	h.held = false
	h.t.give()
	return true
}

// abandon gives the turn back for good.
func (h *hold) abandon() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.abandoned = true
	if h.held {
		h.held = false
		h.t.give()
	}
}
