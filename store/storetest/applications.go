package storetest

import (
	"errors"
	"fmt"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/stepflow/stepflow/api/v1beta1"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/store"
)

// Application is an Application of one webservice component, for the stores' tests.
func Application(namespace, name string) *v1beta1.Application {
	return &v1beta1.Application{
		TypeMeta:   metav1.TypeMeta{APIVersion: v1beta1.GroupVersion.String(), Kind: v1beta1.KindApplication},
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Spec: v1beta1.ApplicationSpec{Components: []v1beta1.ApplicationComponent{{
			Name: "web", Type: "webservice",
			Properties: &runtime.RawExtension{Raw: []byte(`{"image":"nginx:1.27"}`)},
		}}},
	}
}

// testApplications: an Application survives a write and a read whole, status included;
// writes are compare-and-swaps on its version; listing is by namespace and name; deleting
// takes its revisions with it.
func testApplications(t *testing.T, st store.Store) {
	ctx := t.Context()
	if _, _, err := st.Application(ctx, "default", "shop"); !errors.Is(err, engine.ErrNotFound) {
		t.Fatalf("Application of nothing stored: err = %v, want ErrNotFound", err)
	}
	app := Application("default", "shop")
	v1, err := st.PutApplication(ctx, app, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.PutApplication(ctx, app, 0); !errors.Is(err, store.ErrExists) {
		t.Fatalf("second create: err = %v, want ErrExists", err)
	}
	app.Status.Phase = v1beta1.ApplicationRunning
	app.Status.LatestRevision = &v1beta1.Revision{Name: "shop-v1", Revision: 1}
	v2, err := st.PutApplication(ctx, app, v1)
	if err != nil {
		t.Fatal(err)
	}
	if v2 == v1 {
		t.Fatalf("update kept version %d", v1)
	}
	if _, err := st.PutApplication(ctx, app, v1); !errors.Is(err, engine.ErrConflict) {
		t.Fatalf("update at a stale version: err = %v, want ErrConflict", err)
	}
	if _, err := st.PutApplication(ctx, Application("default", "none"), v1); !errors.Is(err, engine.ErrNotFound) {
		t.Fatalf("update of nothing stored: err = %v, want ErrNotFound", err)
	}
	got, v, err := st.Application(ctx, "default", "shop")
	if err != nil {
		t.Fatal(err)
	}
	if v != v2 || got.ResourceVersion != fmt.Sprint(v2) {
		t.Errorf("version = %d (resourceVersion %q), want %d", v, got.ResourceVersion, v2)
	}
	if got.Status.Phase != v1beta1.ApplicationRunning || got.Status.LatestRevision == nil || got.Status.LatestRevision.Name != "shop-v1" {
		t.Errorf("status = %+v, want running at shop-v1", got.Status)
	}
	if string(got.Spec.Components[0].Properties.Raw) != `{"image":"nginx:1.27"}` {
		t.Errorf("properties = %s", got.Spec.Components[0].Properties.Raw)
	}
	for _, a := range []*v1beta1.Application{Application("prod", "b"), Application("prod", "a")} {
		if _, err := st.PutApplication(ctx, a, 0); err != nil {
			t.Fatal(err)
		}
	}
	names := func(ns string) []string {
		list, err := st.Applications(ctx, ns)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, a := range list {
			out = append(out, a.Namespace+"/"+a.Name)
		}
		return out
	}
	if got, want := fmt.Sprint(names("")), "[default/shop prod/a prod/b]"; got != want {
		t.Errorf("Applications(all) = %s, want %s", got, want)
	}
	if got, want := fmt.Sprint(names("prod")), "[prod/a prod/b]"; got != want {
		t.Errorf("Applications(prod) = %s, want %s", got, want)
	}
	if err := st.PutAppRevision(ctx, Revision("default", "shop", 1)); err != nil {
		t.Fatal(err)
	}
	if err := st.DeleteApplication(ctx, "default", "shop"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.Application(ctx, "default", "shop"); !errors.Is(err, engine.ErrNotFound) {
		t.Errorf("Application after delete: err = %v, want ErrNotFound", err)
	}
	if revs, err := st.AppRevisions(ctx, "default", "shop"); err != nil || len(revs) != 0 {
		t.Errorf("revisions after delete = %d, %v; want none", len(revs), err)
	}
	if err := st.DeleteApplication(ctx, "default", "shop"); !errors.Is(err, engine.ErrNotFound) {
		t.Errorf("second delete: err = %v, want ErrNotFound", err)
	}
}

// Revision is revision n of the Application Application(namespace, app) would store, with
// one tracked Deployment.
func Revision(namespace, app string, n int64) *store.AppRevision {
	name := fmt.Sprintf("%s-v%d", app, n)
	a := Application(namespace, app)
	return &store.AppRevision{
		Object: &v1beta1.ApplicationRevision{
			TypeMeta:   metav1.TypeMeta{APIVersion: v1beta1.GroupVersion.String(), Kind: v1beta1.KindApplicationRevision},
			ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
			Spec:       v1beta1.ApplicationRevisionSpec{Application: *a},
		},
		App: app, Number: n, Hash: fmt.Sprintf("hash-%d", n), Run: name,
	}
}

// testAppRevisions: revisions come back oldest first with their spec, run and resources, and
// a revision written again (its run finished, its resources recorded) replaces the first.
func testAppRevisions(t *testing.T, st store.Store) {
	ctx := t.Context()
	for _, n := range []int64{2, 1, 10} {
		if err := st.PutAppRevision(ctx, Revision("default", "shop", n)); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.PutAppRevision(ctx, Revision("default", "other", 1)); err != nil {
		t.Fatal(err)
	}
	r := Revision("default", "shop", 2)
	r.Object.Status.Succeeded = true
	r.Resources = []v1beta1.ManagedResource{{
		ClusterObjectReference: v1beta1.ClusterObjectReference{Cluster: "east", ObjectReference: v1beta1.ObjectReference{
			APIVersion: "apps/v1", Kind: "Deployment", Namespace: "default", Name: "web"}},
		Component: "web",
	}}
	if err := st.PutAppRevision(ctx, r); err != nil {
		t.Fatal(err)
	}
	revs, err := st.AppRevisions(ctx, "default", "shop")
	if err != nil {
		t.Fatal(err)
	}
	var order []int64
	for _, r := range revs {
		order = append(order, r.Number)
	}
	if fmt.Sprint(order) != "[1 2 10]" {
		t.Fatalf("revisions = %v, want [1 2 10]", order)
	}
	got := revs[1]
	if got.Object.Name != "shop-v2" || got.Hash != "hash-2" || got.Run != "shop-v2" || got.App != "shop" || !got.Object.Status.Succeeded {
		t.Errorf("revision 2 = %+v (status %+v)", got, got.Object.Status)
	}
	if len(got.Resources) != 1 || got.Resources[0].Cluster != "east" || got.Resources[0].Kind != "Deployment" || got.Resources[0].Component != "web" {
		t.Errorf("revision 2 resources = %+v", got.Resources)
	}
	if got.Object.Spec.Application.Spec.Components[0].Type != "webservice" {
		t.Errorf("revision 2 spec = %+v", got.Object.Spec.Application.Spec)
	}
	if err := st.PutAppRevision(ctx, &store.AppRevision{Object: &v1beta1.ApplicationRevision{}, App: "shop", Number: 1}); err == nil {
		t.Error("a revision without a name was stored")
	}
}
