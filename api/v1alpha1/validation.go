package v1alpha1

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// TypeStepGroup is the step type whose step holds sub-steps.
const TypeStepGroup = "step-group"

// TypeWorkflow is the step type that runs a Workflow template as a child run, handled by the
// engine itself: properties {name: <Workflow>, context: {...}}. A stepflow extension.
const TypeWorkflow = "workflow"

// DefaultStepNames fills empty step names as KubeVela's admission webhook does: the top-level step
// at index i (counted from 0) becomes step-<i>, and sub-step j of it step-<i>-<j>. Names already
// written are kept, even when a filled name collides with one (validation reports the duplicate).
func DefaultStepNames(steps []WorkflowStep) {
	for i := range steps {
		if steps[i].Name == "" {
			steps[i].Name = defaultStepName(i)
		}
		for j := range steps[i].SubSteps {
			if steps[i].SubSteps[j].Name == "" {
				steps[i].SubSteps[j].Name = defaultSubStepName(i, j)
			}
		}
	}
}

// EachStep calls f with each of steps and each of their sub-steps, in order, with its field
// path under base.
func EachStep(steps []WorkflowStep, base *field.Path, f func(s *WorkflowStepBase, path *field.Path)) {
	for i := range steps {
		p := base.Index(i)
		f(&steps[i].WorkflowStepBase, p)
		for j := range steps[i].SubSteps {
			f(&steps[i].SubSteps[j], p.Child("subSteps").Index(j))
		}
	}
}

func defaultStepName(i int) string       { return fmt.Sprintf("step-%d", i) }
func defaultSubStepName(i, j int) string { return fmt.Sprintf("step-%d-%d", i, j) }

// EffectiveMode is the mode a run executes in: StepByStep steps and DAG sub-steps, overridden
// field by field by the mode of the referenced Workflow wf, then by the run's own mode. Either
// argument may be nil.
func EffectiveMode(run *WorkflowRunSpec, wf *Workflow) WorkflowExecuteMode {
	mode := WorkflowExecuteMode{Steps: ModeStepByStep, SubSteps: ModeDAG}
	overlay := func(m *WorkflowExecuteMode) {
		if m == nil {
			return
		}
		if m.Steps != "" {
			mode.Steps = m.Steps
		}
		if m.SubSteps != "" {
			mode.SubSteps = m.SubSteps
		}
	}
	if wf != nil {
		overlay(wf.Mode)
	}
	if run != nil {
		overlay(run.Mode)
	}
	return mode
}

// ValidateWorkflowRun checks what can be checked without step definitions: the run's name, that
// it has steps or names a Workflow, its mode and context, and its inline steps (see ValidateSteps).
// Steps of a referenced Workflow are not checked here: they are the Workflow's.
func ValidateWorkflowRun(run *WorkflowRun) field.ErrorList {
	if run == nil {
		return field.ErrorList{field.Required(field.NewPath("metadata"), "no WorkflowRun")}
	}
	errs := validateMeta(run.Name, run.GenerateName, run.Namespace, true)
	spec := field.NewPath("spec")
	errs = append(errs, validateExecuteMode(run.Spec.Mode, spec.Child("mode"))...)
	if c := run.Spec.Context; c != nil && len(c.Raw) > 0 {
		raw := bytes.TrimSpace(c.Raw)
		if len(raw) > 0 && raw[0] != '{' && !bytes.Equal(raw, []byte("null")) {
			errs = append(errs, field.Invalid(spec.Child("context"), clip(string(raw)), "context must be an object of keys for the steps' CUE context"))
		}
	}
	errs = append(errs, validateTTL(run.Spec.TTLSecondsAfterFinished, spec.Child("ttlSecondsAfterFinished"))...)
	errs = append(errs, validateSLA(run.Spec.SLA, spec.Child("sla"))...)
	errs = append(errs, validateConcurrency(run.Spec.Concurrency, spec.Child("concurrency"))...)
	if ref := run.Spec.WorkflowRef; ref != "" {
		for _, msg := range validation.IsDNS1123Subdomain(ref) {
			errs = append(errs, field.Invalid(spec.Child("workflowRef"), ref, msg))
		}
	}
	switch {
	case run.Spec.WorkflowSpec != nil:
		mode := EffectiveMode(&run.Spec, nil)
		errs = append(errs, ValidateSteps(run.Spec.WorkflowSpec.Steps, mode, spec.Child("workflowSpec", "steps"))...)
	case run.Spec.WorkflowRef == "":
		errs = append(errs, field.Required(spec.Child("workflowSpec"), "a run needs its steps in workflowSpec, or a Workflow named in workflowRef"))
	}
	return errs
}

// ValidateWorkflow checks a Workflow: its name, its mode and its steps (see ValidateSteps), which
// run in the Workflow's own mode.
func ValidateWorkflow(wf *Workflow) field.ErrorList {
	if wf == nil {
		return field.ErrorList{field.Required(field.NewPath("metadata"), "no Workflow")}
	}
	errs := validateMeta(wf.Name, "", wf.Namespace, false)
	errs = append(errs, validateExecuteMode(wf.Mode, field.NewPath("mode"))...)
	errs = append(errs, validateParameters(wf.Parameters, field.NewPath("parameters"))...)
	errs = append(errs, validateTTL(wf.TTLSecondsAfterFinished, field.NewPath("ttlSecondsAfterFinished"))...)
	errs = append(errs, validateSLA(wf.SLA, field.NewPath("sla"))...)
	errs = append(errs, validateConcurrency(wf.Concurrency, field.NewPath("concurrency"))...)
	errs = append(errs, ValidateSteps(wf.Steps, EffectiveMode(nil, wf), field.NewPath("steps"))...)
	return errs
}

// validateMeta checks an object's name and namespace. A run may have a generateName instead of
// a name (the caller fills the name); a Workflow is referred to by name and must have one.
func validateMeta(name, generateName, namespace string, mayGenerate bool) field.ErrorList {
	var errs field.ErrorList
	meta := field.NewPath("metadata")
	switch {
	case name != "":
		for _, msg := range validation.IsDNS1123Subdomain(name) {
			errs = append(errs, field.Invalid(meta.Child("name"), name, msg))
		}
	case mayGenerate && generateName != "":
		// The generated name is generateName and a random suffix: check it as a name ending in a
		// letter, as Kubernetes does.
		for _, msg := range validation.IsDNS1123Subdomain(strings.TrimSuffix(generateName, "-") + "a") {
			errs = append(errs, field.Invalid(meta.Child("generateName"), generateName, msg))
		}
	case mayGenerate:
		errs = append(errs, field.Required(meta.Child("name"), "name or generateName is required"))
	default:
		errs = append(errs, field.Required(meta.Child("name"), ""))
	}
	if namespace != "" {
		for _, msg := range validation.IsDNS1123Label(namespace) {
			errs = append(errs, field.Invalid(meta.Child("namespace"), namespace, msg))
		}
	}
	return errs
}

// validateTTL refuses a negative ttlSecondsAfterFinished.
func validateTTL(ttl *int32, path *field.Path) field.ErrorList {
	if ttl != nil && *ttl < 0 {
		return field.ErrorList{field.Invalid(path, *ttl, "seconds after the run finished: 0 or more")}
	}
	return nil
}

// validateSLA checks an SLA: a positive maxDuration, a known onBreach, and notification
// properties (an object) where onBreach is notify.
func validateSLA(sla *SLA, path *field.Path) field.ErrorList {
	if sla == nil {
		return nil
	}
	var errs field.ErrorList
	if d, err := time.ParseDuration(sla.MaxDuration); err != nil {
		errs = append(errs, field.Invalid(path.Child("maxDuration"), sla.MaxDuration, "a Go duration such as 30m or 2h (there is no unit for days)"))
	} else if d <= 0 {
		errs = append(errs, field.Invalid(path.Child("maxDuration"), sla.MaxDuration, "longer than 0"))
	}
	switch sla.OnBreach {
	case "", SLANotify, SLAFail, SLATerminate:
	default:
		errs = append(errs, field.NotSupported(path.Child("onBreach"), sla.OnBreach, []SLAAction{SLANotify, SLAFail, SLATerminate}))
	}
	if n := sla.Notify; n != nil && len(bytes.TrimSpace(n.Raw)) > 0 {
		if raw := bytes.TrimSpace(n.Raw); raw[0] != '{' {
			errs = append(errs, field.Invalid(path.Child("notify"), clip(string(raw)), "the properties of a notification step: an object"))
		}
	} else if sla.OnBreach == "" || sla.OnBreach == SLANotify {
		errs = append(errs, field.Required(path.Child("notify"), "the properties of the notification to send at a breach (onBreach: notify)"))
	}
	return errs
}

// validateConcurrency checks a concurrency key: an expression, a limit of at least 1 and a
// known onLimit.
func validateConcurrency(c *Concurrency, path *field.Path) field.ErrorList {
	if c == nil {
		return nil
	}
	var errs field.ErrorList
	if strings.TrimSpace(c.Key) == "" {
		errs = append(errs, field.Required(path.Child("key"), "a CUE expression naming the key"))
	}
	if c.Limit < 1 {
		errs = append(errs, field.Invalid(path.Child("limit"), c.Limit, "at least 1"))
	}
	switch c.OnLimit {
	case "", ConcurrencyQueue, ConcurrencyCancelNew, ConcurrencyCancelRunning:
	default:
		errs = append(errs, field.NotSupported(path.Child("onLimit"), c.OnLimit, []ConcurrencyAction{ConcurrencyQueue, ConcurrencyCancelNew, ConcurrencyCancelRunning}))
	}
	return errs
}

var modes = []string{string(ModeDAG), string(ModeStepByStep)}

func validateMode(m WorkflowMode, path *field.Path) field.ErrorList {
	if m == "" || m == ModeDAG || m == ModeStepByStep {
		return nil
	}
	return field.ErrorList{field.NotSupported(path, m, modes)}
}

// validateGroupMode checks a step-group's own mode, which may also be Switch.
func validateGroupMode(m WorkflowMode, path *field.Path) field.ErrorList {
	if m == "" || m == ModeDAG || m == ModeStepByStep || m == ModeSwitch {
		return nil
	}
	return field.ErrorList{field.NotSupported(path, m, append(slices.Clip(modes), string(ModeSwitch)))}
}

func validateExecuteMode(m *WorkflowExecuteMode, path *field.Path) field.ErrorList {
	if m == nil {
		return nil
	}
	return append(validateMode(m.Steps, path.Child("steps")), validateMode(m.SubSteps, path.Child("subSteps"))...)
}

// ValidateSteps checks a list of steps that runs in the given mode, written at path: each step has
// a type, a valid timeout, a non-blank if, complete outputs and inputs that some step outputs;
// names are unique across groups (empty names count as DefaultStepNames fills them); mode and
// subSteps appear only on a step-group, whose sub-steps are not groups; dependsOn names a step
// of the same level (top-level steps for a top-level step, the sibling sub-steps for a sub-step);
// and no step waits, through dependsOn, inputs or the StepByStep order, for itself.
func ValidateSteps(steps []WorkflowStep, mode WorkflowExecuteMode, path *field.Path) field.ErrorList {
	c := newStepChecker(steps, mode, path)
	c.checkNames()
	for _, s := range c.all {
		c.checkStep(s)
	}
	c.checkGroups()
	c.checkDependsOn()
	c.checkInputs()
	c.checkCycles()
	return c.errs
}

// stepRef is one step, top-level or sub-step, with its filled-in name and where it is written.
type stepRef struct {
	name string
	base *WorkflowStepBase
	path *field.Path
	// top is the index of the top-level step, the step itself or its group.
	top int
	// sub is the index among the group's sub-steps, -1 for a top-level step.
	sub int
	// node is the index of the step in the dependency graph of its level.
	node int
}

// level is one list of steps that run together: the top-level steps, or a group's sub-steps.
type level struct {
	steps []*stepRef
	mode  WorkflowMode
	// edges[i] are what step i waits for.
	edges [][]edge
}

// edge says that a step waits for another of its level.
type edge struct {
	to int
	// path and value locate the field that makes the step wait; path is nil for the StepByStep
	// order, which no field states.
	path  *field.Path
	value string
	// why says it in words: "a depends on b".
	why string
}

type stepChecker struct {
	steps []WorkflowStep
	all   []*stepRef
	// top holds the top-level steps; groups[i] the sub-steps of top-level step i.
	top    *level
	groups []*level
	byName map[string]*stepRef
	// producers maps a run variable to the steps that output it.
	producers map[string][]*stepRef
	errs      field.ErrorList
}

func newStepChecker(steps []WorkflowStep, mode WorkflowExecuteMode, path *field.Path) *stepChecker {
	c := &stepChecker{
		steps:     steps,
		top:       &level{mode: mode.Steps},
		groups:    make([]*level, len(steps)),
		byName:    map[string]*stepRef{},
		producers: map[string][]*stepRef{},
	}
	for i := range steps {
		s := &steps[i]
		p := path.Index(i)
		ref := &stepRef{name: s.Name, base: &s.WorkflowStepBase, path: p, top: i, sub: -1, node: i}
		if ref.name == "" {
			ref.name = defaultStepName(i)
		}
		c.top.steps = append(c.top.steps, ref)
		c.all = append(c.all, ref)
		g := &level{mode: s.Mode}
		if g.mode == "" {
			g.mode = mode.SubSteps
		}
		for j := range s.SubSteps {
			sub := &stepRef{name: s.SubSteps[j].Name, base: &s.SubSteps[j], path: p.Child("subSteps").Index(j), top: i, sub: j, node: j}
			if sub.name == "" {
				sub.name = defaultSubStepName(i, j)
			}
			g.steps = append(g.steps, sub)
			c.all = append(c.all, sub)
		}
		c.groups[i] = g
	}
	for _, l := range c.levels() {
		l.edges = make([][]edge, len(l.steps))
	}
	for _, s := range c.all {
		for _, o := range s.base.Outputs {
			if o.Name != "" {
				c.producers[o.Name] = append(c.producers[o.Name], s)
			}
		}
	}
	return c
}

func (c *stepChecker) levels() []*level {
	return append([]*level{c.top}, c.groups...)
}

// levelOf is the level a step belongs to.
func (c *stepChecker) levelOf(s *stepRef) *level {
	if s.sub < 0 {
		return c.top
	}
	return c.groups[s.top]
}

// describe names a step for a message, with its group when it is a sub-step.
func (c *stepChecker) describe(s *stepRef) string {
	if s.sub < 0 {
		return s.name
	}
	return fmt.Sprintf("%s (in step-group %s)", s.name, c.top.steps[s.top].name)
}

func (c *stepChecker) checkNames() {
	for _, s := range c.all {
		if _, dup := c.byName[s.name]; dup {
			c.errs = append(c.errs, field.Duplicate(s.path.Child("name"), s.name))
			continue
		}
		c.byName[s.name] = s
	}
}

func (c *stepChecker) checkStep(s *stepRef) {
	b := s.base
	if b.Type == "" {
		c.errs = append(c.errs, field.Required(s.path.Child("type"), "the step type, a WorkflowStepDefinition's name"))
	}
	if b.Timeout != "" {
		d, err := time.ParseDuration(b.Timeout)
		switch {
		case err != nil:
			c.errs = append(c.errs, field.Invalid(s.path.Child("timeout"), b.Timeout, "a Go duration such as 30s, 5m or 1h30m (there is no unit for days)"))
		case d < 0:
			c.errs = append(c.errs, field.Invalid(s.path.Child("timeout"), b.Timeout, "a timeout cannot be negative"))
		}
	}
	c.checkCache(s)
	if sc := b.Concurrency; sc != nil {
		p := s.path.Child("concurrency")
		if strings.TrimSpace(sc.Key) == "" {
			c.errs = append(c.errs, field.Required(p.Child("key"), "a CUE expression over parameter, inputs and context naming the semaphore"))
		}
		if sc.Limit < 1 {
			c.errs = append(c.errs, field.Invalid(p.Child("limit"), sc.Limit, "at least 1"))
		}
	}
	if b.If != "" && strings.TrimSpace(b.If) == "" {
		c.errs = append(c.errs, field.Invalid(s.path.Child("if"), b.If, "an empty condition: write a CUE boolean expression or always, or remove if"))
	}
	for k, o := range b.Outputs {
		p := s.path.Child("outputs").Index(k)
		if o.Name == "" {
			c.errs = append(c.errs, field.Required(p.Child("name"), "the run variable the output is stored as"))
		}
		if o.ValueFrom == "" {
			c.errs = append(c.errs, field.Required(p.Child("valueFrom"), "the CUE expression whose value is output"))
		}
	}
	for k, in := range b.Inputs {
		if in.From == "" {
			c.errs = append(c.errs, field.Required(s.path.Child("inputs").Index(k).Child("from"), "the run variable the input is read from"))
		}
	}
	c.checkExtensions(s, s.sub >= 0 && c.steps[s.top].Loops())
}

// checkCache checks a step's cache: a key, a positive maxAge, and a step that is evaluated
// (not a step-group, not a workflow step, whose result is a child run's).
func (c *stepChecker) checkCache(s *stepRef) {
	cc := s.base.Cache
	if cc == nil {
		return
	}
	p := s.path.Child("cache")
	switch s.base.Type {
	case TypeStepGroup, TypeWorkflow:
		c.errs = append(c.errs, field.Forbidden(p, "a "+s.base.Type+" step has no result of its own to cache: set cache on the steps that compute"))
	}
	if strings.TrimSpace(cc.Key) == "" {
		c.errs = append(c.errs, field.Required(p.Child("key"), "a CUE expression over parameter, inputs and context naming the result"))
	}
	d, err := time.ParseDuration(cc.MaxAge)
	switch {
	case cc.MaxAge == "":
		c.errs = append(c.errs, field.Required(p.Child("maxAge"), "how long a result is taken, a Go duration such as 10m or 24h"))
	case err != nil:
		c.errs = append(c.errs, field.Invalid(p.Child("maxAge"), cc.MaxAge, "a Go duration such as 10m or 24h (there is no unit for days)"))
	case d <= 0:
		c.errs = append(c.errs, field.Invalid(p.Child("maxAge"), cc.MaxAge, "maxAge must be more than zero"))
	}
}

// inLoop reports whether a step runs in an iteration: it loops, or its group does.
func (c *stepChecker) inLoop(s *stepRef) bool {
	return s.base.Loops() || (s.sub >= 0 && c.steps[s.top].Loops())
}

func (c *stepChecker) checkGroups() {
	for i := range c.steps {
		s := &c.steps[i]
		p := c.top.steps[i].path
		if s.Type != TypeStepGroup {
			if s.Mode != "" {
				c.errs = append(c.errs, field.Forbidden(p.Child("mode"), "only a step-group has a mode"))
			}
			if len(s.SubSteps) > 0 {
				c.errs = append(c.errs, field.Forbidden(p.Child("subSteps"), "only a step-group has subSteps"))
			}
			continue
		}
		if s.Mode == ModeSwitch {
			c.checkSwitch(i)
		} else {
			c.errs = append(c.errs, validateGroupMode(s.Mode, p.Child("mode"))...)
		}
		for _, sub := range c.groups[i].steps {
			if sub.base.Type == TypeStepGroup {
				c.errs = append(c.errs, field.Invalid(sub.path.Child("type"), sub.base.Type, "a sub-step cannot be a step-group: groups do not nest"))
			}
		}
	}
}

// checkDependsOn checks that each dependsOn names a step of the same level and records the edge.
func (c *stepChecker) checkDependsOn() {
	for _, s := range c.all {
		l := c.levelOf(s)
		for k, name := range s.base.DependsOn {
			p := s.path.Child("dependsOn").Index(k)
			d, found := c.byName[name]
			switch {
			case !found:
				c.errs = append(c.errs, field.Invalid(p, name, "no step has this name"))
			case d == s:
				c.errs = append(c.errs, field.Invalid(p, name, "a step cannot depend on itself"))
			case c.levelOf(d) != l && s.sub < 0:
				c.errs = append(c.errs, field.Invalid(p, name, fmt.Sprintf(
					"%s is a sub-step of step-group %s; a top-level step depends on top-level steps (the group, for example)",
					name, c.top.steps[d.top].name)))
			case c.levelOf(d) != l:
				c.errs = append(c.errs, field.Invalid(p, name, fmt.Sprintf(
					"%s is not in step-group %s; a sub-step depends on the sub-steps of its own group",
					c.describe(d), c.top.steps[s.top].name)))
			default:
				l.edges[s.node] = append(l.edges[s.node], edge{to: d.node, path: p, value: name,
					why: fmt.Sprintf("%s depends on %s", s.name, d.name)})
			}
		}
	}
}

// checkInputs checks that each input is some step's output, and records that the step waits for
// the steps producing it, as the engine makes it wait. A step in a group waiting for a step
// outside it makes the whole group wait.
func (c *stepChecker) checkInputs() {
	for _, s := range c.all {
		if f := s.base.ForEach; f != nil && f.From != "" {
			c.checkFrom(s, s.path.Child("forEach", "from"), f.From)
		}
		for k, in := range s.base.Inputs {
			if in.From == "" || (IsIterationVar(in.From) && c.inLoop(s)) {
				continue
			}
			p := s.path.Child("inputs").Index(k).Child("from")
			producers := c.producers[in.From]
			if _, ctx := ContextPath(in.From); ctx && len(producers) == 0 {
				continue // read from the step's context when it starts
			}
			if len(producers) == 0 {
				c.errs = append(c.errs, field.Invalid(p, in.From, "no step of the run outputs this variable"))
				continue
			}
			if len(producers) == 1 && producers[0] == s {
				c.errs = append(c.errs, field.Invalid(p, in.From, "only this step outputs this variable, which it cannot read before it runs"))
				continue
			}
			for _, prod := range producers {
				if prod != s {
					c.inputEdge(s, prod, p, in.From)
				}
			}
		}
	}
}

// checkFrom checks that the run variable a forEach iterates over is some other step's output,
// and records that the step waits for the steps producing it.
func (c *stepChecker) checkFrom(s *stepRef, p *field.Path, from string) {
	producers := c.producers[from]
	if len(producers) == 0 {
		c.errs = append(c.errs, field.Invalid(p, from, "no step of the run outputs this variable"))
		return
	}
	for _, prod := range producers {
		if prod == s {
			if len(producers) == 1 {
				c.errs = append(c.errs, field.Invalid(p, from, "only this step outputs this variable, which it cannot read before it runs"))
			}
			continue
		}
		c.inputEdge(s, prod, p, from)
	}
}

// inputEdge records that step s waits for prod, which outputs the variable s reads.
func (c *stepChecker) inputEdge(s, prod *stepRef, p *field.Path, from string) {
	why := fmt.Sprintf("%s takes input %q from %s", c.describe(s), from, c.describe(prod))
	if c.levelOf(s) == c.levelOf(prod) {
		l := c.levelOf(s)
		l.edges[s.node] = append(l.edges[s.node], edge{to: prod.node, path: p, value: from, why: why})
		return
	}
	if s.top == prod.top {
		// One is the group and the other is inside it: the group finishes after its sub-steps,
		// and its sub-steps start after the group starts.
		group := c.top.steps[s.top].name
		c.errs = append(c.errs, field.Invalid(p, from, fmt.Sprintf(
			"dependency cycle: %s, but step-group %s runs its sub-steps before it finishes", why, group)))
		return
	}
	c.top.edges[s.top] = append(c.top.edges[s.top], edge{to: prod.top, path: p, value: from, why: why})
}

// checkCycles reports cycles of steps waiting on each other, at a field that makes a step of the
// cycle wait: at least one cycle for each knot of such steps, and no cycle twice.
func (c *stepChecker) checkCycles() {
	for _, l := range c.levels() {
		if l.mode == ModeStepByStep {
			for i := 1; i < len(l.steps); i++ {
				l.edges[i] = append(l.edges[i], edge{to: i - 1,
					why: fmt.Sprintf("%s runs after %s (StepByStep)", l.steps[i].name, l.steps[i-1].name)})
			}
		}
		c.cyclesIn(l)
	}
}

// cyclesIn finds the cycles of one level by depth-first search: an edge to a step still on the
// search stack closes a cycle.
func (c *stepChecker) cyclesIn(l *level) {
	const (
		unseen = iota
		onStack
		done
	)
	state := make([]int, len(l.steps))
	var stack []int // steps being searched
	var via []edge  // via[i] is the edge from stack[i] to stack[i+1]
	reported := map[string]bool{}
	var visit func(i int)
	visit = func(i int) {
		state[i] = onStack
		stack = append(stack, i)
		for _, e := range l.edges[i] {
			switch state[e.to] {
			case unseen:
				via = append(via, e)
				visit(e.to)
				via = via[:len(via)-1]
			case onStack:
				start := len(stack) - 1
				for stack[start] != e.to {
					start--
				}
				cycle := append(append([]edge(nil), via[start:]...), e)
				c.reportCycle(l, stack[start:], cycle, reported)
			}
		}
		stack = stack[:len(stack)-1]
		state[i] = done
	}
	for i := range l.steps {
		if state[i] == unseen {
			visit(i)
		}
	}
}

// reportCycle reports a cycle through steps, made of edges, unless a cycle through the same steps
// was reported. It is reported at the first edge a field states.
func (c *stepChecker) reportCycle(l *level, steps []int, edges []edge, reported map[string]bool) {
	names := make([]string, len(steps))
	for i, s := range steps {
		names[i] = l.steps[s].name
	}
	key := strings.Join(slices.Sorted(slices.Values(names)), "\x00")
	if reported[key] {
		return
	}
	reported[key] = true
	why := make([]string, len(edges))
	at := -1
	for i, e := range edges {
		why[i] = e.why
		if at < 0 && e.path != nil {
			at = i
		}
	}
	if at < 0 {
		return // cannot happen: the StepByStep order alone only points backwards
	}
	c.errs = append(c.errs, field.Invalid(edges[at].path, edges[at].value, "dependency cycle: "+strings.Join(why, ", ")))
}

// clip shortens s for a message.
func clip(s string) string {
	const limit = 60
	if len(s) <= limit {
		return s
	}
	return s[:limit] + "..."
}
