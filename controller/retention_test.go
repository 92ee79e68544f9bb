package controller_test

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/store/crd"
)

// A finished WorkflowRun is deleted, with its context ConfigMap, once its
// ttlSecondsAfterFinished (its own, or its Workflow's) has passed, as a finished Job is; a run
// without one is kept (the controller's default retention here is none).
func TestFinishedRunsAreDeletedAfterTheirTTL(t *testing.T) {
	e := newEnv(t)
	e.start(controllerOptions{})
	var wf v1alpha1.Workflow
	if err := yaml.UnmarshalStrict([]byte(`
metadata: {name: brief-template}
ttlSecondsAfterFinished: 1
steps:
- {name: hello, type: print-message-in-status, properties: {message: hi}}
`), &wf); err != nil {
		t.Fatal(err)
	}
	wf.Namespace = e.ns
	if err := e.c.Create(context.Background(), &wf); err != nil {
		t.Fatal(err)
	}
	const steps = `
  workflowSpec:
    steps:
    - {name: hello, type: print-message-in-status, properties: {message: hi}}`
	e.create("metadata: {name: brief}\nspec:\n  ttlSecondsAfterFinished: 1" + steps)
	e.create("metadata: {name: from-template}\nspec:\n  workflowRef: brief-template")
	e.create("metadata: {name: kept}\nspec:" + steps)
	e.waitPhase("kept", v1alpha1.RunSucceeded)
	for _, name := range []string{"brief", "from-template"} {
		deadline := time.Now().Add(30 * time.Second)
		for {
			err := e.c.Get(context.Background(), client.ObjectKey{Namespace: e.ns, Name: name}, &v1alpha1.WorkflowRun{})
			if apierrors.IsNotFound(err) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("run %s was not deleted after its TTL: %v", name, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		// The ConfigMap goes right after the run (a second request).
		for {
			err := e.c.Get(context.Background(), client.ObjectKey{Namespace: e.ns, Name: crd.ContextName(name)}, &corev1.ConfigMap{})
			if apierrors.IsNotFound(err) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("run %s's context ConfigMap was not deleted with it: %v", name, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	time.Sleep(2 * time.Second)
	e.waitPhase("kept", v1alpha1.RunSucceeded)
}
