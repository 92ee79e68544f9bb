package v1beta1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// AddToScheme registers WorkflowStepDefinition with a scheme, for Kubernetes clients.
func AddToScheme(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion, &WorkflowStepDefinition{}, &WorkflowStepDefinitionList{})
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
