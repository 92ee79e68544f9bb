// Package v1alpha1 holds the core.oam.dev/v1alpha1 kinds a user writes, WorkflowRun and Workflow,
// shaped field for field as KubeVela Workflow declares them so that its YAML is accepted unchanged,
// together with their validation.
//
// +kubebuilder:object:generate=true
// +groupName=core.oam.dev
package v1alpha1

import (
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Group is the API group of every stepflow kind, shared with KubeVela.
const Group = "core.oam.dev"

// SystemNamespace is KubeVela's own namespace: step types there are shared by every namespace,
// and cluster Secrets and configurations are kept there.
const SystemNamespace = "vela-system"

// GroupVersion is the group and version of the kinds in this package.
var GroupVersion = schema.GroupVersion{Group: Group, Version: "v1alpha1"}

// Kind names of this package.
const (
	KindWorkflowRun = "WorkflowRun"
	KindWorkflow    = "Workflow"
)

// WorkflowMode says how a list of steps runs.
type WorkflowMode string

// The modes a list of steps may run in.
const (
	// ModeStepByStep runs one step after another, in spec order.
	ModeStepByStep WorkflowMode = "StepByStep"
	// ModeDAG runs every step whose dependencies are finished, concurrently.
	ModeDAG WorkflowMode = "DAG"
	// ModeSwitch, on a step-group only, runs the first sub-step whose `if` holds and skips the
	// others; a sub-step without `if` is the default case. A stepflow extension.
	ModeSwitch WorkflowMode = "Switch"
)

// WorkflowRunPhase is the phase of a whole run, `status.status`.
type WorkflowRunPhase string

// The phases of a run, as KubeVela names them.
const (
	RunInitializing WorkflowRunPhase = "initializing"
	// RunQueued: the run waits for a slot of its concurrency key (Concurrency); its message
	// names the key and its place in line. A stepflow extension.
	RunQueued     WorkflowRunPhase = "queued"
	RunExecuting  WorkflowRunPhase = "executing"
	RunSuspending WorkflowRunPhase = "suspending"
	RunTerminated WorkflowRunPhase = "terminated"
	RunFailed     WorkflowRunPhase = "failed"
	RunSucceeded  WorkflowRunPhase = "succeeded"
)

// Finished reports whether a run in this phase will not move again without an operation.
func (p WorkflowRunPhase) Finished() bool {
	return p == RunTerminated || p == RunFailed || p == RunSucceeded
}

// WorkflowStepPhase is the phase of one step.
type WorkflowStepPhase string

// The phases of a step, as KubeVela names them.
const (
	StepPending    WorkflowStepPhase = "pending"
	StepRunning    WorkflowStepPhase = "running"
	StepSuspending WorkflowStepPhase = "suspending"
	StepSucceeded  WorkflowStepPhase = "succeeded"
	StepFailed     WorkflowStepPhase = "failed"
	StepSkipped    WorkflowStepPhase = "skipped"
)

// Finished reports whether a step in this phase is done for this run (until a restart).
func (p WorkflowStepPhase) Finished() bool {
	return p == StepSucceeded || p == StepFailed || p == StepSkipped
}

// Step reasons, kept as KubeVela spells them.
const (
	ReasonWait               = "Wait"
	ReasonSkip               = "Skip"
	ReasonRendering          = "Rendering"
	ReasonExecute            = "Execute"
	ReasonSuspend            = "Suspend"
	ReasonTerminate          = "Terminate"
	ReasonParameter          = "ProcessParameter"
	ReasonInput              = "Input"
	ReasonOutput             = "Output"
	ReasonFailedAfterRetries = "FailedAfterRetries"
	ReasonTimeout            = "Timeout"
	// ReasonSLABreached fails the steps under way when their run breaches an SLA with
	// onBreach: fail (a stepflow extension).
	ReasonSLABreached = "SLABreached"
	ReasonAction      = "Action"
	// ReasonCached is a succeeded step's reason when its result was taken from the step cache
	// (a stepflow extension): it did not run.
	ReasonCached = "Cached"
)

// LabelParentRun names, on a run a `workflow` step started, the run that started it (in the same
// namespace).
const LabelParentRun = "workflowrun.oam.dev/parent"

// AnnotationTemplateRevision is the annotation by which a run with a workflowRef asks for
// that revision of the template (a number, a past metadata.generation the store keeps) instead of the current one.
// A stepflow extension; the revision a run started from is in status.templateRevision.
const AnnotationTemplateRevision = "stepflow.dev/template-revision"

// WorkflowRun is one execution of a list of steps.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:shortName=wr,categories=oam
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="PHASE",type=string,JSONPath=`.status.status`
// +kubebuilder:printcolumn:name="AGE",type=date,JSONPath=".metadata.creationTimestamp"
type WorkflowRun struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   WorkflowRunSpec   `json:"spec,omitempty"`
	Status WorkflowRunStatus `json:"status,omitempty"`
}

// WorkflowRunList is a list of WorkflowRuns.
//
// +kubebuilder:object:root=true
type WorkflowRunList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []WorkflowRun `json:"items"`
}

// WorkflowRunSpec says what a run executes.
type WorkflowRunSpec struct {
	// Mode overrides the referenced Workflow's mode.
	Mode *WorkflowExecuteMode `json:"mode,omitempty"`
	// Context is merged into the CUE `context` of every step.
	// +kubebuilder:pruning:PreserveUnknownFields
	Context *runtime.RawExtension `json:"context,omitempty"`
	// WorkflowSpec holds the steps inline; it wins over WorkflowRef.
	WorkflowSpec *WorkflowSpec `json:"workflowSpec,omitempty"`
	// WorkflowRef names a Workflow in the run's namespace.
	WorkflowRef string `json:"workflowRef,omitempty"`
	// TTLSecondsAfterFinished is how long the run is kept once it has finished, as a
	// Kubernetes Job's: it is then deleted with its log. It wins over its Workflow's; when
	// neither has one, the operator's default applies (--retain). A stepflow extension.
	// +kubebuilder:validation:Minimum=0
	TTLSecondsAfterFinished *int32 `json:"ttlSecondsAfterFinished,omitempty"`
	// SLA is how long the run may take and what happens when it takes longer. It wins over its
	// Workflow's. A stepflow extension.
	SLA *SLA `json:"sla,omitempty"`
	// Concurrency bounds how many runs with the same key run at once. It wins over its
	// Workflow's. A stepflow extension.
	Concurrency *Concurrency `json:"concurrency,omitempty"`
	// Priority orders the runs queued on a concurrency key: higher starts first, first come
	// first served within a priority. It wins over its Workflow's. A stepflow extension.
	Priority *int32 `json:"priority,omitempty"`
}

// Concurrency bounds how many runs sharing a key run at once. A stepflow extension.
type Concurrency struct {
	// Key is a CUE expression over `context` (the run's name, namespace and spec.context)
	// and `parameter` (its spec.context) whose value names the key, such as
	// `"deploy-" + parameter.env`. Runs of a namespace with equal values share the key.
	Key string `json:"key"`
	// Limit is how many runs with the key may run at once, at least 1.
	// +kubebuilder:validation:Minimum=1
	Limit int32 `json:"limit"`
	// OnLimit is what happens to a run that finds the key at its limit: queue (the default:
	// it waits in phase queued, by priority, then first come first served), cancel-new (it
	// ends terminated without running a step) or cancel-running (the runs holding the key are
	// terminated, as GitHub Actions' cancel-in-progress does, and it takes a freed slot).
	// +kubebuilder:validation:Enum=queue;cancel-new;cancel-running
	OnLimit ConcurrencyAction `json:"onLimit,omitempty"`
}

// ConcurrencyAction is what a run does when its concurrency key is at its limit.
type ConcurrencyAction string

// The actions of Concurrency.OnLimit.
const (
	ConcurrencyQueue     ConcurrencyAction = "queue"
	ConcurrencyCancelNew ConcurrencyAction = "cancel-new"
	// ConcurrencyCancelRunning terminates the runs holding the key, and the run waits in line
	// for a slot they free.
	ConcurrencyCancelRunning ConcurrencyAction = "cancel-running"
)

// SLA is how long a run may take, counted from its start, and what happens when it takes
// longer (a breach). A stepflow extension.
type SLA struct {
	// MaxDuration is a Go duration such as 30m or 2h.
	MaxDuration string `json:"maxDuration"`
	// OnBreach is what the engine does at the breach: notify (the default: the run goes on),
	// fail (the steps under way fail with reason SLABreached, so the run fails) or terminate
	// (the run is terminated, as by the terminate operation).
	// +kubebuilder:validation:Enum=notify;fail;terminate
	OnBreach SLAAction `json:"onBreach,omitempty"`
	// Notify, when set, is sent at the breach whatever OnBreach says: the properties of a
	// `notification` step (slack, dingding, lark, email, webhook...). Required with notify.
	// +kubebuilder:pruning:PreserveUnknownFields
	Notify *runtime.RawExtension `json:"notify,omitempty"`
}

// SLAAction is what the engine does when a run breaches its SLA.
type SLAAction string

// The actions of SLA.OnBreach.
const (
	SLANotify    SLAAction = "notify"
	SLAFail      SLAAction = "fail"
	SLATerminate SLAAction = "terminate"
)

// WorkflowExecuteMode says how top-level steps and sub-steps run.
type WorkflowExecuteMode struct {
	// Steps is the mode of the top-level steps; StepByStep when empty.
	Steps WorkflowMode `json:"steps,omitempty"`
	// SubSteps is the mode of a group's sub-steps; DAG when empty.
	SubSteps WorkflowMode `json:"subSteps,omitempty"`
}

// WorkflowSpec is a list of steps.
type WorkflowSpec struct {
	Steps []WorkflowStep `json:"steps,omitempty"`
}

// WorkflowStep is a top-level step: a step that may hold sub-steps when it is a step-group.
type WorkflowStep struct {
	WorkflowStepBase `json:",inline"`
	// SubSteps are the steps of a step-group.
	SubSteps []WorkflowStepBase `json:"subSteps,omitempty"`
	// Mode is how a step-group's sub-steps run: StepByStep, DAG, or Switch.
	Mode WorkflowMode `json:"mode,omitempty"`
}

// WorkflowStepBase is what every step, top-level or sub-step, declares.
type WorkflowStepBase struct {
	// Name is unique within the run, across groups too.
	Name string `json:"name,omitempty"`
	// Type is the step type: a WorkflowStepDefinition's name.
	Type string `json:"type"`
	// Meta holds display information.
	Meta *WorkflowStepMeta `json:"meta,omitempty"`
	// Properties fill the definition's parameter.
	// +kubebuilder:pruning:PreserveUnknownFields
	Properties *runtime.RawExtension `json:"properties,omitempty"`
	// DependsOn names the steps this one waits for.
	DependsOn []string `json:"dependsOn,omitempty"`
	// Inputs fill parameters from run variables.
	Inputs StepInputs `json:"inputs,omitempty"`
	// Outputs store values of the evaluated step as run variables.
	Outputs StepOutputs `json:"outputs,omitempty"`
	// If is a CUE boolean expression, or "always".
	If string `json:"if,omitempty"`
	// Timeout is a Go duration counted from the step's first execution.
	Timeout string `json:"timeout,omitempty"`

	// ForEach runs the step (or the step-group) once per item of a list. A stepflow extension.
	ForEach *ForEach `json:"forEach,omitempty"`
	// Matrix runs the step once per combination of its named lists, each iteration seeing
	// item.<name>; forEach may set its parallelism and failFast. A stepflow extension.
	// +kubebuilder:pruning:PreserveUnknownFields
	Matrix *runtime.RawExtension `json:"matrix,omitempty"`
	// Retry overrides the engine's retry policy for this step's provider errors. A stepflow
	// extension.
	Retry *StepRetry `json:"retry,omitempty"`
	// Cache reuses the result of an earlier success of a step of the same type whose key was
	// the same, younger than MaxAge, instead of evaluating the step. A stepflow extension.
	Cache *StepCache `json:"cache,omitempty"`
	// Concurrency is a semaphore across all runs for this step: at most Limit steps whose
	// key has the same value run at once in a namespace (a mutex when Limit is 1). A
	// stepflow extension.
	Concurrency *StepConcurrency `json:"concurrency,omitempty"`
}

// StepConcurrency is a step's semaphore: before its first evaluation the step takes a slot of
// its key, waiting pending (its message names the key and its place in line) while none is
// free, and gives it up when it ends, or when its run ends whichever way.
type StepConcurrency struct {
	// Key is a CUE expression over parameter, inputs and context (as a cache key is), whose
	// value names the semaphore, such as `"db-" + context.env`. Steps of a namespace, in any
	// run, whose keys have equal values share it.
	Key string `json:"key"`
	// Limit is how many steps with the key may run at once, at least 1.
	// +kubebuilder:validation:Minimum=1
	Limit int32 `json:"limit"`
}

// StepCache is a step's cache: the step's result is kept under its key, and a later step of
// the same type and key in the same namespace takes the result instead of running.
type StepCache struct {
	// Key is a CUE expression over parameter, inputs and context whose value (any concrete
	// value) names the result: steps whose keys are equal share it.
	Key string `json:"key"`
	// MaxAge is a Go duration: a result older than it is not taken (the step runs again and
	// its result replaces it).
	MaxAge string `json:"maxAge"`
}

// ForEach says what a step iterates over and how: the list is written inline (Items) or read
// from a run variable (From); with a Matrix, neither is set.
type ForEach struct {
	// Items is the list iterated over, as written.
	// +kubebuilder:pruning:PreserveUnknownFields
	// +kubebuilder:validation:Schemaless
	Items *runtime.RawExtension `json:"items,omitempty"`
	// From names the run variable holding the list iterated over.
	From string `json:"from,omitempty"`
	// Parallelism is how many iterations run at once; 1 (in order) when zero.
	Parallelism int32 `json:"parallelism,omitempty"`
	// FailFast, true when unset, stops starting iterations after one failed; false runs them
	// all and then fails the step.
	FailFast *bool `json:"failFast,omitempty"`
}

// StepRetry is a step's own retry policy for provider errors.
type StepRetry struct {
	// Limit is how many errors an attempt survives; the engine's when unset.
	Limit *int32 `json:"limit,omitempty"`
	// Backoff spaces the retries; fields left empty take the engine's values.
	Backoff *StepBackoff `json:"backoff,omitempty"`
}

// StepBackoff spaces retries: Initial, then multiplied by Factor each time, at most Max.
type StepBackoff struct {
	// Initial is a Go duration such as 1s.
	Initial string `json:"initial,omitempty"`
	// Factor multiplies the delay after each retry; at least 1.
	Factor *resource.Quantity `json:"factor,omitempty"`
	// Max is a Go duration such as 1m.
	Max string `json:"max,omitempty"`
}

// WorkflowStepMeta is display information about a step.
type WorkflowStepMeta struct {
	Alias string `json:"alias,omitempty"`
}

// StepInputs are the inputs of a step.
type StepInputs []InputItem

// InputItem fills parameter.<ParameterKey> from the run variable From.
type InputItem struct {
	ParameterKey string `json:"parameterKey,omitempty"`
	From         string `json:"from"`
}

// StepOutputs are the outputs of a step.
type StepOutputs []OutputItem

// OutputItem stores the CUE expression ValueFrom, evaluated over the step, as run variable Name.
type OutputItem struct {
	ValueFrom string `json:"valueFrom"`
	Name      string `json:"name"`
}

// WorkflowRunStatus is where a run is, shaped as KubeVela writes it.
type WorkflowRunStatus struct {
	// Mode is the effective mode of the run.
	Mode WorkflowExecuteMode `json:"mode"`
	// Phase is the run phase, written as `status`.
	Phase WorkflowRunPhase `json:"status"`
	// Message says why the run is in its phase.
	Message string `json:"message,omitempty"`

	Suspend      bool   `json:"suspend"`
	SuspendState string `json:"suspendState,omitempty"`
	Terminated   bool   `json:"terminated"`
	Finished     bool   `json:"finished"`

	// ContextBackend refers to where the run variables are kept.
	ContextBackend *ObjectReference `json:"contextBackend,omitempty"`
	// Steps are the steps' status, in spec order.
	Steps []WorkflowStepStatus `json:"steps,omitempty"`

	StartTime metav1.Time `json:"startTime,omitempty"`
	EndTime   metav1.Time `json:"endTime,omitempty"`

	// TemplateRevision is the revision (metadata.generation) of the Workflow template named by
	// workflowRef that the run started from; 0 for inline steps. A stepflow extension.
	// +optional
	TemplateRevision int64 `json:"templateRevision,omitempty"`

	// Engine is stepflow's own bookkeeping of the run (attempts, retries, pending waits), kept
	// in the status in Kubernetes mode so that a restarted controller resumes exactly where the
	// run was. Other tools ignore it; the other stores leave it empty.
	// +kubebuilder:pruning:PreserveUnknownFields
	// +kubebuilder:validation:Schemaless
	// +kubebuilder:validation:Type=object
	// +optional
	Engine *runtime.RawExtension `json:"stepflow,omitempty"`
}

// ObjectReference points at an object; the fields KubeVela fills in contextBackend.
type ObjectReference struct {
	Kind       string `json:"kind,omitempty"`
	Namespace  string `json:"namespace,omitempty"`
	Name       string `json:"name,omitempty"`
	UID        string `json:"uid,omitempty"`
	APIVersion string `json:"apiVersion,omitempty"`
}

// WorkflowStepStatus is the status of a top-level step, with its sub-steps' status.
type WorkflowStepStatus struct {
	StepStatus     `json:",inline"`
	SubStepsStatus []StepStatus `json:"subSteps,omitempty"`
}

// StepStatus is the status of one step.
type StepStatus struct {
	ID      string            `json:"id"`
	Name    string            `json:"name,omitempty"`
	Type    string            `json:"type,omitempty"`
	Phase   WorkflowStepPhase `json:"phase,omitempty"`
	Message string            `json:"message,omitempty"`
	Reason  string            `json:"reason,omitempty"`

	FirstExecuteTime metav1.Time `json:"firstExecuteTime,omitempty"`
	LastExecuteTime  metav1.Time `json:"lastExecuteTime,omitempty"`

	// ChildRun names the run a `workflow` step started, in the run's namespace. A stepflow
	// extension.
	ChildRun string `json:"childRun,omitempty"`
	// Iterations summarizes the iterations of a forEach or matrix step. A stepflow extension.
	Iterations *IterationsStatus `json:"iterations,omitempty"`
}

// IterationsStatus summarizes a looping step's iterations: counts by phase, and the entries of
// the failed iterations and of the most recent ones, a bounded number of them so that the status
// stays small whatever the number of iterations. The engine's own record keeps every iteration.
type IterationsStatus struct {
	// Total is the number of items iterated over.
	Total int `json:"total"`
	// Running counts the iterations started and not finished (suspending ones too); the
	// iterations not counted by a phase have not started.
	Running   int `json:"running,omitempty"`
	Succeeded int `json:"succeeded,omitempty"`
	Failed    int `json:"failed,omitempty"`
	Skipped   int `json:"skipped,omitempty"`
	// Entries are the kept iterations, by index.
	Entries []IterationStatus `json:"entries,omitempty"`
}

// IterationStatus is the status of one iteration, with its sub-steps' for a step-group.
type IterationStatus struct {
	// Index is the iteration's position in the list, from 0.
	Index int `json:"index"`
	// Item names the iteration's item for people: a string or number as it is, an object by
	// its name field or its fields (region=us-east-1), cut short.
	Item                string `json:"item,omitempty"`
	IterationStepStatus `json:",inline"`
	SubSteps            []IterationStepStatus `json:"subSteps,omitempty"`
}

// IterationStepStatus is the status of a step in one iteration; Name is the step's name and the
// index, as deploy[3].
type IterationStepStatus struct {
	ID      string            `json:"id,omitempty"`
	Name    string            `json:"name"`
	Phase   WorkflowStepPhase `json:"phase,omitempty"`
	Message string            `json:"message,omitempty"`
	Reason  string            `json:"reason,omitempty"`

	FirstExecuteTime metav1.Time `json:"firstExecuteTime,omitempty"`
	LastExecuteTime  metav1.Time `json:"lastExecuteTime,omitempty"`
	ChildRun         string      `json:"childRun,omitempty"`
}

// Workflow is a reusable list of steps; its mode and steps sit at the top level.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:shortName=wf,categories=oam
type Workflow struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Mode *WorkflowExecuteMode `json:"mode,omitempty"`
	// Parameters are the values a run of this template takes in its spec.context, with their
	// types and defaults, checked when the run is created. A stepflow extension.
	Parameters []Parameter `json:"parameters,omitempty"`
	// TTLSecondsAfterFinished is how long the runs of this template are kept once they have
	// finished, unless a run has its own. A stepflow extension.
	// +kubebuilder:validation:Minimum=0
	TTLSecondsAfterFinished *int32 `json:"ttlSecondsAfterFinished,omitempty"`
	// SLA is how long the runs of this template may take, unless a run has its own. A
	// stepflow extension.
	SLA *SLA `json:"sla,omitempty"`
	// Concurrency bounds how many runs of this template with the same key run at once,
	// unless a run has its own. A stepflow extension.
	Concurrency *Concurrency `json:"concurrency,omitempty"`
	// Priority orders this template's runs queued on a concurrency key, unless a run has its
	// own. A stepflow extension.
	Priority     *int32 `json:"priority,omitempty"`
	WorkflowSpec `json:",inline"`
}

// Parameter is one value a Workflow template takes from the runs made of it, as a key of
// their spec.context. A stepflow extension.
type Parameter struct {
	// Name is the context key.
	Name string `json:"name"`
	// Type is one of string, number, integer, boolean, object and array; default string.
	// +kubebuilder:validation:Enum=string;number;integer;boolean;object;array
	Type ParameterType `json:"type,omitempty"`
	// Required parameters must be given; the others take their default, if they have one.
	Required bool `json:"required,omitempty"`
	// Default is the value of a parameter a run does not give.
	// +kubebuilder:pruning:PreserveUnknownFields
	// +kubebuilder:validation:Schemaless
	Default *runtime.RawExtension `json:"default,omitempty"`
	// Enum, when set, lists the values allowed.
	// +kubebuilder:pruning:PreserveUnknownFields
	// +kubebuilder:validation:Schemaless
	Enum []runtime.RawExtension `json:"enum,omitempty"`
	// Description says what the parameter is for, for forms and docs.
	Description string `json:"description,omitempty"`
	// Sensitive marks the parameter's value as a secret: stepflow redacts it in the status,
	// the logs, the API's answers and the dashboard. The run's context keeps it for the steps.
	Sensitive bool `json:"sensitive,omitempty"`
}

// ParameterType is the JSON type of a template parameter.
type ParameterType string

// The parameter types.
const (
	ParamString  ParameterType = "string"
	ParamNumber  ParameterType = "number"
	ParamInteger ParameterType = "integer"
	ParamBoolean ParameterType = "boolean"
	ParamObject  ParameterType = "object"
	ParamArray   ParameterType = "array"
)

// WorkflowList is a list of Workflows.
//
// +kubebuilder:object:root=true
type WorkflowList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Workflow `json:"items"`
}
