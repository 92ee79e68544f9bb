package v1beta1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/stepflow/stepflow/api/v1alpha1"
)

// Kind names of the application delivery model.
const (
	KindApplication         = "Application"
	KindComponentDefinition = "ComponentDefinition"
	KindTraitDefinition     = "TraitDefinition"
	KindPolicyDefinition    = "PolicyDefinition"
	KindApplicationRevision = "ApplicationRevision"
	KindResourceTracker     = "ResourceTracker"
)

// Application declares an application as KubeVela does: its components, each of a component
// type with traits, the policies that place and adjust them, and an optional workflow that
// delivers them.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:shortName=app;velaapp,categories=oam
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="COMPONENT",type=string,JSONPath=`.spec.components[*].name`
// +kubebuilder:printcolumn:name="TYPE",type=string,JSONPath=`.spec.components[*].type`
// +kubebuilder:printcolumn:name="PHASE",type=string,JSONPath=`.status.status`
// +kubebuilder:printcolumn:name="AGE",type=date,JSONPath=`.metadata.creationTimestamp`
type Application struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   ApplicationSpec `json:"spec,omitempty"`
	Status AppStatus       `json:"status,omitempty"`
}

// ApplicationList is a list of Applications.
//
// +kubebuilder:object:root=true
type ApplicationList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Application `json:"items"`
}

// ApplicationSpec is what an Application declares.
type ApplicationSpec struct {
	// Components are the parts of the application, each rendered from its type's definition.
	Components []ApplicationComponent `json:"components"`
	// Policies say where and how components are delivered (topology, override, ...).
	Policies []AppPolicy `json:"policies,omitempty"`
	// Workflow delivers the components; without one, the default workflow deploys them.
	Workflow *ApplicationWorkflow `json:"workflow,omitempty"`
}

// ApplicationComponent is one component of an Application.
type ApplicationComponent struct {
	// Name names the component, unique in the Application.
	Name string `json:"name"`
	// Type is the ComponentDefinition that renders the component.
	Type string `json:"type"`
	// ExternalRevision names the component's revision; kept for compatibility.
	ExternalRevision string `json:"externalRevision,omitempty"`
	// Properties fill the definition's parameter.
	// +kubebuilder:pruning:PreserveUnknownFields
	Properties *runtime.RawExtension `json:"properties,omitempty"`
	// DependsOn names the components deployed before this one.
	DependsOn []string `json:"dependsOn,omitempty"`
	// Inputs fill properties from values other components output.
	Inputs v1alpha1.StepInputs `json:"inputs,omitempty"`
	// Outputs name values of the rendered objects for other components' inputs.
	Outputs v1alpha1.StepOutputs `json:"outputs,omitempty"`
	// Traits patch the workload or add objects beside it.
	Traits []ApplicationTrait `json:"traits,omitempty"`
	// Scopes are accepted for compatibility and not interpreted.
	Scopes map[string]string `json:"scopes,omitempty"`
	// ReplicaKey is filled by the replication policy; kept for compatibility.
	ReplicaKey string `json:"replicaKey,omitempty"`
}

// ApplicationTrait attaches a TraitDefinition to a component.
type ApplicationTrait struct {
	// Type is the TraitDefinition's name.
	Type string `json:"type"`
	// Properties fill the trait definition's parameter.
	// +kubebuilder:pruning:PreserveUnknownFields
	Properties *runtime.RawExtension `json:"properties,omitempty"`
}

// AppPolicy applies a PolicyDefinition to the Application.
type AppPolicy struct {
	// Name names the policy, for the workflow's steps to refer to.
	Name string `json:"name"`
	// Type is the PolicyDefinition's name.
	Type string `json:"type"`
	// Properties fill the policy definition's parameter.
	// +kubebuilder:pruning:PreserveUnknownFields
	Properties *runtime.RawExtension `json:"properties,omitempty"`
}

// ApplicationWorkflow is an Application's workflow: its steps, or a Workflow template by name.
type ApplicationWorkflow struct {
	// Ref names a Workflow template in the Application's namespace.
	Ref string `json:"ref,omitempty"`
	// Mode runs the steps in a DAG or one after another.
	Mode *v1alpha1.WorkflowExecuteMode `json:"mode,omitempty"`
	// Steps are the workflow's steps, as a WorkflowRun's.
	Steps []v1alpha1.WorkflowStep `json:"steps,omitempty"`
}

// ApplicationPhase is the phase of an Application, as KubeVela names it.
type ApplicationPhase string

// The phases of an Application.
const (
	ApplicationStarting           ApplicationPhase = "starting"
	ApplicationRendering          ApplicationPhase = "rendering"
	ApplicationPolicyGenerating   ApplicationPhase = "generatingPolicy"
	ApplicationRunningWorkflow    ApplicationPhase = "runningWorkflow"
	ApplicationWorkflowSuspended  ApplicationPhase = "workflowSuspending"
	ApplicationWorkflowTerminated ApplicationPhase = "workflowTerminated"
	ApplicationWorkflowFailed     ApplicationPhase = "workflowFailed"
	ApplicationUnhealthy          ApplicationPhase = "unhealthy"
	ApplicationDeleting           ApplicationPhase = "deleting"
	ApplicationRunning            ApplicationPhase = "running"
)

// AppStatus is an Application's observed state, shaped as KubeVela's.
type AppStatus struct {
	// Conditions are the usual Kubernetes conditions.
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// Phase is the Application's phase.
	Phase ApplicationPhase `json:"status,omitempty"`
	// Components are the rendered components' objects.
	Components []ObjectReference `json:"components,omitempty"`
	// Services is each component's health, with its traits', per cluster and namespace.
	Services []ApplicationComponentStatus `json:"services,omitempty"`
	// Workflow is the state of the workflow delivering the current revision.
	Workflow *WorkflowStatus `json:"workflow,omitempty"`
	// LatestRevision is the ApplicationRevision of the current spec.
	LatestRevision *Revision `json:"latestRevision,omitempty"`
	// AppliedResources are the objects applied, in every cluster.
	AppliedResources []ClusterObjectReference `json:"appliedResources,omitempty"`
	// PolicyStatus holds what policies record.
	PolicyStatus []PolicyStatus `json:"policy,omitempty"`
	// ObservedGeneration is the spec generation this status describes.
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
}

// ObjectReference names an object.
type ObjectReference struct {
	APIVersion      string `json:"apiVersion,omitempty"`
	Kind            string `json:"kind,omitempty"`
	Namespace       string `json:"namespace,omitempty"`
	Name            string `json:"name,omitempty"`
	UID             string `json:"uid,omitempty"`
	ResourceVersion string `json:"resourceVersion,omitempty"`
	FieldPath       string `json:"fieldPath,omitempty"`
}

// ClusterObjectReference names an object in a cluster ("" or "local" is the control plane's).
type ClusterObjectReference struct {
	// Cluster is the name of the cluster the object is in.
	Cluster string `json:"cluster,omitempty"`
	// Creator is what created the object (workflow, ...); informational.
	Creator         string `json:"creator,omitempty"`
	ObjectReference `json:",inline"`
}

// ApplicationComponentStatus is the health of one component in one place.
type ApplicationComponentStatus struct {
	Name      string `json:"name"`
	Namespace string `json:"namespace,omitempty"`
	Cluster   string `json:"cluster,omitempty"`
	Env       string `json:"env,omitempty"`
	// WorkloadDefinition is the kind of the component's workload.
	WorkloadDefinition WorkloadGVK `json:"workloadDefinition,omitempty"`
	// Healthy is the result of the definition's health policy.
	Healthy bool `json:"healthy"`
	// Message is the definition's custom status.
	Message string                   `json:"message,omitempty"`
	Traits  []ApplicationTraitStatus `json:"traits,omitempty"`
	Scopes  []ObjectReference        `json:"scopes,omitempty"`
}

// ApplicationTraitStatus is the health of one trait of a component.
type ApplicationTraitStatus struct {
	Type    string `json:"type"`
	Healthy bool   `json:"healthy"`
	Message string `json:"message,omitempty"`
}

// Revision names an ApplicationRevision.
type Revision struct {
	Name     string `json:"name"`
	Revision int64  `json:"revision"`
	// RevisionHash is the hash of the revision's content.
	RevisionHash string `json:"revisionHash,omitempty"`
}

// PolicyStatus is what a policy records in the Application's status.
type PolicyStatus struct {
	Name string `json:"name"`
	Type string `json:"type"`
	// Status is the policy's own record.
	// +kubebuilder:pruning:PreserveUnknownFields
	Status *runtime.RawExtension `json:"status,omitempty"`
}

// WorkflowStatus is the state of an Application's workflow, as KubeVela shows it.
type WorkflowStatus struct {
	AppRevision    string                        `json:"appRevision,omitempty"`
	Mode           string                        `json:"mode"`
	Phase          v1alpha1.WorkflowRunPhase     `json:"status,omitempty"`
	Message        string                        `json:"message,omitempty"`
	Suspend        bool                          `json:"suspend"`
	SuspendState   string                        `json:"suspendState,omitempty"`
	Terminated     bool                          `json:"terminated"`
	Finished       bool                          `json:"finished"`
	ContextBackend *v1alpha1.ObjectReference     `json:"contextBackend,omitempty"`
	Steps          []v1alpha1.WorkflowStepStatus `json:"steps,omitempty"`
	StartTime      metav1.Time                   `json:"startTime,omitempty"`
	EndTime        metav1.Time                   `json:"endTime,omitempty"`
}
