package controller_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/yaml"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/api/v1beta1"
	"github.com/stepflow/stepflow/apiservertest"
	"github.com/stepflow/stepflow/assembly"
	stepcluster "github.com/stepflow/stepflow/cluster"
	"github.com/stepflow/stepflow/controller"
	"github.com/stepflow/stepflow/engine"
)

var cluster *apiservertest.Cluster

func TestMain(m *testing.M) { apiservertest.Main(m, &cluster) }

// env is one test's controller and its client; runs of the test carry its shard label, so the
// controllers of other tests leave them alone.
type env struct {
	t     *testing.T
	c     client.Client
	shard string
	ns    string
	// ctrl is the controller start last started.
	ctrl *controller.Controller
}

func newEnv(t *testing.T) *env {
	t.Helper()
	if cluster == nil {
		t.Skip("needs kube-apiserver and etcd (not in -short mode)")
	}
	scheme, err := controller.NewScheme()
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(cluster.Config, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	name := strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-"))
	if len(name) > 50 {
		name = name[:50]
	}
	// A namespace of its own each time, also when the tests run again in one process (-count).
	name = fmt.Sprintf("%s-%d", name, envs.Add(1))
	e := &env{t: t, c: c, shard: name, ns: name}
	if err := c.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: e.ns}}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	return e
}

// envs numbers the tests' namespaces.
var envs atomic.Int64

// controllerOptions are what a test may change about the controller it starts.
type controllerOptions struct {
	leaderElect bool
	wait        engine.Backoff
	retention   engine.Retention
	// applications has the controller reconcile Applications too.
	applications bool
	// schedules has the controller reconcile WorkflowSchedules too.
	schedules bool
	// clock, when set, is the controller's clock (a fake one).
	clock engine.Clock
	// writes, when set, counts the requests of the manager's and the clusters' clients that
	// write (every method but GET).
	writes *atomic.Int64
}

// start runs a controller for the test's shard until the returned function stops it.
func (e *env) start(o controllerOptions) (stop func()) {
	e.t.Helper()
	scheme, _ := controller.NewScheme()
	cfg := rest.CopyConfig(cluster.Config)
	if o.writes != nil {
		cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper {
			return roundTripFunc(func(r *http.Request) (*http.Response, error) {
				if r.Method != http.MethodGet {
					o.writes.Add(1)
				}
				return rt.RoundTrip(r)
			})
		}
	}
	mgr, err := ctrl.NewManager(cfg, manager.Options{
		Scheme:                        scheme,
		Cache:                         controller.CacheOptions(e.shard),
		Metrics:                       metricsserver.Options{BindAddress: "0"},
		LeaderElection:                o.leaderElect,
		LeaderElectionID:              "stepflow-" + e.shard,
		LeaderElectionNamespace:       e.ns,
		LeaderElectionReleaseOnCancel: true,
		LeaseDuration:                 new(3 * time.Second),
		RenewDeadline:                 new(2 * time.Second),
		RetryPeriod:                   new(200 * time.Millisecond),
		Controller:                    ctrlConfigSkipNameValidation(),
	})
	if err != nil {
		e.t.Fatal(err)
	}
	// The clusters' clients go through cfg too: the writes the deliveries make are counted.
	clusters := stepcluster.New(cfg, stepcluster.Options{Secrets: mgr.GetClient(), Scheme: scheme})
	watches := controller.NewWatches(cfg, clusters, nil)
	wait := o.wait
	if wait.Initial == 0 {
		wait = engine.Backoff{Initial: 50 * time.Millisecond, Factor: 2, Max: time.Second}
	}
	ctrl, err := controller.Setup(mgr, controller.Options{
		Assembly: assembly.Config{
			Providers: assembly.Providers{Clusters: clusters},
			Wait:      wait,
			Retention: o.retention,
			Clock:     o.clock,
			Retry:     engine.RetryPolicy{Limit: 3, Backoff: engine.Backoff{Initial: 50 * time.Millisecond, Factor: 2, Max: time.Second}},
		},
		Watches:      watches,
		Applications: o.applications,
		Schedules:    o.schedules,
	})
	if err != nil {
		e.t.Fatal(err)
	}
	e.ctrl = ctrl
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := mgr.Start(ctx); err != nil {
			e.t.Errorf("manager: %v", err)
		}
	}()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	e.t.Cleanup(stop)
	return stop
}

// roundTripFunc is an http.RoundTripper of a function.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// create applies a WorkflowRun written in YAML to the test's namespace and shard.
func (e *env) create(doc string) *v1alpha1.WorkflowRun {
	e.t.Helper()
	var wr v1alpha1.WorkflowRun
	if err := yaml.UnmarshalStrict([]byte(doc), &wr); err != nil {
		e.t.Fatal(err)
	}
	wr.Namespace = e.ns
	if wr.Labels == nil {
		wr.Labels = map[string]string{}
	}
	wr.Labels[controller.ShardLabel] = e.shard
	if err := e.c.Create(context.Background(), &wr); err != nil {
		e.t.Fatal(err)
	}
	return &wr
}

// waitFor polls the run until ok holds; the API server is the source of truth here.
func (e *env) waitFor(name, what string, ok func(*v1alpha1.WorkflowRun) bool) *v1alpha1.WorkflowRun {
	e.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var wr v1alpha1.WorkflowRun
	for {
		err := e.c.Get(context.Background(), client.ObjectKey{Namespace: e.ns, Name: name}, &wr)
		if err == nil && ok(&wr) {
			return &wr
		}
		if time.Now().After(deadline) {
			y, _ := yaml.Marshal(wr.Status)
			e.t.Fatalf("run %s: timed out waiting for %s (err %v); status:\n%s", name, what, err, y)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (e *env) waitPhase(name string, phase v1alpha1.WorkflowRunPhase) *v1alpha1.WorkflowRun {
	e.t.Helper()
	return e.waitFor(name, "phase "+string(phase), func(wr *v1alpha1.WorkflowRun) bool { return wr.Status.Phase == phase })
}

func (e *env) patchStatus(name, patch string) {
	e.t.Helper()
	wr := &v1alpha1.WorkflowRun{ObjectMeta: metav1.ObjectMeta{Namespace: e.ns, Name: name}}
	if err := e.c.Status().Patch(context.Background(), wr, client.RawPatch(types.MergePatchType, []byte(patch))); err != nil {
		e.t.Fatal(err)
	}
}

// counter is a local HTTP service counting calls per path.
type counter struct {
	mu    sync.Mutex
	calls map[string]int
	gate  chan struct{}
}

func newCounter(t *testing.T) (*counter, string) {
	c := &counter{calls: map[string]int{}, gate: make(chan struct{})}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.mu.Lock()
		c.calls[r.URL.Path]++
		c.mu.Unlock()
		if strings.HasPrefix(r.URL.Path, "/gate") {
			<-c.gate
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"tag":"v1.2.3","path":%q}`, r.URL.Path)
	}))
	t.Cleanup(func() {
		select {
		case <-c.gate:
		default:
			close(c.gate)
		}
		srv.Close()
	})
	return c, srv.URL
}

func (c *counter) count(path string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls[path]
}

func stepPhases(wr *v1alpha1.WorkflowRun) string {
	var b []string
	for _, s := range wr.Status.Steps {
		b = append(b, s.Name+"="+string(s.Phase))
		for _, sub := range s.SubStepsStatus {
			b = append(b, sub.Name+"="+string(sub.Phase))
		}
	}
	return strings.Join(b, " ")
}

// A run with a request, an output passed as an input, and a group runs to success; its
// variables are in the context ConfigMap that status.contextBackend names, with the step log.
func TestRunSucceedsWithContextBackend(t *testing.T) {
	e := newEnv(t)
	e.start(controllerOptions{})
	svc, url := newCounter(t)
	e.create(fmt.Sprintf(`
metadata: {name: release}
spec:
  workflowSpec:
    steps:
    - name: get-version
      type: request
      properties: {url: %q}
      outputs: [{name: tag, valueFrom: response.tag}]
    - name: prepare
      type: step-group
      subSteps:
      - name: show
        type: print-message-in-status
        inputs: [{from: tag, parameterKey: message}]
`, url+"/version"))
	wr := e.waitPhase("release", v1alpha1.RunSucceeded)
	if got := stepPhases(wr); got != "get-version=succeeded prepare=succeeded show=succeeded" {
		t.Errorf("steps: %s", got)
	}
	if msg := wr.Status.Steps[1].SubStepsStatus[0].Message; msg != "v1.2.3" {
		t.Errorf("show's message = %q, want the tag from the request", msg)
	}
	if n := svc.count("/version"); n != 1 {
		t.Errorf("the service was called %d times, want 1", n)
	}
	if wr.Status.ContextBackend == nil || wr.Status.ContextBackend.Name != "workflow-release-context" {
		t.Fatalf("contextBackend = %+v", wr.Status.ContextBackend)
	}
	var cm corev1.ConfigMap
	if err := e.c.Get(context.Background(), client.ObjectKey{Namespace: e.ns, Name: "workflow-release-context"}, &cm); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(cm.Data["vars"], `"tag":"v1.2.3"`) {
		t.Errorf("context vars = %s, want the tag", cm.Data["vars"])
	}
	if !strings.Contains(cm.Data["logs"], "get-version") {
		t.Errorf("context logs do not mention the request step:\n%s", cm.Data["logs"])
	}
	if len(cm.OwnerReferences) != 1 || cm.OwnerReferences[0].Name != "release" {
		t.Errorf("context ConfigMap owners = %+v, want the run", cm.OwnerReferences)
	}
}

// A run that cannot be right fails before any step runs, with the field path in the message.
func TestInvalidRunFailsNamingTheField(t *testing.T) {
	e := newEnv(t)
	e.start(controllerOptions{})
	svc, url := newCounter(t)
	e.create(fmt.Sprintf(`
metadata: {name: bad}
spec:
  workflowSpec:
    steps:
    - {name: call, type: request, properties: {url: %q}}
    - {name: nope, type: no-such-type}
    - {name: msg, type: print-message-in-status, properties: {}}
`, url+"/never"))
	wr := e.waitPhase("bad", v1alpha1.RunFailed)
	for _, want := range []string{"spec.workflowSpec.steps[1].type", "no-such-type", "spec.workflowSpec.steps[2].properties", "message"} {
		if !strings.Contains(wr.Status.Message, want) {
			t.Errorf("message %q does not mention %q", wr.Status.Message, want)
		}
	}
	if n := svc.count("/never"); n != 0 {
		t.Errorf("a step of an invalid run called the service %d times", n)
	}
}

// Users of KubeVela suspend, resume and terminate with a patch of the status; so can ours.
func TestOperationsByStatusPatch(t *testing.T) {
	e := newEnv(t)
	e.start(controllerOptions{})
	svc, url := newCounter(t)
	e.create(fmt.Sprintf(`
metadata: {name: approve}
spec:
  workflowSpec:
    steps:
    - {name: gate, type: suspend}
    - {name: deploy, type: request, properties: {url: %q}}
`, url+"/deploy"))
	e.waitFor("approve", "suspended at the gate", func(wr *v1alpha1.WorkflowRun) bool {
		return wr.Status.Suspend && len(wr.Status.Steps) == 2 && wr.Status.Steps[0].Phase == v1alpha1.StepSuspending
	})
	e.patchStatus("approve", `{"status":{"suspend":false}}`)
	wr := e.waitPhase("approve", v1alpha1.RunSucceeded)
	if n := svc.count("/deploy"); n != 1 {
		t.Errorf("deploy called %d times, want 1", n)
	}
	if got := stepPhases(wr); got != "gate=succeeded deploy=succeeded" {
		t.Errorf("steps: %s", got)
	}

	e.create(fmt.Sprintf(`
metadata: {name: stop}
spec:
  workflowSpec:
    steps:
    - {name: gate, type: suspend}
    - {name: deploy, type: request, properties: {url: %q}}
    - {name: cleanup, type: request, if: always, properties: {url: %q}}
`, url+"/deploy2", url+"/cleanup"))
	e.waitFor("stop", "suspended", func(wr *v1alpha1.WorkflowRun) bool { return wr.Status.Suspend })
	e.patchStatus("stop", `{"status":{"terminated":true}}`)
	// The phase says terminated at once; the run finishes once its `if: always` step ran.
	wr = e.waitFor("stop", "terminated and finished", func(wr *v1alpha1.WorkflowRun) bool {
		return wr.Status.Phase == v1alpha1.RunTerminated && wr.Status.Finished
	})
	if svc.count("/deploy2") != 0 || svc.count("/cleanup") != 1 {
		t.Errorf("deploy2 called %d times, cleanup %d; want 0 and 1", svc.count("/deploy2"), svc.count("/cleanup"))
	}
	if wr.Status.Steps[0].Reason != v1alpha1.ReasonTerminate {
		t.Errorf("gate reason %q, want Terminate", wr.Status.Steps[0].Reason)
	}
}

// A controller stopped in the middle of runs loses nothing: another one finishes them, and
// steps recorded as succeeded are not run again.
func TestControllerRestartLosesNothing(t *testing.T) {
	e := newEnv(t)
	stop := e.start(controllerOptions{})
	svc, url := newCounter(t)
	const n = 10
	for i := range n {
		e.create(fmt.Sprintf(`
metadata: {name: r%d}
spec:
  workflowSpec:
    steps:
    - {name: first, type: request, properties: {url: %q}}
    - {name: held, type: suspend}
    - {name: last, type: request, properties: {url: %q}}
`, i, fmt.Sprintf("%s/first/%d", url, i), fmt.Sprintf("%s/last/%d", url, i)))
	}
	for i := range n {
		e.waitFor(fmt.Sprintf("r%d", i), "held", func(wr *v1alpha1.WorkflowRun) bool { return wr.Status.Suspend })
	}
	stop()
	for i := range n {
		e.patchStatus(fmt.Sprintf("r%d", i), `{"status":{"suspend":false}}`)
	}
	e.start(controllerOptions{})
	for i := range n {
		e.waitPhase(fmt.Sprintf("r%d", i), v1alpha1.RunSucceeded)
		if a, b := svc.count(fmt.Sprintf("/first/%d", i)), svc.count(fmt.Sprintf("/last/%d", i)); a != 1 || b != 1 {
			t.Errorf("run r%d: first called %d times, last %d; want once each", i, a, b)
		}
	}
}

// With leader election only one replica drives runs; when it stops, the other takes over.
func TestLeaderElectionHandover(t *testing.T) {
	e := newEnv(t)
	stopA := e.start(controllerOptions{leaderElect: true})
	e.create(`
metadata: {name: before}
spec:
  workflowSpec:
    steps:
    - {name: msg, type: print-message-in-status, properties: {message: one}}
`)
	e.waitPhase("before", v1alpha1.RunSucceeded)
	e.start(controllerOptions{leaderElect: true})
	stopA()
	e.create(`
metadata: {name: after}
spec:
  workflowSpec:
    steps:
    - {name: msg, type: print-message-in-status, properties: {message: two}}
`)
	wr := e.waitPhase("after", v1alpha1.RunSucceeded)
	if wr.Status.Steps[0].Message != "two" {
		t.Errorf("message %q", wr.Status.Steps[0].Message)
	}
}

// ctrlConfigSkipNameValidation lets several managers in one test process each run a
// controller of the same name.
func ctrlConfigSkipNameValidation() config.Controller {
	skip := true
	return config.Controller{SkipNameValidation: &skip}
}

// kubectl drives the controller as a KubeVela user would: apply a run, watch it in
// `kubectl get wr`, approve it with `kubectl patch --subresource=status`.
func TestKubectlEndToEnd(t *testing.T) {
	e := newEnv(t)
	e.start(controllerOptions{})
	svc, url := newCounter(t)
	kubectl := func(args ...string) string {
		t.Helper()
		args = append([]string{"--kubeconfig", cluster.Kubeconfig, "-n", e.ns}, args...)
		out, err := exec.CommandContext(t.Context(), filepath.Join(apiservertest.AssetsDir(), "kubectl"), args...).CombinedOutput()
		if err != nil {
			t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	file := filepath.Join(t.TempDir(), "run.yaml")
	doc := fmt.Sprintf(`apiVersion: core.oam.dev/v1alpha1
kind: WorkflowRun
metadata:
  name: ship
  labels: {%s: %s}
spec:
  workflowSpec:
    steps:
    - name: approve
      type: suspend
    - name: notify
      type: webhook
      properties:
        url: {value: %q}
`, controller.ShardLabel, e.shard, url+"/hook")
	if err := os.WriteFile(file, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	kubectl("apply", "-f", file)
	e.waitFor("ship", "suspended", func(wr *v1alpha1.WorkflowRun) bool { return wr.Status.Suspend })
	if out := kubectl("get", "wr"); !strings.Contains(out, "PHASE") || !strings.Contains(out, "suspending") {
		t.Errorf("kubectl get wr while suspended:\n%s", out)
	}
	kubectl("patch", "wr", "ship", "--subresource=status", "--type=merge", "-p", `{"status":{"suspend":false}}`)
	e.waitPhase("ship", v1alpha1.RunSucceeded)
	if out := kubectl("get", "wr", "ship"); !strings.Contains(out, "succeeded") {
		t.Errorf("kubectl get wr after approval:\n%s", out)
	}
	if n := svc.count("/hook"); n != 1 {
		t.Errorf("webhook called %d times, want 1", n)
	}
}

// A step waiting on an object it read is woken when the object changes, long before its backoff
// would have it evaluated again.
func TestWaitingStepWakesOnChange(t *testing.T) {
	e := newEnv(t)
	e.start(controllerOptions{wait: engine.Backoff{Initial: time.Hour, Factor: 2, Max: time.Hour}})
	def := &v1beta1.WorkflowStepDefinition{
		ObjectMeta: metav1.ObjectMeta{Namespace: e.ns, Name: "wait-ready"},
		Spec: v1beta1.WorkflowStepDefinitionSpec{Schematic: &v1beta1.Schematic{CUE: &v1beta1.CUE{Template: `
import (
	"vela/kube"
	"vela/builtin"
)

read: kube.#Read & {
	$params: value: {apiVersion: "v1", kind: "ConfigMap", metadata: {name: parameter.name, namespace: context.namespace}}
}
wait: builtin.#ConditionalWait & {
	$params: continue: read.$returns.err == _|_ && read.$returns.value.data.ready == "yes"
}
parameter: name: string
`}}},
	}
	if err := e.c.Create(context.Background(), def); err != nil {
		t.Fatal(err)
	}
	e.create(`
metadata: {name: waiter}
spec:
  workflowSpec:
    steps:
    - {name: wait, type: wait-ready, properties: {name: flag}}
    - {name: done, type: print-message-in-status, properties: {message: ready}}
`)
	e.waitFor("waiter", "waiting", func(wr *v1alpha1.WorkflowRun) bool {
		return len(wr.Status.Steps) == 2 && wr.Status.Steps[0].Reason == v1alpha1.ReasonWait
	})
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: e.ns, Name: "flag"}, Data: map[string]string{"ready": "no"}}
	if err := e.c.Create(context.Background(), cm); err != nil {
		t.Fatal(err)
	}
	cm.Data["ready"] = "yes"
	if err := e.c.Update(context.Background(), cm); err != nil {
		t.Fatal(err)
	}
	wr := e.waitPhase("waiter", v1alpha1.RunSucceeded)
	if got := stepPhases(wr); got != "wait=succeeded done=succeeded" {
		t.Errorf("steps: %s", got)
	}
}

// The extensions work under the controller too: a loop whose iterations call a service, and a
// sub-workflow that runs a Workflow template as a child WorkflowRun.
func TestLoopAndSubWorkflow(t *testing.T) {
	e := newEnv(t)
	e.start(controllerOptions{})
	svc, url := newCounter(t)
	var wf v1alpha1.Workflow
	if err := yaml.UnmarshalStrict([]byte(fmt.Sprintf(`
metadata: {name: child-template}
steps:
- {name: call, type: request, properties: {url: %q}, outputs: [{name: answer, valueFrom: response.path}]}
`, url+"/child")), &wf); err != nil {
		t.Fatal(err)
	}
	wf.Namespace = e.ns
	if err := e.c.Create(context.Background(), &wf); err != nil {
		t.Fatal(err)
	}
	e.create(fmt.Sprintf(`
metadata: {name: flow}
spec:
  workflowSpec:
    steps:
    - name: each
      type: request
      forEach: {items: [a, b, c, d, e], parallelism: 2}
      inputs: [{from: item, parameterKey: body.region}]
      properties: {url: %q, method: POST}
    - name: sub
      type: workflow
      properties: {name: child-template}
      outputs: [{name: got, valueFrom: variables.answer}]
    - name: show
      type: print-message-in-status
      inputs: [{from: got, parameterKey: message}]
`, url+"/each"))
	wr := e.waitPhase("flow", v1alpha1.RunSucceeded)
	if n := svc.count("/each"); n != 5 {
		t.Errorf("the loop called the service %d times, want 5", n)
	}
	it := wr.Status.Steps[0].Iterations
	if it == nil || it.Total != 5 || it.Succeeded != 5 {
		t.Errorf("iterations = %+v, want 5 succeeded", it)
	}
	if msg := wr.Status.Steps[2].Message; msg != "/child" {
		t.Errorf("show's message %q, want the child's variable", msg)
	}
	child := wr.Status.Steps[1].ChildRun
	if child == "" {
		t.Fatal("the workflow step names no child run")
	}
	var cw v1alpha1.WorkflowRun
	if err := e.c.Get(context.Background(), client.ObjectKey{Namespace: e.ns, Name: child}, &cw); err != nil {
		t.Fatalf("child WorkflowRun %s: %v", child, err)
	}
	if cw.Status.Phase != v1alpha1.RunSucceeded || cw.Labels[v1alpha1.LabelParentRun] != "flow" {
		t.Errorf("child phase %q, parent label %q", cw.Status.Phase, cw.Labels[v1alpha1.LabelParentRun])
	}
	if cw.Labels[controller.ShardLabel] != e.shard {
		t.Errorf("child shard %q, want its parent's %q", cw.Labels[controller.ShardLabel], e.shard)
	}
	if len(cw.OwnerReferences) != 1 || cw.OwnerReferences[0].UID != wr.UID {
		t.Errorf("child owners %+v, want the parent", cw.OwnerReferences)
	}
}

// An operation written into a parent's status, as KubeVela's users do, passes to its child run.
func TestStatusPatchPassesToChildRun(t *testing.T) {
	e := newEnv(t)
	e.start(controllerOptions{})
	var wf v1alpha1.Workflow
	if err := yaml.UnmarshalStrict([]byte(`
metadata: {name: held}
steps:
- {name: gate, type: suspend}
`), &wf); err != nil {
		t.Fatal(err)
	}
	wf.Namespace = e.ns
	if err := e.c.Create(context.Background(), &wf); err != nil {
		t.Fatal(err)
	}
	e.create(`
metadata: {name: parent}
spec:
  workflowSpec:
    steps:
    - {name: sub, type: workflow, properties: {name: held}}
`)
	wr := e.waitFor("parent", "the child held", func(wr *v1alpha1.WorkflowRun) bool {
		return len(wr.Status.Steps) == 1 && wr.Status.Steps[0].ChildRun != "" && wr.Status.Suspend
	})
	child := wr.Status.Steps[0].ChildRun
	e.waitFor(child, "suspended", func(wr *v1alpha1.WorkflowRun) bool { return wr.Status.Suspend })
	e.patchStatus("parent", `{"status":{"terminated":true}}`)
	e.waitPhase("parent", v1alpha1.RunTerminated)
	e.waitPhase(child, v1alpha1.RunTerminated)
}
