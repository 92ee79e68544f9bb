package engine

import (
	"encoding/json"
	"fmt"

	"github.com/stepflow/stepflow/api/v1alpha1"
)

// Defaults of Limits.
const (
	DefaultMaxSteps       = 1000
	DefaultMaxIterations  = 10000
	DefaultMaxOutputBytes = 1 << 20
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
