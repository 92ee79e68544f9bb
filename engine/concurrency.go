package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stepflow/stepflow/api/v1alpha1"
)

// concurrency.go: runs with a concurrency key (v1alpha1.Concurrency). Before its first step a
// run asks Options.Slots for a slot of its key; while none is free it waits in phase queued
// (or, with onLimit cancel-new, ends terminated), and it gives its slot up in the
// transition's wake once it has finished. SweepSlots gives up the slots of the runs that
// cannot (deleted, or finished by a process that died before it gave its slot up).

// QueuedRecheck is how often a queued run asks for a slot again by itself, in case the wake
// of the run that freed one was lost (its process died between the two).
const QueuedRecheck = 30 * time.Second

// gated reports whether the run must hold a slot of its concurrency key before it goes on.
func (e *Engine) gated(run *Run) bool {
	return run.Concurrency != nil && !run.Admitted && e.opts.Slots != nil && e.opts.CacheKeys != nil &&
		!run.Object.Status.Terminated && !run.Object.Status.Finished
}

// admit asks a slot for a gated run. It returns nil when the run holds one (Admitted is set,
// and the caller advances it), else the transition that leaves it queued or cancels it.
func (e *Engine) admit(ctx context.Context, run *Run, now time.Time) (*transition, error) {
	c := run.Concurrency
	if run.SlotKey == "" {
		key, err := e.slotKey(ctx, run)
		if errors.Is(err, errBadKey) {
			st := &run.Object.Status
			st.Phase, st.Message, st.Finished, st.EndTime = v1alpha1.RunFailed, err.Error(), true, metav1.NewTime(now)
			return &transition{changed: true}, nil
		}
		if err != nil {
			return nil, err
		}
		run.SlotKey = key
	}
	queue := c.OnLimit != v1alpha1.ConcurrencyCancelNew
	place, err := e.opts.Slots.Acquire(ctx, SlotRequest{
		Namespace: run.Object.Namespace, Key: run.SlotKey, Limit: int(c.Limit),
		Run: run.Object.Name, Priority: run.Priority, Queue: queue,
	})
	if err != nil {
		return nil, fmt.Errorf("concurrency key %s: %w", run.SlotKey, err)
	}
	st := &run.Object.Status
	if place == 0 {
		run.Admitted = true
		if st.Phase == v1alpha1.RunQueued {
			st.Phase, st.Message = v1alpha1.RunExecuting, ""
		}
		return nil, nil
	}
	if !queue {
		endUnstarted(run, now)
		st.Message = fmt.Sprintf("cancelled: concurrency key %s is at its limit of %d (onLimit cancel-new)", run.SlotKey, c.Limit)
		return &transition{changed: true}, nil
	}
	if c.OnLimit == v1alpha1.ConcurrencyCancelRunning {
		e.cancelHolders(ctx, run)
	}
	msg := fmt.Sprintf("queued on concurrency key %s: place %d", run.SlotKey, place)
	msg += slaNote(run)
	t := &transition{wake: now.Add(QueuedRecheck)}
	if st.Phase != v1alpha1.RunQueued || st.Message != msg {
		st.Phase, st.Message = v1alpha1.RunQueued, msg
		t.changed = true
	}
	return t, nil
}

// cancelHolders terminates the runs holding a slot of the run's key (onLimit cancel-running),
// each as the terminate operation does; the slots they give up as they finish go to the runs
// in line, this one among them. Asked again at each recheck of a queued run, it terminates
// what holds the key then; a holder that finished meanwhile is left alone.
func (e *Engine) cancelHolders(ctx context.Context, run *Run) {
	holders, err := e.opts.Slots.Holders(ctx)
	if err != nil {
		e.opts.Logger.Warn("list the runs holding a concurrency key", "run", run.Key(), "key", run.SlotKey, "err", err)
		return
	}
	ns := run.Object.Namespace
	for _, h := range holders {
		if !h.Held || h.Namespace != ns || h.Key != run.SlotKey || h.Run == run.Object.Name || strings.Contains(h.Run, "/") {
			continue // not a run holding the key (a step's holder is run/step)
		}
		op := Operation{Kind: OpTerminate, By: "concurrency key " + run.SlotKey,
			Reason: fmt.Sprintf("replaced by run %s (onLimit cancel-running)", run.Object.Name)}
		key := Key{Namespace: ns, Name: h.Run}
		// Not from this worker, which holds run's key: the holder's worker applies it.
		go func() {
			if _, err := e.Operate(e.life, key, op); err != nil && !errors.Is(err, ErrNotFound) {
				e.opts.Logger.Info("terminate a run holding a concurrency key", "run", key, "err", err)
			}
		}()
	}
}

// errBadKey marks a concurrency key that cannot be evaluated, whatever is tried again.
var errBadKey = errors.New("bad concurrency key")

// slotKey evaluates the run's concurrency key over its context and parameters.
func (e *Engine) slotKey(ctx context.Context, run *Run) (string, error) {
	obj := run.Object
	param := map[string]any{}
	if raw := run.contextRaw(); len(raw) > 0 {
		if err := json.Unmarshal(raw, &param); err != nil {
			return "", fmt.Errorf("%w: spec.concurrency.key: reading the context: %w", errBadKey, err)
		}
	}
	c := map[string]any{"name": obj.Name, "namespace": obj.Namespace, "workflowName": obj.Name}
	maps.Copy(c, param)
	value, err := e.opts.CacheKeys.EvalKey(ctx, run.Concurrency.Key, map[string]any{"parameter": param, "context": c})
	if err != nil {
		if _, ok := errors.AsType[*TerminalError](err); ok {
			return "", fmt.Errorf("%w: spec.concurrency.key: %w", errBadKey, err)
		}
		return "", fmt.Errorf("spec.concurrency.key: %w", err)
	}
	return keyName(value), nil
}

// releaseSlot gives up the slot, or the place in line, of a run that has finished, and wakes
// the runs that may take it. A failure is logged: SweepSlots gives it up later.
func (e *Engine) releaseSlot(ctx context.Context, run *Run) {
	if run.SlotKey == "" || e.opts.Slots == nil {
		return
	}
	next, err := e.opts.Slots.Release(ctx, run.Object.Namespace, run.SlotKey, run.Object.Name)
	if err != nil {
		e.opts.Logger.Warn("give up a slot of a concurrency key", "run", run.Key(), "key", run.SlotKey, "err", err)
		return
	}
	for _, h := range next {
		name, _ := holderRun(h)
		// Not Enqueue: the run kept from its queued save is still what is stored (a save
		// that finds otherwise conflicts and loads it again), and is not read again. In the
		// first line: its slot is idle until it starts, not behind the runs to start.
		e.q.addFirst(Key{Namespace: run.Object.Namespace, Name: name})
	}
}

// SweepSlots gives up the slots and places in line of the runs that are finished or gone
// (deleted, or finished by a process that died before it gave its slot up), and those of
// steps (StepHolder) whose run is finished or gone or that have ended, and wakes the runs
// that may take them. It returns how many it gave up.
func (e *Engine) SweepSlots(ctx context.Context) (int, error) {
	if e.opts.Slots == nil {
		return 0, nil
	}
	holders, err := e.opts.Slots.Holders(ctx)
	if err != nil {
		return 0, fmt.Errorf("list the slots of concurrency keys: %w", err)
	}
	n := 0
	for _, h := range holders {
		name, step := holderRun(h.Run)
		run, err := e.opts.Store.Load(ctx, Key{Namespace: h.Namespace, Name: name})
		switch {
		case errors.Is(err, ErrNotFound):
		case err != nil:
			return n, fmt.Errorf("load run %s/%s: %w", h.Namespace, name, err)
		case step != "":
			if !run.Object.Status.Finished && stepHolds(run, step, h.Key) {
				continue
			}
		case !run.Object.Status.Finished && run.SlotKey == h.Key:
			continue
		case !run.Object.Status.Finished && run.SlotKey == "" && run.Concurrency != nil:
			continue // it has not evaluated its key in a save yet (it died after asking)
		}
		next, err := e.opts.Slots.Release(ctx, h.Namespace, h.Key, h.Run)
		if err != nil {
			return n, fmt.Errorf("give up the slot of run %s/%s: %w", h.Namespace, h.Run, err)
		}
		n++
		for _, next := range next {
			name, _ := holderRun(next)
			e.Enqueue(Key{Namespace: h.Namespace, Name: name})
		}
	}
	return n, nil
}
