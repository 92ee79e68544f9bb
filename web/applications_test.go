package web_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stepflow/stepflow/apiservertest"
	"github.com/stepflow/stepflow/cluster"
	"github.com/stepflow/stepflow/server"
	"github.com/stepflow/stepflow/server/servertest"
	"github.com/stepflow/stepflow/web"
)

// shopApp is an Application of the webservices web and, withCache, cache.
func shopApp(ns string, withCache bool) string {
	doc := fmt.Sprintf(`apiVersion: core.oam.dev/v1beta1
kind: Application
metadata: {name: shop, namespace: %s}
spec:
  components:
    - name: web
      type: webservice
      properties: {image: "nginx:1.27"}
`, ns)
	if withCache {
		doc += `    - name: cache
      type: webservice
      properties: {image: "redis:7"}
`
	}
	return doc
}

// 10. An Application applied through the API is listed; its page shows its components healthy
// in the cluster and its delivery run's graph; a spec change makes revision 2, and the
// "Roll back to this revision" button, once confirmed, delivers v1's spec as revision 3; a
// viewer sees no rollback or delete; Delete, confirmed, removes what it applied.
// Then the same Application, typed into the Application designer, is deployed by its
// Deploy button and opened again with "Edit in designer". The server
// delivers to a real kube-apiserver; apiservertest.MarkReady stands in for the controllers and
// kubelets that would make the Deployments ready.
func (e *env) testApplications(t *testing.T) {
	kube, err := apiservertest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = kube.Stop() })
	kc, err := client.New(kube.Config, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ns := apiservertest.Namespace(t)
	if err := kc.Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	apiservertest.MarkReady(t, kc, ns)
	srv := servertest.Start(t, servertest.Options{Web: web.Files(), Configure: func(o *server.Options) {
		o.Assembly.Providers.Clusters = cluster.New(kube.Config, cluster.Options{})
	}})
	a := *e
	a.srv, a.operator, a.viewer = srv, srv.Token(t, "operator"), srv.Token(t, "viewer")
	// Three deliveries, each waiting for its Deployments, take longer than a tab's usual bound.
	a.tabLimit = 2 * time.Minute

	a.mustCall(t, http.StatusOK, a.operator, http.MethodPost, "/applications", shopApp(ns, true), nil)
	ctx := a.tab(t, a.operator)
	goTo(ctx, t, "#/applications")
	row := fmt.Sprintf(`#apps tr[data-app=%q]`, ns+"/shop")
	waitFor(ctx, t, "the Application listed", fmt.Sprintf(`document.querySelector('%s a') !== null`, row))
	do(ctx, t, "open it", chromedp.Click(chromedp.CSS(row+" a")))
	waitFor(ctx, t, "its page", `document.getElementById('app-title')?.textContent.startsWith('shop')`)

	healthy := func(names ...string) string {
		return fmt.Sprintf(`(() => {
			const rows = [...document.querySelectorAll('#app-components tr[data-component]')];
			const want = %q.split(' ');
			return rows.length === want.length && want.every(n => rows.some(r => r.dataset.component === n && r.dataset.cluster === 'local' && r.dataset.health === 'healthy'));
		})()`, strings.Join(names, " "))
	}
	running := `document.querySelector('#app-phase [data-phase="running"]') !== null`
	waitFor(ctx, t, "web and cache healthy in the local cluster", healthy("web", "cache"))
	waitFor(ctx, t, "the Application running", running)
	waitFor(ctx, t, "the delivery run's graph, every step succeeded", `(() => {
		const steps = [...document.querySelectorAll('svg.graph [data-step]')];
		return steps.length >= 2 && steps.every(s => s.dataset.phase === 'succeeded');
	})()`)
	if got := eval[string](ctx, t, `document.getElementById('app-run-link')?.getAttribute('href') || ''`); got != "#/runs/"+ns+"/shop-v1" {
		t.Errorf("the workflow links to %q, want the run shop-v1", got)
	}
	if got := eval[string](ctx, t, `(() => { const a = document.querySelector('#app-revisions tr[data-revision="1"] a'); a?.click(); return a?.textContent || ''; })()`); got != "shop-v1" {
		t.Fatalf("revision 1's run is linked as %q, want shop-v1", got)
	}
	waitFor(ctx, t, "the run page, linking back to the Application", fmt.Sprintf(`document.getElementById('run-application')?.getAttribute('href') === %q`, "#/applications/"+ns+"/shop"))
	// Clicked from the page itself: the run page redraws its head as the run's events come,
	// which can replace the link between finding it and clicking it.
	do(ctx, t, "back to the Application", chromedp.Evaluate[chromedp.Void](`document.getElementById('run-application').click()`))
	waitFor(ctx, t, "its page again", `document.querySelectorAll('#app-revisions tr[data-revision]').length === 1`)
	if n := eval[int](ctx, t, `document.querySelectorAll('#app-resources tbody tr').length`); n != 2 {
		t.Errorf("%d applied resources shown, want the two Deployments", n)
	}
	if eval[bool](ctx, t, `document.getElementById('rollback-1') !== null`) {
		t.Error("the revision delivered now offers a rollback to itself")
	}

	a.mustCall(t, http.StatusOK, a.operator, http.MethodPost, "/applications", shopApp(ns, false), nil)
	waitFor(ctx, t, "revision 2 listed, its change named", `(document.querySelector('#app-revisions tr[data-revision="2"] td.changes')?.textContent || '') === 'removed cache'`)
	waitFor(ctx, t, "v2 running with web alone", `document.getElementById('app-revision')?.textContent.startsWith('v2') && `+running+` && `+healthy("web"))
	e.screenshot(ctx, t, "v2")

	do(ctx, t, "roll back to v1", chromedp.Click(chromedp.ID("rollback-1")))
	waitFor(ctx, t, "the confirm dialog", `document.getElementById('confirm').open && document.getElementById('confirm-title').textContent.includes('v1')`)
	do(ctx, t, "confirm", chromedp.Click(chromedp.ID("confirm-ok")))
	waitFor(ctx, t, "revision 3 delivering v1's spec", `(document.querySelector('#app-revisions tr[data-revision="3"] td.changes')?.textContent || '').startsWith('same spec as v1')`)
	waitFor(ctx, t, "v3 running with web and cache again", `document.getElementById('app-revision')?.textContent.startsWith('v3') && `+running+` && `+healthy("web", "cache"))
	waitFor(ctx, t, "the graph of run shop-v3", `document.getElementById('app-run-link')?.textContent === 'shop-v3' && [...document.querySelectorAll('svg.graph [data-step]')].every(s => s.dataset.phase === 'succeeded')`)
	var d appsv1.Deployment
	if err := kc.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: "cache"}, &d); err != nil {
		t.Errorf("the cache Deployment after rolling back to v1: %v", err)
	}

	viewer := a.tab(t, a.viewer)
	goTo(viewer, t, "#/applications/"+ns+"/shop")
	waitFor(viewer, t, "the revisions, for a viewer", `document.querySelectorAll('#app-revisions tr[data-revision]').length === 3`)
	if eval[bool](viewer, t, `document.querySelector('[id^="rollback-"], #app-delete') !== null`) {
		t.Error("a viewer is shown a rollback or delete button")
	}
	if !eval[bool](viewer, t, `document.getElementById('read-only') !== null`) {
		t.Error("the viewer is not told the page is read only")
	}
	// On a phone's width (390 px) the page does not scroll sideways: its tables stack.
	do(viewer, t, "390 px wide", chromedp.EmulateViewport(390, 844))
	waitFor(viewer, t, "the tables stacked", `getComputedStyle(document.querySelector('#app-revisions thead')).display === 'none'`)
	if w := eval[int](viewer, t, `document.documentElement.scrollWidth`); w > 390 {
		t.Errorf("at 390 px the Application page is %d px wide", w)
	}
	e.screenshot(viewer, t, "narrow")
	goTo(viewer, t, "#/applications")
	waitFor(viewer, t, "the list", fmt.Sprintf(`document.querySelector('%s') !== null`, row))
	if w := eval[int](viewer, t, `document.documentElement.scrollWidth`); w > 390 {
		t.Errorf("at 390 px the Applications list is %d px wide", w)
	}

	// The tabs share the browser's cookies: the viewer's login replaced the operator's session.
	do(ctx, t, "log in as the operator again",
		chromedp.Navigate(a.srv.URL+"/#/login"),
		chromedp.WaitVisible(chromedp.ID("token")),
		chromedp.SendKeys(chromedp.ID("token"), a.operator),
		chromedp.Click(chromedp.ID("login-submit")),
		chromedp.WaitVisible(chromedp.ID("whoami")))
	goTo(ctx, t, "#/applications/"+ns+"/shop")
	waitFor(ctx, t, "the Delete button", enabled("app-delete"))
	do(ctx, t, "delete", chromedp.Click(chromedp.ID("app-delete")))
	waitFor(ctx, t, "the confirm dialog", `document.getElementById('confirm').open && document.getElementById('confirm-title').textContent.includes('Delete')`)
	do(ctx, t, "confirm", chromedp.Click(chromedp.ID("confirm-ok")))
	waitFor(ctx, t, "the list without it", fmt.Sprintf(`location.hash === '#/applications' && document.querySelector('#apps td.empty') !== null && document.querySelector('%s') === null`, row))
	for _, name := range []string{"web", "cache"} {
		if err := kc.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: name}, &d); !apierrors.IsNotFound(err) {
			t.Errorf("Deployment %s after Delete: err = %v, want NotFound", name, err)
		}
	}

	// Designed and deployed: the designer's Deploy delivers the YAML it holds, and the
	// Application's page opens it again in the designer.
	do(ctx, t, "open the Application designer", chromedp.Click(chromedp.ID("design-new-app")))
	waitFor(ctx, t, "the designer", `location.hash === '#/designer/app' && document.querySelector('.palette-item[data-kind="component"]') !== null`)
	typeInDesigner(ctx, t, shopApp(ns, false))
	waitFor(ctx, t, "the canvas to follow the YAML", `document.querySelector('.designer-node[data-step="web"]') !== null`)
	do(ctx, t, "deploy", chromedp.Click(chromedp.ID("designer-deploy")))
	waitFor(ctx, t, "the Application's page", fmt.Sprintf(`location.hash === %q`, "#/applications/"+ns+"/shop"))
	waitFor(ctx, t, "web healthy again", healthy("web"))
	do(ctx, t, "edit it in the designer", chromedp.Click(chromedp.ID("design-app")))
	waitFor(ctx, t, "its components on the canvas", `document.querySelector('.designer-node[data-step="web"]') !== null && document.getElementById('designer-yaml').shadowRoot.querySelector('.cm-content').textContent.includes('nginx:1.27')`)
}
