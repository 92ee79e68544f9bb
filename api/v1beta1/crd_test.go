package v1beta1_test

import (
	"context"
	"encoding/json"
	"testing"

	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stepflow/stepflow/api/v1beta1"
	"github.com/stepflow/stepflow/apiservertest"
	"github.com/stepflow/stepflow/manifest"
)

// The CRDs of config/crd take the application delivery kinds as KubeVela's files write them:
// each object of manifest's example is created on a real API server and read back unchanged,
// free-form properties and the status included (nothing pruned).
func TestCRDsKeepApplicationObjects(t *testing.T) {
	if testing.Short() {
		t.Skip("starts kube-apiserver and etcd")
	}
	c, err := apiservertest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Stop(); err != nil {
			t.Error(err)
		}
	})
	scheme := runtime.NewScheme()
	if err := v1beta1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	cl, err := client.New(c.Config, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	objs, err := manifest.DecodeFiles("../../manifest/testdata/oam/app.yaml")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var all []client.Object
	for _, o := range objs.Applications {
		all = append(all, o)
	}
	for _, o := range objs.ComponentDefinitions {
		all = append(all, o)
	}
	for _, o := range objs.TraitDefinitions {
		all = append(all, o)
	}
	for _, o := range objs.PolicyDefinitions {
		all = append(all, o)
	}
	for _, o := range objs.ApplicationRevisions {
		all = append(all, o)
	}
	for _, o := range objs.ResourceTrackers {
		all = append(all, o)
	}
	for _, o := range all {
		want := specAndStatus(t, o)
		status := o.DeepCopyObject().(client.Object)
		if err := cl.Create(ctx, o); err != nil {
			t.Fatalf("%T %s: %v", o, o.GetName(), err)
		}
		if _, ok := o.(*v1beta1.ResourceTracker); !ok {
			// The status is a subresource: written on its own, as a controller would.
			status.SetResourceVersion(o.GetResourceVersion())
			if err := cl.Status().Update(ctx, status); err != nil {
				t.Fatalf("%T %s status: %v", o, o.GetName(), err)
			}
		}
		got := o.DeepCopyObject().(client.Object)
		if err := cl.Get(ctx, client.ObjectKeyFromObject(o), got); err != nil {
			t.Fatal(err)
		}
		if g := specAndStatus(t, got); g != want {
			t.Errorf("%T %s came back as\n%s\nwant\n%s", o, o.GetName(), g, want)
		}
	}
}

// specAndStatus is the JSON of an object without its metadata and type.
func specAndStatus(t *testing.T, o client.Object) string {
	t.Helper()
	b, err := json.Marshal(o)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	delete(m, "metadata")
	delete(m, "apiVersion")
	delete(m, "kind")
	out, _ := json.Marshal(m)
	return string(out)
}
