package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// KindWorkflowEventTrigger is the kind name of WorkflowEventTrigger.
const KindWorkflowEventTrigger = "WorkflowEventTrigger"

// LabelEventTrigger names, on a WorkflowRun, the WorkflowEventTrigger that started it.
const LabelEventTrigger = "stepflow.dev/event-trigger"

// WorkflowEventTrigger starts a WorkflowRun for each CloudEvent POSTed to the controller's
// events listener at /events/{namespace}/{name} that its filter selects, as stepflow server's
// cloudevents trigger does. A stepflow extension (KubeVela has none).
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:shortName=wfet,categories=oam
// +kubebuilder:printcolumn:name="FILTER",type=string,JSONPath=`.spec.filter`
// +kubebuilder:printcolumn:name="AGE",type=date,JSONPath=".metadata.creationTimestamp"
type WorkflowEventTrigger struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec WorkflowEventTriggerSpec `json:"spec,omitempty"`
}

// WorkflowEventTriggerList is a list of WorkflowEventTriggers.
//
// +kubebuilder:object:root=true
type WorkflowEventTriggerList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []WorkflowEventTrigger `json:"items"`
}

// WorkflowEventTriggerSpec says which events start runs, who may send them, and what the runs
// run.
type WorkflowEventTriggerSpec struct {
	// Filter is a CUE expression over context.event (the event's attributes, extensions and
	// data) that must be true for the event to start a run; empty selects every event.
	Filter string `json:"filter,omitempty"`
	// SecretRef names the Secret, in the trigger's namespace, and its key whose value senders
	// give as a bearer token. Without it every event is refused (401).
	SecretRef *SecretKeySelector `json:"secretRef,omitempty"`
	// RunTemplate is the WorkflowRun each selected event creates; its spec.context gets event.
	RunTemplate WorkflowRunTemplate `json:"runTemplate"`
}

// SecretKeySelector names a key of a Secret in the same namespace.
type SecretKeySelector struct {
	// Name is the Secret's name.
	// +kubebuilder:validation:MinLength=1
	Name string `json:"name"`
	// Key is the key of the Secret's data that holds the value.
	// +kubebuilder:validation:MinLength=1
	Key string `json:"key"`
}
