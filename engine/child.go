package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/stepflow/stepflow/api/v1alpha1"
)

// annotationParentStep, on a child run, names the evaluation of the parent's step it belongs
// to (the step's status id, the parent's epoch and the step's attempt): a child whose parent
// step runs again (a restart) is restarted with it.
const annotationParentStep = "stepflow.dev/parent-step"

// childName is the name of the run a `workflow` step starts: the parent's name and the step's,
// and the iteration's index inside a loop.
func childName(run *Run, n *node) string {
	name := run.Object.Name + "-" + n.spec.Name
	if n.it != nil {
		name += "-" + strconv.Itoa(n.it.index)
	}
	return name
}

// childRunner evaluates the `workflow` step n in place of the StepRunner; run is locked.
func (e *Engine) childRunner(run *Run, n *node) func(context.Context, *StepRequest) (*StepResult, error) {
	key := Key{Namespace: run.Object.Namespace, Name: n.status.ChildRun}
	if key.Name == "" {
		key.Name = childName(run, n)
	}
	marker := fmt.Sprintf("%s/%d/%d", n.status.ID, run.Epoch, run.record(n.name).Attempt)
	parent := run.Object.Name
	// The child's context may hold the parent's secrets (an input from a variable read from
	// a Secret): the child hides them too.
	sensitive := slices.Clone(run.Sensitive)
	return func(ctx context.Context, req *StepRequest) (*StepResult, error) {
		return e.runChild(ctx, req, parent, key, marker, sensitive)
	}
}

// runChild is one evaluation of a `workflow` step: it creates the child run when it does not
// exist (or restarts it when the step runs again), and has the engine drive it; the step waits
// until the child finishes, then succeeds or fails with it. The child's completion wakes the
// parent (see Engine.process).
func (e *Engine) runChild(ctx context.Context, req *StepRequest, parent string, key Key, marker string, sensitive []string) (*StepResult, error) {
	var props map[string]any
	if len(req.Properties) > 0 {
		if err := json.Unmarshal(req.Properties, &props); err != nil {
			return nil, Terminal(v1alpha1.ReasonParameter, fmt.Errorf("properties: %w", err))
		}
	}
	template, _ := props["name"].(string)
	if template == "" {
		return &StepResult{Outcome: Failed, Reason: v1alpha1.ReasonParameter, Message: "properties.name: the Workflow template to run is required"}, nil
	}
	var childCtx *runtime.RawExtension
	if c, ok := props["context"]; ok && c != nil {
		if _, isObject := c.(map[string]any); !isObject {
			return &StepResult{Outcome: Failed, Reason: v1alpha1.ReasonParameter, Message: "properties.context: the child run's context is an object"}, nil
		}
		raw, err := json.Marshal(c)
		if err != nil {
			return nil, Terminal(v1alpha1.ReasonParameter, fmt.Errorf("properties.context: %w", err))
		}
		childCtx = &runtime.RawExtension{Raw: raw}
	}
	child, err := e.opts.Store.Load(ctx, key)
	switch {
	case errors.Is(err, ErrNotFound):
		child = &Run{Object: &v1alpha1.WorkflowRun{
			TypeMeta: metav1.TypeMeta{APIVersion: v1alpha1.GroupVersion.String(), Kind: v1alpha1.KindWorkflowRun},
			ObjectMeta: metav1.ObjectMeta{Name: key.Name, Namespace: key.Namespace,
				Labels:      map[string]string{v1alpha1.LabelParentRun: parent},
				Annotations: map[string]string{annotationParentStep: marker}},
			Spec: v1alpha1.WorkflowRunSpec{WorkflowRef: template, Context: childCtx},
		}, Sensitive: sensitive}
		if err := e.opts.Store.Save(ctx, child, nil); err != nil && !errors.Is(err, ErrConflict) {
			return nil, fmt.Errorf("step %s: create child run %s: %w", req.Step.Name, key, err)
		}
		e.Enqueue(key)
		return childWaiting(key, "started"), nil
	case err != nil:
		return nil, fmt.Errorf("step %s: load child run %s: %w", req.Step.Name, key, err)
	}
	obj := child.Object
	if obj.Labels[v1alpha1.LabelParentRun] != parent {
		return nil, Terminal(v1alpha1.ReasonExecute, fmt.Errorf("run %s exists and was not started by run %s", key, parent))
	}
	if obj.Annotations[annotationParentStep] != marker {
		// The parent's step runs again: so does the child, with the properties of now.
		if obj.Annotations == nil {
			obj.Annotations = map[string]string{}
		}
		obj.Annotations[annotationParentStep] = marker
		obj.Spec.WorkflowRef, obj.Spec.WorkflowSpec, obj.Spec.Context = template, nil, childCtx
		child.learn(sensitive...)
		if err := RestartRun(child, ""); err != nil {
			return nil, fmt.Errorf("step %s: restart child run %s: %w", req.Step.Name, key, err)
		}
		if err := e.opts.Store.Save(ctx, child, nil); err != nil {
			return nil, fmt.Errorf("step %s: restart child run %s: %w", req.Step.Name, key, err)
		}
		e.Enqueue(key)
		return childWaiting(key, "restarted"), nil
	}
	if !obj.Status.Finished {
		e.Enqueue(key) // drive it here, in case no one else does (this process was restarted)
	}
	res := childResult(req, child, key)
	// What the child learned is secret in the parent too: its outputs may hold it.
	res.Sensitive = child.Sensitive
	return res, nil
}

// childResult is the outcome of a `workflow` step whose child run exists and belongs to it.
func childResult(req *StepRequest, child *Run, key Key) *StepResult {
	st := &child.Object.Status
	if !st.Finished {
		if Settled(child) && !req.Resumed {
			// Held until someone resumes it: so is this step, and the run, which a resume
			// of this run passes on to the child.
			return &StepResult{Outcome: Suspended, Message: fmt.Sprintf("child run %s is suspended", key.Name)}
		}
		return childWaiting(key, "is "+orDefault(string(st.Phase), "starting"))
	}
	if st.Phase != v1alpha1.RunSucceeded {
		msg := fmt.Sprintf("child run %s %s", key.Name, st.Phase)
		if st.Message != "" {
			msg += ": " + st.Message
		}
		return &StepResult{Outcome: Failed, Reason: v1alpha1.ReasonExecute, Message: msg}
	}
	res := &StepResult{Outcome: Succeeded, Message: fmt.Sprintf("child run %s succeeded", key.Name)}
	for _, o := range req.Step.Outputs {
		v, err := childOutput(child, o.ValueFrom)
		if err != nil {
			return &StepResult{Outcome: Failed, Reason: v1alpha1.ReasonOutput, Message: fmt.Sprintf("output %s: %v", o.Name, err)}
		}
		if res.Outputs == nil {
			res.Outputs = map[string]json.RawMessage{}
		}
		res.Outputs[o.Name] = v
	}
	return res
}

func childWaiting(key Key, what string) *StepResult {
	return &StepResult{Outcome: Waiting, Message: fmt.Sprintf("child run %s %s", key.Name, what)}
}

// childOutput evaluates a `workflow` step's valueFrom over its finished child: a path
// variables.<name>, optionally followed by .<field> or .<index> into the variable's value.
func childOutput(child *Run, valueFrom string) (json.RawMessage, error) {
	path := strings.TrimSpace(valueFrom)
	rest, ok := strings.CutPrefix(path, "variables.")
	if !ok || rest == "" {
		return nil, fmt.Errorf("valueFrom %q: a workflow step outputs variables.<name> of its child run", valueFrom)
	}
	name, sub, _ := strings.Cut(rest, ".")
	raw, ok := child.Vars[name]
	if !ok {
		return nil, fmt.Errorf("valueFrom %q: the child run has no variable %s", valueFrom, name)
	}
	if sub == "" {
		return raw, nil
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, fmt.Errorf("valueFrom %q: %w", valueFrom, err)
	}
	x, ok := lookupPath(v, sub)
	if !ok {
		return nil, fmt.Errorf("valueFrom %q: variable %s has no %s", valueFrom, name, sub)
	}
	return json.Marshal(x)
}

// childRuns are the names of the runs the run's `workflow` steps started.
func childRuns(run *Run) []string {
	var out []string
	eachStatus(run, func(s *v1alpha1.StepStatus) {
		if s.ChildRun != "" {
			out = append(out, s.ChildRun)
		}
	})
	return out
}

// stepsWithChildren are the names of the run's steps that started a child run.
func stepsWithChildren(run *Run) map[string]bool {
	out := map[string]bool{}
	eachStatus(run, func(s *v1alpha1.StepStatus) {
		if s.ChildRun != "" {
			out[s.Name] = true
		}
	})
	return out
}

// eachStatus calls add with every step status of the run: steps, their sub-steps, and the
// loops' iterations and theirs.
func eachStatus(run *Run, add func(s *v1alpha1.StepStatus)) {
	for i := range run.Object.Status.Steps {
		s := &run.Object.Status.Steps[i]
		add(&s.StepStatus)
		for j := range s.SubStepsStatus {
			add(&s.SubStepsStatus[j])
		}
	}
	for _, l := range run.Loops {
		for _, it := range l.Iterations {
			add(&it.Status)
			for j := range it.SubSteps {
				add(&it.SubSteps[j])
			}
		}
	}
}

// passToChildren applies the operation just applied to run (suspend, resume, terminate) to its
// child runs, and theirs in turn. A child the operation does not apply to (one that finished)
// is left as it is. It reports whether the run has child runs.
func (e *Engine) passToChildren(ctx context.Context, run *Run) bool {
	if run.pass == nil {
		return false
	}
	children := childRuns(run)
	for _, name := range children {
		key := Key{Namespace: run.Object.Namespace, Name: name}
		_, err := e.operateStored(ctx, key, run.pass)
		if err != nil && !errors.Is(err, ErrInvalidOperation) && !errors.Is(err, ErrNotFound) {
			e.opts.Logger.Error("pass an operation to a child run", "run", run.Key(), "child", key, "err", err)
		}
	}
	return len(children) > 0
}

// wakeParent tells the parent of a run that just settled (finished, or held by a suspend) to
// look at it now: its step waiting on the run is evaluated again, and released if it was
// suspended on the run, which finished.
func (e *Engine) wakeParent(ctx context.Context, run *Run) {
	p := run.Object.Labels[v1alpha1.LabelParentRun]
	if p == "" || !Settled(run) {
		return
	}
	parent := Key{Namespace: run.Object.Namespace, Name: p}
	if run.Object.Status.Finished {
		_, err := e.operateStored(ctx, parent, func(r *Run, _ time.Time) error { return releaseChildStep(r, run.Object.Name) })
		if err != nil && !errors.Is(err, errNothingToRelease) && !errors.Is(err, ErrNotFound) {
			e.opts.Logger.Error("release the step of a child run", "run", parent, "child", run.Key(), "err", err)
		}
	}
	e.Wake(parent)
}

// errNothingToRelease says that no step of a run is suspended on a child run.
var errNothingToRelease = errors.New("no step is suspended on the child run")

// releaseChildStep resumes the step of run that is suspended on its child run named child.
func releaseChildStep(run *Run, child string) error {
	released := false
	eachStatus(run, func(s *v1alpha1.StepStatus) {
		if rec := run.Steps[s.Name]; s.ChildRun == child && rec != nil && rec.Suspended && !rec.Resumed {
			rec.Resumed = true
			released = true
		}
	})
	if !released || run.Object.Status.Finished {
		return errNothingToRelease
	}
	run.Object.Status.Suspend = run.suspended()
	return nil
}
