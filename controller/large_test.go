package controller_test

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/api/v1beta1"
	"github.com/stepflow/stepflow/store/crd"
)

// Outputs too large for a WorkflowRun (three of 0.9 MB, beyond etcd's 1.5 MB for one object)
// are ConfigMaps owned by the run: the run succeeds, a later step takes two of them whole, and
// when the run's TTL has passed the controller deletes them with it.
func TestLargeOutputsAreOwnedConfigMapsDeletedWithTheRun(t *testing.T) {
	e := newEnv(t)
	e.start(controllerOptions{})
	ctx := context.Background()
	for name, template := range map[string]string{
		"make": `
import "strings"
parameter: {}
v0: strings.Repeat("a0", 450000)
v1: strings.Repeat("b1", 450000)
v2: strings.Repeat("c2", 450000)
`,
		"measure": `
import "vela/builtin"
parameter: {first: string, last: string}
msg: builtin.#Message & {$params: message: "\(len(parameter.first)) \(len(parameter.last))"}
`,
	} {
		def := &v1beta1.WorkflowStepDefinition{
			ObjectMeta: metav1.ObjectMeta{Namespace: e.ns, Name: name},
			Spec:       v1beta1.WorkflowStepDefinitionSpec{Schematic: &v1beta1.Schematic{CUE: &v1beta1.CUE{Template: template}}},
		}
		if err := e.c.Create(ctx, def); err != nil {
			t.Fatal(err)
		}
	}
	e.create(`
metadata: {name: large}
spec:
  ttlSecondsAfterFinished: 3
  workflowSpec:
    steps:
    - {name: make, type: make, outputs: [{name: v0, valueFrom: v0}, {name: v1, valueFrom: v1}, {name: v2, valueFrom: v2}]}
    - {name: hello, type: print-message-in-status, properties: {message: hi}}
    - {name: measure, type: measure, inputs: [{from: v0, parameterKey: first}, {from: v2, parameterKey: last}]}`)
	run := e.waitPhase("large", v1alpha1.RunSucceeded)
	if msg := run.Status.Steps[2].Message; msg != "900000 900000" {
		t.Errorf("measure's message %q, want both inputs whole", msg)
	}
	blobs := func() []corev1.ConfigMap {
		var list corev1.ConfigMapList
		if err := e.c.List(ctx, &list, client.InNamespace(e.ns), client.MatchingLabels{crd.LabelBlob: "true", crd.LabelRunName: "large"}); err != nil {
			t.Fatal(err)
		}
		return list.Items
	}
	if got := blobs(); len(got) != 6 { // 0.9 MB is two parts
		t.Errorf("%d blob ConfigMaps, want 6", len(got))
	} else if refs := got[0].OwnerReferences; len(refs) != 1 || refs[0].UID != run.UID {
		t.Errorf("blob ConfigMap owned by %+v, want the run %s", refs, run.UID)
	}
	deadline := time.Now().Add(30 * time.Second)
	for len(blobs()) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d blob ConfigMaps are left after the run's TTL", len(blobs()))
		}
		time.Sleep(100 * time.Millisecond)
	}
}
