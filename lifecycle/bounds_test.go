package lifecycle_test

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/api/v1beta1"
	"github.com/stepflow/stepflow/application"
	"github.com/stepflow/stepflow/assembly"
	"github.com/stepflow/stepflow/definitions"
)

// moodyDef renders a ConfigMap whose health policy builds a list of 200 million items once
// the live ConfigMap's data.mood is "bomb": healthy while it is delivered, a memory bomb for
// the syncs after someone changed the object in the cluster.
const moodyDef = `
metadata: {name: moody}
spec:
  workload: {definition: {apiVersion: v1, kind: ConfigMap}}
  schematic:
    cue:
      template: |
        parameter: {}
        output: {apiVersion: "v1", kind: "ConfigMap", data: mood: "calm"}
  status:
    healthPolicy: |
      import "list"

      isHealth: context.output.data.mood != "bomb" || len([for i in list.Range(0, 200000000, 1) {i * 2}]) == 0
`

// The sync of an Application's status judges its components' health with their definitions'
// health policies, under the memory bound: a policy past it fails that sync naming the bound
// and its flag, and the next sync of another Application works. Before, the policy ran in the
// syncing process without a bound.
func TestSyncOfAHealthPolicyBombFailsOnlyThatSync(t *testing.T) {
	if testing.Short() {
		t.Skip("starts kube-apiserver")
	}
	ctx := t.Context()
	f := newFixture(t, assembly.Config{EvalMemory: 64 << 20, EvalTimeout: 2 * time.Minute}, "east")
	ns, kc := f.ns, f.client(t, "east")
	m := f.manager()
	def := &v1beta1.ComponentDefinition{}
	if err := yaml.UnmarshalStrict([]byte(moodyDef), def); err != nil {
		t.Fatal(err)
	}
	defs := application.NewSet().Add(definitions.Components(), definitions.Traits(), definitions.Policies()).
		Add([]*v1beta1.ComponentDefinition{def}, nil, nil)
	for _, name := range []string{"moody", "calm"} {
		a := &v1beta1.Application{}
		doc := `{metadata: {name: ` + name + `}, spec: {components: [{name: ` + name + `, type: moody}],
			policies: [{name: east, type: topology, properties: {clusters: [east]}}]}}`
		if err := yaml.UnmarshalStrict([]byte(doc), a); err != nil {
			t.Fatal(err)
		}
		a.Namespace = ns
		if _, err := m.Up(ctx, a, defs); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(40 * time.Second)
		for {
			synced, err := m.Sync(ctx, ns, name)
			if err != nil {
				t.Fatal(err)
			}
			if wf := synced.Status.Workflow; wf != nil && wf.Finished {
				if wf.Phase != v1alpha1.RunSucceeded {
					t.Fatalf("%s: run %s: %+v", name, wf.Phase, wf.Steps)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: the run did not finish", name)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	cm := &corev1.ConfigMap{}
	if err := kc.Get(ctx, client.ObjectKey{Namespace: ns, Name: "moody"}, cm); err != nil {
		t.Fatal(err)
	}
	cm.Data["mood"] = "bomb"
	if err := kc.Update(ctx, cm); err != nil {
		t.Fatal(err)
	}
	_, err := m.Sync(ctx, ns, "moody")
	if err == nil || !strings.Contains(err.Error(), "evaluating the health of component moody used more than 64 MiB, the limit of one evaluation") ||
		!strings.Contains(err.Error(), "--eval-memory") {
		t.Errorf("the sync of moody: %v, want the memory bound named", err)
	}
	synced, err := m.Sync(ctx, ns, "calm")
	if err != nil || len(synced.Status.Services) != 1 || !synced.Status.Services[0].Healthy {
		t.Errorf("the sync of calm: %+v %v", synced, err)
	}
}
