package v1beta1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// WorkloadGVK is the apiVersion and kind of a workload.
type WorkloadGVK struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
}

// WorkloadTypeDescriptor says what a component's workload is: a kind or a type name.
type WorkloadTypeDescriptor struct {
	// Type names a WorkloadDefinition (autodetects.core.oam.dev when the kind varies).
	Type string `json:"type,omitempty"`
	// Definition is the workload's apiVersion and kind.
	Definition WorkloadGVK `json:"definition,omitempty"`
}

// Status says how a definition's objects are judged: HealthPolicy is CUE setting `isHealth`,
// CustomStatus CUE setting `message`, both evaluated with `context.output` and
// `context.outputs` holding the live objects and `parameter` the properties.
type Status struct {
	CustomStatus string `json:"customStatus,omitempty"`
	HealthPolicy string `json:"healthPolicy,omitempty"`
	// Details is CUE whose fields are shown as the status's details; kept for compatibility.
	Details string `json:"details,omitempty"`
}

// ChildResourceKind is a kind of object a workload creates; kept for compatibility.
type ChildResourceKind struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Selector   map[string]string `json:"selector,omitempty"`
}

// DefinitionStatus is a definition's observed state, accepted as written.
type DefinitionStatus struct {
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// ConfigMapRef names the ConfigMap holding the definition's schema.
	ConfigMapRef string `json:"configMapRef,omitempty"`
	// LatestRevision names the definition's latest DefinitionRevision.
	LatestRevision *Revision `json:"latestRevision,omitempty"`
}

// ComponentDefinition declares a component type: a CUE template whose `output` is the workload
// and whose `outputs` are objects beside it, with a health policy.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:shortName=comp,categories=oam
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="WORKLOAD-KIND",type=string,JSONPath=`.spec.workload.definition.kind`
// +kubebuilder:printcolumn:name="DESCRIPTION",type=string,JSONPath=`.metadata.annotations.definition\.oam\.dev/description`
type ComponentDefinition struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   ComponentDefinitionSpec `json:"spec,omitempty"`
	Status DefinitionStatus        `json:"status,omitempty"`
}

// ComponentDefinitionList is a list of ComponentDefinitions.
//
// +kubebuilder:object:root=true
type ComponentDefinitionList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ComponentDefinition `json:"items"`
}

// ComponentDefinitionSpec is what a ComponentDefinition declares.
type ComponentDefinitionSpec struct {
	// Workload is the kind of the component's workload.
	Workload WorkloadTypeDescriptor `json:"workload"`
	// ChildResourceKinds are the kinds the workload creates; kept for compatibility.
	ChildResourceKinds []ChildResourceKind `json:"childResourceKinds,omitempty"`
	// RevisionLabel and PodSpecPath are kept for compatibility.
	RevisionLabel string `json:"revisionLabel,omitempty"`
	PodSpecPath   string `json:"podSpecPath,omitempty"`
	// Status holds the health policy and the custom status.
	Status *Status `json:"status,omitempty"`
	// Schematic holds the CUE template.
	Schematic *Schematic `json:"schematic,omitempty"`
	// Extension is free-form data for tools; not interpreted.
	// +kubebuilder:pruning:PreserveUnknownFields
	Extension *runtime.RawExtension `json:"extension,omitempty"`
	// Version is the definition's version, informational.
	Version string `json:"version,omitempty"`
}

// TraitDefinition declares a trait type: a CUE template whose `patch` changes the workload and
// whose `outputs` are objects added beside it.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:shortName=trait,categories=oam
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="APPLIES-TO",type=string,JSONPath=`.spec.appliesToWorkloads`
// +kubebuilder:printcolumn:name="DESCRIPTION",type=string,JSONPath=`.metadata.annotations.definition\.oam\.dev/description`
type TraitDefinition struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   TraitDefinitionSpec `json:"spec,omitempty"`
	Status DefinitionStatus    `json:"status,omitempty"`
}

// TraitDefinitionList is a list of TraitDefinitions.
//
// +kubebuilder:object:root=true
type TraitDefinitionList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []TraitDefinition `json:"items"`
}

// TraitDefinitionSpec is what a TraitDefinition declares.
type TraitDefinitionSpec struct {
	// Reference names a Kubernetes resource definition; kept for compatibility.
	Reference DefinitionReference `json:"definitionRef,omitempty"`
	// RevisionEnabled, WorkloadRefPath, ManageWorkload and ControlPlaneOnly are kept for
	// compatibility.
	RevisionEnabled bool   `json:"revisionEnabled,omitempty"`
	WorkloadRefPath string `json:"workloadRefPath,omitempty"`
	// PodDisruptive says whether changing the trait restarts the workload's pods.
	PodDisruptive bool `json:"podDisruptive,omitempty"`
	// AppliesToWorkloads lists the workload kinds or component types the trait fits; empty or
	// "*" means any.
	AppliesToWorkloads []string `json:"appliesToWorkloads,omitempty"`
	// ConflictsWith lists traits that cannot be on the same component.
	ConflictsWith []string `json:"conflictsWith,omitempty"`
	// Schematic holds the CUE template.
	Schematic *Schematic `json:"schematic,omitempty"`
	// Status holds the health policy and the custom status.
	Status *Status `json:"status,omitempty"`
	// Extension is free-form data for tools; not interpreted.
	// +kubebuilder:pruning:PreserveUnknownFields
	Extension        *runtime.RawExtension `json:"extension,omitempty"`
	ManageWorkload   bool                  `json:"manageWorkload,omitempty"`
	ControlPlaneOnly bool                  `json:"controlPlaneOnly,omitempty"`
	// Stage is when the trait is applied: PreDispatch, DefaultDispatch or PostDispatch.
	Stage string `json:"stage,omitempty"`
	// Version is the definition's version, informational.
	Version string `json:"version,omitempty"`
}

// PolicyDefinition declares a policy type: a CUE template whose `parameter` is what a policy
// of the type may say.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:shortName=def-policy,categories=oam
// +kubebuilder:subresource:status
type PolicyDefinition struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   PolicyDefinitionSpec `json:"spec,omitempty"`
	Status DefinitionStatus     `json:"status,omitempty"`
}

// PolicyDefinitionList is a list of PolicyDefinitions.
//
// +kubebuilder:object:root=true
type PolicyDefinitionList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []PolicyDefinition `json:"items"`
}

// PolicyDefinitionSpec is what a PolicyDefinition declares.
type PolicyDefinitionSpec struct {
	// Reference names a Kubernetes resource definition; kept for compatibility.
	Reference DefinitionReference `json:"definitionRef,omitempty"`
	// Schematic holds the CUE template.
	Schematic *Schematic `json:"schematic,omitempty"`
	// ManageHealthCheck says the policy judges health itself; kept for compatibility.
	ManageHealthCheck bool `json:"manageHealthCheck,omitempty"`
	// Version is the definition's version, informational.
	Version string `json:"version,omitempty"`
}
