// Package v1beta1 holds the core.oam.dev/v1beta1 kinds, shaped as KubeVela declares them so that
// published files load unchanged: WorkflowStepDefinition (a step type written in CUE), the
// application delivery model (Application; its X-Definitions ComponentDefinition,
// TraitDefinition and PolicyDefinition), and what delivering one records (ApplicationRevision,
// ResourceTracker).
//
// +kubebuilder:object:generate=true
// +groupName=core.oam.dev
package v1beta1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// GroupVersion is the group and version of the kinds in this package.
var GroupVersion = schema.GroupVersion{Group: "core.oam.dev", Version: "v1beta1"}

// KindWorkflowStepDefinition is the kind name of a step type.
const KindWorkflowStepDefinition = "WorkflowStepDefinition"

// AnnotationDescription is the annotation holding a definition's one-line description.
const AnnotationDescription = "definition.oam.dev/description"

// WorkflowStepDefinition declares a step type: its CUE template's `parameter` is its signature and
// its body calls actions.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:shortName=workflowstep,categories=oam
// +kubebuilder:subresource:status
type WorkflowStepDefinition struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec WorkflowStepDefinitionSpec `json:"spec,omitempty"`
	// Status is accepted as written (for objects exported from a cluster) and not interpreted.
	// +kubebuilder:pruning:PreserveUnknownFields
	Status *runtime.RawExtension `json:"status,omitempty"`
}

// WorkflowStepDefinitionList is a list of WorkflowStepDefinitions.
//
// +kubebuilder:object:root=true
type WorkflowStepDefinitionList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []WorkflowStepDefinition `json:"items"`
}

// WorkflowStepDefinitionSpec holds the definition's template.
type WorkflowStepDefinitionSpec struct {
	// Reference names a Kubernetes resource definition; kept for compatibility, unused by stepflow.
	Reference DefinitionReference `json:"definitionRef,omitempty"`
	// Schematic holds the CUE template.
	Schematic *Schematic `json:"schematic,omitempty"`
	// Version is the definition's version, informational.
	Version string `json:"version,omitempty"`
}

// DefinitionReference names a resource definition.
type DefinitionReference struct {
	Name    string `json:"name"`
	Version string `json:"version,omitempty"`
}

// Schematic is how a definition is written; stepflow runs CUE.
type Schematic struct {
	CUE *CUE `json:"cue,omitempty"`
}

// CUE holds a CUE template.
type CUE struct {
	// Template is the CUE source: imports, `parameter` and the fields that call actions.
	Template string `json:"template"`
}
