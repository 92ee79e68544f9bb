package engine

import (
	"github.com/stepflow/stepflow/api/v1alpha1"
)

// node is one step of a run as the state machine sees it: the step as written, where its status
// lives, and what it must wait for.
type node struct {
	name   string
	spec   *v1alpha1.WorkflowStepBase
	status *v1alpha1.StepStatus
	// group is the enclosing step-group; nil at the top level.
	group *node
	// subs are a group's sub-steps, and subMode how they run.
	subs    []*node
	subMode v1alpha1.WorkflowMode
	isGroup bool
	// prev are the siblings before this one, for StepByStep lists.
	prev []*node
	// mode is the mode of the list this step is in.
	mode v1alpha1.WorkflowMode
	// deps are the steps named in dependsOn and the steps producing its inputs.
	deps []*node
}

// graph indexes a run's steps by name over its resolved spec and status.
type graph struct {
	top    []*node
	byName map[string]*node
}

// isGroupStep reports whether a top-level step is a step-group.
func isGroupStep(s *v1alpha1.WorkflowStep) bool {
	return s.Type == "step-group" || len(s.SubSteps) > 0
}

// buildGraph links the resolved spec to the status entries, which must already exist in the same
// order (see initialize).
func buildGraph(run *Run) *graph {
	spec := run.Spec
	st := &run.Object.Status
	g := &graph{byName: make(map[string]*node, len(spec.Steps))}
	producers := map[string][]*node{}
	var all []*node
	for i := range spec.Steps {
		s := &spec.Steps[i]
		ss := &st.Steps[i]
		n := &node{name: s.Name, spec: &s.WorkflowStepBase, status: &ss.StepStatus, mode: st.Mode.Steps}
		n.prev = g.top
		if isGroupStep(s) {
			n.isGroup = true
			n.subMode = s.Mode
			if n.subMode == "" {
				n.subMode = st.Mode.SubSteps
			}
			for j := range s.SubSteps {
				sub := &node{name: s.SubSteps[j].Name, spec: &s.SubSteps[j], status: &ss.SubStepsStatus[j],
					group: n, mode: n.subMode, prev: n.subs}
				n.subs = append(n.subs, sub)
				g.byName[sub.name] = sub
				all = append(all, sub)
			}
		}
		g.top = append(g.top, n)
		g.byName[n.name] = n
		all = append(all, n)
	}
	for _, n := range all {
		for _, o := range n.spec.Outputs {
			producers[o.Name] = append(producers[o.Name], n)
		}
	}
	for _, n := range all {
		seen := map[*node]bool{}
		add := func(d *node) {
			if d != nil && d != n && !seen[d] && d != n.group {
				seen[d] = true
				n.deps = append(n.deps, d)
			}
		}
		for _, d := range n.spec.DependsOn {
			add(g.byName[d])
		}
		for _, in := range n.spec.Inputs {
			for _, p := range producers[in.From] {
				// A producer inside this step's own group is a sibling; one inside another group
				// is reached through that group finishing.
				add(p)
			}
		}
	}
	return g
}

// finished reports whether the step is done.
func (n *node) finished() bool { return n.status.Phase.Finished() }

// started reports whether the step has begun (running or suspending) and is not finished.
func (n *node) active() bool {
	return n.status.Phase == v1alpha1.StepRunning || n.status.Phase == v1alpha1.StepSuspending
}

// each calls f for every step, groups before their sub-steps.
func (g *graph) each(f func(*node)) {
	for _, n := range g.top {
		f(n)
		for _, s := range n.subs {
			f(s)
		}
	}
}
