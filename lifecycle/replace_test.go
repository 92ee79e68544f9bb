package lifecycle_test

import (
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/api/v1beta1"
	"github.com/stepflow/stepflow/apiservertest"
	"github.com/stepflow/stepflow/application"
	"github.com/stepflow/stepflow/assembly"
	"github.com/stepflow/stepflow/definitions"
	"github.com/stepflow/stepflow/engine"
)

// TestNewRevisionTerminatesUnfinishedRun: on a real API server, revision 1's run waits for a
// Deployment that is not ready; an Up with a changed spec terminates that run (as KubeVela
// restarts the workflow of a changed Application) instead of leaving two runs applying
// different specs to the same objects, and revision 2's run delivers once the Deployment is
// ready.
func TestNewRevisionTerminatesUnfinishedRun(t *testing.T) {
	if testing.Short() {
		t.Skip("starts kube-apiserver")
	}
	ctx := t.Context()
	f := newFixture(t, assembly.Config{}, "east")
	ns, st, kc := f.ns, f.st, f.client(t, "east")
	m := f.manager()
	defs := application.NewSet().Add(definitions.Components(), definitions.Traits(), definitions.Policies())
	shop := func(image string) *v1beta1.Application {
		var a v1beta1.Application
		doc := `
metadata: {name: shop, namespace: ` + ns + `}
spec:
  policies: [{name: east, type: topology, properties: {clusters: [east]}}]
  components: [{name: web, type: webservice, properties: {image: "` + image + `"}}]`
		if err := yaml.UnmarshalStrict([]byte(doc), &a); err != nil {
			t.Fatal(err)
		}
		return &a
	}
	runOf := func(name string) *engine.Run {
		t.Helper()
		run, err := st.Load(ctx, engine.Key{Namespace: ns, Name: name})
		if err != nil {
			t.Fatal(err)
		}
		return run
	}
	await := func(name string, phase v1alpha1.WorkflowRunPhase) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for {
			st := runOf(name).Object.Status
			if st.Finished {
				if st.Phase != phase {
					t.Fatalf("run %s ended %s (%s), want %s", name, st.Phase, st.Message, phase)
				}
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("run %s did not end: %s %s", name, st.Phase, st.Message)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	v1, err := m.Up(ctx, shop("nginx:1.27"), defs)
	if err != nil {
		t.Fatal(err)
	}
	if v1.Replaced != "" {
		t.Errorf("the first revision replaced %q", v1.Replaced)
	}
	// No readiness yet: revision 1's deploy step waits for the Deployment.
	deadline := time.Now().Add(30 * time.Second)
	for runOf("shop-v1").Object.Status.Phase != v1alpha1.RunExecuting {
		if time.Now().After(deadline) {
			t.Fatalf("run shop-v1 is %s, want it executing", runOf("shop-v1").Object.Status.Phase)
		}
		time.Sleep(20 * time.Millisecond)
	}

	v2, err := m.Up(ctx, shop("nginx:1.28"), defs)
	if err != nil {
		t.Fatal(err)
	}
	if v2.Replaced != "shop-v1" {
		t.Errorf("revision 2 replaced %q, want shop-v1", v2.Replaced)
	}
	await("shop-v1", v1alpha1.RunTerminated)
	if msg := runOf("shop-v1").Object.Status.Message; msg == "" {
		t.Error("the terminated run says nothing of why")
	} else {
		t.Logf("shop-v1: %s", msg)
	}

	apiservertest.MarkReady(t, kc, ns)
	await("shop-v2", v1alpha1.RunSucceeded)

	// An unchanged Up replaces nothing; a change after a finished run terminates nothing.
	v3, err := m.Up(ctx, shop("nginx:1.29"), defs)
	if err != nil {
		t.Fatal(err)
	}
	if v3.Replaced != "" {
		t.Errorf("revision 3 replaced the finished %q", v3.Replaced)
	}
	await("shop-v3", v1alpha1.RunSucceeded)
}
