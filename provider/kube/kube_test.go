package kube_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/apiservertest"
	"github.com/stepflow/stepflow/cluster"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/provider/builtin"
	"github.com/stepflow/stepflow/provider/kube"
	"github.com/stepflow/stepflow/provider/op"
	"github.com/stepflow/stepflow/step"
)

// hub is the local cluster of the runs; spoke is a second API server reached by name.
var hub, spoke *apiservertest.Cluster

func TestMain(m *testing.M) { apiservertest.Main(m, &hub, &spoke) }

// env is what a test works with: clients of both API servers, the registry, and a fresh
// namespace (the run's) in both.
type env struct {
	t         *testing.T
	hub       client.Client
	spoke     client.Client
	clusters  *cluster.Registry
	reads     *recorder
	runner    *step.Runner
	namespace string
}

// setup builds a registry with the spoke registered twice: as context "spoke" of a clusters
// file and as the cluster Secret "spoke-secret"; "down" is a context whose server is gone.
func setup(t *testing.T) *env {
	t.Helper()
	if testing.Short() {
		t.Skip("starts kube-apiservers")
	}
	e := &env{t: t, hub: direct(t, hub.Config), spoke: direct(t, spoke.Config), reads: &recorder{}}
	e.namespace = apiservertest.Namespace(t)
	for _, c := range []client.Client{e.hub, e.spoke} {
		for _, ns := range []string{e.namespace, "vela-system"} {
			err := c.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
			if err != nil && !apierrors.IsAlreadyExists(err) {
				t.Fatal(err)
			}
		}
	}
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "spoke-secret", Namespace: "vela-system", Labels: map[string]string{cluster.LabelCredentialType: "X509Certificate"}},
		Data: map[string][]byte{
			cluster.KeyEndpoint: []byte(spoke.Config.Host), cluster.KeyCA: spoke.Config.CAData,
			cluster.KeyCert: spoke.Config.CertData, cluster.KeyKey: spoke.Config.KeyData,
		},
	}
	if err := e.hub.Create(context.Background(), secret); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	file := clustersFile(t, map[string]*rest.Config{"spoke": spoke.Config, "down": downConfig(t)})
	e.clusters = cluster.New(hub.Config, cluster.Options{File: file, Secrets: e.hub})
	e.runner = newRunner(e.clusters, e.reads)
	return e
}

func newRunner(clusters kube.Clusters, reads kube.ReadObserver) *step.Runner {
	reg := step.NewRegistry()
	builtin.Register(reg)
	op.Register(reg)
	kube.Register(reg, kube.Options{Clusters: clusters, Reads: reads})
	return step.NewRunner(step.Options{Registry: reg, Definitions: templates{}})
}

func direct(t *testing.T, cfg *rest.Config) client.Client {
	t.Helper()
	c, err := client.New(cfg, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func clustersFile(t *testing.T, contexts map[string]*rest.Config) string {
	t.Helper()
	kc := clientcmdapi.NewConfig()
	for name, cfg := range contexts {
		kc.Clusters[name] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
		kc.AuthInfos[name] = &clientcmdapi.AuthInfo{ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData}
		kc.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: name}
	}
	path := filepath.Join(t.TempDir(), "clusters")
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// downConfig reaches a loopback port nothing listens on.
func downConfig(t *testing.T) *rest.Config {
	t.Helper()
	l, err := new(net.ListenConfig).Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	cfg := rest.CopyConfig(spoke.Config)
	cfg.Host = "https://" + addr
	return cfg
}

// templates serves the template of a step from its type: the type is the template.
type templates struct{}

func (templates) Template(_ context.Context, _, typ string) (string, error) { return typ, nil }

// recorder is a ReadObserver keeping what it was told.
type recorder struct {
	mu   sync.Mutex
	refs []kube.ObjectRef
	runs []string
}

func (r *recorder) ObjectRead(_ context.Context, run engine.Key, step string, ref kube.ObjectRef) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.refs = append(r.refs, ref)
	r.runs = append(r.runs, run.String()+" "+step)
}

// run evaluates template once as step "s" of run <namespace>/wr, with outputs name: valueFrom.
func (e *env) run(template string, outputs map[string]string, memo map[string]json.RawMessage) (*engine.StepResult, error) {
	e.t.Helper()
	req := &engine.StepRequest{
		Run:        engine.Key{Namespace: e.namespace, Name: "wr"},
		Step:       v1alpha1.WorkflowStepBase{Name: "s", Type: template},
		Properties: json.RawMessage(`{}`),
		Context:    map[string]any{"name": "wr", "namespace": e.namespace, "stepName": "s"},
		Memo:       memo,
	}
	for name, from := range outputs {
		req.Step.Outputs = append(req.Step.Outputs, v1alpha1.OutputItem{Name: name, ValueFrom: from})
	}
	return e.runner.RunStep(context.Background(), req)
}

// succeed runs template and fails the test unless the step succeeded; it returns the outputs.
func (e *env) succeed(template string, outputs map[string]string) map[string]any {
	e.t.Helper()
	res, err := e.run(template, outputs, nil)
	if err != nil {
		e.t.Fatalf("step error: %v", err)
	}
	if res.Outcome != engine.Succeeded {
		e.t.Fatalf("step %v: %s %s", res.Outcome, res.Reason, res.Message)
	}
	out := map[string]any{}
	for name, raw := range res.Outputs {
		var v any
		if err := json.Unmarshal(raw, &v); err != nil {
			e.t.Fatal(err)
		}
		out[name] = v
	}
	return out
}

// configMap reads a ConfigMap of the test's namespace from c; nil when there is none.
func (e *env) configMap(c client.Client, name string) *corev1.ConfigMap {
	e.t.Helper()
	var cm corev1.ConfigMap
	err := c.Get(context.Background(), client.ObjectKey{Namespace: e.namespace, Name: name}, &cm)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		e.t.Fatal(err)
	}
	return &cm
}

func (e *env) createConfigMap(c client.Client, name string, lbls map[string]string, data map[string]string) {
	e.t.Helper()
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: e.namespace, Name: name, Labels: lbls}, Data: data}
	if err := c.Create(context.Background(), cm); err != nil {
		e.t.Fatal(err)
	}
}

func TestApplyAndReadNewForm(t *testing.T) {
	e := setup(t)
	out := e.succeed(`
import "vela/kube"

apply: kube.#Apply & {$params: {
	value: {apiVersion: "v1", kind: "ConfigMap", metadata: name: "cm", data: {a: "1", b: "2"}}
	patch: data: {b: "patched", c: "3"}
}}
read: kube.#Read & {$params: value: {apiVersion: "v1", kind: "ConfigMap", metadata: {name: "cm", namespace: apply.$returns.value.metadata.namespace}}}
`, map[string]string{"stored": "apply.$returns.value", "read": "read.$returns.value.data"})

	cm := e.configMap(e.hub, "cm")
	if cm == nil {
		t.Fatal("the ConfigMap was not created in the run's namespace")
	}
	if cm.Data["a"] != "1" || cm.Data["b"] != "patched" || cm.Data["c"] != "3" {
		t.Errorf("data = %v, want a=1, b=patched (the patch on top), c=3", cm.Data)
	}
	if cm.Labels[kube.LabelRunName] != "wr" || cm.Labels[kube.LabelRunNamespace] != e.namespace {
		t.Errorf("labels = %v, want the run's", cm.Labels)
	}
	stored := out["stored"].(map[string]any)
	meta := stored["metadata"].(map[string]any)
	if meta["uid"] != string(cm.UID) || meta["resourceVersion"] != cm.ResourceVersion {
		t.Errorf("#Apply returned %v, not the object as stored (uid %s, rv %s)", meta, cm.UID, cm.ResourceVersion)
	}
	if _, ok := meta["managedFields"]; ok {
		t.Error("the returned object carries managedFields")
	}
	if got := fmt.Sprint(out["read"]); got != "map[a:1 b:patched c:3]" {
		t.Errorf("#Read returned data %s", got)
	}
	for _, f := range cm.ManagedFields {
		if f.Manager == kube.DefaultFieldManager && f.Operation != metav1.ManagedFieldsOperationApply {
			t.Errorf("the object was written with %s, want a server-side apply", f.Operation)
		}
	}
}

func TestApplyAndReadLegacyForm(t *testing.T) {
	e := setup(t)
	out := e.succeed(`
import "vela/op"

apply: op.#Apply & {
	value: {apiVersion: "v1", kind: "ConfigMap", metadata: name: "legacy", data: a: "1"}
}
read: op.#Read & {value: {apiVersion: "v1", kind: "ConfigMap", metadata: {name: "legacy", namespace: apply.value.metadata.namespace}}}
`, map[string]string{"uid": "apply.value.metadata.uid", "a": "read.value.data.a"})
	cm := e.configMap(e.hub, "legacy")
	if cm == nil || out["uid"] != string(cm.UID) || out["a"] != "1" {
		t.Errorf("outputs %v, ConfigMap %v", out, cm)
	}
}

func TestReadOfAMissingObjectLetsTheStepWait(t *testing.T) {
	e := setup(t)
	for _, tmpl := range []string{`
import ("vela/kube", "vela/builtin")

read: kube.#Read & {$params: value: {apiVersion: "v1", kind: "ConfigMap", metadata: name: "later"}}
wait: builtin.#ConditionalWait & {$params: {continue: read.$returns.err == _|_, message: read.$returns.err}}
`, `
import "vela/op"

read: op.#Read & {value: {apiVersion: "v1", kind: "ConfigMap", metadata: name: "later"}}
wait: op.#ConditionalWait & {continue: read.err == _|_, message: read.err}
`} {
		res, err := e.run(tmpl, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if res.Outcome != engine.Waiting || !strings.Contains(res.Message, "ConfigMap "+e.namespace+"/later in the local cluster not found") {
			t.Errorf("outcome %v, message %q; want Waiting on the missing ConfigMap", res.Outcome, res.Message)
		}
	}
	e.createConfigMap(e.hub, "later", nil, nil)
	res, err := e.run(`
import "vela/op"

read: op.#Read & {value: {apiVersion: "v1", kind: "ConfigMap", metadata: name: "later"}}
wait: op.#ConditionalWait & {continue: read.err == _|_}
`, nil, nil)
	if err != nil || res.Outcome != engine.Succeeded {
		t.Errorf("once the object exists: %v %v", res, err)
	}
}

func TestApplyInParallelBothForms(t *testing.T) {
	e := setup(t)
	out := e.succeed(`
import ("vela/kube", "vela/op")

many: kube.#ApplyInParallel & {$params: value: [for n in ["p1", "p2", "p3"] {apiVersion: "v1", kind: "ConfigMap", metadata: name: n}]}
legacy: op.#ApplyInParallel & {value: [for n in ["q1", "q2"] {apiVersion: "v1", kind: "ConfigMap", metadata: name: n}]}
`, map[string]string{"names": "[for o in many.$returns.value {o.metadata.name}]", "uids": "[for o in legacy.value {o.metadata.uid}]"})
	for _, n := range []string{"p1", "p2", "p3", "q1", "q2"} {
		if e.configMap(e.hub, n) == nil {
			t.Errorf("%s was not applied", n)
		}
	}
	if fmt.Sprint(out["names"]) != "[p1 p2 p3]" {
		t.Errorf("returned %v, want the objects in order", out["names"])
	}
	if uids, _ := out["uids"].([]any); len(uids) != 2 || uids[0] == "" {
		t.Errorf("legacy value after the call: %v", out["uids"])
	}
}

func TestPatchBothForms(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: e.namespace},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{
					{Name: "main", Image: "main:1"}, {Name: "sidecar", Image: "sidecar:1"},
				}},
			},
		},
	}
	if err := e.hub.Create(ctx, dep); err != nil {
		t.Fatal(err)
	}
	// A built-in kind takes a strategic merge patch: containers merge by name.
	out := e.succeed(`
import "vela/kube"

p: kube.#Patch & {$params: {
	value: {apiVersion: "apps/v1", kind: "Deployment", metadata: name: "web"}
	patch: spec: template: spec: containers: [{name: "main", image: "main:2"}]
}}
`, map[string]string{"images": "[for c in p.$returns.result.spec.template.spec.containers {c.image}]"})
	if fmt.Sprint(out["images"]) != "[main:2 sidecar:1]" {
		t.Errorf("images after the patch: %v, want [main:2 sidecar:1]", out["images"])
	}
	// A custom resource takes a JSON merge patch.
	wf := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "core.oam.dev/v1alpha1", "kind": "Workflow",
		"metadata": map[string]any{"name": "wf", "namespace": e.namespace},
		"steps":    []any{map[string]any{"name": "a", "type": "suspend"}},
	}}
	if err := e.hub.Create(ctx, wf); err != nil {
		t.Fatal(err)
	}
	out = e.succeed(`
import "vela/op"

p: op.#Patch & {
	value: {apiVersion: "core.oam.dev/v1alpha1", kind: "Workflow", metadata: name: "wf"}
	patch: metadata: annotations: note: "patched"
}
`, map[string]string{"note": "p.result.metadata.annotations.note", "run": `p.result.metadata.labels["workflowrun.oam.dev/name"]`})
	if out["note"] != "patched" || out["run"] != "wr" {
		t.Errorf("legacy patch returned %v", out)
	}
}

func TestListBothForms(t *testing.T) {
	e := setup(t)
	e.createConfigMap(e.hub, "one", map[string]string{"team": "a"}, nil)
	e.createConfigMap(e.hub, "two", map[string]string{"team": "a"}, nil)
	e.createConfigMap(e.hub, "other", map[string]string{"team": "b"}, nil)
	out := e.succeed(fmt.Sprintf(`
import ("vela/kube", "vela/op")

l: kube.#List & {$params: {resource: {apiVersion: "v1", kind: "ConfigMap"}, filter: {namespace: %q, matchingLabels: team: "a"}}}
old: op.#List & {resource: {apiVersion: "v1", kind: "ConfigMap"}, filter: {namespace: %q, matchingLabels: team: "b"}}
`, e.namespace, e.namespace), map[string]string{"new": "[for o in l.$returns.values.items {o.metadata.name}]", "old": "[for o in old.list.items {o.metadata.name}]"})
	if fmt.Sprint(out["new"]) != "[one two]" || fmt.Sprint(out["old"]) != "[other]" {
		t.Errorf("listed %v and %v, want [one two] and [other]", out["new"], out["old"])
	}
	e.reads.mu.Lock()
	defer e.reads.mu.Unlock()
	if len(e.reads.refs) != 2 {
		t.Fatalf("reads reported: %v", e.reads.refs)
	}
	ref := e.reads.refs[0]
	if ref.Cluster != "" || ref.GVK.Kind != "ConfigMap" || ref.Namespace != e.namespace || ref.Name != "" ||
		ref.Selector == nil || !ref.Selector.Matches(labels.Set{"team": "a"}) || ref.Selector.Matches(labels.Set{"team": "b"}) {
		t.Errorf("reported %+v", ref)
	}
	if e.reads.runs[0] != e.namespace+"/wr s" {
		t.Errorf("reported for %s", e.reads.runs[0])
	}
}

func TestDeleteBothForms(t *testing.T) {
	e := setup(t)
	e.createConfigMap(e.hub, "gone", nil, nil)
	e.createConfigMap(e.hub, "old-1", map[string]string{"batch": "old"}, nil)
	e.createConfigMap(e.hub, "old-2", map[string]string{"batch": "old"}, nil)
	e.createConfigMap(e.hub, "kept", map[string]string{"batch": "new"}, nil)
	out := e.succeed(`
import ("vela/kube", "vela/op")

del: kube.#Delete & {$params: value: {apiVersion: "v1", kind: "ConfigMap", metadata: name: "gone"}}
again: kube.#Delete & {$params: value: {apiVersion: "v1", kind: "ConfigMap", metadata: name: "gone"}} @step(200)
batch: op.#Delete & {
	value: {apiVersion: "v1", kind: "ConfigMap", metadata: {}}
	filter: matchingLabels: batch: "old"
}
`, map[string]string{"again": "again.$returns.err"})
	for name, want := range map[string]bool{"gone": false, "old-1": false, "old-2": false, "kept": true} {
		if got := e.configMap(e.hub, name) != nil; got != want {
			t.Errorf("%s exists: %v, want %v", name, got, want)
		}
	}
	if !strings.Contains(fmt.Sprint(out["again"]), "not found") {
		t.Errorf("deleting a missing object: err = %v", out["again"])
	}
}

func TestAppliesRunEveryEvaluationDeletesOncePerAttempt(t *testing.T) {
	e := setup(t)
	e.createConfigMap(e.hub, "doomed", nil, nil)
	tmpl := `
import "vela/kube"
import "vela/builtin"

apply: kube.#Apply & {$params: value: {apiVersion: "v1", kind: "ConfigMap", metadata: name: "kept"}}
del: kube.#Delete & {$params: value: {apiVersion: "v1", kind: "ConfigMap", metadata: name: "doomed"}}
read: kube.#Read & {$params: value: {apiVersion: "v1", kind: "ConfigMap", metadata: name: "kept"}}
wait: builtin.#ConditionalWait & {$params: continue: read.$returns.value.data.go != _|_}
`
	res, err := e.run(tmpl, nil, nil)
	if err != nil || res.Outcome != engine.Waiting {
		t.Fatalf("first evaluation: %v %v", res, err)
	}
	// Someone deletes the applied object and makes the deleted one again: the next evaluation
	// of the same attempt applies again (as KubeVela does) but does not delete again.
	if err := e.hub.Delete(context.Background(), e.configMap(e.hub, "kept")); err != nil {
		t.Fatal(err)
	}
	e.createConfigMap(e.hub, "doomed", nil, nil)
	res, err = e.run(tmpl, nil, res.Memo)
	if err != nil || res.Outcome != engine.Waiting {
		t.Fatalf("second evaluation: %v %v", res, err)
	}
	if e.configMap(e.hub, "kept") == nil {
		t.Error("the apply did not run again")
	}
	if e.configMap(e.hub, "doomed") == nil {
		t.Error("the delete ran again within the attempt")
	}
	if _, ok := res.Memo["apply"]; ok {
		t.Error("the apply was memoized")
	}
	e.reads.mu.Lock()
	defer e.reads.mu.Unlock()
	if n := len(e.reads.refs); n != 4 {
		t.Errorf("%d applies and reads reported in two evaluations, want 4: %v", n, e.reads.refs)
	}
}

// requestCounter counts the requests a client sends, by method.
type requestCounter struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *requestCounter) wrap(cfg *rest.Config) *rest.Config {
	cfg = rest.CopyConfig(cfg)
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return roundTripper(func(r *http.Request) (*http.Response, error) {
			c.mu.Lock()
			c.n[r.Method]++
			c.mu.Unlock()
			return rt.RoundTrip(r)
		})
	})
	return cfg
}

func (c *requestCounter) take() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.n
	c.n = map[string]int{}
	return n
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// A wait on the status an apply returned (issue 17 item 1) sees the object as it is at each
// evaluation, in both forms; an apply that changes nothing writes nothing and costs one request.
func TestAWaitOnWhatTheApplyReturnedSeesTheObjectNow(t *testing.T) {
	e := setup(t)
	requests := &requestCounter{n: map[string]int{}}
	e.runner = newRunner(cluster.New(requests.wrap(hub.Config), cluster.Options{Secrets: e.hub}), e.reads)
	deployment := func(name string) string {
		return fmt.Sprintf(`{apiVersion: "apps/v1", kind: "Deployment", metadata: name: %q, spec: {
		replicas: 2
		selector: matchLabels: app: %[1]q
		template: {metadata: labels: app: %[1]q, spec: containers: [{name: "c", image: "busybox"}]}
	}}`, name)
	}
	for _, c := range []struct{ form, tmpl string }{
		{"new", `
import ("vela/kube", "vela/builtin")

apply: kube.#Apply & {$params: value: ` + deployment("fresh") + `}
wait: builtin.#ConditionalWait & {$params: continue: apply.$returns.value.status.readyReplicas == 2}
`},
		{"legacy", `
import "vela/op"

apply: op.#Apply & {value: ` + deployment("legacy") + `}
wait: op.#ConditionalWait & {continue: apply.value.status.readyReplicas == 2}
`},
	} {
		t.Run(c.form, func(t *testing.T) {
			name := map[string]string{"new": "fresh", "legacy": "legacy"}[c.form]
			res, err := e.run(c.tmpl, nil, nil)
			if err != nil || res.Outcome != engine.Waiting {
				t.Fatalf("first evaluation: %+v %v", res, err)
			}
			var d appsv1.Deployment
			if err := e.hub.Get(context.Background(), client.ObjectKey{Namespace: e.namespace, Name: name}, &d); err != nil {
				t.Fatal(err)
			}
			first := requests.take()
			res, err = e.run(c.tmpl, nil, res.Memo)
			if err != nil || res.Outcome != engine.Waiting {
				t.Fatalf("second evaluation: %+v %v", res, err)
			}
			again := requests.take()
			var same appsv1.Deployment
			if err := e.hub.Get(context.Background(), client.ObjectKey{Namespace: e.namespace, Name: name}, &same); err != nil {
				t.Fatal(err)
			}
			if same.ResourceVersion != d.ResourceVersion {
				t.Errorf("an apply that changed nothing wrote: resourceVersion %s, then %s", d.ResourceVersion, same.ResourceVersion)
			}
			if again["PATCH"] != 1 || len(again) != 1 {
				t.Errorf("a repeated evaluation sent %v, want one PATCH", again)
			}
			t.Logf("requests: first evaluation %v, each later one %v", first, again)
			// The Deployment becomes ready (the kube-controller-manager is not running here).
			d.Status = appsv1.DeploymentStatus{Replicas: 2, ReadyReplicas: 2, UpdatedReplicas: 2, AvailableReplicas: 2, ObservedGeneration: d.Generation}
			if err := e.hub.Status().Update(context.Background(), &d); err != nil {
				t.Fatal(err)
			}
			res, err = e.run(c.tmpl, nil, res.Memo)
			if err != nil || res.Outcome != engine.Succeeded {
				t.Fatalf("once the Deployment is ready: %+v %v", res, err)
			}
		})
	}
}

func TestMultiClusterApplyAndRead(t *testing.T) {
	e := setup(t)
	out := e.succeed(`
import ("vela/kube", "vela/op")

apply: kube.#Apply & {$params: {cluster: "spoke", value: {apiVersion: "v1", kind: "ConfigMap", metadata: name: "far", data: where: "spoke"}}}
read: op.#Read & {cluster: "spoke-secret", value: {apiVersion: "v1", kind: "ConfigMap", metadata: name: "far"}} @step(200)
`, map[string]string{"where": "read.value.data.where"})
	if e.configMap(e.spoke, "far") == nil || e.configMap(e.hub, "far") != nil {
		t.Error("the object was not applied to the spoke only")
	}
	if out["where"] != "spoke" {
		t.Errorf("read from the Secret-registered cluster: %v", out)
	}
	if ref := e.reads.refs[0]; ref.Cluster != "spoke" || ref.Name != "far" {
		t.Errorf("the apply reported %+v", ref)
	}
	if ref := e.reads.refs[1]; ref.Cluster != "spoke-secret" || ref.Name != "far" || ref.Namespace != e.namespace || ref.Selector != nil {
		t.Errorf("reported %+v", ref)
	}
}

// fail runs template and returns the step's error, checking whether it is terminal.
func (e *env) fail(template string, terminal bool) error {
	e.t.Helper()
	res, err := e.run(template, nil, nil)
	if err == nil {
		e.t.Fatalf("the step did not fail: %v %s %s", res.Outcome, res.Reason, res.Message)
	}
	var te *engine.TerminalError
	if errors.As(err, &te) != terminal {
		e.t.Errorf("terminal = %v, want %v: %v", !terminal, terminal, err)
	}
	return err
}

func TestErrorsCarryTheReasonAndAreRetriedOnlyWhenThatCanHelp(t *testing.T) {
	e := setup(t)
	apply := func(cluster, obj string) string {
		return fmt.Sprintf(`
import "vela/kube"

apply: kube.#Apply & {$params: {cluster: %q, value: %s}}
`, cluster, obj)
	}
	cm := `{apiVersion: "v1", kind: "ConfigMap", metadata: name: "x"}`
	for name, c := range map[string]struct {
		tmpl     string
		terminal bool
		says     []string
	}{
		"rejected":    {apply("", `{apiVersion: "v1", kind: "ConfigMap", metadata: name: "Not_Valid"}`), true, []string{"Invalid", "Not_Valid"}},
		"unknownKind": {apply("", `{apiVersion: "example.com/v1", kind: "Gadget", metadata: name: "g"}`), true, []string{"unknown kind", "Gadget"}},
		"unknownGVK":  {apply("", `{apiVersion: "v1", kind: "Gadget", metadata: name: "g"}`), true, []string{"unknown kind", "Gadget"}},
		"unknown":     {apply("prod", cm), true, []string{`cluster "prod" is not registered`}},
		"unreachable": {apply("down", cm), false, []string{`in cluster "down"`, "connection refused"}},
		"noName":      {apply("", `{apiVersion: "v1", kind: "ConfigMap"}`), true, []string{"needs metadata.name"}},
	} {
		t.Run(name, func(t *testing.T) {
			e.t = t
			err := e.fail(c.tmpl, c.terminal)
			for _, s := range c.says {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("%q does not say %q", err, s)
				}
			}
		})
	}
}

func TestForbiddenIsTerminalWithTheServersMessage(t *testing.T) {
	e := setup(t)
	nobody := rest.CopyConfig(hub.Config)
	nobody.Impersonate = rest.ImpersonationConfig{UserName: "nobody"}
	e.runner = newRunner(cluster.New(nobody, cluster.Options{}), e.reads)
	err := e.fail(`
import "vela/kube"

apply: kube.#Apply & {$params: value: {apiVersion: "v1", kind: "ConfigMap", metadata: name: "x"}}
`, true)
	for _, s := range []string{"Forbidden", `User "nobody" cannot patch resource "configmaps"`} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("%q does not say %q", err, s)
		}
	}
	err = e.fail(`
import "vela/kube"

read: kube.#Read & {$params: value: {apiVersion: "v1", kind: "ConfigMap", metadata: name: "x"}}
`, true)
	if !strings.Contains(err.Error(), "Forbidden") {
		t.Errorf("read: %v", err)
	}
}

func TestWithoutClustersEveryActionSaysSo(t *testing.T) {
	reg := step.NewRegistry()
	kube.Register(reg, kube.Options{})
	for _, do := range []string{"apply", "apply-in-parallel", "patch", "read", "list", "delete"} {
		a, ok := reg.Action("kube", do)
		if !ok {
			t.Fatalf("kube.%s is not registered", do)
		}
		obj := map[string]any{"apiVersion": "v1", "kind": "ConfigMap", "metadata": map[string]any{"name": "x"}}
		params := map[string]any{"value": obj, "resource": map[string]any{"apiVersion": "v1", "kind": "ConfigMap"}, "patch": map[string]any{}}
		if do == "apply-in-parallel" {
			params["value"] = []any{obj}
		}
		_, err := a.Run(context.Background(), &step.Call{Params: params})
		var te *engine.TerminalError
		if !errors.As(err, &te) || !strings.Contains(err.Error(), "no cluster is configured") {
			t.Errorf("kube.%s: %v", do, err)
		}
		wantSideEffect := do != "read" && do != "list"
		if got := a.SideEffect != nil && a.SideEffect(nil); got != wantSideEffect {
			t.Errorf("kube.%s side effect = %v", do, got)
		}
	}
}

// TestSecretsReadAndWrittenAreSensitive: the values of a Secret a step reads (#Read, #List,
// op.#Read) or writes (#Apply) are marked sensitive, as base64 and decoded, and the step can
// still use them.
func TestSecretsReadAndWrittenAreSensitive(t *testing.T) {
	e := setup(t)
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "creds", Namespace: e.namespace},
		Data:       map[string][]byte{"token": []byte("tok-5e1f0a77")},
	}
	if err := e.hub.Create(context.Background(), secret); err != nil {
		t.Fatal(err)
	}
	encoded := "dG9rLTVlMWYwYTc3" // base64 of tok-5e1f0a77
	for _, c := range []struct {
		name, template string
		want           []string
	}{
		{"read", `
import ("vela/kube", "encoding/base64")
read: kube.#Read & {$params: value: {apiVersion: "v1", kind: "Secret", metadata: name: "creds"}}
token: "\(base64.Decode(null, read.$returns.value.data.token))"
`, []string{encoded, "tok-5e1f0a77"}},
		{"legacy read", `
import "vela/op"
read: op.#Read & {value: {apiVersion: "v1", kind: "Secret", metadata: name: "creds"}}
token: read.value.data.token
`, []string{encoded, "tok-5e1f0a77"}},
		{"list", `
import "vela/kube"
list: kube.#List & {$params: {resource: {apiVersion: "v1", kind: "Secret"}, filter: namespace: context.namespace}}
token: list.$returns.values.items[0].data.token
`, []string{encoded, "tok-5e1f0a77"}},
		{"apply", `
import "vela/kube"
apply: kube.#Apply & {$params: value: {apiVersion: "v1", kind: "Secret", metadata: name: "written", stringData: password: "pw-0c4d2b19"}}
token: apply.$returns.value.data.password
`, []string{"pw-0c4d2b19", "cHctMGM0ZDJiMTk="}},
	} {
		t.Run(c.name, func(t *testing.T) {
			res, err := e.run(c.template, map[string]string{"token": "token"}, nil)
			if err != nil || res.Outcome != engine.Succeeded {
				t.Fatalf("step: %v %+v", err, res)
			}
			for _, w := range c.want {
				if !slices.Contains(res.Sensitive, w) {
					t.Errorf("%q is not marked sensitive: %q", w, res.Sensitive)
				}
			}
			if len(res.Outputs["token"]) < 6 {
				t.Errorf("the step could not use the value: output %s", res.Outputs["token"])
			}
		})
	}

	// A ConfigMap's data is not secret.
	e.createConfigMap(e.hub, "plain", nil, map[string]string{"k": "not-a-secret"})
	res, err := e.run(`
import "vela/kube"
read: kube.#Read & {$params: value: {apiVersion: "v1", kind: "ConfigMap", metadata: name: "plain"}}
`, nil, nil)
	if err != nil || len(res.Sensitive) != 0 {
		t.Errorf("reading a ConfigMap marked %q (err %v)", res.Sensitive, err)
	}
}
