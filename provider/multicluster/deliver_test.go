package multicluster_test

import (
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/api/v1beta1"
	"github.com/stepflow/stepflow/apiservertest"
	"github.com/stepflow/stepflow/application"
	"github.com/stepflow/stepflow/assembly"
	"github.com/stepflow/stepflow/cluster"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/store"
	"github.com/stepflow/stepflow/store/sqlite"
)

// eu and us are two real API servers; eu is also the local cluster.
var eu, us *apiservertest.Cluster

func TestMain(m *testing.M) { apiservertest.Main(m, &eu, &us) }

// world is two clusters named eu and us (contexts of a kubeconfig file), a namespace in both,
// and a readiness stand-in in both.
type world struct {
	t        testing.TB
	ns       string
	clients  map[string]client.Client
	file     string
	ready    *readiness
	registry *cluster.Registry
}

func newWorld(t testing.TB, extraNamespaces ...string) *world {
	t.Helper()
	return newWorldWith(t, readyAfter, extraNamespaces...)
}

// newWorldWith is newWorld with Deployments made ready after instead of readyAfter.
func newWorldWith(t testing.TB, after time.Duration, extraNamespaces ...string) *world {
	t.Helper()
	if testing.Short() {
		t.Skip("starts kube-apiserver")
	}
	w := &world{t: t, ns: apiservertest.Namespace(t), clients: map[string]client.Client{}}
	kc := clientcmdapi.NewConfig()
	for name, c := range map[string]*apiservertest.Cluster{"eu": eu, "us": us} {
		cl, err := client.New(c.Config, client.Options{})
		if err != nil {
			t.Fatal(err)
		}
		w.clients[name] = cl
		for _, ns := range append([]string{w.ns}, extraNamespaces...) {
			err := cl.Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
			if err != nil && !apierrors.IsAlreadyExists(err) {
				t.Fatal(err)
			}
		}
		kc.Clusters[name] = &clientcmdapi.Cluster{Server: c.Config.Host, CertificateAuthorityData: c.Config.CAData}
		kc.AuthInfos[name] = &clientcmdapi.AuthInfo{ClientCertificateData: c.Config.CertData, ClientKeyData: c.Config.KeyData}
		kc.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: name}
	}
	w.file = filepath.Join(t.TempDir(), "clusters")
	if err := clientcmd.WriteToFile(*kc, w.file); err != nil {
		t.Fatal(err)
	}
	w.registry = cluster.New(eu.Config, cluster.Options{File: w.file, Secrets: w.clients["eu"]})
	w.ready = startReadiness(t, w.clients, append([]string{w.ns}, extraNamespaces...), after)
	return w
}

// readiness stands in for kube-controller-manager and the kubelets (a Deployment's status
// made ready a while (after) after it is first seen, unless its image says never-ready) and for an
// ingress controller (an Ingress gets an address). It polls the API servers.
type readiness struct {
	after     time.Duration
	mu        sync.Mutex
	firstSeen map[string]time.Time // cluster/namespace/name of Deployments
	readyAt   map[string]time.Time
}

const readyAfter = 700 * time.Millisecond

func startReadiness(t testing.TB, clients map[string]client.Client, namespaces []string, after time.Duration) *readiness {
	r := &readiness{after: after, firstSeen: map[string]time.Time{}, readyAt: map[string]time.Time{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			for name, c := range clients {
				for _, ns := range namespaces {
					r.pass(ctx, name, c, ns)
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return r
}

func (r *readiness) pass(ctx context.Context, clusterName string, c client.Client, ns string) {
	var deps appsv1.DeploymentList
	if err := c.List(ctx, &deps, client.InNamespace(ns)); err == nil {
		for i := range deps.Items {
			d := &deps.Items[i]
			key := clusterName + "/" + ns + "/" + d.Name
			r.mu.Lock()
			first, seen := r.firstSeen[key]
			if !seen {
				first = time.Now()
				r.firstSeen[key] = first
			}
			r.mu.Unlock()
			if time.Since(first) < r.after || strings.Contains(d.Spec.Template.Spec.Containers[0].Image, "never-ready") {
				continue
			}
			want := int32(1)
			if d.Spec.Replicas != nil {
				want = *d.Spec.Replicas
			}
			if d.Status.ObservedGeneration == d.Generation && d.Status.ReadyReplicas == want {
				continue
			}
			d.Status = appsv1.DeploymentStatus{ObservedGeneration: d.Generation, Replicas: want, ReadyReplicas: want, UpdatedReplicas: want, AvailableReplicas: want}
			if c.Status().Update(ctx, d) == nil {
				r.mu.Lock()
				if _, ok := r.readyAt[key]; !ok {
					r.readyAt[key] = time.Now()
				}
				r.mu.Unlock()
			}
		}
	}
	var ings networkingv1.IngressList
	if err := c.List(ctx, &ings, client.InNamespace(ns)); err == nil {
		for i := range ings.Items {
			in := &ings.Items[i]
			if len(in.Status.LoadBalancer.Ingress) > 0 {
				continue
			}
			in.Status.LoadBalancer.Ingress = []networkingv1.IngressLoadBalancerIngress{{IP: "203.0.113.7"}}
			_ = c.Status().Update(ctx, in)
		}
	}
}

func (r *readiness) times(key string) (first, ready time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.firstSeen[key], r.readyAt[key]
}

// settled tells the test when the run finished or suspended.
type settled chan *engine.Run

func (s settled) RunChanged(run *engine.Run) {
	st := run.Object.Status
	if st.Finished || st.Suspend {
		select {
		case s <- run:
		default:
		}
	}
}

// delivery runs the WorkflowRun application.RunSpec makes for app, embedded: the engine over
// SQLite, as `stepflow run` drives it, with eu as the local cluster and the clusters file.
type delivery struct {
	w   *world
	a   *assembly.Assembly
	st  *sqlite.Store
	key engine.Key
	out settled
}

func (w *world) deliver(appYAML string, stored ...*v1beta1.WorkflowStepDefinition) *delivery {
	w.t.Helper()
	return w.deliverWith(assembly.Config{}, nil, appYAML, stored...)
}

// deliverWith is deliver with cfg (its Providers and Wait set here) and the X-Definitions
// the run carries.
func (w *world) deliverWith(cfg assembly.Config, defs *application.DeliveryDefinitions, appYAML string, stored ...*v1beta1.WorkflowStepDefinition) *delivery {
	t := w.t
	t.Helper()
	app := &v1beta1.Application{}
	if err := yaml.UnmarshalStrict([]byte(appYAML), app); err != nil {
		t.Fatal(err)
	}
	app.Namespace = w.ns
	spec, err := application.RunSpec(app, app.Name+"-v1", defs)
	if err != nil {
		t.Fatal(err)
	}
	wr := &v1alpha1.WorkflowRun{ObjectMeta: metav1.ObjectMeta{Name: app.Name, Namespace: w.ns}, Spec: spec}
	ctx := context.Background()
	st, err := sqlite.Open(ctx, sqlite.Options{Path: filepath.Join(t.TempDir(), "stepflow.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	d := &delivery{w: w, st: st, key: engine.Key{Namespace: w.ns, Name: app.Name}, out: make(settled, 1)}
	cfg.Providers = assembly.Providers{Clusters: w.registry}
	cfg.Wait = engine.Backoff{Initial: 100 * time.Millisecond, Factor: 2, Max: 400 * time.Millisecond}
	d.a, err = assembly.New(cfg, assembly.Mode{Store: st, Definitions: st, Observers: []engine.Observer{d.out}})
	if err != nil {
		t.Fatal(err)
	}
	if len(stored) > 0 {
		if err := st.PutObjects(ctx, stored, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Create(ctx, &engine.Run{Object: wr}, store.CreateNew); err != nil {
		t.Fatal(err)
	}
	ectx, cancel := context.WithCancel(ctx)
	stopped := make(chan struct{})
	go func() { _ = d.a.Engine.Start(ectx); close(stopped) }()
	t.Cleanup(func() { cancel(); <-stopped })
	d.a.Engine.Enqueue(d.key)
	return d
}

// wait returns the run once it finished or suspended.
func (d *delivery) wait() *engine.Run {
	d.w.t.Helper()
	select {
	case run := <-d.out:
		return run
	case <-time.After(40 * time.Second):
		run, _ := d.st.Load(context.Background(), d.key)
		var y []byte
		if run != nil {
			y, _ = yaml.Marshal(run.Object.Status)
		}
		d.w.t.Fatalf("the run did not settle in 40 s; status:\n%s", y)
	}
	return nil
}

func (d *delivery) succeeded() *engine.Run {
	d.w.t.Helper()
	run := d.wait()
	if run.Object.Status.Phase != v1alpha1.RunSucceeded {
		y, _ := yaml.Marshal(run.Object.Status)
		d.w.t.Fatalf("run %s, want succeeded:\n%s", run.Object.Status.Phase, y)
	}
	return run
}

func (w *world) deployment(clusterName, ns, name string) *appsv1.Deployment {
	w.t.Helper()
	var d appsv1.Deployment
	if err := w.clients[clusterName].Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, &d); err != nil {
		w.t.Fatalf("Deployment %s/%s in %s: %v", ns, name, clusterName, err)
	}
	return &d
}

func (w *world) has(clusterName string, obj client.Object) bool {
	w.t.Helper()
	err := w.clients[clusterName].Get(context.Background(), client.ObjectKeyFromObject(obj), obj)
	if err != nil && !apierrors.IsNotFound(err) {
		w.t.Fatal(err)
	}
	return err == nil
}

func applied(t testing.TB, run *engine.Run, step string) []application.Applied {
	t.Helper()
	raw, ok := run.Vars[application.AppliedVar+step]
	if !ok {
		t.Fatalf("no run variable %s%s; vars: %v", application.AppliedVar, step, slices.Collect(mapsKeys(run.Vars)))
	}
	var out []application.Applied
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func mapsKeys(m map[string]json.RawMessage) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

const shop = `
metadata: {name: shop}
spec:
  components:
  - name: frontend
    type: webservice
    properties: {image: nginx:1.27, ports: [{port: 80, expose: true}]}
    traits:
    - type: scaler
      properties: {replicas: 2}
    - type: gateway
      properties: {domain: shop.example.com, http: {"/": 80}}
  policies:
  - name: both
    type: topology
    properties: {clusters: [eu, us]}
`

// KubeVela: an Application without a workflow, under one topology policy of two clusters, gets
// one deploy step, which applies the component with its traits' objects into both and
// succeeds once both are healthy.
func TestDeployToTwoClustersOfATopology(t *testing.T) {
	w := newWorld(t)
	run := w.deliver(shop).succeeded()
	if steps := run.Object.Status.Steps; len(steps) != 1 || steps[0].Name != "deploy-both" || steps[0].Type != "deploy" {
		t.Fatalf("steps %+v, want one deploy named deploy-both", steps)
	}
	for _, c := range []string{"eu", "us"} {
		d := w.deployment(c, w.ns, "frontend")
		if *d.Spec.Replicas != 2 || d.Labels[application.LabelAppName] != "shop" || d.Labels[application.LabelAppComponent] != "frontend" {
			t.Errorf("%s: Deployment replicas %d labels %v", c, *d.Spec.Replicas, d.Labels)
		}
		if !w.has(c, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: w.ns, Name: "frontend"}}) {
			t.Errorf("%s: no Service frontend", c)
		}
		if !w.has(c, &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Namespace: w.ns, Name: "frontend"}}) {
			t.Errorf("%s: no Ingress frontend", c)
		}
	}
	recs := applied(t, run, "deploy-both")
	var got []string
	for _, r := range recs {
		got = append(got, r.Cluster+" "+r.Kind+" "+r.Namespace+"/"+r.Name+" "+r.Component+" "+r.Trait)
	}
	slices.Sort(got)
	want := []string{
		"eu Deployment " + w.ns + "/frontend frontend ",
		"eu Ingress " + w.ns + "/frontend frontend gateway",
		"eu Service " + w.ns + "/frontend frontend gateway",
		"us Deployment " + w.ns + "/frontend frontend ",
		"us Ingress " + w.ns + "/frontend frontend gateway",
		"us Service " + w.ns + "/frontend frontend gateway",
	}
	// webservice with an exposed port renders its own Service too, of the same name.
	got = slices.Compact(got)
	for _, wnt := range want {
		if !slices.Contains(got, wnt) {
			t.Errorf("applied %v\nlacks %q", got, wnt)
		}
	}
}

// KubeVela: per-cluster deploy steps, each with its topology and the overrides for that
// cluster: a property, a trait's property, and a trait disabled.
func TestOverridePerCluster(t *testing.T) {
	w := newWorld(t)
	run := w.deliver(shop + `
  - name: eu-only
    type: topology
    properties: {clusters: [eu]}
  - name: us-only
    type: topology
    properties: {clusters: [us]}
  - name: us-bigger
    type: override
    properties:
      components:
      - type: webservice
        properties: {image: nginx:1.28}
        traits:
        - type: scaler
          properties: {replicas: 3}
        - type: gateway
          disable: true
  workflow:
    steps:
    - {name: eu, type: deploy, properties: {policies: [eu-only]}}
    - {name: us, type: deploy, properties: {policies: [us-bigger, us-only]}}
`).succeeded()
	_ = run
	euDep, usDep := w.deployment("eu", w.ns, "frontend"), w.deployment("us", w.ns, "frontend")
	if *euDep.Spec.Replicas != 2 || euDep.Spec.Template.Spec.Containers[0].Image != "nginx:1.27" {
		t.Errorf("eu: replicas %d image %s, want 2 nginx:1.27", *euDep.Spec.Replicas, euDep.Spec.Template.Spec.Containers[0].Image)
	}
	if *usDep.Spec.Replicas != 3 || usDep.Spec.Template.Spec.Containers[0].Image != "nginx:1.28" {
		t.Errorf("us: replicas %d image %s, want 3 nginx:1.28", *usDep.Spec.Replicas, usDep.Spec.Template.Spec.Containers[0].Image)
	}
	if !w.has("eu", &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Namespace: w.ns, Name: "frontend"}}) {
		t.Error("eu: no Ingress, its gateway is not disabled there")
	}
	if w.has("us", &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Namespace: w.ns, Name: "frontend"}}) {
		t.Error("us: an Ingress, though the override disables the gateway there")
	}
}

// KubeVela: deploy with auto: false suspends the run before it deploys anything; a resume
// deploys.
func TestDeployAutoFalseWaitsForApproval(t *testing.T) {
	w := newWorld(t)
	d := w.deliver(shop + `
  workflow:
    steps:
    - {name: prod, type: deploy, properties: {policies: [both], auto: false}}
`)
	run := d.wait()
	if run.Object.Status.Phase != v1alpha1.RunSuspending || !run.Object.Status.Suspend {
		t.Fatalf("run %s (suspend %v), want suspended before the deploy", run.Object.Status.Phase, run.Object.Status.Suspend)
	}
	if msg := run.Object.Status.Steps[0].Message; msg != `Waiting approval to the deploy step "prod"` {
		t.Errorf("step message %q", msg)
	}
	for _, c := range []string{"eu", "us"} {
		if w.has(c, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: w.ns, Name: "frontend"}}) {
			t.Fatalf("%s: the Deployment exists before the approval", c)
		}
	}
	if _, err := d.a.Engine.Operate(context.Background(), d.key, engine.Operation{Kind: engine.OpResume, By: "test"}); err != nil {
		t.Fatal(err)
	}
	d.succeeded()
	for _, c := range []string{"eu", "us"} {
		w.deployment(c, w.ns, "frontend")
	}
}

// A component that never becomes healthy fails its deploy once the deploy's timeout has
// passed, with the component's health message, rather than holding the run for ever.
func TestUnhealthyComponentFailsTheDeployWithItsHealthMessage(t *testing.T) {
	w := newWorld(t)
	d := w.deliver(`
metadata: {name: stuck}
spec:
  components:
  - name: api
    type: webservice
    properties: {image: registry.example/never-ready:1}
  workflow:
    steps:
    - {name: ship, type: deploy, properties: {timeout: 2s}}
`)
	run := d.wait()
	st := run.Object.Status
	if st.Phase != v1alpha1.RunFailed {
		t.Fatalf("run %s, want failed", st.Phase)
	}
	step := st.Steps[0]
	if step.Phase != v1alpha1.StepFailed || !strings.Contains(step.Message, "not healthy after 2s") ||
		!strings.Contains(step.Message, "component api in cluster local") || !strings.Contains(step.Message, "Ready:0/1") {
		t.Errorf("step %s/%s %q, want failed with the health message", step.Phase, step.Reason, step.Message)
	}
}

// KubeVela: without policies, each component gets an apply-component step, after those of the
// components it dependsOn: a component is applied only once those are healthy.
func TestApplyComponentInDependsOnOrder(t *testing.T) {
	w := newWorld(t)
	run := w.deliver(`
metadata: {name: layered}
spec:
  components:
  - name: web
    type: webservice
    dependsOn: [api]
    properties: {image: nginx:1.27}
  - name: api
    type: webservice
    dependsOn: [db]
    properties: {image: api:1}
  - name: db
    type: worker
    properties: {image: postgres:17}
`).succeeded()
	var names []string
	for _, s := range run.Object.Status.Steps {
		names = append(names, s.Name+":"+s.Type)
	}
	if strings.Join(names, " ") != "db:apply-component api:apply-component web:apply-component" {
		t.Errorf("steps %v", names)
	}
	order := []string{"db", "api", "web"}
	for i := 1; i < len(order); i++ {
		_, depReady := w.ready.times("eu/" + w.ns + "/" + order[i-1])
		first, _ := w.ready.times("eu/" + w.ns + "/" + order[i])
		if depReady.IsZero() || first.Before(depReady) {
			t.Errorf("%s was created at %v, before %s was ready at %v", order[i], first, order[i-1], depReady)
		}
	}
	if recs := applied(t, run, "api"); len(recs) != 1 || recs[0].Kind != "Deployment" || recs[0].Cluster != "" || recs[0].ComponentType != "webservice" {
		t.Errorf("api applied %+v", recs)
	}
}

// The seed SRE case, a KubeVela Application with its own workflow, unchanged: a step group of
// deploy steps preloads images in two regions at once (each region a topology policy with its
// namespace), then the service is deployed.
func TestKubeVelaApplicationWithItsOwnWorkflow(t *testing.T) {
	w := newWorld(t, "preload")
	run := w.deliver(`
apiVersion: core.oam.dev/v1beta1
kind: Application
metadata:
  name: checkout
spec:
  components:
  - name: image-preloader
    type: worker
    properties:
      image: registry.example/checkout:2.4.0
      cmd: ["sh", "-c", "true"]
  - name: checkout
    type: webservice
    properties: {image: registry.example/checkout:2.4.0, ports: [{port: 8080}]}
    traits:
    - type: scaler
      properties: {replicas: 2}
  policies:
  - name: region-a
    type: topology
    properties: {clusters: [eu], namespace: preload}
  - name: region-b
    type: topology
    properties: {clusters: [us], namespace: preload}
  - name: preloader-only
    type: override
    properties: {selector: [image-preloader], components: []}
  - name: service-only
    type: override
    properties: {selector: [checkout], components: []}
  - name: everywhere
    type: topology
    properties: {clusters: [eu, us]}
  workflow:
    steps:
    - name: preload-images
      type: step-group
      subSteps:
      - name: preload-region-a
        type: deploy
        properties: {policies: [preloader-only, region-a]}
      - name: preload-region-b
        type: deploy
        properties: {policies: [preloader-only, region-b]}
    - name: deploy-service
      type: deploy
      properties: {policies: [service-only, everywhere]}
`).succeeded()
	for _, c := range []string{"eu", "us"} {
		w.deployment(c, "preload", "image-preloader")
		w.deployment(c, w.ns, "checkout")
		if w.has(c, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: w.ns, Name: "image-preloader"}}) {
			t.Errorf("%s: the preloader was deployed by the service's step too", c)
		}
	}
	for _, s := range []string{"preload-region-a", "preload-region-b", "deploy-service"} {
		if len(applied(t, run, s)) == 0 {
			t.Errorf("step %s recorded nothing applied", s)
		}
	}
}

// KubeVela: a topology policy selects clusters by the labels of their cluster Secrets in
// vela-system.
func TestTopologyByClusterLabels(t *testing.T) {
	w := newWorld(t)
	name := w.ns + "-us"
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: "vela-system", Name: name, Labels: map[string]string{
			cluster.LabelCredentialType: "X509Certificate", "region": "us", "suite": w.ns,
		}},
		Data: map[string][]byte{
			cluster.KeyEndpoint: []byte(us.Config.Host), cluster.KeyCA: us.Config.CAData,
			cluster.KeyCert: us.Config.CertData, cluster.KeyKey: us.Config.KeyData,
		},
	}
	hub := w.clients["eu"]
	if err := hub.Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "vela-system"}}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	if err := hub.Create(t.Context(), secret); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = hub.Delete(context.Background(), secret) })
	run := w.deliver(`
metadata: {name: labelled}
spec:
  components:
  - {name: api, type: webservice, properties: {image: api:1}}
  policies:
  - {name: in-us, type: topology, properties: {clusterLabelSelector: {suite: ` + w.ns + `}}}
`).succeeded()
	recs := applied(t, run, "deploy-in-us")
	if len(recs) != 1 || recs[0].Cluster != name {
		t.Fatalf("applied %+v, want the Deployment in cluster %s", recs, name)
	}
	w.deployment("us", w.ns, "api")
	if w.has("eu", &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: w.ns, Name: "api"}}) {
		t.Error("eu, whose labels do not match, has the Deployment")
	}
}

// KubeVela's apply-once policy: a delivery again of the same revision keeps what others changed
// in the cluster; a change of the Application is applied.
func TestApplyOnceKeepsDrift(t *testing.T) {
	w := newWorld(t)
	app := `
metadata: {name: once}
spec:
  components:
  - {name: api, type: webservice, properties: {image: api:1}}
  policies:
  - {name: once, type: apply-once, properties: {enable: true}}
`
	w.deliver(app).succeeded()
	hub := w.clients["eu"]
	d := w.deployment("eu", w.ns, "api")
	d.Spec.Template.Spec.Containers[0].Image = "api:hotfix"
	if err := hub.Update(t.Context(), d); err != nil {
		t.Fatal(err)
	}
	w.deliver(app).succeeded()
	if img := w.deployment("eu", w.ns, "api").Spec.Template.Spec.Containers[0].Image; img != "api:hotfix" {
		t.Errorf("image %s after a second delivery, want the drifted api:hotfix kept", img)
	}
	w.deliver(strings.Replace(app, "api:1", "api:2", 1)).succeeded()
	if img := w.deployment("eu", w.ns, "api").Spec.Template.Spec.Containers[0].Image; img != "api:2" {
		t.Errorf("image %s after the Application changed, want api:2", img)
	}
}

// A step definition written as KubeVela's older ones are, in the legacy vela/op form, runs
// unchanged: op.#Load, op.#ApplyComponent (output back in the action), op.#ListClusters and
// op.#GetPlacementsFromTopologyPolicies.
func TestLegacyOpDefinition(t *testing.T) {
	w := newWorld(t)
	def := &v1beta1.WorkflowStepDefinition{
		ObjectMeta: metav1.ObjectMeta{Name: "legacy-apply", Namespace: w.ns},
		Spec: v1beta1.WorkflowStepDefinitionSpec{Schematic: &v1beta1.Schematic{CUE: &v1beta1.CUE{Template: `
import "vela/op"

parameter: {component: string, cluster: *"" | string}
load: op.#Load @step(1)
apply: op.#ApplyComponent & {
	value:   load.value[parameter.component]
	cluster: parameter.cluster
} @step(2)
clusters: op.#ListClusters @step(3)
where: op.#GetPlacementsFromTopologyPolicies & {policies: ["both"]} @step(4)
`}}},
	}
	run := w.deliver(`
metadata: {name: legacy}
spec:
  components:
  - {name: api, type: webservice, properties: {image: api:1}}
  policies:
  - {name: both, type: topology, properties: {clusters: [eu, us]}}
  workflow:
    steps:
    - name: apply
      type: legacy-apply
      properties: {component: api, cluster: us}
      outputs:
      - name: image
        valueFrom: apply.output.spec.template.spec.containers[0].image
      - name: clusters
        valueFrom: clusters.outputs.clusters
      - name: where
        valueFrom: where.placements
`, def).succeeded()
	w.deployment("us", w.ns, "api")
	for name, want := range map[string]string{
		"image":    `"api:1"`,
		"clusters": `["eu","us"]`,
		"where":    `[{"cluster":"eu","namespace":"` + w.ns + `"},{"cluster":"us","namespace":"` + w.ns + `"}]`,
	} {
		if got := string(run.Vars[name]); got != want {
			t.Errorf("output %s = %s, want %s", name, got, want)
		}
	}
}

// A deploy step type written as KubeVela's own (vela/multicluster's #Deploy and
// vela/builtin's #Suspend, no stepflow parameter), stored in the Application's namespace, takes
// the built-in's place and delivers as it does.
func TestKubeVelaStyleDeployDefinition(t *testing.T) {
	w := newWorld(t)
	def := &v1beta1.WorkflowStepDefinition{
		ObjectMeta: metav1.ObjectMeta{Name: "deploy", Namespace: w.ns},
		Spec: v1beta1.WorkflowStepDefinitionSpec{Schematic: &v1beta1.Schematic{CUE: &v1beta1.CUE{Template: `
import (
	"vela/multicluster"
	"vela/builtin"
)

if parameter.auto == false {
	suspend: builtin.#Suspend & {$params: message: "Waiting approval to the deploy step \"\(context.stepName)\""}
}
deploy: multicluster.#Deploy & {
	$params: {
		policies:                 parameter.policies
		parallelism:              parameter.parallelism
		ignoreTerraformComponent: parameter.ignoreTerraformComponent
	}
}
parameter: {
	auto:                     *true | bool
	policies:                 *[] | [...string]
	parallelism:              *5 | int
	ignoreTerraformComponent: *true | bool
}
`}}},
	}
	run := w.deliver(shop, def).succeeded()
	for _, c := range []string{"eu", "us"} {
		w.deployment(c, w.ns, "frontend")
	}
	if len(applied(t, run, "deploy-both")) == 0 {
		t.Error("nothing recorded as applied")
	}
}

// requestCount counts the requests a cluster client sends, by method and path.
type requestCount struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *requestCount) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTrip(func(r *http.Request) (*http.Response, error) {
		c.mu.Lock()
		c.n[r.Method+" "+r.URL.Path]++
		c.mu.Unlock()
		return rt.RoundTrip(r)
	})
}

func (c *requestCount) of(method, path string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[method+" "+path]
}

type roundTrip func(*http.Request) (*http.Response, error)

func (f roundTrip) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// A deploy step waiting for its components is evaluated again whenever it is woken. Such an
// evaluation reads the objects the step applied before instead of applying the same values
// again (a server-side apply that changes nothing still costs the API server a whole apply),
// and applies again an object whose spec someone changed meanwhile.
func TestWaitingDeployReadsWhatItApplied(t *testing.T) {
	w := newWorldWith(t, 3*time.Second)
	count := &requestCount{n: map[string]int{}}
	w.registry = cluster.New(eu.Config, cluster.Options{File: w.file, Secrets: w.clients["eu"], WrapTransport: count.wrap})
	app := `
metadata: {name: shop}
spec:
  components:
  - name: api
    type: webservice
    properties: {image: api:1}
    traits:
    - {type: scaler, properties: {replicas: 2}}
  policies:
  - {name: here, type: topology, properties: {clusters: [eu]}}
`
	d := w.deliver(app)
	path := "/apis/apps/v1/namespaces/" + w.ns + "/deployments/api"
	// While the step waits, someone scales the Deployment by hand: its generation moves.
	deadline := time.Now().Add(20 * time.Second)
	for count.of(http.MethodGet, path) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the waiting deploy step never read its Deployment again")
		}
		time.Sleep(20 * time.Millisecond)
	}
	dep := w.deployment("eu", w.ns, "api")
	dep.Spec.Replicas = new(int32(5))
	if err := w.clients["eu"].Update(t.Context(), dep); err != nil {
		t.Fatal(err)
	}
	d.succeeded()
	if got := *w.deployment("eu", w.ns, "api").Spec.Replicas; got != 2 {
		t.Errorf("replicas %d after the deploy, want the applied 2 back", got)
	}
	gets, patches := count.of(http.MethodGet, path), count.of(http.MethodPatch, path)
	if patches != 2 {
		t.Errorf("%d applies of the Deployment, want 2: the first, and one after it was scaled by hand", patches)
	}
	if gets < 2 {
		t.Errorf("%d reads of the Deployment, want one per evaluation that found it unchanged or changed (at least 2)", gets)
	}
}
