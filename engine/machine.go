package engine

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/redact"
)

// machine holds the rules of the run state machine; all state is in the Run it is given.
type machine struct {
	retry  RetryPolicy
	wait   Backoff
	cond   ConditionEvaluator
	limits Limits
	// slots and keys, when both are set, keep the semaphores of steps with a concurrency key.
	slots Slots
	keys  KeyEvaluator
}

// stepDone is the result of one evaluation of a step, waiting to be applied to its run.
type stepDone struct {
	epoch   int64
	step    string
	attempt int
	// tries is the try the evaluation belonged to (StepRecord.Tries when it was launched).
	tries  int
	at     time.Time
	result *StepResult
	err    error
}

// transition is what one advance decided, to act on once it is saved.
type transition struct {
	changed bool
	// launch are the steps to evaluate.
	launch []*node
	// cancel are steps in flight that no longer need their evaluation (terminated, timed out).
	cancel []string
	// wake is when the run must be looked at again; zero for never.
	wake time.Time
	logs []LogEntry
	// notifySLA says the run breached its SLA in this transition and its notification is due.
	notifySLA bool
	// acquired are the step slots asked for in this transition (held or in line), to give up
	// if it is not saved; release those of steps that ended, to give up once it is.
	acquired, release []stepSlot
}

func (t *transition) wakeAt(at time.Time) {
	if !at.IsZero() && (t.wake.IsZero() || at.Before(t.wake)) {
		t.wake = at
	}
}

// newID returns a random status id, lowercase letters and digits as KubeVela's.
func newID() string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, 10)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

// initialize resolves the steps a run executes and lays out its status. wf is the referenced
// Workflow, nil when the run has its steps inline.
func initialize(run *Run, wf *v1alpha1.Workflow, now time.Time) error {
	obj := run.Object
	spec := &v1alpha1.WorkflowSpec{}
	switch {
	case obj.Spec.WorkflowSpec != nil:
		obj.Spec.WorkflowSpec.DeepCopyInto(spec)
	case wf != nil:
		wf.WorkflowSpec.DeepCopyInto(spec)
	default:
		return fmt.Errorf("spec: neither workflowSpec nor a Workflow named by workflowRef %q", obj.Spec.WorkflowRef)
	}
	if len(spec.Steps) == 0 {
		return errors.New("spec.workflowSpec.steps: a run needs at least one step")
	}
	v1alpha1.DefaultStepNames(spec.Steps)
	mode := v1alpha1.EffectiveMode(&obj.Spec, wf)

	run.Context = nil
	if wf != nil && len(wf.Parameters) > 0 && obj.Spec.WorkflowSpec == nil {
		full, errs := v1alpha1.RunContext(obj, wf)
		// Learned before the errors are reported: their messages may quote the values.
		run.learn(redact.Leaves(v1alpha1.SensitiveValues(wf.Parameters, full))...)
		if len(errs) > 0 {
			return fmt.Errorf("the parameters of Workflow %s: %w", wf.Name, errs.ToAggregate())
		}
		c, err := json.Marshal(full)
		if err != nil {
			return err
		}
		run.Context = c
	}
	run.Spec = spec
	run.Steps = map[string]*StepRecord{}
	run.Vars = nil
	run.ManualSuspend = false
	st := v1alpha1.WorkflowRunStatus{
		Mode:      mode,
		Phase:     v1alpha1.RunExecuting,
		StartTime: metav1.NewTime(now),
		ContextBackend: &v1alpha1.ObjectReference{
			APIVersion: "v1", Kind: "ConfigMap",
			Namespace: obj.Namespace, Name: "workflow-" + obj.Name + "-context",
		},
	}
	for _, s := range spec.Steps {
		ws := v1alpha1.WorkflowStepStatus{StepStatus: newStepStatus(&s.WorkflowStepBase)}
		for j := range s.SubSteps {
			ws.SubStepsStatus = append(ws.SubStepsStatus, newStepStatus(&s.SubSteps[j]))
		}
		st.Steps = append(st.Steps, ws)
	}
	obj.Status = st
	return nil
}

func newStepStatus(s *v1alpha1.WorkflowStepBase) v1alpha1.StepStatus {
	return v1alpha1.StepStatus{ID: newID(), Name: s.Name, Type: s.Type, Phase: v1alpha1.StepPending}
}

// advance moves an initialized run as far as it can at now: it applies finished evaluations,
// enforces timeouts and termination, starts what may start, and settles the run's phase.
// inflight reports the steps whose evaluation is under way in this process.
func (m *machine) advance(ctx context.Context, run *Run, done []stepDone, now time.Time, inflight func(string) bool) *transition {
	t := &transition{}
	g := buildGraph(run)
	st := &run.Object.Status
	defer endStepSlots(run, g, t)
	for _, d := range done {
		m.apply(run, g, d, t)
	}
	if st.Finished {
		return t
	}
	m.enforceTimeouts(run, g, now, t)
	m.enforceSLA(run, g, now, t)
	if st.Terminated {
		// What was active when the run was terminated failed then (terminate); what is
		// active now and runs always (a clean-up step) started after, and goes on.
		g.each(func(n *node) {
			if n.active() && !runsAlways(n) {
				m.fail(run, n, v1alpha1.ReasonTerminate, "the run was terminated", now, t)
			}
		})
	}
	m.schedule(ctx, run, g, g.top, now, inflight, t)
	if !st.Finished && len(t.launch) == 0 && t.wake.IsZero() && !run.suspended() && !anyInflight(g, inflight) {
		// Nothing can move: the remaining steps wait on steps that will never finish.
		g.each(func(n *node) {
			if n.status.Phase == v1alpha1.StepPending && !n.template && (n.group == nil || n.group.active()) {
				m.fail(run, n, v1alpha1.ReasonInput, "cannot start: the steps it waits for will not finish", now, t)
			}
		})
		m.schedule(ctx, run, g, g.top, now, inflight, t)
	}
	m.settle(run, g, now, t)
	for name := range run.Steps {
		if n := g.byName[name]; n != nil && inflight(name) && !n.active() {
			t.cancel = append(t.cancel, name)
		}
	}
	return t
}

func anyInflight(g *graph, inflight func(string) bool) bool {
	found := false
	g.each(func(n *node) { found = found || inflight(n.name) })
	return found
}

// suspended reports whether the run is held: by a user's suspend or by a suspend step.
func (r *Run) suspended() bool {
	if r.ManualSuspend {
		return true
	}
	for _, rec := range r.Steps {
		if rec.Suspended && !rec.Resumed {
			return true
		}
	}
	return false
}

// record returns the bookkeeping of a step, creating it.
func (r *Run) record(name string) *StepRecord {
	if r.Steps == nil {
		r.Steps = map[string]*StepRecord{}
	}
	rec := r.Steps[name]
	if rec == nil {
		rec = &StepRecord{}
		r.Steps[name] = rec
	}
	return rec
}

// apply records the result of one evaluation.
func (m *machine) apply(run *Run, g *graph, d stepDone, t *transition) {
	n := g.byName[d.step]
	rec := run.Steps[d.step]
	if d.result != nil {
		// Learned whatever became of the evaluation: its log lines and messages may show them.
		run.learn(d.result.Sensitive...)
		for _, l := range d.result.Logs {
			if l.Step == "" || (n != nil && n.it != nil) {
				l.Step = d.step // an iteration's lines name it: deploy[3]
			}
			t.logs = append(t.logs, l)
		}
	}
	if d.epoch != run.Epoch || n == nil || rec == nil || rec.Attempt != d.attempt || rec.Tries != d.tries || !n.active() {
		// The step moved on while it was evaluated: terminated, timed out, restarted, or
		// taken up in a try of its own by an engine that took the run over.
		return
	}
	t.changed = true
	n.status.LastExecuteTime = metav1.NewTime(d.at)
	rec.Resumed = false
	rec.Suspended = false
	if d.result != nil && d.result.Memo != nil {
		// A memo past the run's bound fails the step: kept, it would be rewritten with the
		// record at every transition; dropped, a retry would repeat its side effects.
		if err := m.limits.checkMemo(run, rec, d.result.Memo); err != nil {
			m.fail(run, n, v1alpha1.ReasonOutput, "the results of its side effects: "+err.Error(), d.at, t)
			return
		}
		// Kept on errors too: the side effects that ran before a failing action are not
		// repeated when the step is tried again.
		rec.Memo = d.result.Memo
	}
	if d.err != nil {
		if te, ok := errors.AsType[*TerminalError](d.err); ok {
			m.fail(run, n, orDefault(te.Reason, v1alpha1.ReasonExecute), d.err.Error(), d.at, t)
			return
		}
		rec.Retries++
		policy := m.retryFor(n.spec)
		if rec.Retries > policy.Limit {
			t.logs = append(t.logs, LogEntry{Time: d.at, Step: d.step, Severity: SeverityError, Outcome: "failed",
				Message: fmt.Sprintf("try %d of %d failed, the last: %v", rec.Retries, policy.Limit+1, d.err)})
			m.fail(run, n, v1alpha1.ReasonFailedAfterRetries,
				fmt.Sprintf("failed after %d retries: %v", policy.Limit, d.err), d.at, t)
			return
		}
		n.status.Reason = v1alpha1.ReasonExecute
		n.status.Message = d.err.Error()
		delay := policy.Backoff.Delay(rec.Retries)
		rec.NextTime = d.at.Add(delay)
		t.logs = append(t.logs, LogEntry{Time: d.at, Step: d.step, Severity: SeverityWarning, Outcome: "retry",
			Message: fmt.Sprintf("try %d of %d failed, try %d in %s: %v", rec.Retries, policy.Limit+1, rec.Retries+1, delay, d.err)})
		return
	}
	r := d.result
	err := m.limits.checkResult(r)
	if err == nil {
		err = m.limits.checkRunData(run, n, r)
	}
	if err != nil {
		m.fail(run, n, v1alpha1.ReasonOutput, err.Error(), d.at, t)
		return
	}
	for k, v := range r.VarWrites {
		run.setVar(k, v)
	}
	switch r.Outcome {
	case Succeeded, Broke:
		if rec.Retries > 0 {
			t.logs = append(t.logs, LogEntry{Time: d.at, Step: d.step, Severity: SeverityInfo, Outcome: "succeeded",
				Message: fmt.Sprintf("succeeded at try %d", rec.Retries+1)})
		}
		setOutputs(run, n, r.Outputs)
		n.status.Phase = v1alpha1.StepSucceeded
		n.status.Reason = ""
		if r.Reason == v1alpha1.ReasonCached {
			n.status.Reason = r.Reason
		}
		n.status.Message = r.Message
		rec.Memo, rec.NextTime, rec.Retries, rec.Waits, rec.Outputs = nil, time.Time{}, 0, 0, nil
		if r.Outcome == Broke {
			st := &run.Object.Status
			st.Terminated = true
			st.Message = fmt.Sprintf("terminated by step %s", n.name)
			if r.Message != "" {
				st.Message += ": " + r.Message
			}
		}
	case Failed:
		// As KubeVela: a failed step's outputs stay available to the steps that take them.
		setOutputs(run, n, r.Outputs)
		rec.Outputs = nil
		m.fail(run, n, orDefault(r.Reason, v1alpha1.ReasonExecute), r.Message, d.at, t)
	case Waiting:
		rec.Outputs = r.Outputs // taken if the step times out
		n.status.Reason = v1alpha1.ReasonWait
		n.status.Message = r.Message
		rec.Retries = 0
		rec.Waits++
		delay := r.WaitHint
		if delay <= 0 {
			delay = m.wait.Delay(rec.Waits)
		}
		rec.NextTime = d.at.Add(delay)
	case Suspended:
		n.status.Reason = v1alpha1.ReasonSuspend
		n.status.Message = r.Message
		rec.Suspended = true
		rec.NextTime = r.SuspendUntil
	}
}

func (r *Run) setVar(name string, v json.RawMessage) {
	if r.Vars == nil {
		r.Vars = map[string]json.RawMessage{}
	}
	r.Vars[name] = v
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// fail ends a step as failed; a group's unfinished sub-steps end with it.
func (m *machine) fail(run *Run, n *node, reason, message string, now time.Time, t *transition) {
	t.changed = true
	for _, it := range n.iters {
		if it.active() {
			m.fail(run, it, reason, message, now, t)
		}
	}
	for _, s := range n.subs {
		switch {
		case s.active():
			m.fail(run, s, reason, message, now, t)
		case s.status.Phase == v1alpha1.StepPending:
			skip(s, "its group "+n.name+" failed", t)
		}
	}
	n.status.Phase = v1alpha1.StepFailed
	n.status.Reason = reason
	n.status.Message = message
	if n.status.FirstExecuteTime.IsZero() {
		n.status.FirstExecuteTime = metav1.NewTime(now)
	}
	n.status.LastExecuteTime = metav1.NewTime(now)
	if rec := run.Steps[n.name]; rec != nil {
		rec.Suspended, rec.Resumed, rec.NextTime = false, false, time.Time{}
	}
	if n.looping {
		sumUpTemplates(n)
	}
}

// setOutputs stores a step's outputs as run variables; an iteration's are gathered over the
// iterations when the loop ends, and meanwhile the iteration's other steps see them.
func setOutputs(run *Run, n *node, outputs map[string]json.RawMessage) {
	for k, v := range outputs {
		if n.it == nil {
			run.setVar(k, v)
			continue
		}
		if n.it.rec.Outputs == nil {
			n.it.rec.Outputs = map[string]json.RawMessage{}
		}
		n.it.rec.Outputs[k] = v
	}
}

func skip(n *node, message string, t *transition) {
	t.changed = true
	n.status.Phase = v1alpha1.StepSkipped
	n.status.Reason = v1alpha1.ReasonSkip
	n.status.Message = message
	for _, s := range n.subs {
		if !s.finished() {
			skip(s, message, t)
		}
	}
}

// enforceTimeouts fails steps past their timeout and asks to be woken at the next deadline.
func (m *machine) enforceTimeouts(run *Run, g *graph, now time.Time, t *transition) {
	g.each(func(n *node) {
		if !n.active() || n.spec.Timeout == "" || n.isIteration() {
			return // an iteration is within its loop's timeout
		}
		d, err := time.ParseDuration(n.spec.Timeout)
		if err != nil {
			m.fail(run, n, v1alpha1.ReasonTimeout, fmt.Sprintf("timeout %q: %v", n.spec.Timeout, err), now, t)
			return
		}
		deadline := n.status.FirstExecuteTime.Add(d)
		if !now.Before(deadline) {
			// KubeVela evaluates a timed-out step once more and takes its outputs; here the
			// outputs of its last evaluation, which left it waiting, are taken.
			if rec := run.Steps[n.name]; rec != nil && rec.Outputs != nil {
				setOutputs(run, n, rec.Outputs)
				rec.Outputs = nil
			}
			m.fail(run, n, v1alpha1.ReasonTimeout, fmt.Sprintf("timed out after %s", n.spec.Timeout), now, t)
			return
		}
		t.wakeAt(deadline)
	})
}

// schedule walks a list of steps in order and starts or re-evaluates what may go now.
func (m *machine) schedule(ctx context.Context, run *Run, g *graph, list []*node, now time.Time, inflight func(string) bool, t *transition) {
	held := run.suspended()
	for _, n := range list {
		switch {
		case n.finished():
		case n.status.Phase == v1alpha1.StepPending:
			if !ready(n) || (held && !run.Object.Status.Terminated) {
				continue
			}
			verdict, message := m.gate(ctx, run, g, n)
			switch verdict {
			case gateSkip:
				skip(n, message, t)
				continue
			case gateFail:
				m.fail(run, n, v1alpha1.ReasonExecute, message, now, t)
				continue
			}
			if n.spec.Concurrency != nil && !m.takeStepSlot(ctx, run, n, now, t) {
				continue
			}
			m.start(run, n, now, t)
			switch {
			case n.looping:
				if err := beginLoop(run, n, m.limits); err != nil {
					m.fail(run, n, v1alpha1.ReasonInput, err.Error(), now, t)
					continue
				}
				m.scheduleLoop(ctx, run, g, n, now, inflight, t)
			case n.isGroup:
				m.enterGroup(ctx, run, g, n, now, inflight, t)
			default:
				t.launch = append(t.launch, n)
			}
		case n.looping:
			m.scheduleLoop(ctx, run, g, n, now, inflight, t)
		case n.isGroup:
			m.enterGroup(ctx, run, g, n, now, inflight, t)
		case inflight(n.name):
		default:
			rec := run.record(n.name)
			due := !now.Before(rec.NextTime)
			switch {
			case rec.Suspended && rec.Resumed && !run.ManualSuspend:
				t.launch = append(t.launch, n)
			case rec.Suspended:
				if !rec.NextTime.IsZero() && !run.ManualSuspend {
					if due {
						t.launch = append(t.launch, n)
					} else {
						t.wakeAt(rec.NextTime)
					}
				}
			case held:
			case due:
				t.launch = append(t.launch, n)
			default:
				t.wakeAt(rec.NextTime)
			}
		}
	}
}

// ready reports whether everything a pending step waits for has finished.
func ready(n *node) bool {
	if n.mode == v1alpha1.ModeStepByStep {
		for _, p := range n.prev {
			if !p.finished() {
				return false
			}
		}
	}
	for _, d := range n.deps {
		if !d.finished() {
			return false
		}
	}
	return true
}

// runsAlways reports whether a node runs whatever happened before it (`if: always`), by its
// own condition or its group's.
func runsAlways(n *node) bool {
	for ; n != nil; n = n.group {
		if n.spec != nil && strings.TrimSpace(n.spec.If) == "always" {
			return true
		}
	}
	return false
}

type gateVerdict int

const (
	gateRun gateVerdict = iota
	gateSkip
	gateFail
)

// gate decides whether a ready step runs, is skipped, or fails on its `if`.
func (m *machine) gate(ctx context.Context, run *Run, g *graph, n *node) (gateVerdict, string) {
	cond := strings.TrimSpace(n.spec.If)
	if cond == "always" {
		return gateRun, ""
	}
	if run.Object.Status.Terminated {
		return gateSkip, "the run was terminated"
	}
	if run.slaFailed() {
		return gateSkip, "the run breached its SLA"
	}
	if n.mode == v1alpha1.ModeSwitch || (n.looping && cond != "") {
		// A case of a Switch was chosen by its if already; a loop decides its if per iteration.
		return gateRun, ""
	}
	if cond != "" {
		return m.evalIf(ctx, run, g, n, cond)
	}
	if n.mode == v1alpha1.ModeStepByStep && len(n.spec.DependsOn) == 0 {
		for _, p := range n.prev {
			if p.status.Phase == v1alpha1.StepFailed {
				return gateSkip, fmt.Sprintf("an earlier step, %s, failed", p.name)
			}
		}
	}
	for _, d := range n.deps {
		if d.status.Phase != v1alpha1.StepSucceeded {
			return gateSkip, fmt.Sprintf("step %s it depends on did not succeed", d.name)
		}
	}
	return gateRun, ""
}

// evalIf decides a step's `if` expression cond.
func (m *machine) evalIf(ctx context.Context, run *Run, g *graph, n *node, cond string) (gateVerdict, string) {
	if m.cond == nil {
		return gateFail, "if: no condition evaluator is configured"
	}
	stepCtx := stepContext(run, n)
	scope := map[string]any{
		"status":  statusScope(g, n),
		"inputs":  inputValues(run, n, stepCtx),
		"context": stepCtx,
	}
	ok, err := m.cond.EvalIf(ctx, cond, scope)
	if err != nil {
		return gateFail, fmt.Sprintf("if %q: %v", cond, err)
	}
	if !ok {
		return gateSkip, fmt.Sprintf("if %q is false", cond)
	}
	return gateRun, ""
}

// start marks a step running and begins a new attempt.
func (m *machine) start(run *Run, n *node, now time.Time, t *transition) {
	t.changed = true
	n.status.Phase = v1alpha1.StepRunning
	n.status.Reason = ""
	n.status.Message = ""
	n.status.FirstExecuteTime = metav1.NewTime(now)
	n.status.LastExecuteTime = metav1.NewTime(now)
	rec := run.record(n.name)
	*rec = StepRecord{Attempt: rec.Attempt + 1}
	if n.spec.Type == v1alpha1.TypeWorkflow && !n.isGroup && !n.looping {
		n.status.ChildRun = childName(run, n)
	}
}

// settle sets the phases shown for active steps and for the run.
func (m *machine) settle(run *Run, g *graph, now time.Time, t *transition) {
	st := &run.Object.Status
	held := run.suspended()
	if st.Suspend != held {
		t.changed = true
	}
	st.Suspend = held
	// Steps first, then what contains them: a group or a loop is suspending when one of its
	// steps is.
	var settleStep func(n *node)
	settleStep = func(n *node) {
		for _, c := range n.children() {
			settleStep(c)
		}
		if n.looping {
			summarizeLoop(n)
		}
		if !n.active() {
			return
		}
		want := v1alpha1.StepRunning
		if n.isGroup || n.looping {
			for _, c := range n.children() {
				if c.status.Phase == v1alpha1.StepSuspending {
					want = v1alpha1.StepSuspending
				}
			}
		} else if rec := run.Steps[n.name]; run.ManualSuspend || (rec != nil && rec.Suspended && !rec.Resumed) {
			want = v1alpha1.StepSuspending
		}
		if n.status.Phase != want {
			n.status.Phase = want
			t.changed = true
		}
	}
	for _, n := range g.top {
		settleStep(n)
	}
	for _, n := range g.top {
		if !n.finished() {
			phase := v1alpha1.RunExecuting
			if held {
				phase = v1alpha1.RunSuspending
			}
			if st.Phase != phase {
				st.Phase = phase
				t.changed = true
			}
			return
		}
	}
	t.changed = true
	st.Finished = true
	st.Suspend = false
	st.EndTime = metav1.NewTime(now)
	var failed []string
	g.each(func(n *node) {
		if n.status.Phase == v1alpha1.StepFailed && n.group == nil {
			failed = append(failed, n.name)
		}
	})
	switch {
	case st.Terminated:
		st.Phase = v1alpha1.RunTerminated
		if st.Message == "" {
			st.Message = "the run was terminated"
		}
	case len(failed) > 0:
		st.Phase = v1alpha1.RunFailed
		st.Message = fmt.Sprintf("step %s failed", strings.Join(failed, ", "))
	default:
		st.Phase = v1alpha1.RunSucceeded
		st.Message = ""
	}
}

// statusScope is what `status.<step>` means in the `if` of step n: in an iteration, a step of
// the iteration stands for the step it is an instance of.
func statusScope(g *graph, n *node) map[string]any {
	out := make(map[string]any, len(g.byName))
	for name, o := range g.byName {
		if o.it == nil {
			out[name] = statusOf(o.status)
		}
	}
	if n.it != nil {
		in := n.it.node
		out[in.spec.Name] = statusOf(in.status)
		for _, s := range in.subs {
			out[s.spec.Name] = statusOf(s.status)
		}
	}
	return out
}

// statusOf is one step's entry of the `status` an `if` reads.
func statusOf(s *v1alpha1.StepStatus) map[string]any {
	{
		return map[string]any{
			"phase":              string(s.Phase),
			"message":            s.Message,
			"reason":             s.Reason,
			"succeeded":          s.Phase == v1alpha1.StepSucceeded,
			"failed":             s.Phase == v1alpha1.StepFailed,
			"skipped":            s.Phase == v1alpha1.StepSkipped,
			"timeout":            s.Reason == v1alpha1.ReasonTimeout,
			"failedAfterRetries": s.Reason == v1alpha1.ReasonFailedAfterRetries,
			"terminate":          s.Reason == v1alpha1.ReasonTerminate,
		}
	}
}

// inputValues decodes the variables a step takes as inputs, by variable name: in an iteration,
// item, index and item.<path>, then the outputs of the iteration's steps, then run variables,
// then, for context.<path>, the step's context, as KubeVela looks an input up in the step's
// context when no variable holds it.
func inputValues(run *Run, n *node, ctx map[string]any) map[string]any {
	s := n.spec
	out := make(map[string]any, len(s.Inputs))
	for _, in := range s.Inputs {
		if n.it != nil && v1alpha1.IsIterationVar(in.From) {
			if v, ok := n.it.value(in.From); ok {
				out[in.From] = v
			}
			continue
		}
		raw, ok := json.RawMessage(nil), false
		if n.it != nil {
			raw, ok = n.it.rec.Outputs[in.From]
		}
		if !ok {
			raw, ok = run.Vars[in.From]
		}
		if !ok {
			if path, isCtx := v1alpha1.ContextPath(in.From); isCtx {
				if v, found := lookupPath(ctx, path); found {
					out[in.From] = v
				}
			}
			continue
		}
		var v any
		if json.Unmarshal(raw, &v) == nil {
			out[in.From] = v
		}
	}
	return out
}

// stepContext is the CUE `context` of a step: the built-in keys, then the run's spec.context.
func stepContext(run *Run, n *node) map[string]any {
	obj := run.Object
	c := map[string]any{
		"name":           obj.Name,
		"namespace":      obj.Namespace,
		"workflowName":   obj.Name,
		"publishVersion": obj.Annotations["app.oam.dev/publishVersion"],
		"stepName":       n.spec.Name,
		"stepSessionID":  n.status.ID,
		"spanID":         run.SpanPrefix() + "." + n.status.ID,
	}
	if n.group != nil {
		c["stepGroupName"] = n.group.spec.Name
	}
	if raw := run.contextRaw(); len(raw) > 0 {
		var user map[string]any
		if json.Unmarshal(raw, &user) == nil {
			maps.Copy(c, user)
		}
	}
	if n.it != nil {
		c[v1alpha1.VarItem], _ = n.it.value(v1alpha1.VarItem)
		c[v1alpha1.VarIndex] = n.it.index
	}
	return c
}

// request builds what the StepRunner is given for one evaluation of n. It copies what the
// evaluation reads so the run may change while the step is evaluated.
func request(run *Run, n *node, now time.Time) (*StepRequest, error) {
	props, err := propertiesJSON(n.spec.Properties)
	if err != nil {
		return nil, Terminal(v1alpha1.ReasonParameter, fmt.Errorf("properties: %w", err))
	}
	ctx := stepContext(run, n)
	inputs := inputValues(run, n, ctx)
	setsParameter := false
	for _, in := range n.spec.Inputs {
		if _, ok := inputs[in.From]; !ok {
			if n.it != nil && v1alpha1.IsIterationVar(in.From) {
				return nil, Terminal(v1alpha1.ReasonInput, fmt.Errorf("input %q: the item of iteration %d has no such field", in.From, n.it.index))
			}
			if _, isCtx := v1alpha1.ContextPath(in.From); isCtx {
				return nil, Terminal(v1alpha1.ReasonInput, fmt.Errorf("input %q is not available: no step has output it and the step's context has no such field", in.From))
			}
			return nil, Terminal(v1alpha1.ReasonInput, fmt.Errorf("input %q is not available: no step has output it", in.From))
		}
		setsParameter = setsParameter || in.ParameterKey != ""
	}
	if setsParameter {
		if props, err = fillInputs(props, n.spec.Inputs, inputs); err != nil {
			return nil, Terminal(v1alpha1.ReasonInput, fmt.Errorf("filling the inputs into the properties: %w", err))
		}
	}
	rec := run.record(n.name)
	req := &StepRequest{
		Run:        run.Key(),
		Step:       *n.spec,
		StepID:     n.status.ID,
		Properties: props,
		Inputs:     inputs,
		Context:    ctx,
		Vars:       make(map[string]json.RawMessage, len(run.Vars)),
		Resumed:    rec.Resumed,
		Now:        now,
		Sensitive:  run.Sensitive,
		Execution:  fmt.Sprintf("%s/%d/%d/%d", n.status.ID, run.Epoch, rec.Attempt, rec.Retries),
	}
	if n.group != nil {
		req.GroupName = n.group.spec.Name
	}
	maps.Copy(req.Vars, run.Vars)
	if rec.Memo != nil {
		req.Memo = make(map[string]json.RawMessage, len(rec.Memo))
		maps.Copy(req.Memo, rec.Memo)
	}
	return req, nil
}

// propertiesJSON returns a copy of a step's properties as the JSON object they are written as,
// without decoding them: the step runner reads them once. None, or null, is an empty object.
func propertiesJSON(p *runtime.RawExtension) (json.RawMessage, error) {
	var raw []byte
	if p != nil {
		raw = bytes.TrimSpace(p.Raw)
	}
	if len(raw) == 0 || string(raw) == "null" {
		return json.RawMessage("{}"), nil
	}
	if raw[0] == '{' && json.Valid(raw) {
		// A copy: decoding into a RawExtension reuses its bytes, and the run may change
		// while the step is evaluated.
		return bytes.Clone(raw), nil
	}
	var props map[string]any // for its error, which says what is wrong
	if err := json.Unmarshal(raw, &props); err != nil {
		return nil, err
	}
	return nil, errors.New("not a JSON object")
}

// fillInputs returns the properties props with the inputs that have a parameterKey set at
// that path (replacing what is there). The properties' numbers are kept as they are written
// (json.Number), so that an integer stays one; the inputs' values are encoded again.
func fillInputs(props json.RawMessage, items []v1alpha1.InputItem, inputs map[string]any) (json.RawMessage, error) {
	d := json.NewDecoder(bytes.NewReader(props))
	d.UseNumber()
	m := map[string]any{}
	if err := d.Decode(&m); err != nil {
		return nil, err
	}
	for _, in := range items {
		if in.ParameterKey != "" {
			v1alpha1.SetDottedPath(m, in.ParameterKey, inputs[in.From])
		}
	}
	return json.Marshal(m)
}

// SpanPrefix is the run's trace id, which each step's context.spanID begins with, followed by
// a dot and the step's id, as in KubeVela, whose step tracers are forks of the run's
// ("i-" and eight letters or digits). Here it is derived from the run's identity (namespace,
// name and UID) rather than drawn at random, so that every evaluation of a step, in any
// process, sees the same spanID.
func (r *Run) SpanPrefix() string {
	o := r.Object
	sum := sha256.Sum256([]byte(o.Namespace + "/" + o.Name + "/" + string(o.UID)))
	const digits = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := []byte("i-")
	for _, c := range sum[:8] {
		b = append(b, digits[int(c)%len(digits)])
	}
	return string(b)
}

// contextRaw is the run's user context: spec.context, with the template's parameter
// defaults when it has parameters.
func (r *Run) contextRaw() []byte {
	if r.Context != nil {
		return r.Context
	}
	if c := r.Object.Spec.Context; c != nil {
		return c.Raw
	}
	return nil
}
