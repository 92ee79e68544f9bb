package engine

import (
	"encoding/json"
	"slices"
	"strings"
	"time"

	"github.com/stepflow/stepflow/api/v1alpha1"
)

// Key names a run: its namespace and name.
type Key struct {
	Namespace string
	Name      string
}

// String renders the key as namespace/name.
func (k Key) String() string { return k.Namespace + "/" + k.Name }

// Run is everything the engine keeps about one run: the object the user wrote with its
// KubeVela-shaped status, the run variables, and the engine's own bookkeeping per step.
type Run struct {
	// Object is the WorkflowRun, spec and status.
	Object *v1alpha1.WorkflowRun `json:"object"`
	// Spec is the steps the run executes, resolved when it starts: the inline steps or the
	// referenced Workflow's, with empty names filled in. Nil until the run is initialized.
	Spec *v1alpha1.WorkflowSpec `json:"spec,omitempty"`
	// Epoch counts restarts, so that a result of an evaluation started before a restart is
	// recognized and dropped.
	Epoch int64 `json:"epoch,omitempty"`
	// Vars are the run variables by name, as JSON.
	Vars map[string]json.RawMessage `json:"vars,omitempty"`
	// Steps is the engine's bookkeeping by step name.
	Steps map[string]*StepRecord `json:"steps,omitempty"`
	// Context is the run's spec.context as its template's parameters make it, with their
	// defaults filled in; nil when the template declares no parameters (spec.context is used).
	Context json.RawMessage `json:"context,omitempty"`
	// ManualSuspend is set while a user's suspend operation holds the run.
	ManualSuspend bool `json:"manualSuspend,omitempty"`
	// Loops are the iterations of the forEach and matrix steps that started, by step name: every
	// iteration in full, where the WorkflowRun status keeps counts and a bounded number of them.
	Loops map[string]*Loop `json:"loops,omitempty"`
	// Sensitive are the values the run learned are secrets (read from Secrets, given for
	// parameters declared sensitive, marked by actions), sorted, none shorter than
	// redact.MinLength. Variables, outputs and the context keep them for the steps; the status
	// and the log are saved with them redacted (see Redactor), and whatever shows a run
	// redacts them too. A store keeps them with the run's variables, never in a status a user
	// reads.
	Sensitive []string `json:"sensitive,omitempty"`
	// Checked is set by a front end that checked the run against its catalog when it was sent
	// (the CLI's run, the API's create), so that the engine does not check it again when it
	// starts (Options.Check).
	Checked bool `json:"checked,omitempty"`
	// TTLSecondsAfterFinished is how long the run is kept once it has finished: its own
	// spec.ttlSecondsAfterFinished, else its Workflow template's, fixed when it starts; nil
	// leaves it to the operator's Retention.TTL.
	TTLSecondsAfterFinished *int32 `json:"ttlSecondsAfterFinished,omitempty"`
	// SLA is how long the run may take: its own spec.sla, else its Workflow template's, fixed
	// when it starts; nil for none.
	SLA *v1alpha1.SLA `json:"sla,omitempty"`
	// SLABreachedAt is when the run breached its SLA; zero while it has not.
	SLABreachedAt time.Time `json:"slaBreachedAt,omitzero"`
	// Concurrency is the run's concurrency key as written (its own spec.concurrency, else its
	// Workflow template's), fixed when it starts; nil for none.
	Concurrency *v1alpha1.Concurrency `json:"concurrency,omitempty"`
	// Priority orders the run among those queued on its key (its own, else its template's).
	Priority int32 `json:"priority,omitempty"`
	// SlotKey is the value of the concurrency key, evaluated once when the run first asks
	// for a slot; empty before.
	SlotKey string `json:"slotKey,omitempty"`
	// Admitted is set once the run holds a slot of its key: its steps may start.
	Admitted bool `json:"admitted,omitempty"`
	// StepSlots are the keys (StepSlotPrefix and the value) of the slots the run's steps with
	// a concurrency key hold or wait in line for, by step name, until the step ends.
	StepSlots map[string]string `json:"stepSlots,omitempty"`
	// ChildRuns counts, on a root run (one no `workflow` step started), the child runs
	// started under it at every depth, against Limits.ChildRuns.
	ChildRuns int `json:"childRuns,omitempty"`
	// Version is the store's version of this record; Save succeeds only on the version it loaded.
	Version int64 `json:"-"`

	// pass is the operation last applied (suspend, resume of the whole run, terminate), which
	// Engine.Operate passes on to the run's child runs.
	pass *Operation
	// notes are the log lines of the operations applied since the run was last saved (who
	// suspended, resumed, terminated or restarted it), saved with it.
	notes []LogEntry
	// blobs are the values a store keeps as blobs, by where they are, as SpillVars last found
	// them.
	blobs map[Slot]spilled
}

// Loop is the engine's record of a looping step (forEach or matrix).
type Loop struct {
	// Items are the values iterated over, fixed when the step starts.
	Items []json.RawMessage `json:"items"`
	// Iterations are the iterations started so far, by index; the others have not started.
	Iterations []*Iteration `json:"iterations,omitempty"`
}

// Iteration is one iteration of a looping step. Its steps' bookkeeping is in Run.Steps under
// the name of the step and the index, as deploy[3].
type Iteration struct {
	// Item names the iteration's item for people (v1alpha1.IterationStatus.Item).
	Item string `json:"item,omitempty"`
	// Status is the iteration's status: the step's, or the step-group's.
	Status v1alpha1.StepStatus `json:"status"`
	// SubSteps are, for a step-group, the status of its sub-steps in this iteration.
	SubSteps []v1alpha1.StepStatus `json:"subSteps,omitempty"`
	// Outputs are the outputs of the iteration's steps, by variable name; the step's outputs
	// gather them, in order, when the loop ends.
	Outputs map[string]json.RawMessage `json:"outputs,omitempty"`
}

// Key returns the run's key.
func (r *Run) Key() Key {
	return Key{Namespace: r.Object.Namespace, Name: r.Object.Name}
}

// HasStep reports whether the run has a step or sub-step named name, in its steps (as
// resolved from its template, or written inline) or in its status; an iteration of a looping
// step ("each[1]") counts as its step.
func (r *Run) HasStep(name string) bool {
	if base, _, ok := strings.Cut(name, "["); ok && strings.HasSuffix(name, "]") {
		name = base
	}
	spec := r.Spec
	if spec == nil {
		spec = r.Object.Spec.WorkflowSpec
	}
	if spec != nil {
		for _, s := range spec.Steps {
			if s.Name == name || slices.ContainsFunc(s.SubSteps, func(sub v1alpha1.WorkflowStepBase) bool { return sub.Name == name }) {
				return true
			}
		}
	}
	for _, s := range r.Object.Status.Steps {
		if s.Name == name || slices.ContainsFunc(s.SubStepsStatus, func(sub v1alpha1.StepStatus) bool { return sub.Name == name }) {
			return true
		}
	}
	return false
}

// StepRecord is the engine's bookkeeping of one step across evaluations of an attempt.
type StepRecord struct {
	// Attempt counts executions from the start: restarts begin a new attempt.
	Attempt int `json:"attempt,omitempty"`
	// Tries counts the tries of this attempt: 1 for the process that started it, one more each
	// time another process (after a crash, or to drive a resume) evaluates the step again, and
	// one more for each retry after a provider error. A try is recorded before its first
	// evaluation begins, so that a side-effecting action runs at most once per recorded try:
	// the memo replays the ones whose results were recorded, but one whose try ended without
	// its result recorded (the process died, or the action failed without an answer, as on a
	// timeout) may run again in the next.
	Tries int `json:"tries,omitempty"`
	// Retries counts provider errors in this attempt.
	Retries int `json:"retries,omitempty"`
	// Waits counts evaluations that ended waiting, to space the next one.
	Waits int `json:"waits,omitempty"`
	// NextTime is when the step should be evaluated again; zero means now.
	NextTime time.Time `json:"nextTime,omitzero"`
	// Suspended is set while the step waits for a resume.
	Suspended bool `json:"suspended,omitempty"`
	// Resumed is set when a resume released the step and it has not been evaluated since.
	Resumed bool `json:"resumed,omitempty"`
	// Memo holds the results of side-effecting actions already run in this attempt, by action
	// path, in any of its tries.
	Memo map[string]json.RawMessage `json:"memo,omitempty"`
	// Outputs are the outputs of the evaluation that left the step waiting last; they become
	// run variables if the step times out, as KubeVela takes a timed-out step's outputs.
	Outputs map[string]json.RawMessage `json:"outputs,omitempty"`
}

// The severities of a log entry (LogEntry.Severity).
const (
	// SeverityInfo is an action that went as asked, or a line a definition logged.
	SeverityInfo = "info"
	// SeverityWarning is an action that ran but whose answer says something went wrong, such
	// as an HTTP status of 400 or more.
	SeverityWarning = "warning"
	// SeverityError is an action that failed.
	SeverityError = "error"
)

// LogEntry is one line of a step's log: an action the engine ran, or data a definition logged.
type LogEntry struct {
	Time time.Time `json:"time"`
	Step string    `json:"step"`
	// Severity is SeverityInfo, SeverityWarning or SeverityError; empty in lines logged
	// before it was recorded.
	Severity string `json:"severity,omitempty"`
	// Level is the verbosity a definition gave its line (KubeVela's op.#Log level).
	Level    int             `json:"level,omitempty"`
	Action   string          `json:"action,omitempty"`
	Duration time.Duration   `json:"duration,omitempty"`
	Outcome  string          `json:"outcome,omitempty"`
	Message  string          `json:"message,omitempty"`
	Data     json.RawMessage `json:"data,omitempty"`
}

// takeNotes returns the operations' log lines not saved yet and forgets them.
func (r *Run) takeNotes() []LogEntry {
	n := r.notes
	r.notes = nil
	return n
}
