package v1beta1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// AddToScheme registers the kinds of this package with a scheme, for Kubernetes clients.
func AddToScheme(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion,
		&WorkflowStepDefinition{}, &WorkflowStepDefinitionList{},
		&Application{}, &ApplicationList{},
		&ComponentDefinition{}, &ComponentDefinitionList{},
		&TraitDefinition{}, &TraitDefinitionList{},
		&PolicyDefinition{}, &PolicyDefinitionList{},
		&ApplicationRevision{}, &ApplicationRevisionList{},
		&ResourceTracker{}, &ResourceTrackerList{},
	)
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
