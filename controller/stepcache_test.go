package controller_test

import (
	"context"
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/store/crd"
)

// In Kubernetes mode a cached step's result is kept in a ConfigMap of the run's namespace,
// labelled as a cache entry: the next run with the same key takes it (Cached) without calling
// the service, and the step after it takes its output.
func TestCachedStepInKubernetesMode(t *testing.T) {
	e := newEnv(t)
	e.start(controllerOptions{})
	svc, url := newCounter(t)
	doc := func(name string) string {
		return fmt.Sprintf(`
metadata: {name: %s}
spec:
  workflowSpec:
    steps:
    - name: get-version
      type: request
      properties: {url: %q}
      cache: {key: parameter.url, maxAge: 1h}
      outputs: [{name: tag, valueFrom: response.tag}]
    - name: show
      type: print-message-in-status
      inputs: [{from: tag, parameterKey: message}]
`, name, url+"/version")
	}
	e.create(doc("first"))
	first := e.waitPhase("first", v1alpha1.RunSucceeded)
	if r := first.Status.Steps[0].Reason; r != "" {
		t.Fatalf("first run's get-version: reason %q", r)
	}
	e.create(doc("second"))
	second := e.waitPhase("second", v1alpha1.RunSucceeded)
	if r := second.Status.Steps[0].Reason; r != v1alpha1.ReasonCached {
		t.Fatalf("second run's get-version: reason %q, want Cached", r)
	}
	if msg := second.Status.Steps[1].Message; msg != "v1.2.3" {
		t.Errorf("show's message = %q, want the cached tag", msg)
	}
	if n := svc.count("/version"); n != 1 {
		t.Errorf("the service was called %d times, want 1", n)
	}
	var cms corev1.ConfigMapList
	if err := e.c.List(context.Background(), &cms, client.InNamespace(e.ns), client.MatchingLabels{crd.LabelStepCache: "true"}); err != nil {
		t.Fatal(err)
	}
	if len(cms.Items) != 1 {
		t.Fatalf("%d cache entry ConfigMaps in the namespace, want 1", len(cms.Items))
	}
}
