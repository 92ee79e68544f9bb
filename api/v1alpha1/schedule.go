package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// KindWorkflowSchedule is the kind name of WorkflowSchedule.
const KindWorkflowSchedule = "WorkflowSchedule"

// LabelSchedule names, on a WorkflowRun, the WorkflowSchedule that started it.
const LabelSchedule = "stepflow.dev/schedule"

// The concurrency policies of a WorkflowSchedule, as a CronJob's.
const (
	ConcurrencyAllow   = "Allow"
	ConcurrencyForbid  = "Forbid"
	ConcurrencyReplace = "Replace"
)

// ConditionScheduled is the condition type of a WorkflowSchedule: True while its spec is
// valid and it fires; False with reason InvalidSpec (its message names the field) otherwise.
const ConditionScheduled = "Scheduled"

// WorkflowSchedule starts a WorkflowRun at each time its cron schedules come round, as a
// Kubernetes CronJob starts Jobs. A stepflow extension (KubeVela has none).
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:shortName=wfs,categories=oam
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="SCHEDULES",type=string,JSONPath=`.spec.schedules`
// +kubebuilder:printcolumn:name="SUSPEND",type=boolean,JSONPath=`.spec.suspend`
// +kubebuilder:printcolumn:name="LAST SCHEDULE",type=date,JSONPath=`.status.lastScheduleTime`
// +kubebuilder:printcolumn:name="NEXT",type=string,JSONPath=`.status.nextScheduleTime`
// +kubebuilder:printcolumn:name="AGE",type=date,JSONPath=".metadata.creationTimestamp"
type WorkflowSchedule struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   WorkflowScheduleSpec   `json:"spec,omitempty"`
	Status WorkflowScheduleStatus `json:"status,omitempty"`
}

// WorkflowScheduleList is a list of WorkflowSchedules.
//
// +kubebuilder:object:root=true
type WorkflowScheduleList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []WorkflowSchedule `json:"items"`
}

// WorkflowScheduleSpec says when runs start and what they run.
type WorkflowScheduleSpec struct {
	// Schedules are cron expressions (five fields, or @hourly, @every 10m and the like); a
	// run starts whenever one of them comes round.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=20
	Schedules []string `json:"schedules"`
	// TimeZone is the IANA time zone the schedules are read in; UTC when empty.
	TimeZone string `json:"timeZone,omitempty"`
	// ConcurrencyPolicy says what a firing does while a run of the schedule has not finished:
	// Allow starts another, Forbid skips the firing, Replace terminates the runs not finished
	// and starts the new one. Default Allow.
	// +kubebuilder:validation:Enum=Allow;Forbid;Replace
	ConcurrencyPolicy string `json:"concurrencyPolicy,omitempty"`
	// StartingDeadlineSeconds, when set, is how late a firing missed (the controller was not
	// running, or the schedule was suspended) may still start its run; only the latest missed
	// firing starts. Unset, the latest missed firing always starts.
	// +kubebuilder:validation:Minimum=0
	StartingDeadlineSeconds *int64 `json:"startingDeadlineSeconds,omitempty"`
	// Suspend stops the firings until it is false again.
	Suspend bool `json:"suspend,omitempty"`
	// RunTemplate is the WorkflowRun each firing creates; its spec.context gets scheduledTime.
	RunTemplate WorkflowRunTemplate `json:"runTemplate"`
	// Backfills ask for the runs of past firings, each interval once: the runs of the times in
	// [from, to] the schedules came round (at most 100 per interval), named as the firings'
	// own runs, so that a firing never runs twice. Done intervals are listed in the status.
	// +kubebuilder:validation:MaxItems=20
	Backfills []ScheduleBackfill `json:"backfills,omitempty"`
}

// WorkflowRunTemplate is the labels, annotations and spec of the runs a schedule creates.
type WorkflowRunTemplate struct {
	Metadata RunTemplateMetadata `json:"metadata,omitempty"`
	Spec     WorkflowRunSpec     `json:"spec"`
}

// RunTemplateMetadata is the metadata a schedule gives its runs.
type RunTemplateMetadata struct {
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// ScheduleBackfill is an interval of past firings to run.
type ScheduleBackfill struct {
	From metav1.Time `json:"from"`
	To   metav1.Time `json:"to"`
}

// WorkflowScheduleStatus is what the schedule did.
type WorkflowScheduleStatus struct {
	// ObservedGeneration is the spec generation this status is of.
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// LastScheduleTime is the last firing acted on (a run started, or the firing skipped);
	// the catch-up after downtime counts missed firings from it.
	LastScheduleTime *metav1.Time `json:"lastScheduleTime,omitempty"`
	// LastRun is the run of the last firing that started one.
	LastRun string `json:"lastRun,omitempty"`
	// LastSkipped says why the last firing started no run, when it started none.
	LastSkipped string `json:"lastSkipped,omitempty"`
	// NextScheduleTime is when the schedules come round next (unset while suspended).
	NextScheduleTime *metav1.Time `json:"nextScheduleTime,omitempty"`
	// Active are the schedule's runs that have not finished.
	Active []string `json:"active,omitempty"`
	// Backfills are the intervals of spec.backfills done, with the runs each started.
	Backfills []ScheduleBackfillStatus `json:"backfills,omitempty"`
	// Conditions: Scheduled (see ConditionScheduled).
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// ScheduleBackfillStatus is a backfill done.
type ScheduleBackfillStatus struct {
	From metav1.Time `json:"from"`
	To   metav1.Time `json:"to"`
	// Runs is how many firings the interval held; Created how many of their runs this
	// backfill created (the others existed).
	Runs    int `json:"runs"`
	Created int `json:"created"`
	// Error says why the interval was refused (too many firings, to after now); no run was
	// created then.
	Error string `json:"error,omitempty"`
}
