package v1beta1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/stepflow/stepflow/api/v1alpha1"
)

// ApplicationRevision is a snapshot of an Application's spec and of the definitions it was
// rendered with, so that a revision renders the same later and can be rolled back to.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:shortName=apprev,categories=oam
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="PUBLISH_VERSION",type=string,JSONPath=`.metadata.annotations.app\.oam\.dev/publishVersion`
// +kubebuilder:printcolumn:name="SUCCEEDED",type=string,JSONPath=`.status.succeeded`
// +kubebuilder:printcolumn:name="AGE",type=date,JSONPath=`.metadata.creationTimestamp`
type ApplicationRevision struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   ApplicationRevisionSpec   `json:"spec,omitempty"`
	Status ApplicationRevisionStatus `json:"status,omitempty"`
}

// ApplicationRevisionList is a list of ApplicationRevisions.
//
// +kubebuilder:object:root=true
type ApplicationRevisionList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ApplicationRevision `json:"items"`
}

// ApplicationRevisionSpec holds the Application as it was and the definitions it used, by name.
type ApplicationRevisionSpec struct {
	// Application is the Application's spec and metadata at this revision.
	// +kubebuilder:pruning:PreserveUnknownFields
	// +kubebuilder:validation:Schemaless
	Application Application `json:"application"`
	// ComponentDefinitions, TraitDefinitions, PolicyDefinitions and WorkflowStepDefinitions
	// are the definitions the Application used, by name.
	// +kubebuilder:pruning:PreserveUnknownFields
	// +kubebuilder:validation:Schemaless
	ComponentDefinitions map[string]*ComponentDefinition `json:"componentDefinitions,omitempty"`
	// +kubebuilder:pruning:PreserveUnknownFields
	// +kubebuilder:validation:Schemaless
	TraitDefinitions map[string]*TraitDefinition `json:"traitDefinitions,omitempty"`
	// +kubebuilder:pruning:PreserveUnknownFields
	// +kubebuilder:validation:Schemaless
	PolicyDefinitions map[string]*PolicyDefinition `json:"policyDefinitions,omitempty"`
	// +kubebuilder:pruning:PreserveUnknownFields
	// +kubebuilder:validation:Schemaless
	WorkflowStepDefinitions map[string]*WorkflowStepDefinition `json:"workflowStepDefinitions,omitempty"`
	// Workflow is the Workflow template the Application referred to, when it did.
	// +kubebuilder:pruning:PreserveUnknownFields
	// +kubebuilder:validation:Schemaless
	Workflow *v1alpha1.Workflow `json:"workflow,omitempty"`
	// ReferredObjects are objects the components took as they were (ref-objects).
	// +kubebuilder:pruning:PreserveUnknownFields
	ReferredObjects []runtime.RawExtension `json:"referredObjects,omitempty"`
}

// ApplicationRevisionStatus records how delivering the revision went.
type ApplicationRevisionStatus struct {
	// Succeeded is set once the revision's workflow succeeded.
	Succeeded bool `json:"succeeded"`
	// Workflow is the state its workflow ended in.
	Workflow *WorkflowStatus `json:"workflow,omitempty"`
}

// ResourceTrackerType says what a ResourceTracker tracks.
type ResourceTrackerType string

// The types of ResourceTracker, as KubeVela names them.
const (
	// ResourceTrackerRoot tracks the objects kept for the Application's whole life.
	ResourceTrackerRoot ResourceTrackerType = "root"
	// ResourceTrackerVersioned tracks the objects one revision applied.
	ResourceTrackerVersioned ResourceTrackerType = "versioned"
	// ResourceTrackerComponentRevision tracks the components' revisions.
	ResourceTrackerComponentRevision ResourceTrackerType = "component-revision"
)

// ResourceTracker records the objects an Application applied, in every cluster, so that those a
// later revision no longer renders, and all of them when the Application is deleted, are
// removed. It is cluster-scoped, as KubeVela's.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,shortName=rt,categories=oam
// +kubebuilder:printcolumn:name="TYPE",type=string,JSONPath=`.spec.type`
// +kubebuilder:printcolumn:name="APP",type=string,JSONPath=`.metadata.labels['app\.oam\.dev/name']`
// +kubebuilder:printcolumn:name="APP-NS",type=string,JSONPath=`.metadata.labels['app\.oam\.dev/namespace']`
type ResourceTracker struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec ResourceTrackerSpec `json:"spec,omitempty"`
}

// ResourceTrackerList is a list of ResourceTrackers.
//
// +kubebuilder:object:root=true
type ResourceTrackerList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ResourceTracker `json:"items"`
}

// ResourceTrackerSpec lists the tracked objects.
type ResourceTrackerSpec struct {
	Type ResourceTrackerType `json:"type,omitempty"`
	// ApplicationGeneration is the Application's generation the tracker was last written for.
	ApplicationGeneration int64             `json:"applicationGeneration"`
	ManagedResources      []ManagedResource `json:"managedResources,omitempty"`
}

// ManagedResource is one object an Application applied.
type ManagedResource struct {
	ClusterObjectReference `json:",inline"`
	// Component and Trait say what rendered the object; Env is kept for compatibility.
	Component string `json:"component,omitempty"`
	Trait     string `json:"trait,omitempty"`
	Env       string `json:"env,omitempty"`
	// Data is the object as applied, when the tracker keeps it.
	// +kubebuilder:pruning:PreserveUnknownFields
	Data *runtime.RawExtension `json:"raw,omitempty"`
	// Deleted is set once the object was deleted.
	Deleted bool `json:"deleted,omitempty"`
	// SkipGC keeps the object when the Application no longer renders it.
	SkipGC bool `json:"skipGC,omitempty"`
}
