package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/stepflow/stepflow/api/v1alpha1"
)

// This file holds every interface the engine defines, the parts each way of running it plugs
// in, and the values that cross them (StepRequest, StepResult). The run's own types are in
// run.go.

// Store keeps runs durably. Save is atomic and conditional: it writes only when the stored version
// equals run.Version (0 for a run not stored yet), then sets run.Version to the new version.
type Store interface {
	// Load returns the stored run, or an error wrapping ErrNotFound.
	Load(ctx context.Context, key Key) (*Run, error)
	// Save writes the run and appends logs in one transaction; ErrConflict when the version moved.
	Save(ctx context.Context, run *Run, logs []LogEntry) error
}

// ErrNotFound is returned, wrapped, by a Store that has no such run.
var ErrNotFound = errors.New("not found")

// ErrConflict is returned, wrapped, by Store.Save when the run changed since it was loaded.
var ErrConflict = errors.New("run changed since it was loaded")

// ErrTryLater is returned, wrapped, by an Options.Check that could not check a run for a
// reason of its own (its CUE evaluators failed), not of the run: the run is not failed for
// it but looked at again a second later.
var ErrTryLater = errors.New("try again later")

// Clock is where the engine reads time and sets timers, so that tests control time.
type Clock interface {
	Now() time.Time
	// AfterFunc calls f in its own goroutine once d has passed; the returned func cancels it.
	AfterFunc(d time.Duration, f func()) (stop func() bool)
}

// StepRunner evaluates one step: it renders the step's definition with its parameter and
// context, runs the actions, and says how the evaluation ended.
type StepRunner interface {
	RunStep(ctx context.Context, req *StepRequest) (*StepResult, error)
}

// ConditionEvaluator decides a step's `if` expression.
type ConditionEvaluator interface {
	// EvalIf evaluates expr over scope (keys status, inputs, context) to a concrete boolean.
	EvalIf(ctx context.Context, expr string, scope map[string]any) (bool, error)
}

// KeyEvaluator evaluates a step's cache key (v1alpha1.StepCache.Key).
type KeyEvaluator interface {
	// EvalKey evaluates expr over scope (keys parameter, inputs, context) to a concrete value,
	// as JSON. An expression that is wrong in itself, or cannot be made concrete, is an error
	// wrapping a TerminalError; any other error (the evaluator failed) is tried again.
	EvalKey(ctx context.Context, expr string, scope map[string]any) (json.RawMessage, error)
}

// Slots keeps the slots of concurrency keys (v1alpha1.Concurrency) for every engine sharing a
// store: per key, the runs holding a slot and the runs waiting in line for one. Every method
// is idempotent per run, so that a process that died between a call and the save of its
// run calls it again to the same effect.
type Slots interface {
	// Acquire asks a slot for req.Run. It returns 0 when the run holds one (already, or
	// now), else the run's place in line from 1 (the run is queued, unless req.Queue is
	// false: then it is left out, and the place is that it would have had).
	Acquire(ctx context.Context, req SlotRequest) (place int, err error)
	// Release gives up the run's slot or its place in line, and returns the runs waiting
	// that may take the slots now free, to be woken.
	Release(ctx context.Context, namespace, key, run string) (next []string, err error)
	// Holders lists every run holding a slot or waiting for one, for the sweep.
	Holders(ctx context.Context) ([]SlotHolder, error)
}

// SlotRequest is a run asking for a slot of its concurrency key.
type SlotRequest struct {
	Namespace string
	// Key is the key's evaluated value.
	Key   string
	Limit int
	Run   string
	// Priority orders the line: higher first, then first come first served.
	Priority int32
	// Queue says the run waits in line when no slot is free (onLimit queue).
	Queue bool
}

// SlotHolder is a run holding a slot of a key (Held), or waiting for one.
type SlotHolder struct {
	Namespace, Key, Run string
	Held                bool
}

// Cache keeps the results of steps with a cache (v1alpha1.StepCache) by namespace and key.
type Cache interface {
	// CachedResult returns the entry kept under key in namespace, or an error wrapping
	// ErrNotFound.
	CachedResult(ctx context.Context, namespace, key string) (*CacheEntry, error)
	// PutCachedResult keeps the entry, replacing one under the same key, and evicts the
	// namespace's oldest entries past the cache's bounds.
	PutCachedResult(ctx context.Context, entry *CacheEntry) error
}

// CacheEntry is the result of a step's success, kept to be taken by the steps with the same
// key in its namespace instead of evaluating them.
type CacheEntry struct {
	Namespace string `json:"namespace"`
	// Key is the hex SHA-256 of the step's type and its evaluated key (CacheKey): the key's
	// value itself is not kept.
	Key string `json:"key"`
	// StepType is the type of the step that made it.
	StepType string `json:"stepType"`
	// Run and Step name the step that made it.
	Run  string `json:"run"`
	Step string `json:"step"`
	// Created is when the step succeeded (the engine's clock).
	Created time.Time `json:"created"`
	// Outputs and VarWrites are the step's result, taken by a hit.
	Outputs   map[string]json.RawMessage `json:"outputs,omitempty"`
	VarWrites map[string]json.RawMessage `json:"varWrites,omitempty"`
}

// StepRequest is what a StepRunner is given to evaluate a step once.
type StepRequest struct {
	// Run is the run's key.
	Run Key
	// Step is the step as written; Properties below already has the inputs filled in.
	Step v1alpha1.WorkflowStepBase
	// StepID is the step's stable status id.
	StepID string
	// GroupName is the enclosing step-group's name, empty at the top level.
	GroupName string
	// Properties is the parameter value, a JSON object: the step's properties with its inputs
	// filled in. It is the properties as written when no input sets a parameter, so that they
	// reach the StepRunner as they are. Nil stands for an empty object.
	Properties json.RawMessage
	// Inputs are the step's inputs by variable name.
	Inputs map[string]any
	// Context is the CUE context: built-in keys and the run's spec.context.
	Context map[string]any
	// Vars are the run variables at the start of the evaluation.
	Vars map[string]json.RawMessage
	// Memo holds results of side-effecting actions already run in this attempt, by action path.
	Memo map[string]json.RawMessage
	// Resumed says that a resume released this step's pending suspend.
	Resumed bool
	// Now is the engine clock's time at the start of the evaluation.
	Now time.Time
	// Sensitive are the values the run knows are secrets at the start of the evaluation, for
	// the actions that describe what they did in the log (read it, never change it).
	Sensitive []string
	// Execution names what this evaluation is part of: the step's status id, the run's epoch,
	// the step's attempt and the retries of that attempt. Evaluations of one execution share
	// it, across processes (a crash starts another try, not another execution); a new attempt
	// or a retry after an error changes it. An action that starts something outside the run and
	// follows it over evaluations (vela/run's Job) finds what it started by it.
	Execution string
}

// Outcome is how an evaluation of a step ended.
type Outcome int

// The outcomes of an evaluation.
const (
	// Succeeded: every action ran; outputs are set.
	Succeeded Outcome = iota
	// Failed: the step failed for good (a #Fail, a bad parameter, a CUE error, a failed output).
	Failed
	// Waiting: a ConditionalWait did not hold; evaluate again later.
	Waiting
	// Suspended: a Suspend action holds the run until resumed or until Result.SuspendUntil.
	Suspended
	// Broke: a #Break: the step succeeded and the run ends terminated.
	Broke
)

var outcomeNames = [...]string{"Succeeded", "Failed", "Waiting", "Suspended", "Broke"}

func (o Outcome) String() string {
	if int(o) < len(outcomeNames) {
		return outcomeNames[o]
	}
	return fmt.Sprintf("Outcome(%d)", int(o))
}

// StepResult is what one evaluation of a step produced. A StepRunner returns an error instead
// only for a provider error that may succeed when tried again (see Terminal).
type StepResult struct {
	Outcome Outcome
	// Reason is a KubeVela step reason for a failure (Action, Rendering, ProcessParameter, Output),
	// or v1alpha1.ReasonCached for a success taken from the step cache.
	Reason string
	// Message becomes the step's status message.
	Message string
	// Outputs are the step's outputs by name, evaluated after success, and as far as they
	// can be (null otherwise) when the step failed or waits.
	Outputs map[string]json.RawMessage
	// VarWrites are run variables the step wrote (#DoVar Put).
	VarWrites map[string]json.RawMessage
	// Memo is the step's memo after the evaluation; it replaces the one in the request.
	Memo map[string]json.RawMessage
	// Logs are the entries the evaluation added to the step's log.
	Logs []LogEntry
	// SuspendUntil is when a Suspended step resumes by itself; zero waits for a resume.
	SuspendUntil time.Time
	// WaitHint, when set, is how soon a Waiting step is worth evaluating again.
	WaitHint time.Duration
	// Sensitive are the values the evaluation learned are secrets; the run keeps them
	// (Run.Sensitive) whatever the outcome, also when the result comes with an error.
	Sensitive []string
}

// TerminalError marks a step error that trying again cannot mend; the step fails at once.
type TerminalError struct {
	Reason string
	Err    error
}

func (e *TerminalError) Error() string { return e.Err.Error() }
func (e *TerminalError) Unwrap() error { return e.Err }

// Terminal wraps err so that the engine fails the step at once with reason.
func Terminal(reason string, err error) error {
	return &TerminalError{Reason: reason, Err: err}
}

// Workflows resolves a run's workflowRef to the Workflow template it names.
type Workflows interface {
	Workflow(ctx context.Context, namespace, name string) (*v1alpha1.Workflow, error)
}

// WorkflowRevisions is Workflows that also keeps templates' past revisions, for the runs that
// ask for one (v1alpha1.AnnotationTemplateRevision). WorkflowAt is revision rev of the
// template namespace/name, with Generation rev, or an error wrapping ErrNotFound.
type WorkflowRevisions interface {
	WorkflowAt(ctx context.Context, namespace, name string, rev int64) (*v1alpha1.Workflow, error)
}

// Observer is told about every transition the engine saved. It is called from the worker that
// owns the run and must neither keep nor change run.
type Observer interface {
	RunChanged(run *Run)
}

// Observers is an Observer that tells each of its observers in turn, in order; nil entries are
// skipped. Options.Observer takes one observer: this is how several (the server's live view,
// metrics, traces) share it.
type Observers []Observer

// RunChanged implements Observer.
func (o Observers) RunChanged(run *Run) {
	for _, obs := range o {
		if obs != nil {
			obs.RunChanged(run)
		}
	}
}

// Owner divides runs among engines sharing a store (server replicas holding leases).
type Owner interface {
	// Owns reports whether this engine may advance the run now.
	Owns(key Key) bool
	// Elsewhere is told of a run this engine was asked to advance but does not own, so that
	// the engine that owns it does.
	Elsewhere(ctx context.Context, key Key)
}

// QuickRunner is a StepRunner that can make some evaluations at once, in the worker advancing
// the run: those that need no I/O (a step that only sets its message, fails or suspends; a
// resumed step that is nothing but a suspend). The engine makes them before it saves the
// transition that launched them, so that the step's start and its result are one durable
// transition: nothing outside the run could have seen the step run, and a process that dies
// before the save evaluates it again to the same effect.
type QuickRunner interface {
	// RunQuick evaluates the step as RunStep does when it can do so without I/O. It reports
	// false when it cannot, having done nothing, with the reason as the error: the step is
	// then launched as any other.
	RunQuick(ctx context.Context, req *StepRequest) (res *StepResult, ok bool, err error)
}

// QueueObserver is told how the engine's work queue moves: the keys of runs waiting for a worker.
// It is called with the queue's lock held, on the path of every transition, so it must be quick
// (an atomic update, no I/O) and must not call the Engine. Telemetry implements it to export the
// queue's depth and how long runs wait for a worker.
type QueueObserver interface {
	// Queued is called when a run's key joins the line for a worker; depth is how many keys
	// wait in it now. A key added again while it waits does not join it twice and is not
	// reported; one added while a worker holds it joins the line when the worker is done. (A
	// key moved up to the first line keeps its place in the second until a worker passes
	// over it, and counts twice meanwhile.)
	Queued(depth int)
	// Taken is called when a worker takes a key; depth is how many keys still wait, and waited
	// is how long the key waited since it joined the line (measured on the process's monotonic
	// clock, not the engine's Clock: it measures the workers, not the runs' logic).
	Taken(depth int, waited time.Duration)
}
