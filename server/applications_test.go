package server_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stepflow/stepflow/apiservertest"
	"github.com/stepflow/stepflow/cluster"
	"github.com/stepflow/stepflow/server"
	"github.com/stepflow/stepflow/server/servertest"
)

// shopApp is an Application of two webservices, or of web alone.
func shopApp(ns string, withCache bool) string {
	doc := fmt.Sprintf(`
apiVersion: core.oam.dev/v1beta1
kind: Application
metadata:
  name: shop
  namespace: %s
spec:
  components:
    - name: web
      type: webservice
      properties:
        image: nginx:1.27
`, ns)
	if withCache {
		doc += `    - name: cache
      type: webservice
      properties:
        image: redis:7
`
	}
	return doc
}

// TestApplicationsOverTheAPI: through /api/v1/applications, an Application is delivered as
// revision v1, reaches running once its Deployments are ready, an unchanged POST makes no
// revision, dropping a component makes v2 and deletes the dropped Deployment, rollback
// delivers v1's spec as v3, a token of another namespace sees nothing, and DELETE removes what
// the app applied. The Deployments' readiness is set by apiservertest.MarkReady, a stand-in for
// kube-controller-manager.
func TestApplicationsOverTheAPI(t *testing.T) {
	if testing.Short() {
		t.Skip("starts kube-apiserver")
	}
	api, err := apiservertest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = api.Stop() })
	kc, err := client.New(api.Config, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	ns := apiservertest.Namespace(t)
	if err := kc.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	srv, op, _ := start(t, servertest.Options{Configure: func(o *server.Options) {
		o.Assembly.Providers.Clusters = cluster.New(api.Config, cluster.Options{})
	}})
	path := "/api/v1/applications/" + ns + "/shop"

	// waitPhase polls the Application until its phase is one of phases.
	waitPhase := func(revision string, phases ...string) map[string]any {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			app := op.get(path).want(t, 200).json(t)
			phase, _ := at(app, "status.status").(string)
			if at(app, "status.latestRevision.name") == revision && strings.Contains(" "+strings.Join(phases, " ")+" ", " "+phase+" ") {
				return app
			}
			if time.Now().After(deadline) {
				t.Fatalf("application at %v in phase %q, want %s in %v", at(app, "status.latestRevision.name"), phase, revision, phases)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	up := op.postYAML("/api/v1/applications", shopApp(ns, true)).want(t, 200).json(t)
	if at(up, "items.0.revision") != "shop-v1" || at(up, "items.0.unchanged") != false {
		t.Fatalf("first POST: %v", up)
	}
	// The deploy step waits until the components are healthy: the workflow runs until then.
	waitPhase("shop-v1", "runningWorkflow")
	// A revision still being delivered has applied nothing yet: its resources are [], not null
	// (the OpenAPI document, which servertest checks every answer against, has no null there).
	revs := op.get(path+"/revisions").want(t, 200).json(t)
	if r, ok := at(revs, "items.0.resources").([]any); !ok || len(r) != 0 {
		t.Errorf("revisions while v1 is delivered = %v, want resources []", revs)
	}
	apiservertest.MarkReady(t, kc, ns)
	app := waitPhase("shop-v1", "running")
	if at(app, "status.services.0.healthy") != true || at(app, "status.services.0.message") != "Ready:1/1" {
		t.Errorf("services = %v", at(app, "status.services"))
	}
	if n := len(at(app, "status.appliedResources").([]any)); n != 2 {
		t.Errorf("appliedResources = %v, want the two Deployments", at(app, "status.appliedResources"))
	}

	up = op.postYAML("/api/v1/applications", shopApp(ns, true)).want(t, 200).json(t)
	if at(up, "items.0.revision") != "shop-v1" || at(up, "items.0.unchanged") != true {
		t.Fatalf("unchanged POST: %v", up)
	}

	op.postYAML("/api/v1/applications", shopApp(ns, false)).want(t, 200)
	waitPhase("shop-v2", "running", "unhealthy")
	var d appsv1.Deployment
	if err := kc.Get(ctx, client.ObjectKey{Namespace: ns, Name: "cache"}, &d); !apierrors.IsNotFound(err) {
		t.Errorf("cache Deployment after v2: err = %v, want NotFound (garbage-collected)", err)
	}
	revs = op.get(path+"/revisions").want(t, 200).json(t)
	if at(revs, "items.0.object.metadata.name") != "shop-v1" || at(revs, "items.1.object.metadata.name") != "shop-v2" || at(revs, "items.2") != nil {
		t.Errorf("revisions = %v", revs)
	}

	op.postJSON(path+"/rollback", map[string]int{"revision": 1}).want(t, 200)
	waitPhase("shop-v3", "running", "unhealthy")
	if err := kc.Get(ctx, client.ObjectKey{Namespace: ns, Name: "cache"}, &d); err != nil {
		t.Errorf("cache Deployment after rolling back to v1: %v", err)
	}
	op.postJSON(path+"/rollback", map[string]int{"revision": 7}).want(t, 404)

	other := caller{t: t, base: srv.URL, token: srv.Token(t, "viewer", "elsewhere")}
	other.get(path).want(t, 404)
	if items := at(other.get("/api/v1/applications").want(t, 200).json(t), "items").([]any); len(items) != 0 {
		t.Errorf("another namespace's token lists %v", items)
	}

	op.do("DELETE", path, "", nil).want(t, 204)
	for _, name := range []string{"web", "cache"} {
		if err := kc.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &d); !apierrors.IsNotFound(err) {
			t.Errorf("Deployment %s after DELETE: err = %v, want NotFound", name, err)
		}
	}
	op.get(path).want(t, 404)
}
