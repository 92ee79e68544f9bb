package engine

import (
	"errors"
	"fmt"
	"slices"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stepflow/stepflow/api/v1alpha1"
)

// ErrInvalidOperation is returned, wrapped, when an operation does not apply to the run as it is
// (resuming a step that is not suspended, restarting from a step that did not fail, ...).
var ErrInvalidOperation = errors.New("invalid operation")

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidOperation, fmt.Sprintf(format, args...))
}

// SuspendRun holds a run: no step starts and no waiting step is evaluated until it is resumed.
func SuspendRun(run *Run) error {
	st := &run.Object.Status
	if st.Finished {
		return invalid("run %s has finished (%s)", run.Key(), st.Phase)
	}
	run.ManualSuspend = true
	run.pass = func(child *Run, _ time.Time) error { return SuspendRun(child) }
	st.Suspend = true
	if st.Phase != v1alpha1.RunInitializing && st.Phase != "" {
		st.Phase = v1alpha1.RunSuspending
	}
	return nil
}

// ResumeRun releases a run: a user's suspend, and the suspend steps waiting for a resume (only
// the named one when step is not empty). A run that is not held is left as it is, so that resume
// also serves to continue a run whose process died.
func ResumeRun(run *Run, step string) error {
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
		run.pass = func(child *Run, _ time.Time) error { return ResumeRun(child, "") }
	}
	return nil
}

// TerminateRun ends a run: running and suspended steps fail with reason Terminate, and only
// `if: always` steps still run.
func TerminateRun(run *Run, now time.Time) error {
	st := &run.Object.Status
	if st.Finished {
		return invalid("run %s has finished (%s)", run.Key(), st.Phase)
	}
	st.Terminated = true
	st.Suspend = false
	st.Message = "terminated by a user"
	run.ManualSuspend = false
	run.pass = TerminateRun
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

// RestartRun clears a run so that it runs again. With step empty it starts over from the
// beginning, forgetting its status and variables. Otherwise step must have failed: it, the steps
// that come after it or depend on it, and their outputs are cleared, and what succeeded stays.
func RestartRun(run *Run, step string) error {
	if step == "" || run.Spec == nil {
		if step != "" {
			return invalid("run %s has not started", run.Key())
		}
		run.Epoch++
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
