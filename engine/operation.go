package engine

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stepflow/stepflow/api/v1alpha1"
)

// ErrInvalidOperation is returned, wrapped, when an operation does not apply to the run as it is
// (resuming a step that is not suspended, restarting from a step that did not fail, an unknown
// kind, ...).
var ErrInvalidOperation = errors.New("invalid operation")

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidOperation, fmt.Sprintf(format, args...))
}

// OperationKind names what an operation does to a run.
type OperationKind string

// The operations on a run. Adding one means adding its kind here and its case in Apply: the
// API, the CLI, store/crd and child runs carry the value as it is.
const (
	// OpSuspend holds a run: no step starts until it is resumed.
	OpSuspend OperationKind = "suspend"
	// OpResume releases a held run, or with Step only that suspended step; it also continues a
	// run whose process died.
	OpResume OperationKind = "resume"
	// OpTerminate ends a run: running steps fail, only `if: always` steps still run.
	OpTerminate OperationKind = "terminate"
	// OpRestart runs a run again from the start, or with Step from that failed step, keeping
	// what succeeded.
	OpRestart OperationKind = "restart"
)

// OperationKinds are the kinds Apply knows, in the order they are documented.
var OperationKinds = []OperationKind{OpSuspend, OpResume, OpTerminate, OpRestart}

// Operation is a change that a person (through the API, the CLI or a WorkflowRun's status) or a
// parent run asks of a run. It is a value, sent as JSON, so that every front end and the engine
// mean the same thing by it.
type Operation struct {
	Kind OperationKind `json:"kind"`
	// Step narrows resume to one suspended step, and restart to the failed step to run again from.
	Step string `json:"step,omitempty"`
	// By is who asked (a token's name, a user); shown in the run's message where it says why.
	By string `json:"by,omitempty"`
	// Reason is why, in the asker's words.
	Reason string `json:"reason,omitempty"`
}

// Validate reports an operation that no run could take: an unknown kind, or a step given to one
// that takes none.
func (op Operation) Validate() error {
	switch op.Kind {
	case OpSuspend, OpTerminate:
		if op.Step != "" {
			return invalid("%s applies to a whole run, not to step %q", op.Kind, op.Step)
		}
	case OpResume, OpRestart:
	default:
		kinds := make([]string, len(OperationKinds))
		for i, k := range OperationKinds {
			kinds[i] = string(k)
		}
		return invalid("no operation %q: want %s", op.Kind, strings.Join(kinds, ", "))
	}
	return nil
}

// Apply applies the operation to run at now. It fails, wrapping ErrInvalidOperation, when the
// operation does not apply to the run as it is.
func (op Operation) Apply(run *Run, now time.Time) error {
	if err := op.Validate(); err != nil {
		return err
	}
	var err error
	switch op.Kind {
	case OpSuspend:
		err = suspend(run)
	case OpResume:
		err = resume(run, op.Step)
	case OpTerminate:
		err = terminate(run, now, op)
	default: // OpRestart
		err = restart(run, op.Step)
	}
	if err == nil {
		run.notes = append(run.notes, op.logEntry(now))
	}
	return err
}

// logEntry is the line an applied operation leaves in the run's log: who did what, when and
// why, on the step it names ("" for the whole run).
func (op Operation) logEntry(now time.Time) LogEntry {
	done := map[OperationKind]string{OpSuspend: "suspended", OpResume: "resumed", OpTerminate: "terminated", OpRestart: "restarted"}[op.Kind]
	what := "the run " + done
	switch {
	case op.Step != "" && op.Kind == OpResume:
		what = "step " + op.Step + " resumed"
	case op.Step != "":
		what = "the run " + done + " from step " + op.Step
	}
	return LogEntry{Time: now, Step: op.Step, Severity: SeverityInfo, Action: "operation", Outcome: string(op.Kind), Message: op.describe(what)}
}

// describe says what happened for a run's message: "terminated by alice: a bad release".
func (op Operation) describe(done string) string {
	by := op.By
	if by == "" {
		by = "a user"
	}
	msg := done + " by " + by
	if op.Reason != "" {
		msg += ": " + op.Reason
	}
	return msg
}

// suspend holds a run: no step starts and no waiting step is evaluated until it is resumed.
func suspend(run *Run) error {
	st := &run.Object.Status
	if st.Finished {
		return invalid("run %s has finished (%s)", run.Key(), st.Phase)
	}
	run.ManualSuspend = true
	run.pass = &Operation{Kind: OpSuspend}
	st.Suspend = true
	if st.Phase != v1alpha1.RunInitializing && st.Phase != "" {
		st.Phase = v1alpha1.RunSuspending
	}
	return nil
}

// resume releases a run: a user's suspend, and the suspend steps waiting for a resume (only
// the named one when step is not empty). A run that is not held is left as it is, so that resume
// also serves to continue a run whose process died.
func resume(run *Run, step string) error {
	st := &run.Object.Status
	if st.Finished {
		return invalid("run %s has finished (%s)", run.Key(), st.Phase)
	}
	if step != "" {
		rec := run.Steps[step]
		if rec == nil || !rec.Suspended {
			return invalid("step %q of run %s is not suspended", step, run.Key())
		}
		rec.Resumed = true
	} else {
		for _, rec := range run.Steps {
			if rec.Suspended {
				rec.Resumed = true
			}
		}
	}
	run.ManualSuspend = false
	st.Suspend = run.suspended()
	if step == "" {
		run.pass = &Operation{Kind: OpResume}
	}
	return nil
}

// terminate ends a run: running and suspended steps fail with reason Terminate, and only
// `if: always` steps still run. The run's message says who ended it and why; its child runs are
// ended by the same operation.
func terminate(run *Run, now time.Time, op Operation) error {
	st := &run.Object.Status
	if st.Finished {
		return invalid("run %s has finished (%s)", run.Key(), st.Phase)
	}
	st.Terminated = true
	st.Suspend = false
	st.Message = op.describe("terminated")
	run.ManualSuspend = false
	run.pass = &op
	if run.Spec == nil {
		return nil
	}
	g := buildGraph(run)
	m := machine{}
	t := &transition{}
	g.each(func(n *node) {
		if n.active() {
			m.fail(run, n, v1alpha1.ReasonTerminate, "the run was terminated", now, t)
		}
	})
	return nil
}

// endUnstarted ends a run that was terminated before it started (its steps not resolved yet),
// as terminated; it reports whether that changed anything.
func endUnstarted(run *Run, now time.Time) bool {
	st := &run.Object.Status
	if st.Finished {
		return false
	}
	st.Phase, st.Finished, st.Suspend = v1alpha1.RunTerminated, true, false
	if st.StartTime.IsZero() {
		st.StartTime = metav1.NewTime(now) // it starts and ends now, as a run whose start fails
	}
	st.EndTime = st.StartTime
	return true
}

// restart clears a run so that it runs again. With step empty it starts over from the
// beginning, forgetting its status and variables. Otherwise step must have failed: it, the steps
// that come after it or depend on it, and their outputs are cleared, and what succeeded stays.
func restart(run *Run, step string) error {
	if step == "" || run.Spec == nil {
		if step != "" {
			return invalid("run %s has not started", run.Key())
		}
		run.Epoch++
		run.Checked = false // what it refers to may have changed since
		run.Spec = nil
		run.Steps = nil
		run.Vars = nil
		run.Loops = nil
		run.ManualSuspend = false
		run.Object.Status = v1alpha1.WorkflowRunStatus{Phase: v1alpha1.RunInitializing}
		return nil
	}
	g := buildGraph(run)
	target := g.byName[step]
	if target == nil {
		return invalid("run %s has no step %q", run.Key(), step)
	}
	if target.status.Phase != v1alpha1.StepFailed {
		return invalid("step %q of run %s is %s: only a failed step can be restarted", step, run.Key(), target.status.Phase)
	}
	if target.it != nil {
		target = target.it.loop // a loop runs again as a whole
	}
	cleared := map[*node]bool{}
	var clearNode, clearGroupOnly func(n *node)
	clearNode = func(n *node) {
		if cleared[n] {
			return
		}
		cleared[n] = true
		for _, s := range n.subs {
			clearNode(s)
		}
		if n.group != nil {
			clearGroupOnly(n.group)
		}
		for _, o := range dependents(g, n) {
			clearNode(o)
		}
	}
	// A group whose sub-step runs again runs again too, keeping its other sub-steps' results.
	clearGroupOnly = func(grp *node) {
		if grp.looping {
			clearNode(grp) // its iterations all run again
			return
		}
		if cleared[grp] {
			return
		}
		cleared[grp] = true
		for _, o := range dependents(g, grp) {
			clearNode(o)
		}
	}
	clearNode(target)
	for n := range cleared {
		for _, o := range n.spec.Outputs {
			delete(run.Vars, o.Name)
		}
		n.status.Phase = v1alpha1.StepPending
		n.status.Reason = ""
		n.status.Message = ""
		n.status.FirstExecuteTime = metav1.Time{}
		n.status.LastExecuteTime = metav1.Time{}
		n.status.Iterations = nil
		if n.looping {
			delete(run.Loops, n.name)
		}
		if rec := run.Steps[n.name]; rec != nil {
			*rec = StepRecord{Attempt: rec.Attempt}
		}
	}
	st := &run.Object.Status
	st.Finished = false
	st.Terminated = false
	st.EndTime = metav1.Time{}
	st.Message = ""
	st.Phase = v1alpha1.RunExecuting
	run.ManualSuspend = false
	st.Suspend = false
	return nil
}

// dependents are the steps that wait for n: through dependsOn or inputs, or by coming after it
// in a StepByStep list.
func dependents(g *graph, n *node) []*node {
	var out []*node
	g.each(func(o *node) {
		if slices.Contains(o.deps, n) {
			out = append(out, o)
			return
		}
		if o.mode == v1alpha1.ModeStepByStep {
			if slices.Contains(o.prev, n) {
				out = append(out, o)
				return
			}
		}
	})
	return out
}
