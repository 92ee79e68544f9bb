package engine

import (
	"bytes"
	"encoding/json"
	"fmt"

	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/stepflow/stepflow/api/v1alpha1"
)

// Defaults of Limits.
const (
	DefaultMaxSteps       = 1000
	DefaultMaxIterations  = 10000
	DefaultMaxOutputBytes = 1 << 20
	// DefaultMaxRunDataBytes bounds a run's outputs and variables together: enough for 30
	// outputs of 1 MB, the run that made a record of 28 MB when they were all in it.
	DefaultMaxRunDataBytes = 32 << 20
	// DefaultMaxWorkflowDepth and DefaultMaxChildRuns bound `workflow` steps: how deep child
	// runs nest, and how many one root run starts at every depth.
	DefaultMaxWorkflowDepth = 10
	DefaultMaxChildRuns     = 1000
)

// Limits bound what one run may hold, so that a run cannot grow its record without bound. A
// run over a limit fails with a message naming the limit and the flag that raises it.
type Limits struct {
	// Steps bounds the steps of a run, sub-steps included; 0 means DefaultMaxSteps, a negative
	// value none.
	Steps int
	// Iterations bounds the items of one forEach or matrix step; 0 means
	// DefaultMaxIterations, a negative value none.
	Iterations int
	// OutputBytes bounds the JSON of each output or variable one evaluation of a step writes;
	// 0 means DefaultMaxOutputBytes, a negative value none.
	OutputBytes int
	// RunDataBytes bounds the JSON of everything a run holds of its steps' outputs and
	// variables together: its run variables (which a step's outputs become), its loops'
	// iterations' outputs, and the outputs kept of waiting steps. An evaluation whose outputs
	// or variables would take the run beyond it fails, and none of them is kept. 0 means
	// DefaultMaxRunDataBytes, a negative value none.
	RunDataBytes int
	// WorkflowDepth bounds how deep the child runs of `workflow` steps nest: a run's child
	// is at depth 1, its grandchild at 2. A step that would start a child deeper fails. 0
	// means DefaultMaxWorkflowDepth, a negative value none.
	WorkflowDepth int
	// ChildRuns bounds the child runs started under one root run, at every depth (restarts
	// of a child are not new runs). A step that would start one more fails. 0 means
	// DefaultMaxChildRuns, a negative value none.
	ChildRuns int
}

func (l Limits) withDefaults() Limits {
	if l.Steps == 0 {
		l.Steps = DefaultMaxSteps
	}
	if l.Iterations == 0 {
		l.Iterations = DefaultMaxIterations
	}
	if l.OutputBytes == 0 {
		l.OutputBytes = DefaultMaxOutputBytes
	}
	if l.RunDataBytes == 0 {
		l.RunDataBytes = DefaultMaxRunDataBytes
	}
	if l.WorkflowDepth == 0 {
		l.WorkflowDepth = DefaultMaxWorkflowDepth
	}
	if l.ChildRuns == 0 {
		l.ChildRuns = DefaultMaxChildRuns
	}
	return l
}

// checkSteps refuses a run with more steps than the limit.
func (l Limits) checkSteps(spec *v1alpha1.WorkflowSpec) error {
	if l.Steps < 0 || spec == nil {
		return nil
	}
	n := 0
	for _, s := range spec.Steps {
		n += 1 + len(s.SubSteps)
	}
	if n > l.Steps {
		return fmt.Errorf("the run has %d steps, more than the limit of %d steps per run (the engine's Limits.Steps, --max-steps)", n, l.Steps)
	}
	return nil
}

// checkResult refuses an evaluation's output or variable larger than the limit.
func (l Limits) checkResult(r *StepResult) error {
	if l.OutputBytes < 0 || r == nil {
		return nil
	}
	for _, vars := range []map[string]json.RawMessage{r.Outputs, r.VarWrites} {
		for name, v := range vars {
			if len(v) > l.OutputBytes {
				return fmt.Errorf("output %q is %d bytes, more than the limit of %d bytes per output (the engine's Limits.OutputBytes, --max-output-bytes)", name, len(v), l.OutputBytes)
			}
		}
	}
	return nil
}

// RunDataBytes is the size of the JSON of a run's data, as Limits.RunDataBytes counts it: its
// variables, its iterations' outputs, its waiting steps' outputs, the items of its loops
// (forEach.from copies a variable's list into the loop's record) and the memos of its steps
// (the results of the side effects of an attempt under way).
func RunDataBytes(run *Run) int {
	n := sumBytes(run.Vars)
	for _, l := range run.Loops {
		if l == nil {
			continue
		}
		for _, item := range l.Items {
			n += len(item)
		}
		for _, it := range l.Iterations {
			if it != nil {
				n += sumBytes(it.Outputs)
			}
		}
	}
	for _, rec := range run.Steps {
		if rec != nil {
			n += sumBytes(rec.Outputs) + sumBytes(rec.Memo)
		}
	}
	return n
}

// runDataError is the refusal of a change that takes a run's data to after bytes.
func (l Limits) runDataError(after int) error {
	return fmt.Errorf("the run's outputs, variables, loop items and memos would be %d bytes, more than the limit of %d bytes per run (the engine's Limits.RunDataBytes, --max-run-data)", after, l.RunDataBytes)
}

// checkMemo refuses the memo of an evaluation of the step whose record is rec when it would
// take the run's data beyond the limit.
func (l Limits) checkMemo(run *Run, rec *StepRecord, memo map[string]json.RawMessage) error {
	if l.RunDataBytes < 0 {
		return nil
	}
	delta := sumBytes(memo) - sumBytes(rec.Memo)
	if after := RunDataBytes(run) + delta; delta > 0 && after > l.RunDataBytes {
		return l.runDataError(after)
	}
	return nil
}

// checkLoopItems refuses the items of a loop that starts when they would take the run's
// data beyond the limit.
func (l Limits) checkLoopItems(run *Run, items []json.RawMessage) error {
	if l.RunDataBytes < 0 {
		return nil
	}
	size := 0
	for _, item := range items {
		size += len(item)
	}
	if after := RunDataBytes(run) + size; size > 0 && after > l.RunDataBytes {
		return l.runDataError(after)
	}
	return nil
}

func sumBytes(m map[string]json.RawMessage) int {
	n := 0
	for _, v := range m {
		n += len(v)
	}
	return n
}

// checkRunData refuses the result of an evaluation of n that would take the run's outputs and
// variables beyond the limit: its variable writes replace run variables, and its outputs
// replace run variables (or, in an iteration, the iteration's outputs) when the step ends,
// or the outputs kept of the step when it waits.
func (l Limits) checkRunData(run *Run, n *node, r *StepResult) error {
	if l.RunDataBytes < 0 || r == nil {
		return nil
	}
	before := RunDataBytes(run)
	vars := map[string]int{}
	for k, v := range run.Vars {
		vars[k] = len(v)
	}
	delta := 0
	set := func(k string, size int) {
		delta += size - vars[k]
		vars[k] = size
	}
	for k, v := range r.VarWrites {
		set(k, len(v))
	}
	if rec := run.Steps[n.name]; rec != nil && (r.Outcome == Succeeded || r.Outcome == Broke) {
		delta -= sumBytes(rec.Memo) // dropped as the step ends
	}
	switch r.Outcome {
	case Succeeded, Broke, Failed:
		if n.it == nil {
			for k, v := range r.Outputs {
				set(k, len(v))
			}
			break
		}
		for k, v := range r.Outputs {
			delta += len(v) - len(n.it.rec.Outputs[k])
		}
	case Waiting:
		if rec := run.Steps[n.name]; rec != nil {
			delta -= sumBytes(rec.Outputs)
		}
		delta += sumBytes(r.Outputs)
	}
	if after := before + delta; delta > 0 && after > l.RunDataBytes {
		return l.runDataError(after)
	}
	return nil
}

// iterationsError is the refusal of a loop of n items, n counted as v1alpha1.MatrixSize counts.
func (l Limits) iterationsError(n int) error {
	if l.Iterations < 0 || n <= l.Iterations {
		return nil
	}
	return fmt.Errorf("%s items, more than the limit of %d iterations per loop (the engine's Limits.Iterations, --max-iterations)", v1alpha1.CountText(n), l.Iterations)
}

// CheckLoops refuses the loops among steps (sub-steps included) with more items than the
// limit of iterations: a matrix's combinations and a forEach's inline items, counted before
// any item is built. A forEach over a run variable (forEach.from) is counted when its step
// starts. base is the field path of steps; the problems are at each loop's matrix or
// forEach.items. The catalog checks runs and templates with it before they are stored; the
// engine counts a loop's items the same way when its step starts, and fails the step.
func (l Limits) CheckLoops(steps []v1alpha1.WorkflowStep, base *field.Path) field.ErrorList {
	l = l.withDefaults()
	if l.Iterations < 0 {
		return nil
	}
	var errs field.ErrorList
	v1alpha1.EachStep(steps, base, func(s *v1alpha1.WorkflowStepBase, p *field.Path) {
		switch {
		case s.Matrix != nil:
			n, err := v1alpha1.MatrixSize(s.Matrix)
			if err == nil {
				err = l.iterationsError(n)
			}
			if err != nil {
				errs = append(errs, field.Invalid(p.Child("matrix"), fmt.Sprintf("%s combinations", v1alpha1.CountText(n)), err.Error()))
			}
		case s.ForEach != nil && s.ForEach.Items != nil && len(bytes.TrimSpace(s.ForEach.Items.Raw)) > 0:
			var items []json.RawMessage
			if json.Unmarshal(s.ForEach.Items.Raw, &items) != nil {
				return // not a list: validation says so
			}
			if err := l.iterationsError(len(items)); err != nil {
				errs = append(errs, field.Invalid(p.Child("forEach", "items"), fmt.Sprintf("%d items", len(items)), err.Error()))
			}
		}
	})
	return errs
}
