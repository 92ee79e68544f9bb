// Package store holds what the run stores share beyond engine.Store: the summaries their List
// returns, the selection it takes, the error of creating a run that is stored already, the
// generic records they keep, how they tell a changed Workflow template from a re-applied
// one, the changes replicas sharing a store tell each other of, and the queries the SQL stores
// share (ListRuns, CountRuns, ListObjects, each given the store's Dialect) and how they read
// their rows, so that the CLI and the server work the same way whichever store they use.
package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/engine"
)

// ErrExists is returned, wrapped, by a store's Create of a run stored already (with
// CreateNew), and by PutRecord when it is to create a record that is stored already.
var ErrExists = errors.New("already exists")

// What Runs.Create may replace, besides a stored run's version.
const (
	// CreateNew creates a run that is not stored yet.
	CreateNew int64 = 0
	// ReplaceAny replaces whatever run is stored under the name, finished or not.
	ReplaceAny int64 = -1
)

// Change is a write of a run by another process sharing the store (a server replica), as
// the store's notifications tell of it.
type Change struct {
	Key engine.Key
	// Version is the run's new version, or Nudge, or Deleted.
	Version int64
}

// The versions of changes that are not saves.
const (
	// Nudge asks the run's owner to look at the run: another replica was asked to advance it.
	Nudge int64 = 0
	// Deleted says that the run was deleted.
	Deleted int64 = -1
)

// Record is one of the stores' generic records, kept by kind and key for the server (API
// tokens, triggers, named clusters): opaque data with the version the store gave it.
type Record struct {
	// Key is unique among the records of one kind.
	Key string
	// Data is what the record holds; the store does not look into it.
	Data []byte
	// Version changes with every write of the record and is never handed out twice by a
	// store: PutRecord takes it to update the record only if nobody else has since.
	Version int64
}

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
	// Template is the Workflow the run refers to (spec.workflowRef), "" for inline steps.
	Template string
	// Created is when the run was created: stored by Create, or by the Save at version 0
	// that stored it first. For a run stored by an older stepflow it is the run's
	// metadata.creationTimestamp, else its start time, else zero.
	Created time.Time
}

// ListOptions select the runs List returns. The zero value selects every run.
type ListOptions struct {
	// Namespace, when set, selects the runs of that namespace.
	Namespace string
	// Phase, when set, selects the runs in that phase (status.status).
	Phase string
	// Template, when set, selects the runs of that Workflow template (spec.workflowRef).
	Template string
	// StartedAfter and StartedBefore, when not zero, bound the runs' start time
	// (status.startTime): at or after StartedAfter, before StartedBefore. A run that has not
	// started is left out when either is set.
	StartedAfter  time.Time
	StartedBefore time.Time
	// Newest orders the runs by creation, newest first, then by namespace and name; by
	// default they are ordered by namespace and name.
	Newest bool
	// Limit, when positive, is the most runs returned; Offset skips that many first.
	Limit  int
	Offset int
}

// WorkflowChanged says whether wf differs from stored, the Workflow template stored under its
// name, in more than what stores and API servers set: metadata.generation, resourceVersion,
// creationTimestamp, managedFields and uid. A store that finds it changed stores wf with the
// next generation; applying the same file again leaves the generation as it is. Objects are
// compared as JSON values, so the order of keys in a step's properties does not count.
func WorkflowChanged(stored, wf *v1alpha1.Workflow) (bool, error) {
	a, err := workflowContent(stored)
	if err != nil {
		return false, fmt.Errorf("compare workflow %s/%s: stored: %w", stored.Namespace, stored.Name, err)
	}
	b, err := workflowContent(wf)
	if err != nil {
		return false, fmt.Errorf("compare workflow %s/%s: %w", wf.Namespace, wf.Name, err)
	}
	if bytes.Equal(a, b) {
		return false, nil
	}
	var va, vb any
	if err := json.Unmarshal(a, &va); err != nil {
		return false, fmt.Errorf("compare workflow %s/%s: stored: %w", stored.Namespace, stored.Name, err)
	}
	if err := json.Unmarshal(b, &vb); err != nil {
		return false, fmt.Errorf("compare workflow %s/%s: %w", wf.Namespace, wf.Name, err)
	}
	return !reflect.DeepEqual(va, vb), nil
}

// workflowContent is wf as JSON without the fields WorkflowChanged ignores.
func workflowContent(wf *v1alpha1.Workflow) ([]byte, error) {
	c := wf.DeepCopy()
	c.Generation = 0
	c.ResourceVersion = ""
	c.CreationTimestamp = metav1.Time{}
	c.ManagedFields = nil
	c.UID = ""
	return json.Marshal(c)
}
