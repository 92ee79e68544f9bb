// Package store holds what the run stores share beyond engine.Store: the summaries their List
// returns, the selection it takes, and the error of creating a run that is stored already, so
// that the CLI and the server list runs the same way whichever store they use.
package store

import (
	"errors"
	"time"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/engine"
)

// ErrExists is returned, wrapped, by a store's Create when the run is stored already and
// replace is false.
var ErrExists = errors.New("already exists")

// StepCounts counts a run's steps by phase. A step-group and each of its sub-steps count
// as one step each.
type StepCounts struct {
	// Total is the number of steps in the run's resolved spec (before the run starts: in its
	// inline spec), or in its status if that lists more.
	Total int
	// Pending counts the steps that have not started: Total less the others.
	Pending    int
	Running    int
	Suspending int
	Succeeded  int
	Failed     int
	Skipped    int
}

// CountSteps summarizes the steps of a run, the same way for every store.
func CountSteps(run *engine.Run) StepCounts {
	var c StepCounts
	listed := 0
	count := func(p v1alpha1.WorkflowStepPhase) {
		listed++
		switch p {
		case v1alpha1.StepRunning:
			c.Running++
		case v1alpha1.StepSuspending:
			c.Suspending++
		case v1alpha1.StepSucceeded:
			c.Succeeded++
		case v1alpha1.StepFailed:
			c.Failed++
		case v1alpha1.StepSkipped:
			c.Skipped++
		}
	}
	for _, s := range run.Object.Status.Steps {
		count(s.Phase)
		for _, sub := range s.SubStepsStatus {
			count(sub.Phase)
		}
	}
	spec := run.Spec
	if spec == nil {
		spec = run.Object.Spec.WorkflowSpec
	}
	if spec != nil {
		for _, s := range spec.Steps {
			c.Total += 1 + len(s.SubSteps)
		}
	}
	c.Total = max(c.Total, listed)
	c.Pending = c.Total - c.Running - c.Suspending - c.Succeeded - c.Failed - c.Skipped
	return c
}

// RunSummary is what List tells of a run.
type RunSummary struct {
	Namespace string
	Name      string
	Phase     v1alpha1.WorkflowRunPhase
	Message   string
	// StartTime and EndTime are zero when unset.
	StartTime time.Time
	EndTime   time.Time
	Steps     StepCounts
	// Version is the run's stored version.
	Version int64
}

// ListOptions select the runs List returns. The zero value selects every run.
type ListOptions struct {
	// Namespace, when set, selects the runs of that namespace.
	Namespace string
	// Phase, when set, selects the runs in that phase (status.status).
	Phase string
	// Limit, when positive, is the most runs returned; Offset skips that many first.
	Limit  int
	Offset int
}
