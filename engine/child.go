package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/stepflow/stepflow/api/v1alpha1"
)

// Annotations of a child run.
const (
	// annotationParentStep names the evaluation of the parent's step the child belongs to
	// (the step's status id, the parent's epoch and the step's attempt): a child whose parent
	// step runs again (a restart) is restarted with it.
	annotationParentStep = "stepflow.dev/parent-step"
	// annotationDepth is how deep the child nests: 1 for the child of a root run.
	annotationDepth = "stepflow.dev/workflow-depth"
	// annotationRoot names the root run of the child's tree (in the same namespace), which
	// counts the child runs started under it (Run.ChildRuns).
	annotationRoot = "stepflow.dev/root-run"
)

// maxChildName bounds the name of a child run: it is also the parent label of its own child
// runs, and a Kubernetes label value has at most 63 characters.
const maxChildName = 63

// childName is the name of the run a `workflow` step starts: the parent's name and the step's,
// and the iteration's index inside a loop (boundedName).
func childName(run *Run, n *node) string {
	name := run.Object.Name + "-" + n.spec.Name
	if n.it != nil {
		name += "-" + strconv.Itoa(n.it.index)
	}
	return boundedName(name)
}

// boundedName is name when it is a Kubernetes object name (a DNS subdomain) of at most
// maxChildName characters. Otherwise it is its start, lower-cased, with any character but
// letters and digits made a dash, then a dash and ten hex digits of the SHA-256 of the whole
// name: a valid name, the same for the same name, different for different ones.
func boundedName(name string) string {
	if len(name) <= maxChildName && len(validation.IsDNS1123Subdomain(name)) == 0 {
		return name
	}
	sum := sha256.Sum256([]byte(name))
	suffix := hex.EncodeToString(sum[:5])
	var b strings.Builder
	for _, r := range strings.ToLower(name) {
		if b.Len() == maxChildName-len(suffix)-1 {
			break
		}
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		} else {
			b.WriteByte('-')
		}
	}
	if prefix := strings.Trim(b.String(), "-"); prefix != "" {
		return prefix + "-" + suffix
	}
	return suffix
}

// tree is where a run stands among the runs of `workflow` steps: its depth (0 for a root
// run, one that no step started) and its root's key (its own for a root run).
type tree struct {
	depth int
	root  Key
}

// treeOf reads a run's place in its tree from its parent label and annotations.
func treeOf(run *Run) tree {
	obj := run.Object
	t := tree{root: run.Key()}
	if obj.Labels[v1alpha1.LabelParentRun] == "" {
		return t
	}
	if d, err := strconv.Atoi(obj.Annotations[annotationDepth]); err == nil && d > 0 {
		t.depth = d
	}
	if r := obj.Annotations[annotationRoot]; r != "" {
		t.root.Name = r
	}
	return t
}

// ended reports whether a run has finished or is being terminated: no new child run starts
// under it.
func ended(run *Run) bool {
	return run.Object.Status.Finished || run.Object.Status.Terminated
}

// child is what a `workflow` step's evaluation knows of the run it starts.
type child struct {
	key    Key
	parent Key
	// marker is the annotationParentStep of the parent's step evaluation.
	marker string
	// sensitive are the parent's secrets, which the child hides too.
	sensitive []string
	// tree is the child's place in the tree of runs.
	tree tree
}

// childRunner evaluates the `workflow` step n in place of the StepRunner; run is locked.
func (e *Engine) childRunner(run *Run, n *node) func(context.Context, *StepRequest) (*StepResult, error) {
	c := child{
		key:    Key{Namespace: run.Object.Namespace, Name: n.status.ChildRun},
		parent: run.Key(),
		marker: fmt.Sprintf("%s/%d/%d", n.status.ID, run.Epoch, run.record(n.name).Attempt),
		// The child's context may hold the parent's secrets (an input from a variable read
		// from a Secret): the child hides them too.
		sensitive: slices.Clone(run.Sensitive),
		tree:      treeOf(run),
	}
	if c.key.Name == "" {
		c.key.Name = childName(run, n)
	}
	c.tree.depth++
	return func(ctx context.Context, req *StepRequest) (*StepResult, error) {
		return e.runChild(ctx, req, c)
	}
}

// runChild is one evaluation of a `workflow` step: it creates the child run when it does not
// exist (or restarts it when the step runs again), and has the engine drive it; the step waits
// until the child finishes, then succeeds or fails with it. The child's completion wakes the
// parent (see Engine.process).
func (e *Engine) runChild(ctx context.Context, req *StepRequest, c child) (*StepResult, error) {
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
	if cc, ok := props["context"]; ok && cc != nil {
		if _, isObject := cc.(map[string]any); !isObject {
			return &StepResult{Outcome: Failed, Reason: v1alpha1.ReasonParameter, Message: "properties.context: the child run's context is an object"}, nil
		}
		raw, err := json.Marshal(cc)
		if err != nil {
			return nil, Terminal(v1alpha1.ReasonParameter, fmt.Errorf("properties.context: %w", err))
		}
		childCtx = &runtime.RawExtension{Raw: raw}
	}
	key, parent := c.key, c.parent.Name
	run, err := e.opts.Store.Load(ctx, key)
	switch {
	case errors.Is(err, ErrNotFound):
		if res, err := e.admitChild(ctx, c); res != nil || err != nil {
			return res, err
		}
		run = &Run{Object: &v1alpha1.WorkflowRun{
			TypeMeta: metav1.TypeMeta{APIVersion: v1alpha1.GroupVersion.String(), Kind: v1alpha1.KindWorkflowRun},
			ObjectMeta: metav1.ObjectMeta{Name: key.Name, Namespace: key.Namespace,
				Labels: map[string]string{v1alpha1.LabelParentRun: parent},
				Annotations: map[string]string{annotationParentStep: c.marker,
					annotationDepth: strconv.Itoa(c.tree.depth), annotationRoot: c.tree.root.Name}},
			Spec: v1alpha1.WorkflowRunSpec{WorkflowRef: template, Context: childCtx},
		}, Sensitive: c.sensitive}
		if err := e.opts.Store.Save(ctx, run, nil); err != nil && !errors.Is(err, ErrConflict) {
			return nil, fmt.Errorf("step %s: create child run %s: %w", req.Step.Name, key, err)
		}
		if !e.endOrphan(ctx, c) {
			e.Enqueue(key)
		}
		return childWaiting(key, "started"), nil
	case err != nil:
		return nil, fmt.Errorf("step %s: load child run %s: %w", req.Step.Name, key, err)
	}
	obj := run.Object
	if obj.Labels[v1alpha1.LabelParentRun] != parent {
		return nil, Terminal(v1alpha1.ReasonExecute, fmt.Errorf("run %s exists and was not started by run %s", key, parent))
	}
	if obj.Annotations[annotationParentStep] != c.marker {
		// The parent's step runs again: so does the child, with the properties of now.
		if obj.Annotations == nil {
			obj.Annotations = map[string]string{}
		}
		obj.Annotations[annotationParentStep] = c.marker
		obj.Spec.WorkflowRef, obj.Spec.WorkflowSpec, obj.Spec.Context = template, nil, childCtx
		run.learn(c.sensitive...)
		if err := restart(run, ""); err != nil {
			return nil, fmt.Errorf("step %s: restart child run %s: %w", req.Step.Name, key, err)
		}
		if err := e.opts.Store.Save(ctx, run, nil); err != nil {
			return nil, fmt.Errorf("step %s: restart child run %s: %w", req.Step.Name, key, err)
		}
		e.Enqueue(key)
		return childWaiting(key, "restarted"), nil
	}
	if !obj.Status.Finished {
		e.Enqueue(key) // drive it here, in case no one else does (this process was restarted)
	}
	res := childResult(req, run, key)
	// What the child learned is secret in the parent too: its outputs may hold it.
	res.Sensitive = run.Sensitive
	return res, nil
}

// admitChild decides whether a new child run may start: not deeper than
// Limits.WorkflowDepth, not one more than Limits.ChildRuns under its root run, which counts it
// (Run.ChildRuns, saved before the child is), and not under a parent or a root that ended. It
// returns the failed result of the step when the child may not start.
func (e *Engine) admitChild(ctx context.Context, c child) (*StepResult, error) {
	lim := e.m.limits
	failed := func(format string, args ...any) *StepResult {
		return &StepResult{Outcome: Failed, Reason: v1alpha1.ReasonExecute, Message: fmt.Sprintf(format, args...)}
	}
	if lim.WorkflowDepth >= 0 && c.tree.depth > lim.WorkflowDepth {
		return failed("child run %s would be %d workflow steps deep, more than the limit of %d (the engine's Limits.WorkflowDepth, --max-workflow-depth)", c.key.Name, c.tree.depth, lim.WorkflowDepth), nil
	}
	if c.parent != c.tree.root {
		parent, err := e.opts.Store.Load(ctx, c.parent)
		if err != nil {
			return nil, fmt.Errorf("load run %s: %w", c.parent, err)
		}
		if ended(parent) {
			return failed("run %s has ended: no child run starts under it", c.parent.Name), nil
		}
	}
	for {
		root, err := e.opts.Store.Load(ctx, c.tree.root)
		if errors.Is(err, ErrNotFound) {
			return failed("the root run %s of this tree of runs does not exist: no child run starts under it", c.tree.root.Name), nil
		}
		if err != nil {
			return nil, fmt.Errorf("load root run %s: %w", c.tree.root, err)
		}
		if ended(root) {
			return failed("run %s has ended: no child run starts under it", c.tree.root.Name), nil
		}
		if lim.ChildRuns >= 0 && root.ChildRuns >= lim.ChildRuns {
			return failed("run %s has started %d child runs under it, the limit (the engine's Limits.ChildRuns, --max-child-runs)", c.tree.root.Name, root.ChildRuns), nil
		}
		root.ChildRuns++
		err = e.opts.Store.Save(ctx, root, nil)
		if errors.Is(err, ErrConflict) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("count a child run of root run %s: %w", c.tree.root, err)
		}
		return nil, nil
	}
}

// endOrphan terminates the child run just created when its parent ended meanwhile, and
// reports whether it did: a terminate passed on to the parent's children before the child was
// stored did not find it. Either the parent's terminate is saved before the load here, which
// sees it, or after the child was stored, and the terminate finds the child.
func (e *Engine) endOrphan(ctx context.Context, c child) bool {
	parent, err := e.opts.Store.Load(ctx, c.parent)
	if err == nil && !ended(parent) {
		return false
	}
	op := Operation{Kind: OpTerminate, By: "stepflow", Reason: fmt.Sprintf("its parent run %s ended", c.parent.Name)}
	if _, err := e.operateStored(ctx, c.key, op.Apply); err != nil && !errors.Is(err, ErrInvalidOperation) && !errors.Is(err, ErrNotFound) {
		e.opts.Logger.Error("terminate the child run of an ended run", "run", c.parent, "child", c.key, "err", err)
		return false
	}
	return true
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
// is left as it is, but a terminate still reaches its descendants: a child that failed may have
// left runs of its own under way. It reports whether the run has child runs.
func (e *Engine) passToChildren(ctx context.Context, run *Run) bool {
	if run.pass == nil {
		return false
	}
	return e.passOn(ctx, run, *run.pass)
}

// passOn applies op to the child runs of run, those that carry run's name as their parent.
func (e *Engine) passOn(ctx context.Context, run *Run, op Operation) bool {
	children := childRuns(run)
	for _, name := range children {
		key := Key{Namespace: run.Object.Namespace, Name: name}
		_, err := e.operateStored(ctx, key, func(child *Run, now time.Time) error {
			if child.Object.Labels[v1alpha1.LabelParentRun] != run.Object.Name {
				return fmt.Errorf("run %s: %w", key, ErrNotFound) // a run of that name the step did not start
			}
			return op.Apply(child, now)
		})
		if errors.Is(err, ErrInvalidOperation) && op.Kind == OpTerminate {
			if child, err := e.opts.Store.Load(ctx, key); err == nil && child.Object.Labels[v1alpha1.LabelParentRun] == run.Object.Name {
				e.passOn(ctx, child, op)
			}
			continue
		}
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
