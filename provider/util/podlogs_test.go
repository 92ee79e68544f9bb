package util_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/apiservertest"
	"github.com/stepflow/stepflow/cluster"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/provider/util"
	"github.com/stepflow/stepflow/step"
)

// api is a real kube-apiserver and etcd: the pods and their nodes are stored in it, and it
// proxies pods/log to the node's kubelet as in any cluster.
var api *apiservertest.Cluster

func TestMain(m *testing.M) { apiservertest.Main(m, &api) }

// podEnv is a fresh namespace with a node whose kubelet is k (apiservertest.Kubelet, which
// stands in for the kubelet), and what the test needs to make pods on it and run steps.
type podEnv struct {
	t         *testing.T
	c         client.Client
	namespace string
	node      string
	clusters  *cluster.Registry
}

func newPodEnv(t *testing.T, k *apiservertest.Kubelet) *podEnv {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a kube-apiserver")
	}
	c, err := client.New(api.Config, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	e := &podEnv{t: t, c: c, namespace: apiservertest.Namespace(t), clusters: cluster.New(api.Config, cluster.Options{})}
	e.node = "node-" + e.namespace
	ctx := context.Background()
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: e.namespace}}); err != nil {
		t.Fatal(err)
	}
	k.Register(t, c, e.node)
	return e
}

// pod makes a running pod on the node, with labels and containers that have started.
func (e *podEnv) pod(name string, labels map[string]string, containers ...string) {
	e.t.Helper()
	ctx := context.Background()
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: e.namespace, Labels: labels},
		Spec:       corev1.PodSpec{NodeName: e.node},
	}
	for _, c := range containers {
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: c, Image: "example.com/" + c})
	}
	if err := e.c.Create(ctx, p); err != nil {
		e.t.Fatal(err)
	}
	if err := apiservertest.Started(ctx, e.c, p); err != nil {
		e.t.Fatal(err)
	}
}

// runner evaluates steps with the util provider of opts (its Clusters set to the test's).
func (e *podEnv) runner(opts util.Options) *step.Runner {
	opts.Clusters = e.clusters
	reg := step.NewRegistry()
	util.Register(reg, opts)
	return step.NewRunner(step.Options{Registry: reg, Definitions: sameTemplate{}})
}

// sameTemplate serves a step's type as its template.
type sameTemplate struct{}

func (sameTemplate) Template(_ context.Context, _, typ string) (string, error) { return typ, nil }

// step evaluates template once as step "build" with the run variables vars, which it updates
// with the evaluation's writes as the engine would; it returns the messages logged.
func (e *podEnv) step(r *step.Runner, template string, vars map[string]json.RawMessage) []string {
	e.t.Helper()
	res, err := r.RunStep(context.Background(), &engine.StepRequest{
		Run:        engine.Key{Namespace: e.namespace, Name: "wr"},
		Step:       v1alpha1.WorkflowStepBase{Name: "build", Type: template},
		Properties: json.RawMessage(`{}`),
		Context:    map[string]any{"name": "wr", "namespace": e.namespace, "stepName": "build"},
		Vars:       vars,
		Now:        time.Now(),
	})
	if err != nil {
		e.t.Fatalf("step error: %v", err)
	}
	if res.Outcome != engine.Succeeded {
		e.t.Fatalf("step %v: %s %s", res.Outcome, res.Reason, res.Message)
	}
	maps.Copy(vars, res.VarWrites)
	var out []string
	for _, l := range res.Logs {
		if l.Action == "" && l.Message != "" {
			out = append(out, l.Message)
		}
	}
	return out
}

var t0 = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)

// The pods a label selector matches have their containers' logs read through the API server's
// pods/log, from a kubelet on their node; each evaluation of the step adds the lines written
// since the last one, each an entry naming its pod and container.
func TestPodLogsOfMatchingPodsGoIntoTheStepLog(t *testing.T) {
	k := apiservertest.NewKubelet(t)
	e := newPodEnv(t, k)
	e.pod("build-1", map[string]string{"app": "build"}, "kaniko", "sidecar")
	e.pod("other", map[string]string{"app": "web"}, "web")
	k.Write(e.namespace, "build-1", "kaniko", t0, "step 1/3", "step 2/3")
	k.Write(e.namespace, "build-1", "sidecar", t0, "ready")
	k.Write(e.namespace, "other", "web", t0, "not this one")

	r := e.runner(util.Options{})
	template := `
import "vela/util"
log: util.#Log & {$params: source: resources: [{labelSelector: app: "build"}]}
`
	vars := map[string]json.RawMessage{}
	got := e.step(r, template, vars)
	want := []string{"[pod/build-1/kaniko] step 1/3", "[pod/build-1/kaniko] step 2/3", "[pod/build-1/sidecar] ready"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("first evaluation logged %q, want %q", got, want)
	}

	// Later lines, two of them in the second of the last one read and one with its very stamp.
	k.Write(e.namespace, "build-1", "kaniko", t0.Add(100*time.Millisecond), "step 2/3 again, same stamp", "step 3/3", "pushed")
	got = e.step(r, template, vars)
	want = []string{"[pod/build-1/kaniko] step 2/3 again, same stamp", "[pod/build-1/kaniko] step 3/3", "[pod/build-1/kaniko] pushed"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("second evaluation logged %q, want %q", got, want)
	}
	if got := e.step(r, template, vars); len(got) != 0 {
		t.Errorf("an evaluation with nothing new logged %q", got)
	}
	if _, ok := vars["stepflow.podlogs/build"]; !ok {
		t.Errorf("no run variable records what was read: %v", vars)
	}
	asked := k.Asked()
	if len(asked) == 0 || asked[len(asked)-1].Get("timestamps") != "true" || asked[len(asked)-1].Get("sinceTime") == "" {
		t.Errorf("the kubelet was asked %v, want stamped reads since the last line", asked)
	}
}

// A pod named in its namespace is read as one a selector matches; a name that matches nothing
// (the pod not made yet) logs nothing and is no error. The local cluster named "local", as
// KubeVela names it, is not named in the lines.
func TestPodLogsOfANamedPod(t *testing.T) {
	k := apiservertest.NewKubelet(t)
	e := newPodEnv(t, k)
	e.pod("kaniko", nil, "kaniko")
	k.Write(e.namespace, "kaniko", "kaniko", t0, "building")
	r := e.runner(util.Options{})
	got := e.step(r, fmt.Sprintf(`
import "vela/util"
log: util.#Log & {$params: source: resources: [{name: "kaniko", namespace: %q, cluster: "local"}, {name: "not-yet"}]}
`, e.namespace), map[string]json.RawMessage{})
	if want := []string{"[pod/kaniko/kaniko] building"}; !reflect.DeepEqual(got, want) {
		t.Errorf("logged %q, want %q", got, want)
	}
}

// A step adds at most its bounds of pods' logs: a read with more keeps its last lines, the log
// says the bounds are reached, and later evaluations add nothing more.
func TestPodLogsAreBoundedPerStep(t *testing.T) {
	k := apiservertest.NewKubelet(t)
	e := newPodEnv(t, k)
	e.pod("noisy", map[string]string{"app": "noisy"}, "main")
	var lines []string
	for i := range 8 {
		lines = append(lines, fmt.Sprintf("line %d", i))
	}
	k.Write(e.namespace, "noisy", "main", t0, lines...)
	r := e.runner(util.Options{MaxPodLogLines: 5})
	template := `
import "vela/util"
log: util.#Log & {$params: source: resources: [{labelSelector: app: "noisy"}]}
`
	vars := map[string]json.RawMessage{}
	got := e.step(r, template, vars)
	if len(got) != 6 || got[0] != "[pod/noisy/main] line 3" || got[4] != "[pod/noisy/main] line 7" || !strings.Contains(got[5], "holds the 5 lines") {
		t.Errorf("logged %q, want lines 3 to 7 and a word on the bound", got)
	}
	k.Write(e.namespace, "noisy", "main", t0.Add(time.Minute), "line 8")
	if got := e.step(r, template, vars); len(got) != 0 {
		t.Errorf("past its bound the step logged %q", got)
	}

	// The bytes are bounded too.
	r = e.runner(util.Options{MaxPodLogBytes: 12})
	got = e.step(r, template, map[string]json.RawMessage{})
	if len(got) != 4 || !strings.Contains(got[0], "7 earlier lines of pod/noisy/main are left out") ||
		got[1] != "[pod/noisy/main] line 7" || got[2] != "[pod/noisy/main] line 8" || !strings.Contains(got[3], "12 bytes") {
		t.Errorf("logged %q, want a word on the lines left out, the last two lines and a word on the bound", got)
	}

	// So are the pods an item reads: the first by name, and the log says so once.
	e.pod("noisy-2", map[string]string{"app": "noisy"}, "main")
	k.Write(e.namespace, "noisy-2", "main", t0, "from the second pod")
	r = e.runner(util.Options{MaxPods: 1})
	vars = map[string]json.RawMessage{}
	got = e.step(r, template, vars)
	if len(got) != 10 || !strings.Contains(got[0], "2 pods match source.resources[0]") || got[9] != "[pod/noisy/main] line 8" {
		t.Errorf("logged %q, want a word on the pods left out, then the first pod's lines", got)
	}
	if got := e.step(r, template, vars); len(got) != 0 {
		t.Errorf("evaluated again, the step logged %q", got)
	}
}
