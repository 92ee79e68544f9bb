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
	"github.com/stepflow/stepflow/engine"
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

// With --retain-count, of the finished runs of one template in one namespace only the newest
// are kept, as the SQL stores keep them; the runs of another template (here: inline steps) are
// counted apart.
func TestOnlyTheNewestFinishedRunsOfATemplateAreKept(t *testing.T) {
	e := newEnv(t)
	e.start(controllerOptions{retention: engine.Retention{Count: 2}})
	var wf v1alpha1.Workflow
	if err := yaml.UnmarshalStrict([]byte(`
metadata: {name: nightly}
steps:
- {name: hello, type: print-message-in-status, properties: {message: hi}}
`), &wf); err != nil {
		t.Fatal(err)
	}
	wf.Namespace = e.ns
	if err := e.c.Create(context.Background(), &wf); err != nil {
		t.Fatal(err)
	}
	e.create("metadata: {name: inline}\nspec:\n  workflowSpec:\n    steps:\n    - {name: hello, type: print-message-in-status, properties: {message: hi}}")
	e.waitPhase("inline", v1alpha1.RunSucceeded)
	// One after the other, so that they end in this order (ties in endTime's seconds go by
	// name, the greater newer, as in the SQL stores).
	for _, name := range []string{"nightly-1", "nightly-2", "nightly-3", "nightly-4"} {
		e.create("metadata: {name: " + name + "}\nspec:\n  workflowRef: nightly")
		e.waitPhase(name, v1alpha1.RunSucceeded)
	}
	exists := func(name string) bool {
		err := e.c.Get(context.Background(), client.ObjectKey{Namespace: e.ns, Name: name}, &v1alpha1.WorkflowRun{})
		if err != nil && !apierrors.IsNotFound(err) {
			t.Fatal(err)
		}
		return err == nil
	}
	deadline := time.Now().Add(30 * time.Second)
	for exists("nightly-1") || exists("nightly-2") {
		if time.Now().After(deadline) {
			t.Fatal("the two oldest runs of the template were not deleted")
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(1500 * time.Millisecond) // a handover after the last run finished has come and gone
	for _, name := range []string{"inline", "nightly-3", "nightly-4"} {
		if !exists(name) {
			t.Errorf("run %s was deleted; only the runs beyond the newest two of a template go", name)
		}
	}
	err := e.c.Get(context.Background(), client.ObjectKey{Namespace: e.ns, Name: crd.ContextName("nightly-1")}, &corev1.ConfigMap{})
	if !apierrors.IsNotFound(err) {
		t.Errorf("the context ConfigMap of a deleted run is still there: %v", err)
	}
}
