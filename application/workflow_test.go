package application_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/api/v1beta1"
	"github.com/stepflow/stepflow/application"
)

// TestWorkflowOrdersComponentsAndPlacesThem: the placeholder delivery workflow applies a
// component after those it dependsOn, each object once per cluster of the topology policy,
// and Applied reads back only what the succeeded steps applied, with cluster and component.
func TestWorkflowOrdersComponentsAndPlacesThem(t *testing.T) {
	set := application.NewSet().Add([]*v1beta1.ComponentDefinition{component("base", base)}, nil, nil)
	app := &v1beta1.Application{
		ObjectMeta: metav1.ObjectMeta{Name: "shop", Namespace: "team"},
		Spec: v1beta1.ApplicationSpec{
			Components: []v1beta1.ApplicationComponent{
				{Name: "api", Type: "base", Properties: raw(`{"image":"api:v1"}`), DependsOn: []string{"db"}},
				{Name: "db", Type: "base", Properties: raw(`{"image":"db:v1"}`)},
			},
			Policies: []v1beta1.AppPolicy{{Name: "both", Type: "topology", Properties: raw(`{"clusters":["east","west"]}`)}},
		},
	}
	steps, mode, err := application.Workflow(context.Background(), app, set)
	if err != nil {
		t.Fatal(err)
	}
	if mode == nil || mode.Steps != v1alpha1.ModeStepByStep {
		t.Errorf("mode = %+v, want StepByStep", mode)
	}
	var names []string
	for _, s := range steps {
		names = append(names, s.Name)
	}
	want := "apply-east-db-deployment-db apply-east-db-configmap-db-cm apply-west-db-deployment-db apply-west-db-configmap-db-cm " +
		"apply-east-api-deployment-api apply-east-api-configmap-api-cm apply-west-api-deployment-api apply-west-api-configmap-api-cm"
	if got := strings.Join(names, " "); got != want {
		t.Fatalf("steps = %s\nwant    %s", got, want)
	}

	run := &v1alpha1.WorkflowRun{Spec: v1alpha1.WorkflowRunSpec{WorkflowSpec: &v1alpha1.WorkflowSpec{Steps: steps}}}
	for i, s := range steps {
		phase := v1alpha1.StepSucceeded
		if i == 1 {
			phase = v1alpha1.StepFailed
		}
		run.Status.Steps = append(run.Status.Steps, v1alpha1.WorkflowStepStatus{StepStatus: v1alpha1.StepStatus{Name: s.Name, Phase: phase}})
	}
	applied, err := application.Applied(run)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range applied {
		got = append(got, fmt.Sprintf("%s/%s/%s/%s(%s)", r.Cluster, r.Namespace, r.Kind, r.Name, r.Component))
	}
	wantApplied := "east/team/Deployment/db(db) west/team/Deployment/db(db) west/team/ConfigMap/db-cm(db) " +
		"east/team/Deployment/api(api) east/team/ConfigMap/api-cm(api) west/team/Deployment/api(api) west/team/ConfigMap/api-cm(api)"
	if g := strings.Join(got, " "); g != wantApplied {
		t.Errorf("Applied = %s\nwant      %s", g, wantApplied)
	}
}

// TestWorkflowRefusesACycle: components that depend on each other cannot be ordered.
func TestWorkflowRefusesACycle(t *testing.T) {
	set := application.NewSet().Add([]*v1beta1.ComponentDefinition{component("base", base)}, nil, nil)
	app := &v1beta1.Application{
		ObjectMeta: metav1.ObjectMeta{Name: "shop", Namespace: "team"},
		Spec: v1beta1.ApplicationSpec{Components: []v1beta1.ApplicationComponent{
			{Name: "a", Type: "base", Properties: raw(`{"image":"a"}`), DependsOn: []string{"b"}},
			{Name: "b", Type: "base", Properties: raw(`{"image":"b"}`), DependsOn: []string{"a"}},
		}},
	}
	_, _, err := application.Workflow(context.Background(), app, set)
	if err == nil || !strings.Contains(err.Error(), "cycle: a -> b -> a") {
		t.Errorf("err = %v, want the cycle named", err)
	}
}
