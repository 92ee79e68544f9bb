package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stepflow/stepflow/api/v1alpha1"
)

// Options configure an Engine. Store and Runner are required; every other zero value works.
type Options struct {
	Store      Store
	Runner     StepRunner
	Conditions ConditionEvaluator
	Workflows  Workflows
	Observer   Observer
	Clock      Clock
	Logger     *slog.Logger
	// Workers is how many runs advance at once; default DefaultWorkers. A worker spends most
	// of its time waiting for the store (a load, a durable save), not on a CPU.
	Workers int
	// Retry bounds retries of provider errors; default 10 retries, 1s doubling to 1m.
	Retry RetryPolicy
	// Wait spaces re-evaluations of a waiting step; default 1s doubling to 30s.
	Wait Backoff
	// Limits bound what one run may hold; zero fields take their defaults.
	Limits Limits
	// Check, when set, vets a run once its steps are resolved and before any step starts (step
	// types exist, properties fit their parameters), unless a front end checked it already
	// (Run.Checked). An error fails the run with its message, so that nothing of a run that
	// cannot be right is executed; one wrapping ErrTryLater has the check made again later.
	Check func(ctx context.Context, run *Run) error
	// QueueObserver, when set, is told each time a run's key joins the work queue or a worker
	// takes it (its depth, and how long the key waited).
	QueueObserver QueueObserver
	// MaxEvaluations is how many step evaluations may be under way (their CUE, or their
	// actions' I/O) before the engine stops taking up other work than the runs under way:
	// runs to start, timers, changes read from the store wait in line meanwhile, costing no
	// memory beyond their key. A run under way always goes on to its next step. 0 means
	// DefaultMaxEvaluations; a negative value sets no limit.
	MaxEvaluations int
	// Owner, when set, says which runs this engine advances: processes sharing one store
	// divide the runs among them. A run it does not own is handed to the Owner instead.
	Owner Owner
	// Cache, when set with CacheKeys, keeps and gives the results of steps that have a cache
	// (v1alpha1.StepCache); without them such steps are always evaluated.
	Cache     Cache
	CacheKeys KeyEvaluator
	// Slots, when set with CacheKeys (which evaluates concurrency keys too), keeps the slots
	// of runs with a concurrency key and of steps with one (v1alpha1.StepConcurrency);
	// without them such runs start as any other, and such steps run without their semaphore
	// (a warning in the step's log says so).
	Slots Slots
}

// DefaultWorkers is the number of workers when Options.Workers is zero (or 4 × GOMAXPROCS if
// that is more). A worker advancing a run waits on the store for most of its time, and a
// store that commits concurrent saves together (SQLite's group commit) writes one batch per
// fsync: eight workers made batches of at most eight saves and left the CPUs idle while runs
// waited in the queue, and with 64 a step's result waited while every worker waited on a
// commit (41 ms at p99 between one step and the next at 10,000 runs, against 3 ms with 256).
const DefaultWorkers = 256

// DefaultMaxEvaluations is Options.MaxEvaluations when it is zero: far more than keep two
// cores busy with CUE, and enough that steps waiting on slow services (a second each, say)
// still start a thousand a second.
const DefaultMaxEvaluations = 1024

// Engine advances runs. A run is worked on by one worker at a time; its steps are evaluated in
// their own goroutines, so independent steps of a run, and steps of many runs, run concurrently.
type Engine struct {
	opts  Options
	m     machine
	q     *queue
	mu    sync.Mutex
	runs  map[Key]*runState
	steps sync.WaitGroup
	// life is Start's context: the evaluations launched live as long as the engine, even
	// those an operation launched for a caller whose context ends sooner.
	life context.Context
}

// runState is what the engine holds in memory for a run it is advancing.
type runState struct {
	// run is the last saved copy, owned by the worker holding the key; nil means load it.
	run *Run
	// gen counts invalidations; a worker caches what it saved only if none came meanwhile.
	gen      int
	done     []stepDone
	inflight map[string]context.CancelFunc
	// processing is set while a worker advances the run.
	processing bool
	stop       func() bool
	wake       time.Time
	// wakes counts Wake calls; seen holds, per step, the count its last evaluation started
	// under. A waiting step that has not been evaluated since the last Wake is due now.
	wakes uint64
	seen  map[string]uint64
	// tried holds, per step, the attempt this process has evaluated it in: a step launched in
	// any other is a new try, recorded before it is evaluated.
	tried map[string]try
}

// try names what a step's evaluations are tried as: the run's epoch, the attempt's number,
// its retries after provider errors, and the number of the try recorded. A retry is a try of
// its own: the action that failed may have acted without answering (a timeout), so what it
// runs again counts as another try. So is a try another engine recorded since (a replica that
// took the run over while this one still held it): this engine's next evaluation is not
// part of it.
type try struct {
	epoch   int64
	attempt int
	retries int
	tries   int
}

// triedAs is the try a step's next evaluation belongs to.
func triedAs(run *Run, rec *StepRecord) try {
	return try{epoch: run.Epoch, attempt: rec.Attempt, retries: rec.Retries, tries: rec.Tries}
}

// New returns an engine; call Start to run its workers.
func New(opts Options) *Engine {
	if opts.Clock == nil {
		opts.Clock = RealClock{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Workers <= 0 {
		opts.Workers = max(DefaultWorkers, 4*runtime.GOMAXPROCS(0))
	}
	if opts.MaxEvaluations == 0 {
		opts.MaxEvaluations = DefaultMaxEvaluations
	}
	if opts.Retry.Limit == 0 && opts.Retry.Backoff == (Backoff{}) {
		opts.Retry = RetryPolicy{Limit: 10, Backoff: Backoff{Initial: time.Second, Factor: 2, Max: time.Minute}}
	}
	opts.Retry.Backoff = defaultBackoff(opts.Retry.Backoff, time.Second, time.Minute)
	opts.Wait = defaultBackoff(opts.Wait, time.Second, 30*time.Second)
	return &Engine{
		opts: opts,
		m:    machine{retry: opts.Retry, wait: opts.Wait, cond: opts.Conditions, limits: opts.Limits.withDefaults(), slots: opts.Slots, keys: opts.CacheKeys},
		q:    newQueue(opts.QueueObserver, opts.MaxEvaluations, max(1, opts.Workers*3/4)), // a quarter of the workers kept for runs under way
		runs: map[Key]*runState{},
	}
}

// Start runs the workers until ctx ends, then waits for the evaluations under way to return.
func (e *Engine) Start(ctx context.Context) error {
	e.mu.Lock()
	e.life = ctx
	e.mu.Unlock()
	e.q.open()
	var wg sync.WaitGroup
	for range e.opts.Workers {
		wg.Go(func() {
			for {
				key, ok := e.q.get()
				if !ok {
					return
				}
				_, _ = e.process(ctx, key, nil)
				e.q.done(key)
			}
		})
	}
	<-ctx.Done()
	e.q.close()
	wg.Wait()
	e.mu.Lock()
	for _, rs := range e.runs {
		if rs.stop != nil {
			rs.stop()
		}
		for _, cancel := range rs.inflight {
			cancel()
		}
	}
	e.mu.Unlock()
	e.steps.Wait()
	return nil
}

// Enqueue asks the engine to look at a run, re-reading it from the store.
func (e *Engine) Enqueue(key Key) {
	e.mu.Lock()
	if rs := e.runs[key]; rs != nil {
		rs.run = nil
		rs.gen++
	}
	e.mu.Unlock()
	e.q.add(key)
}

// Wake asks the engine to evaluate the run's waiting steps now instead of at their backoff time:
// what they wait on has changed. Suspended steps are not woken.
func (e *Engine) Wake(key Key) {
	rs := e.state(key)
	e.mu.Lock()
	rs.wakes++
	e.mu.Unlock()
	e.q.add(key)
}

// Busy reports whether evaluations of the run's steps are under way or waiting to be applied.
func (e *Engine) Busy(key Key) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	rs := e.runs[key]
	if rs != nil && (len(rs.inflight) > 0 || len(rs.done) > 0 || rs.processing) {
		return true
	}
	return e.q.has(key)
}

func (e *Engine) state(key Key) *runState {
	e.mu.Lock()
	defer e.mu.Unlock()
	rs := e.runs[key]
	if rs == nil {
		rs = &runState{inflight: map[string]context.CancelFunc{}, seen: map[string]uint64{}, tried: map[string]try{}}
		e.runs[key] = rs
	}
	return rs
}

// process advances one run: load it, apply op (an operation, when Operate calls), apply what
// finished, decide, save, then act on the decision. The caller holds the key. It returns the
// run as saved, and for an operation the error that kept it from being saved; a worker's
// failures are logged and the run is looked at again later.
func (e *Engine) process(ctx context.Context, key Key, op func(run *Run, now time.Time) error) (*Run, error) {
	if !e.owns(ctx, key) {
		return nil, errNotOwned
	}
	rs := e.state(key)
	e.mu.Lock()
	rs.processing = true
	done := rs.done
	rs.done = nil
	run := rs.run
	rs.run = nil
	gen := rs.gen
	e.mu.Unlock()
	defer e.setProcessing(rs, false)
	inflight := func(name string) bool {
		e.mu.Lock()
		defer e.mu.Unlock()
		if _, ok := rs.inflight[name]; ok {
			return true
		}
		// An evaluation that finished since done was taken is still under way for this
		// advance: its result comes with the next one.
		for _, d := range rs.done {
			if d.step == name {
				return true
			}
		}
		return false
	}

	var t *transition
	var woken map[string]uint64
	saved := false
	for attempt := 0; ; attempt++ {
		if err := ctx.Err(); err != nil {
			e.requeueDone(rs, done)
			return nil, err
		}
		if run == nil {
			var err error
			run, err = e.opts.Store.Load(ctx, key)
			if errors.Is(err, ErrNotFound) {
				e.forget(key, rs)
				return nil, err
			}
			if err != nil {
				if op != nil {
					e.requeueDone(rs, done)
					return nil, err
				}
				e.opts.Logger.Error("load run", "run", key, "err", err)
				e.retryLater(key, rs, done)
				return nil, err
			}
		}
		now := e.opts.Clock.Now()
		if op != nil {
			if err := op(run, now); err != nil {
				// run may be half changed: it is not kept.
				e.requeueDone(rs, done)
				return nil, err
			}
		}
		woken = e.wakeWaiting(rs, run, done, now)
		var initErr error
		unstarted := run.Spec == nil
		if unstarted && !run.Object.Status.Terminated {
			initErr = e.initialize(ctx, run, now)
		}
		if errors.Is(initErr, ErrTryLater) {
			e.opts.Logger.Warn("check a run before it starts", "run", key, "err", initErr)
			e.retryLater(key, rs, done)
			return nil, initErr
		}
		switch {
		case unstarted && run.Object.Status.Terminated:
			// Terminated before it started: it ends so, and none of its steps runs.
			t = &transition{changed: endUnstarted(run, now)}
		case initErr != nil:
			st := &run.Object.Status
			st.Phase, st.Message, st.Finished = v1alpha1.RunFailed, initErr.Error(), true
			if st.StartTime.IsZero() {
				// It starts and ends now: retention counts from its end, and what follows runs
				// (telemetry) sees a run that finished in the transition that started it.
				st.StartTime = metav1.NewTime(now)
			}
			st.EndTime = st.StartTime
			t = &transition{changed: true}
		case e.gated(run):
			var err error
			t, err = e.admit(ctx, run, now)
			if err != nil {
				e.opts.Logger.Warn("ask a slot of a concurrency key", "run", key, "err", err)
				e.retryLater(key, rs, done)
				return nil, err
			}
			if t == nil {
				t = e.m.advance(ctx, run, done, now, inflight)
				e.recordTries(rs, run, t)
				t = e.releaseQuick(ctx, rs, run, t, now, inflight)
				t.changed = true // Admitted
			} else if !run.Object.Status.Finished {
				enforceQueuedSLA(run, now, t)
			}
		default:
			t = e.m.advance(ctx, run, done, now, inflight)
			e.recordTries(rs, run, t)
			t = e.releaseQuick(ctx, rs, run, t, now, inflight)
		}
		if t.notifySLA {
			e.notifySLA(ctx, run, now, t)
		}
		if run.Object.Status.Finished && len(run.StepSlots) > 0 {
			endStepSlots(run, nil, t) // finished without an advance (a restart that failed its check)
		}
		t.logs = append(run.takeNotes(), t.logs...)
		// An operation the store found written into the run by someone else (run.pass: a
		// kubectl patch of the status, for one) is saved as applied, and passed to the children.
		if !t.changed && len(t.logs) == 0 && run.pass == nil && op == nil {
			break
		}
		// Asked again before each save: a lease lost while the run was advanced means another
		// engine may have taken it up already. Saves are versioned, so one that lands all the
		// same either precedes the new owner's first (which then conflicts and reloads), or
		// conflicts itself and is dropped here on its next attempt.
		if !e.owns(ctx, key) {
			e.releaseStepSlots(ctx, run, t.acquired)
			return nil, errNotOwned
		}
		redactForSave(run, t.logs)
		err := e.opts.Store.Save(ctx, run, t.logs)
		if err != nil {
			// What the steps asked for in a transition not saved is given up: the next
			// advance asks again, from what is stored.
			e.releaseStepSlots(ctx, run, t.acquired)
		}
		if errors.Is(err, ErrConflict) && attempt < 100 {
			run = nil // someone else changed it: start again from what is stored
			continue
		}
		if err != nil {
			if op != nil {
				e.requeueDone(rs, done)
				return nil, err
			}
			e.opts.Logger.Error("save run", "run", key, "err", err)
			e.retryLater(key, rs, done)
			return nil, err
		}
		saved = true
		break
	}

	e.mu.Lock()
	// The wakes are spent once what they made due is saved: a conflict above loaded the run
	// again, and woke its steps again.
	for name, wakes := range woken {
		rs.seen[name] = max(rs.seen[name], wakes)
	}
	// A run dropped meanwhile (DropUnowned: its lease was lost) is left to its new owner:
	// nothing decided here is launched or timed.
	if e.runs[key] == rs {
		e.actLocked(key, rs, run, t, done, gen, op == nil)
	}
	e.mu.Unlock()
	// Told last, once the steps are launched and the timers set, so that what an observer sees
	// is already being acted on.
	if saved && e.opts.Observer != nil {
		e.opts.Observer.RunChanged(run)
	}
	if saved {
		e.releaseStepSlots(ctx, run, t.release)
	}
	if saved && run.Object.Status.Finished {
		e.releaseSlot(ctx, run)
	}
	if saved {
		if run.pass != nil {
			if e.passToChildren(ctx, run) && op != nil {
				e.q.add(key) // to see the children as the operation left them
			}
			run.pass = nil
		}
		e.wakeParent(ctx, run)
	}
	return run, nil
}

// actLocked acts on a saved transition of a run: it caches the run (cache: not an
// operation's, whose run is its caller's), cancels and launches evaluations, sets the run's
// timer, forgets a finished run, and queues the run again when it was woken while one of the
// evaluations applied (done) ran. e.mu is held.
func (e *Engine) actLocked(key Key, rs *runState, run *Run, t *transition, done []stepDone, gen int, cache bool) {
	now := e.opts.Clock.Now()
	if rs.gen == gen && cache {
		rs.run = run // an operation's run is its caller's: the next worker loads its own
	}
	for _, name := range t.cancel {
		if cancel := rs.inflight[name]; cancel != nil {
			cancel()
			delete(rs.inflight, name)
		}
	}
	for _, n := range t.launch {
		e.launch(e.life, key, rs, run, n, now) // an evaluation belongs to the engine, not to the caller of an operation
	}
	if rs.stop != nil && (t.wake.IsZero() || !t.wake.Equal(rs.wake)) {
		rs.stop()
		rs.stop = nil
	}
	if !t.wake.IsZero() && rs.stop == nil {
		rs.wake = t.wake
		rs.stop = e.opts.Clock.AfterFunc(t.wake.Sub(now), func() { e.q.add(key) })
	}
	if run.Object.Status.Finished && len(rs.inflight) == 0 && len(rs.done) == 0 {
		delete(e.runs, key)
	}
	for _, d := range done {
		if rs.seen[d.step] < rs.wakes {
			// Woken while this evaluation ran: what it waits on may have changed already.
			e.q.add(key)
			break
		}
	}
}

// errNotOwned is process's answer for a run another engine owns (Options.Owner).
var errNotOwned = errors.New("the run is owned by another engine")

// owns reports whether this engine may advance the run now (Options.Owner); when it may not,
// it drops what it holds of the run and hands the run to its owner.
func (e *Engine) owns(ctx context.Context, key Key) bool {
	o := e.opts.Owner
	if o == nil || o.Owns(key) {
		return true
	}
	e.disown(key)
	o.Elsewhere(ctx, key)
	return false
}

// maxQuickRounds bounds how many times one advance makes quick evaluations and advances the
// run with their results: a run of many quick steps in a row is saved every so many.
const maxQuickRounds = 8

// releaseQuick makes the quick evaluations among the steps t launches (QuickRunner), and
// takes the results of those with a cache that it holds (cacheHit), at once and advances the
// run with their results, until none is left: t and what followed, as one transition.
func (e *Engine) releaseQuick(ctx context.Context, rs *runState, run *Run, t *transition, now time.Time, inflight func(string) bool) *transition {
	quick, _ := e.opts.Runner.(QuickRunner)
	caching := e.opts.Cache != nil && e.opts.CacheKeys != nil
	if quick == nil && !caching {
		return t
	}
	for range maxQuickRounds {
		var done []stepDone
		var rest []*node
		for _, n := range t.launch {
			cached := n.spec.Cache != nil && caching
			if n.spec.Type == v1alpha1.TypeWorkflow || (quick == nil && !cached) {
				rest = append(rest, n)
				continue
			}
			req, err := request(run, n, now)
			if err != nil {
				rest = append(rest, n)
				continue
			}
			var res *StepResult
			var ok bool
			if cached {
				// A hit is taken at once, as a quick evaluation: it runs nothing.
				res, ok = e.cacheHit(ctx, n.spec.Cache, req)
			} else {
				res, ok, err = quick.RunQuick(ctx, req)
			}
			if !ok {
				rest = append(rest, n)
				continue
			}
			if err == nil && res == nil {
				err = Terminal(v1alpha1.ReasonExecute, errors.New("step runner returned no result"))
			}
			// At the transition's time: the step starts and ends in it.
			rec := run.record(n.name)
			done = append(done, stepDone{epoch: run.Epoch, step: n.name, attempt: rec.Attempt, tries: rec.Tries, result: res, err: err, at: now})
			e.mu.Lock()
			rs.tried[n.name] = triedAs(run, rec)
			rs.seen[n.name] = rs.wakes
			e.mu.Unlock()
		}
		if len(done) == 0 {
			return t
		}
		next := e.m.advance(ctx, run, done, now, inflight)
		e.recordTries(rs, run, next)
		next.changed = next.changed || t.changed
		next.logs = append(t.logs, next.logs...)
		next.notifySLA = next.notifySLA || t.notifySLA
		next.acquired = append(t.acquired, next.acquired...)
		next.release = append(t.release, next.release...)
		next.launch = append(rest, next.launch...)
		next.cancel = append(t.cancel, next.cancel...)
		t = next
	}
	return t
}

// wakeWaiting makes the waiting steps that were not evaluated since the last Wake due now, and
// the steps suspended on a child run: the child that woke the run may have finished while
// the step's evaluation looked at it, too late for wakeParent to release a step that was not
// suspended yet. It returns the steps it woke with the count of wakes they saw, which the
// caller marks seen once the run is saved: a save that conflicts drops this copy of the run,
// and the next attempt wakes them again. A step whose evaluation's result is being applied
// (done) or waits to be (rs.done) is left unseen: the result decides its next time, and the
// wake, which may have come while it ran, has it evaluated again (actLocked).
func (e *Engine) wakeWaiting(rs *runState, run *Run, done []stepDone, now time.Time) map[string]uint64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	if rs.wakes == 0 {
		return nil
	}
	woken := map[string]uint64{}
	var children map[string]bool
	for name, rec := range run.Steps {
		if rs.seen[name] >= rs.wakes {
			continue
		}
		if _, busy := rs.inflight[name]; busy {
			continue
		}
		isStep := func(d stepDone) bool { return d.step == name }
		if slices.ContainsFunc(done, isStep) || slices.ContainsFunc(rs.done, isStep) {
			continue
		}
		switch {
		case rec.Waits > 0 && !rec.Suspended && now.Before(rec.NextTime):
			rec.NextTime = time.Time{}
		case rec.Suspended && !rec.Resumed && rec.NextTime.IsZero():
			if children == nil {
				children = stepsWithChildren(run)
			}
			if !children[name] {
				continue
			}
			rec.NextTime = now // a suspended step due is evaluated (machine.schedule)
		default:
			continue
		}
		woken[name] = rs.wakes
	}
	return woken
}

// recordTries counts a new try of each step to launch that this process has not evaluated in
// its current attempt, to be saved before the launch: a process that died may have run the
// step's side effects without recording them, and this one may run them again.
func (e *Engine) recordTries(rs *runState, run *Run, t *transition) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, n := range t.launch {
		rec := run.record(n.name)
		if rs.tried[n.name] != (triedAs(run, rec)) {
			rec.Tries++
			t.changed = true
		}
	}
}

func (e *Engine) setProcessing(rs *runState, v bool) {
	e.mu.Lock()
	rs.processing = v
	e.mu.Unlock()
}

func (e *Engine) initialize(ctx context.Context, run *Run, now time.Time) error {
	var wf *v1alpha1.Workflow
	obj := run.Object
	run.TTLSecondsAfterFinished = obj.Spec.TTLSecondsAfterFinished
	run.SLA, run.SLABreachedAt = obj.Spec.SLA, time.Time{} // a restarted run is timed anew
	// A restarted run asks for a slot anew: it gave up its last one when it finished.
	run.Concurrency, run.Priority, run.SlotKey, run.Admitted = obj.Spec.Concurrency, 0, "", false
	if obj.Spec.Priority != nil {
		run.Priority = *obj.Spec.Priority
	}
	if err := e.checkParent(ctx, run); err != nil {
		return err
	}
	if obj.Spec.WorkflowSpec == nil && obj.Spec.WorkflowRef != "" {
		if e.opts.Workflows == nil {
			return fmt.Errorf("spec.workflowRef: no Workflow templates are available to resolve %q", obj.Spec.WorkflowRef)
		}
		var err error
		wf, err = e.workflow(ctx, obj)
		if err != nil {
			return err
		}
		if run.TTLSecondsAfterFinished == nil {
			run.TTLSecondsAfterFinished = wf.TTLSecondsAfterFinished
		}
		if run.SLA == nil {
			run.SLA = wf.SLA
		}
		if run.Concurrency == nil {
			run.Concurrency = wf.Concurrency
		}
		if obj.Spec.Priority == nil && wf.Priority != nil {
			run.Priority = *wf.Priority
		}
	}
	if err := initialize(run, wf, now); err != nil {
		return err
	}
	if wf != nil {
		obj.Status.TemplateRevision = wf.Generation
	}
	if err := e.m.limits.checkSteps(run.Spec); err != nil {
		return err
	}
	if e.opts.Check != nil && !run.Checked {
		return e.opts.Check(ctx, run)
	}
	return nil
}

// workflow is the template obj's workflowRef names: the revision its annotation
// v1alpha1.AnnotationTemplateRevision asks for, else the current one.
func (e *Engine) workflow(ctx context.Context, obj *v1alpha1.WorkflowRun) (*v1alpha1.Workflow, error) {
	want, ok := obj.Annotations[v1alpha1.AnnotationTemplateRevision]
	if !ok {
		wf, err := e.opts.Workflows.Workflow(ctx, obj.Namespace, obj.Spec.WorkflowRef)
		if err != nil {
			return nil, fmt.Errorf("spec.workflowRef: %w", err)
		}
		return wf, nil
	}
	field := "metadata.annotations[" + v1alpha1.AnnotationTemplateRevision + "]"
	rev, err := strconv.ParseInt(want, 10, 64)
	if err != nil || rev < 1 {
		return nil, fmt.Errorf("%s: %q is not a revision number (1 or more)", field, want)
	}
	revs, ok := e.opts.Workflows.(WorkflowRevisions)
	if !ok {
		return nil, fmt.Errorf("%s: this store keeps no revisions of Workflow templates", field)
	}
	wf, err := revs.WorkflowAt(ctx, obj.Namespace, obj.Spec.WorkflowRef, rev)
	if err != nil {
		return nil, fmt.Errorf("%s: Workflow %q: %w", field, obj.Spec.WorkflowRef, err)
	}
	return wf, nil
}

// checkParent refuses to start a child run whose parent run is gone or was terminated: one
// stored before the terminate reached it, or taken up again by a process that recovers
// unfinished runs, so that no descendant of a terminated run runs.
func (e *Engine) checkParent(ctx context.Context, run *Run) error {
	p := run.Object.Labels[v1alpha1.LabelParentRun]
	if p == "" || run.Object.Status.Terminated {
		return nil // a run terminated before it started ends as terminated
	}
	parent, err := e.opts.Store.Load(ctx, Key{Namespace: run.Object.Namespace, Name: p})
	switch {
	case errors.Is(err, ErrNotFound):
		return fmt.Errorf("its parent run %s does not exist: a child run runs only under its parent", p)
	case err != nil:
		// Not known: the run starts, as its parent's terminate, when there is one, reaches
		// it through the parent's status.
		e.opts.Logger.Warn("load the parent of a child run", "run", run.Key(), "parent", p, "err", err)
	case parent.Object.Status.Terminated:
		return fmt.Errorf("its parent run %s was terminated", p)
	}
	return nil
}

// launch starts the evaluation of a step in its own goroutine; e.mu is held.
func (e *Engine) launch(ctx context.Context, key Key, rs *runState, run *Run, n *node, now time.Time) {
	rec := run.record(n.name)
	d := stepDone{epoch: run.Epoch, step: n.name, attempt: rec.Attempt, tries: rec.Tries}
	req, err := request(run, n, now)
	if err != nil {
		d.err, d.at = err, now
		rs.done = append(rs.done, d)
		e.q.addFirst(key)
		return
	}
	runStep := e.opts.Runner.RunStep
	if n.spec.Type == v1alpha1.TypeWorkflow {
		runStep = e.childRunner(run, n)
	} else if n.spec.Cache != nil && e.opts.Cache != nil && e.opts.CacheKeys != nil {
		runStep = e.cachedRunner(n.spec.Cache, runStep)
	}
	stepCtx, cancel := context.WithCancel(ctx)
	rs.inflight[n.name] = cancel
	rs.seen[n.name] = rs.wakes
	rs.tried[n.name] = triedAs(run, rec)
	e.q.began()
	e.steps.Go(func() {
		defer cancel()
		res, err := runStep(stepCtx, req)
		e.q.ended()
		if err == nil && res == nil {
			err = Terminal(v1alpha1.ReasonExecute, errors.New("step runner returned no result"))
		}
		d.result, d.err, d.at = res, err, e.opts.Clock.Now()
		e.mu.Lock()
		if _, live := rs.inflight[d.step]; !live {
			e.mu.Unlock()
			return // cancelled: the step moved on without this evaluation
		}
		delete(rs.inflight, d.step)
		rs.done = append(rs.done, d)
		e.mu.Unlock()
		e.q.addFirst(key) // a run under way goes before runs to start
	})
}

func (e *Engine) requeueDone(rs *runState, done []stepDone) {
	e.mu.Lock()
	rs.done = append(done, rs.done...)
	e.mu.Unlock()
}

func (e *Engine) retryLater(key Key, rs *runState, done []stepDone) {
	e.requeueDone(rs, done)
	e.opts.Clock.AfterFunc(time.Second, func() { e.q.add(key) })
}

func (e *Engine) forget(key Key, rs *runState) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, cancel := range rs.inflight {
		cancel()
	}
	if rs.stop != nil {
		rs.stop()
	}
	delete(e.runs, key)
}

// disown drops what the engine holds of a run another engine owns now: its evaluations under
// way are cancelled and their results, like those not applied yet, are dropped. The owner
// evaluates those steps again in a try of its own.
func (e *Engine) disown(key Key) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if rs := e.runs[key]; rs != nil {
		e.dropLocked(key, rs)
	}
}

// DropUnowned drops what the engine holds of the runs it no longer owns (Options.Owner) at
// once, rather than when it next looks at each: their evaluations under way are cancelled, so
// that none goes on acting after another engine may have taken the run up, and their timers
// are stopped. Call it when ownership shrinks (a lease given up or lapsed); the new owner
// learns of the runs from its own leases.
func (e *Engine) DropUnowned() {
	o := e.opts.Owner
	if o == nil {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for key, rs := range e.runs {
		if !o.Owns(key) {
			e.dropLocked(key, rs)
		}
	}
}

// dropLocked cancels a run's evaluations and timer and forgets it; e.mu is held. A worker
// advancing it meanwhile finds its state gone and acts on nothing it decided.
func (e *Engine) dropLocked(key Key, rs *runState) {
	for name, cancel := range rs.inflight {
		cancel()
		delete(rs.inflight, name)
	}
	if rs.stop != nil {
		rs.stop()
		rs.stop = nil
	}
	rs.done = nil
	delete(e.runs, key)
}

// Operate applies op to the stored run, retrying on conflicting writes, and has the run
// advanced. On a running engine that owns the run, the operation and what follows from it at
// once (a resumed step released, the next step started) are one transition, saved before
// Operate returns; otherwise the operation is saved and the run queued. An operation that does
// not apply to the run as it is fails with an error wrapping ErrInvalidOperation.
func (e *Engine) Operate(ctx context.Context, key Key, op Operation) (*Run, error) {
	if err := op.Validate(); err != nil {
		return nil, err
	}
	if o := e.opts.Owner; o == nil || o.Owns(key) {
		if e.q.acquire(key) {
			run, err := e.process(ctx, key, op.Apply)
			e.q.done(key)
			if !errors.Is(err, errNotOwned) {
				return run, err
			}
		}
	}
	return e.operateStored(ctx, key, op.Apply)
}

// operateStored applies an operation to the stored run and queues it, without holding the
// run's key: for an engine not running, a run another engine owns, and the operations a
// worker passes between parent and child runs (it holds one of the two keys already).
func (e *Engine) operateStored(ctx context.Context, key Key, op func(run *Run, now time.Time) error) (*Run, error) {
	for {
		run, err := e.opts.Store.Load(ctx, key)
		if err != nil {
			return nil, err
		}
		if err := op(run, e.opts.Clock.Now()); err != nil {
			return nil, err
		}
		notes := run.takeNotes()
		redactForSave(run, notes)
		err = e.opts.Store.Save(ctx, run, notes)
		if errors.Is(err, ErrConflict) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if e.opts.Observer != nil {
			e.opts.Observer.RunChanged(run)
		}
		e.passToChildren(ctx, run) // first, so that the run sees its children changed
		e.Enqueue(key)
		return run, nil
	}
}

// Settled reports whether a run will not move without an operation or a timer of another
// process: it finished, or it is held by a suspend with nothing scheduled to release it.
func Settled(run *Run) bool {
	st := &run.Object.Status
	if st.Finished {
		return true
	}
	if !run.suspended() {
		return false
	}
	if run.ManualSuspend {
		return true
	}
	for _, rec := range run.Steps {
		if rec.Suspended && !rec.Resumed && !rec.NextTime.IsZero() {
			return false
		}
	}
	return true
}
