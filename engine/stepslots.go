package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/stepflow/stepflow/api/v1alpha1"
)

// stepslots.go: steps with a concurrency key (v1alpha1.StepConcurrency), a semaphore across
// runs. When a step is about to start (not at each wake of a step already running) the
// machine evaluates its key once and asks Options.Slots for a slot, as the holder
// StepHolder(run, step) under the key StepSlotPrefix+value; while none is free the step
// stays pending, its message naming the key and its place in line, and the run goes on with
// its other steps. What a step holds (or waits in line for) is in Run.StepSlots until the
// step ends, or the run ends whichever way; the transition that ends it gives it up once
// saved. A forEach or matrix step holds one slot for the whole loop (taken as the loop
// starts); a sub-step of a looping step-group is a step of its own in each iteration, and
// each instance takes its own slot. SweepSlots gives up what a step holds once its run is
// gone or finished, or the step has ended.

// StepSlotPrefix begins the key of a step's concurrency key in Slots, so that the steps'
// semaphores and the runs' concurrency keys are kept apart.
const StepSlotPrefix = "step:"

// StepHolder is the holder a step's slot is asked for as: the run's name, a slash, the
// step's name (a run's name has no slash, so the run is what comes before the first).
func StepHolder(run, step string) string { return run + "/" + step }

// holderRun returns the run a holder of Slots stands for, and the step when it is a step's.
func holderRun(holder string) (run, step string) {
	run, step, _ = strings.Cut(holder, "/")
	return run, step
}

// stepSlot is a slot of a step's concurrency key, held or asked for.
type stepSlot struct {
	step, key string
}

// takeStepSlot asks a slot of the concurrency key of step n, which is about to start. It
// reports whether the step may start; when it may not, the step stays pending (its message
// says why, and the run is looked at again by QueuedRecheck) or has failed (a key that
// cannot be evaluated).
func (m *machine) takeStepSlot(ctx context.Context, run *Run, n *node, now time.Time, t *transition) bool {
	c := n.spec.Concurrency
	if m.slots == nil || m.keys == nil {
		t.logs = append(t.logs, LogEntry{Time: now, Step: n.name, Severity: SeverityWarning,
			Message: "concurrency: this engine keeps no slots, so the step runs without its semaphore"})
		return true
	}
	key, known := run.StepSlots[n.name]
	if !known {
		value, err := m.stepSlotKey(ctx, run, n)
		if te, ok := errors.AsType[*TerminalError](err); ok {
			m.fail(run, n, te.Reason, te.Error(), now, t)
			return false
		}
		if err != nil {
			m.stepSlotLater(n, "concurrency key: "+err.Error()+"; asked again", now, t)
			return false
		}
		key = StepSlotPrefix + value
	}
	place, err := m.slots.Acquire(ctx, SlotRequest{
		Namespace: run.Object.Namespace, Key: key, Limit: int(c.Limit),
		Run: StepHolder(run.Object.Name, n.name), Priority: run.Priority, Queue: true,
	})
	if err != nil {
		// It may be in line or hold a slot now: the run gives up whatever it is when it ends.
		m.keepStepSlot(run, n.name, key, known, t)
		m.stepSlotLater(n, fmt.Sprintf("concurrency key %s: %v; asked again", strings.TrimPrefix(key, StepSlotPrefix), err), now, t)
		return false
	}
	m.keepStepSlot(run, n.name, key, known, t)
	if place == 0 {
		return true
	}
	m.stepSlotLater(n, fmt.Sprintf("waiting for concurrency key %s: place %d", strings.TrimPrefix(key, StepSlotPrefix), place), now, t)
	return false
}

// keepStepSlot records in the run that step holds, or waits for, a slot of key.
func (m *machine) keepStepSlot(run *Run, step, key string, known bool, t *transition) {
	if known {
		return
	}
	if run.StepSlots == nil {
		run.StepSlots = map[string]string{}
	}
	run.StepSlots[step] = key
	t.acquired = append(t.acquired, stepSlot{step: step, key: key})
	t.changed = true
}

// stepSlotLater leaves a pending step with message, to be asked again by QueuedRecheck.
func (m *machine) stepSlotLater(n *node, message string, now time.Time, t *transition) {
	if n.status.Message != message {
		n.status.Message = message
		t.changed = true
	}
	t.wakeAt(now.Add(QueuedRecheck))
}

// stepSlotKey evaluates step n's concurrency key over its parameter, inputs and context, as
// a cache key is. Unlike the evaluation's request, an input not there yet is left out rather
// than an error: a looping step's key is evaluated once for the whole loop, where its
// iterations' item is not.
func (m *machine) stepSlotKey(ctx context.Context, run *Run, n *node) (string, error) {
	props, err := propertiesJSON(n.spec.Properties)
	if err != nil {
		return "", Terminal(v1alpha1.ReasonParameter, fmt.Errorf("properties: %w", err))
	}
	stepCtx := stepContext(run, n)
	inputs := inputValues(run, n, stepCtx)
	for _, in := range n.spec.Inputs {
		if _, ok := inputs[in.From]; ok && in.ParameterKey != "" {
			if props, err = fillInputs(props, n.spec.Inputs, inputs); err != nil {
				return "", Terminal(v1alpha1.ReasonInput, fmt.Errorf("filling the inputs into the properties: %w", err))
			}
			break
		}
	}
	req := &StepRequest{Properties: props, Inputs: inputs, Context: stepCtx}
	value, err := evalStepKey(ctx, m.keys, "concurrency.key", n.spec.Concurrency.Key, req)
	if err != nil {
		return "", err
	}
	return keyName(value), nil
}

// endStepSlots takes out of the run the slots of the steps that have ended, and all of them
// once the run has finished, to be given up once the transition is saved (t.release).
func endStepSlots(run *Run, g *graph, t *transition) {
	for step, key := range run.StepSlots {
		if !run.Object.Status.Finished && g != nil {
			if n := g.byName[step]; n != nil && !n.finished() {
				continue
			}
		}
		delete(run.StepSlots, step)
		t.release = append(t.release, stepSlot{step: step, key: key})
		t.changed = true
	}
	if len(run.StepSlots) == 0 {
		run.StepSlots = nil
	}
}

// releaseStepSlots gives up the slots, or places in line, of a run's steps, and wakes the
// runs whose steps may take them. A failure is logged: SweepSlots gives it up later.
func (e *Engine) releaseStepSlots(ctx context.Context, run *Run, slots []stepSlot) {
	if e.opts.Slots == nil {
		return
	}
	ns := run.Object.Namespace
	for _, s := range slots {
		next, err := e.opts.Slots.Release(ctx, ns, s.key, StepHolder(run.Object.Name, s.step))
		if err != nil {
			e.opts.Logger.Warn("give up a slot of a step's concurrency key", "run", run.Key(), "step", s.step, "key", s.key, "err", err)
			continue
		}
		for _, h := range next {
			name, _ := holderRun(h)
			e.Enqueue(Key{Namespace: ns, Name: name})
		}
	}
}

// stepHolds reports whether the stored run's step may still hold, or wait for, a slot of
// key: it has not ended and has not recorded another key. A step pending that has not
// recorded the key yet may be asking for it in a transition not saved yet, and is left.
func stepHolds(run *Run, step, key string) bool {
	if run.Spec == nil {
		return true // being restarted: its steps ask again, or end, once it is laid out
	}
	n := buildGraph(run).byName[step]
	if n == nil || n.finished() {
		return false
	}
	k, ok := run.StepSlots[step]
	return !ok || k == key
}
