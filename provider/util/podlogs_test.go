package util_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
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

// kubelet stands in for the kubelet of a node: no kubelet can run here, so a loopback HTTPS
// server answers the kubelet's containerLogs API (GET /containerLogs/<namespace>/<pod>/<container>,
// with timestamps, sinceTime, tailLines and limitBytes), which the API server calls for
// GET /api/v1/namespaces/<namespace>/pods/<pod>/log. It serves what the test wrote.
type kubelet struct {
	*httptest.Server
	mu    sync.Mutex
	logs  map[string][]logLine // by namespace/pod/container
	asked []url.Values         // the queries of the requests, in order
}

type logLine struct {
	at   time.Time
	text string
}

func newKubelet(t *testing.T) *kubelet {
	t.Helper()
	k := &kubelet{logs: map[string][]logLine{}}
	k.Server = httptest.NewTLSServer(http.HandlerFunc(k.containerLogs))
	t.Cleanup(k.Close)
	return k
}

// write adds lines to a container's log, stamped from at on, 100ms apart.
func (k *kubelet) write(container string, at time.Time, lines ...string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for i, text := range lines {
		k.logs[container] = append(k.logs[container], logLine{at.Add(time.Duration(i) * 100 * time.Millisecond), text})
	}
}

func (k *kubelet) containerLogs(w http.ResponseWriter, r *http.Request) {
	id, ok := strings.CutPrefix(r.URL.Path, "/containerLogs/")
	if !ok {
		http.NotFound(w, r)
		return
	}
	q := r.URL.Query()
	k.mu.Lock()
	k.asked = append(k.asked, q)
	lines := slices.Clone(k.logs[id])
	k.mu.Unlock()
	if s := q.Get("sinceTime"); s != "" {
		since, err := time.Parse(time.RFC3339, s)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		lines = slices.DeleteFunc(lines, func(l logLine) bool { return l.at.Before(since) })
	}
	if s := q.Get("tailLines"); s != "" {
		n, _ := strconv.Atoi(s)
		lines = lines[max(0, len(lines)-n):]
	}
	var b bytes.Buffer
	for _, l := range lines {
		if q.Get("timestamps") == "true" {
			b.WriteString(l.at.Format(time.RFC3339Nano) + " ")
		}
		b.WriteString(l.text + "\n")
	}
	out := b.Bytes()
	if s := q.Get("limitBytes"); s != "" {
		n, _ := strconv.Atoi(s)
		out = out[:min(n, len(out))]
	}
	_, _ = w.Write(out)
}

// podEnv is a fresh namespace with a node whose kubelet is k, and what the test needs to make
// pods on it and run steps.
type podEnv struct {
	t         *testing.T
	c         client.Client
	namespace string
	node      string
	clusters  *cluster.Registry
}

func newPodEnv(t *testing.T, k *kubelet) *podEnv {
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
	_, port, _ := net.SplitHostPort(k.Listener.Addr().String())
	p, _ := strconv.Atoi(port)
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: e.node}}
	if err := c.Create(ctx, node); err != nil {
		t.Fatal(err)
	}
	node.Status = corev1.NodeStatus{
		Addresses:       []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "127.0.0.1"}},
		DaemonEndpoints: corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: int32(p)}},
	}
	if err := c.Status().Update(ctx, node); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Delete(context.Background(), node) })
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
	p.Status = corev1.PodStatus{Phase: corev1.PodRunning}
	for _, c := range containers {
		p.Status.ContainerStatuses = append(p.Status.ContainerStatuses, corev1.ContainerStatus{
			Name: c, Image: "example.com/" + c, Ready: true,
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.Now()}},
		})
	}
	if err := e.c.Status().Update(ctx, p); err != nil {
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
	k := newKubelet(t)
	e := newPodEnv(t, k)
	e.pod("build-1", map[string]string{"app": "build"}, "kaniko", "sidecar")
	e.pod("other", map[string]string{"app": "web"}, "web")
	k.write(e.namespace+"/build-1/kaniko", t0, "step 1/3", "step 2/3")
	k.write(e.namespace+"/build-1/sidecar", t0, "ready")
	k.write(e.namespace+"/other/web", t0, "not this one")

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
	k.write(e.namespace+"/build-1/kaniko", t0.Add(100*time.Millisecond), "step 2/3 again, same stamp", "step 3/3", "pushed")
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
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(k.asked) == 0 || k.asked[len(k.asked)-1].Get("timestamps") != "true" || k.asked[len(k.asked)-1].Get("sinceTime") == "" {
		t.Errorf("the kubelet was asked %v, want stamped reads since the last line", k.asked)
	}
}

// A pod named in its namespace is read as one a selector matches; a name that matches nothing
// (the pod not made yet) logs nothing and is no error.
func TestPodLogsOfANamedPod(t *testing.T) {
	k := newKubelet(t)
	e := newPodEnv(t, k)
	e.pod("kaniko", nil, "kaniko")
	k.write(e.namespace+"/kaniko/kaniko", t0, "building")
	r := e.runner(util.Options{})
	got := e.step(r, fmt.Sprintf(`
import "vela/util"
log: util.#Log & {$params: source: resources: [{name: "kaniko", namespace: %q}, {name: "not-yet"}]}
`, e.namespace), map[string]json.RawMessage{})
	if want := []string{"[pod/kaniko/kaniko] building"}; !reflect.DeepEqual(got, want) {
		t.Errorf("logged %q, want %q", got, want)
	}
}

// A step adds at most its bounds of pods' logs: a read with more keeps its last lines, the log
// says the bounds are reached, and later evaluations add nothing more.
func TestPodLogsAreBoundedPerStep(t *testing.T) {
	k := newKubelet(t)
	e := newPodEnv(t, k)
	e.pod("noisy", map[string]string{"app": "noisy"}, "main")
	var lines []string
	for i := range 8 {
		lines = append(lines, fmt.Sprintf("line %d", i))
	}
	k.write(e.namespace+"/noisy/main", t0, lines...)
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
	k.write(e.namespace+"/noisy/main", t0.Add(time.Minute), "line 8")
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
	k.write(e.namespace+"/noisy-2/main", t0, "from the second pod")
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
