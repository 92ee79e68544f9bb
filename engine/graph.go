package engine

import (
	"encoding/json"
	"fmt"

	"github.com/stepflow/stepflow/api/v1alpha1"
)

// node is one step of a run as the state machine sees it: the step as written, where its status
// lives, and what it must wait for. A looping step is a node whose iterations are nodes too.
type node struct {
	name   string
	spec   *v1alpha1.WorkflowStepBase
	status *v1alpha1.StepStatus
	// group is the enclosing step-group (or iteration of a step-group); nil at the top level.
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

	// looping marks a step with forEach or matrix; loop is its record once it started, and
	// iters the nodes of its iterations.
	looping bool
	loop    *Loop
	iters   []*node
	// it is the iteration a node runs in, on the iteration's node and on its sub-steps.
	it *iteration
	// template marks a sub-step of a looping group: its instances run in the iterations, and
	// its status sums theirs up when the loop ends.
	template bool
}

// iteration is what the nodes of one iteration share.
type iteration struct {
	index int
	item  json.RawMessage
	rec   *Iteration
	// node is the iteration's node; loop the looping step's.
	node, loop *node
}

// graph indexes a run's steps by name over its resolved spec and status.
type graph struct {
	top    []*node
	byName map[string]*node
}

// isGroupStep reports whether a top-level step is a step-group.
func isGroupStep(s *v1alpha1.WorkflowStep) bool {
	return s.Type == v1alpha1.TypeStepGroup || len(s.SubSteps) > 0
}

// iterationName names the instance of a step in iteration i, as deploy[3].
func iterationName(step string, i int) string { return fmt.Sprintf("%s[%d]", step, i) }

// buildGraph links the resolved spec to the status entries, which must already exist in the same
// order (see initialize), and to the iterations of the loops that started.
func buildGraph(run *Run) *graph {
	spec := run.Spec
	st := &run.Object.Status
	g := &graph{byName: make(map[string]*node, len(spec.Steps))}
	producers := map[string][]*node{}
	var all []*node
	for i := range spec.Steps {
		s := &spec.Steps[i]
		ss := &st.Steps[i]
		n := &node{name: s.Name, spec: &s.WorkflowStepBase, status: &ss.StepStatus, mode: st.Mode.Steps, looping: s.Loops()}
		n.prev = g.top
		if isGroupStep(s) {
			n.isGroup = true
			n.subMode = s.Mode
			if n.subMode == "" {
				n.subMode = st.Mode.SubSteps
			}
			for j := range s.SubSteps {
				sub := &node{name: s.SubSteps[j].Name, spec: &s.SubSteps[j], status: &ss.SubStepsStatus[j],
					group: n, mode: n.subMode, prev: n.subs, template: n.looping, looping: s.SubSteps[j].Loops() && !n.looping}
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
		inLoop := n.looping || (n.group != nil && n.group.looping)
		for _, in := range n.spec.Inputs {
			if inLoop && v1alpha1.IsIterationVar(in.From) {
				continue
			}
			for _, p := range producers[in.From] {
				// A producer inside this step's own group is a sibling; one inside another group
				// is reached through that group finishing.
				add(p)
			}
		}
		if f := n.spec.ForEach; f != nil && f.From != "" {
			for _, p := range producers[f.From] {
				add(p)
			}
		}
	}
	for _, n := range all {
		if n.looping && run.Loops[n.name] != nil {
			n.loop = run.Loops[n.name]
			for i := range n.loop.Iterations {
				g.addIteration(n, i)
			}
		}
	}
	return g
}

// addIteration makes the nodes of iteration i of the looping step n, whose record exists.
func (g *graph) addIteration(n *node, i int) *node {
	rec := n.loop.Iterations[i]
	it := &iteration{index: i, rec: rec, loop: n}
	if i < len(n.loop.Items) {
		it.item = n.loop.Items[i]
	}
	in := &node{name: iterationName(n.name, i), spec: n.spec, status: &rec.Status, group: n.group,
		isGroup: n.isGroup, subMode: n.subMode, it: it}
	it.node = in
	instances := map[*node]*node{}
	for j, s := range n.subs {
		sub := &node{name: iterationName(s.name, i), spec: s.spec, status: &rec.SubSteps[j],
			group: in, mode: s.mode, prev: in.subs, it: it}
		instances[s] = sub
		in.subs = append(in.subs, sub)
		g.byName[sub.name] = sub
	}
	for _, s := range n.subs {
		sub := instances[s]
		for _, d := range s.deps {
			if inst := instances[d]; inst != nil {
				d = inst // a sibling in the same iteration
			}
			sub.deps = append(sub.deps, d)
		}
	}
	n.iters = append(n.iters, in)
	g.byName[in.name] = in
	return in
}

// finished reports whether the step is done.
func (n *node) finished() bool { return n.status.Phase.Finished() }

// started reports whether the step has begun (running or suspending) and is not finished.
func (n *node) active() bool {
	return n.status.Phase == v1alpha1.StepRunning || n.status.Phase == v1alpha1.StepSuspending
}

// isIteration reports whether the node is one iteration of a looping step.
func (n *node) isIteration() bool { return n.it != nil && n.it.node == n }

// children are what a container step waits for: a group's sub-steps and a loop's iterations
// (a looping group's sub-steps stand for their instances in the iterations).
func (n *node) children() []*node {
	if n.looping {
		return n.iters
	}
	return n.subs
}

// each calls f for every step, groups before their sub-steps and loops before their iterations.
func (g *graph) each(f func(*node)) {
	var visit func(n *node)
	visit = func(n *node) {
		f(n)
		for _, s := range n.subs {
			visit(s)
		}
		for _, it := range n.iters {
			visit(it)
		}
	}
	for _, n := range g.top {
		visit(n)
	}
}
