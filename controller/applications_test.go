package controller_test

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/api/v1beta1"
	"github.com/stepflow/stepflow/apiservertest"
	"github.com/stepflow/stepflow/controller"
)

// shopSpec is the spec of an Application of two webservices, or of web alone.
func shopSpec(withCache bool) string {
	s := `
components:
  - name: web
    type: webservice
    properties:
      image: nginx:1.27
`
	if withCache {
		s += `  - name: cache
    type: webservice
    properties:
      image: redis:7
`
	}
	return s
}

// apply creates or updates the test's Application shop with spec.
func (e *env) applyApp(spec string) {
	e.t.Helper()
	ctx := context.Background()
	var s v1beta1.ApplicationSpec
	if err := yaml.UnmarshalStrict([]byte(spec), &s); err != nil {
		e.t.Fatal(err)
	}
	var app v1beta1.Application
	err := e.c.Get(ctx, client.ObjectKey{Namespace: e.ns, Name: "shop"}, &app)
	if apierrors.IsNotFound(err) {
		app.Namespace, app.Name = e.ns, "shop"
		app.Labels = map[string]string{controller.ShardLabel: e.shard}
		app.Spec = s
		if err := e.c.Create(ctx, &app); err != nil {
			e.t.Fatal(err)
		}
		return
	}
	if err != nil {
		e.t.Fatal(err)
	}
	app.Spec = s
	if err := e.c.Update(ctx, &app); err != nil {
		e.t.Fatal(err)
	}
}

// waitApp polls the Application until it is at revision in one of phases.
func (e *env) waitApp(revision string, phases ...v1beta1.ApplicationPhase) *v1beta1.Application {
	e.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var app v1beta1.Application
	for {
		err := e.c.Get(context.Background(), client.ObjectKey{Namespace: e.ns, Name: "shop"}, &app)
		if err == nil && app.Status.LatestRevision != nil && app.Status.LatestRevision.Name == revision && slices.Contains(phases, app.Status.Phase) {
			return &app
		}
		if time.Now().After(deadline) {
			y, _ := yaml.Marshal(app.Status)
			e.t.Fatalf("application shop: timed out waiting for %s in %v (err %v); status:\n%s", revision, phases, err, y)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (e *env) deploymentGone(name string) bool {
	var d appsv1.Deployment
	return apierrors.IsNotFound(e.c.Get(context.Background(), client.ObjectKey{Namespace: e.ns, Name: name}, &d))
}

// versions are the resourceVersions of everything the Application's lifecycle writes: the
// Application, its revisions, trackers and runs, and the Deployments its runs applied.
func (e *env) versions() map[string]string {
	e.t.Helper()
	ctx := context.Background()
	out := map[string]string{}
	for _, l := range []struct {
		kind string
		list client.ObjectList
		opts []client.ListOption
	}{
		{"Application", &v1beta1.ApplicationList{}, []client.ListOption{client.InNamespace(e.ns)}},
		{"ApplicationRevision", &v1beta1.ApplicationRevisionList{}, []client.ListOption{client.InNamespace(e.ns)}},
		{"WorkflowRun", &v1alpha1.WorkflowRunList{}, []client.ListOption{client.InNamespace(e.ns)}},
		{"ResourceTracker", &v1beta1.ResourceTrackerList{}, []client.ListOption{client.MatchingLabels{"app.oam.dev/namespace": e.ns}}},
		{"Deployment", &appsv1.DeploymentList{}, []client.ListOption{client.InNamespace(e.ns)}},
	} {
		if err := e.c.List(ctx, l.list, l.opts...); err != nil {
			e.t.Fatal(err)
		}
		u := &unstructured.UnstructuredList{}
		b, _ := yaml.Marshal(l.list)
		if err := yaml.Unmarshal(b, &u.Object); err != nil {
			e.t.Fatal(err)
		}
		for _, it := range u.Object["items"].([]any) {
			m := it.(map[string]any)["metadata"].(map[string]any)
			out[fmt.Sprint(l.kind, "/", m["name"])] = fmt.Sprint(m["resourceVersion"])
		}
	}
	return out
}

// TestApplicationLifecycle: the controller delivers an Application as revision v1 through a
// WorkflowRun it owns, writes KubeVela's status back (running once the Deployments are ready,
// services healthy, applied resources), makes no write when it reconciles the unchanged
// Application again (a restarted controller), makes v2 for a changed spec and deletes the
// component it dropped, rolls back by delivering v1's spec as v3, and deletes what the
// Application applied when it is deleted, its finalizer going last.
func TestApplicationLifecycle(t *testing.T) {
	e := newEnv(t)
	stop := e.start(controllerOptions{applications: true})
	e.applyApp(shopSpec(true))
	// The deploy step waits until the components are healthy: the workflow runs until then.
	e.waitApp("shop-v1", v1beta1.ApplicationRunningWorkflow)
	apiservertest.MarkReady(t, e.c, e.ns)
	wr := e.waitPhase("shop-v1", v1alpha1.RunSucceeded)
	if len(wr.OwnerReferences) != 1 || wr.OwnerReferences[0].Kind != "Application" || wr.OwnerReferences[0].Name != "shop" {
		t.Errorf("run owners = %+v, want the Application", wr.OwnerReferences)
	}
	app := e.waitApp("shop-v1", v1beta1.ApplicationRunning)
	if len(app.Status.Services) != 2 || !app.Status.Services[0].Healthy || app.Status.Services[0].Message != "Ready:1/1" {
		t.Errorf("services = %+v", app.Status.Services)
	}
	if len(app.Status.AppliedResources) != 2 {
		t.Errorf("appliedResources = %+v, want the two Deployments", app.Status.AppliedResources)
	}
	if len(app.Finalizers) != 1 || app.Finalizers[0] != controller.FinalizerResourceTracker {
		t.Errorf("finalizers = %v", app.Finalizers)
	}
	var rt v1beta1.ResourceTracker
	if err := e.c.Get(context.Background(), client.ObjectKey{Name: "shop-v1-" + e.ns}, &rt); err != nil || len(rt.Spec.ManagedResources) != 2 {
		t.Errorf("resource tracker shop-v1-%s: %v, %+v", e.ns, err, rt.Spec.ManagedResources)
	}

	// A controller started again reconciles the unchanged Application: it sends no write and
	// nothing changes.
	stop()
	before := e.versions()
	var writes atomic.Int64
	stop = e.start(controllerOptions{applications: true, writes: &writes})
	time.Sleep(3 * time.Second) // past its first reconciles and a health recheck
	after := e.versions()
	if fmt.Sprint(before) != fmt.Sprint(after) {
		t.Errorf("re-reconciling the unchanged Application wrote:\nbefore %v\nafter  %v", before, after)
	}
	if n := writes.Load(); n != 0 {
		t.Errorf("re-reconciling the unchanged Application sent %d writes, want none", n)
	}

	// The running controller reconciles it again when its metadata changes (a label, not its
	// spec): still no write.
	var labelled v1beta1.Application
	if err := e.c.Get(context.Background(), client.ObjectKey{Namespace: e.ns, Name: "shop"}, &labelled); err != nil {
		t.Fatal(err)
	}
	labelled.Labels["team"] = "web"
	if err := e.c.Update(context.Background(), &labelled); err != nil {
		t.Fatal(err)
	}
	before = e.versions()
	time.Sleep(3 * time.Second) // past its reconcile and a health recheck
	after = e.versions()
	delete(before, "Application/shop")
	delete(after, "Application/shop")
	if fmt.Sprint(before) != fmt.Sprint(after) {
		t.Errorf("re-reconciling the relabelled Application wrote:\nbefore %v\nafter  %v", before, after)
	}
	if n := writes.Load(); n != 0 {
		t.Errorf("re-reconciling the relabelled Application sent %d writes, want none", n)
	}
	var relabelled v1beta1.Application
	if err := e.c.Get(context.Background(), client.ObjectKey{Namespace: e.ns, Name: "shop"}, &relabelled); err != nil {
		t.Fatal(err)
	}
	if relabelled.ResourceVersion != labelled.ResourceVersion {
		t.Errorf("the relabelled Application was written again: resourceVersion %s, then %s", labelled.ResourceVersion, relabelled.ResourceVersion)
	}

	e.applyApp(shopSpec(false))
	e.waitApp("shop-v2", v1beta1.ApplicationRunning, v1beta1.ApplicationUnhealthy)
	if !e.deploymentGone("cache") {
		t.Error("the cache Deployment v2 dropped is still there")
	}
	if e.deploymentGone("web") {
		t.Error("the web Deployment v2 kept is gone")
	}

	// Rollback as KubeVela does it: the Application's spec set back to revision 1's.
	var rev v1beta1.ApplicationRevision
	if err := e.c.Get(context.Background(), client.ObjectKey{Namespace: e.ns, Name: "shop-v1"}, &rev); err != nil {
		t.Fatal(err)
	}
	if !rev.Status.Succeeded {
		t.Errorf("revision shop-v1 status = %+v, want succeeded", rev.Status)
	}
	e.applyApp(shopSpec(true))
	e.waitApp("shop-v3", v1beta1.ApplicationRunning, v1beta1.ApplicationUnhealthy)
	if e.deploymentGone("cache") {
		t.Error("rolled back to v1's spec, the cache Deployment is not there")
	}

	var current v1beta1.Application
	if err := e.c.Get(context.Background(), client.ObjectKey{Namespace: e.ns, Name: "shop"}, &current); err != nil {
		t.Fatal(err)
	}
	if err := e.c.Delete(context.Background(), &current); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for !apierrors.IsNotFound(e.c.Get(context.Background(), client.ObjectKey{Namespace: e.ns, Name: "shop"}, &current)) {
		if time.Now().After(deadline) {
			t.Fatalf("the Application is still there: %+v", current.Status)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !e.deploymentGone("web") || !e.deploymentGone("cache") {
		t.Error("deleting the Application left its Deployments")
	}
	var rts v1beta1.ResourceTrackerList
	if err := e.c.List(context.Background(), &rts, client.MatchingLabels{"app.oam.dev/namespace": e.ns}); err != nil || len(rts.Items) != 0 {
		t.Errorf("resource trackers left: %d, %v", len(rts.Items), err)
	}
	stop()
}
