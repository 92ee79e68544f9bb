package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// AddToScheme registers WorkflowRun, Workflow and WorkflowSchedule with a scheme, for Kubernetes clients.
func AddToScheme(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion, &WorkflowRun{}, &WorkflowRunList{}, &Workflow{}, &WorkflowList{}, &WorkflowSchedule{}, &WorkflowScheduleList{}, &WorkflowEventTrigger{}, &WorkflowEventTriggerList{})
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
