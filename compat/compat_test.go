package compat_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/txtar"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
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
	"github.com/stepflow/stepflow/store"
	crdstore "github.com/stepflow/stepflow/store/crd"
	"github.com/stepflow/stepflow/store/sqlite"
)

var cluster *apiservertest.Cluster

func TestMain(m *testing.M) { apiservertest.Main(m, &cluster) }

// controllerWait is the controller's backoff for waiting steps. It is long on purpose: a case
// must end before it, so a step waiting on an object is woken by the object's change
// (controller.Watches), not by its timer.
var controllerWait = engine.Backoff{Initial: 20 * time.Second, Factor: 2, Max: time.Minute}

// embeddedWait is the embedded mode's backoff: nothing wakes a waiting step there but its timer.
var embeddedWait = engine.Backoff{Initial: 100 * time.Millisecond, Factor: 2, Max: 500 * time.Millisecond}

// ready is how long the readiness stand-in leaves an object unready after it first sees it.
const ready = 1500 * time.Millisecond

// theCase is one testdata/*.txtar.
type theCase struct {
	name        string
	definitions []byte // WorkflowStepDefinitions, multi-document YAML
	objects     []byte // objects created before the run
	run         []byte
	want        want
	// podLogs are the lines the kubelet stand-in serves, by "<pod>/<container>".
	podLogs map[string][]string
	// jobPodLogs are the lines of every container of the pods the stand-in makes for Jobs.
	jobPodLogs []string
}

// want is what the run must end as.
type want struct {
	Phase   v1alpha1.WorkflowRunPhase  `json:"phase"`
	Steps   map[string]string          `json:"steps"`
	Message string                     `json:"message"`
	Outputs map[string]json.RawMessage `json:"outputs"`
	// Log is, by step, regular expressions that entries of the step's log must match, in
	// this order (other entries may come between them).
	Log map[string][]string `json:"log"`
	// LogNot is, by step, regular expressions that no entry of the step's log may match.
	LogNot map[string][]string `json:"logNot"`
}

// podLogsPrefix starts the name of a section holding a container's log: pod-logs/<pod>/<container>.
const podLogsPrefix = "pod-logs/"

// readCase reads the case at path, its ${NAME} placeholders replaced by subst's values.
func readCase(t *testing.T, path string, subst map[string]string) theCase {
	t.Helper()
	a, err := txtar.ParseFile(path)
	if err != nil {
		t.Fatal(err)
	}
	c := theCase{name: strings.TrimSuffix(filepath.Base(path), ".txtar"), podLogs: map[string][]string{}}
	seen := map[string]bool{}
	for _, f := range a.Files {
		seen[f.Name] = true
		data, err := substitute(f.Data, subst)
		if err != nil {
			t.Fatalf("%s: %s: %v", path, f.Name, err)
		}
		switch f.Name {
		case "definitions.yaml":
			c.definitions = data
		case "objects.yaml":
			c.objects = data
		case "run.yaml":
			c.run = data
		case "want":
			if err := yaml.UnmarshalStrict(data, &c.want); err != nil {
				t.Fatalf("%s: want: %v", path, err)
			}
			for field, m := range map[string]map[string][]string{"log": c.want.Log, "logNot": c.want.LogNot} {
				for step, res := range m {
					for _, re := range res {
						if _, err := regexp.Compile(re); err != nil {
							t.Fatalf("%s: want: %s.%s: %v", path, field, step, err)
						}
					}
				}
			}
		case "job-pod-logs":
			c.jobPodLogs = lines(data)
		default:
			id, ok := strings.CutPrefix(f.Name, podLogsPrefix)
			if !ok || strings.Count(id, "/") != 1 {
				t.Fatalf("%s: unknown section %q (definitions.yaml, objects.yaml, run.yaml, want, %s<pod>/<container>, job-pod-logs)", path, f.Name, podLogsPrefix)
			}
			c.podLogs[id] = lines(data)
		}
	}
	if !seen["run.yaml"] || !seen["want"] || c.want.Phase == "" {
		t.Fatalf("%s: needs run.yaml and a want with a phase", path)
	}
	if len(bytes.TrimSpace(a.Comment)) == 0 {
		t.Fatalf("%s: the comment must say what KubeVela behaviour the case checks", path)
	}
	return c
}

// written is when the first of lines was written, for the last (Kubelet.Write stamps them
// 100ms apart) to be written now.
func written(lines []string) time.Time {
	return time.Now().Add(-time.Duration(len(lines)) * 100 * time.Millisecond)
}

// lines splits a section into its lines.
func lines(data []byte) []string {
	return strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
}

// placeholder is a ${NAME} the harness replaces in every section of a case.
var placeholder = regexp.MustCompile(`\$\{([A-Z][A-Z0-9_]*)\}`)

// substitute replaces each ${NAME} of data by subst[NAME]; a name subst lacks is an error.
func substitute(data []byte, subst map[string]string) ([]byte, error) {
	var missing []string
	out := placeholder.ReplaceAllFunc(data, func(m []byte) []byte {
		name := string(placeholder.FindSubmatch(m)[1])
		v, ok := subst[name]
		if !ok {
			missing = append(missing, name)
			return m
		}
		return []byte(v)
	})
	if len(missing) > 0 {
		return nil, fmt.Errorf("unknown placeholders %v (the harness gives %v)", missing, slices.Sorted(maps.Keys(subst)))
	}
	return out, nil
}

// documents splits multi-document YAML.
func documents(data []byte) [][]byte {
	var docs [][]byte
	for _, d := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(data), -1) {
		if strings.TrimSpace(d) != "" {
			docs = append(docs, []byte(d))
		}
	}
	return docs
}

// TestCases runs every case in both modes.
func TestCases(t *testing.T) {
	if cluster == nil {
		t.Skip("needs kube-apiserver and etcd (not in -short mode)")
	}
	paths, err := filepath.Glob("testdata/*.txtar")
	if err != nil || len(paths) == 0 {
		t.Fatalf("no cases: %v", err)
	}
	c := newClient(t)
	installApplicationCRD(t, c)
	kubelet := apiservertest.NewKubelet(t)
	kubelet.Register(t, c, kubeletNode)
	https := startHTTPS(t)
	subst := map[string]string{"KUBELET_NODE": kubeletNode}
	maps.Copy(subst, https.placeholders())
	for _, path := range paths {
		tc := readCase(t, path, subst)
		t.Run(tc.name, func(t *testing.T) {
			for _, mode := range []struct {
				name string
				run  func(*testing.T, client.Client, string, theCase, *v1alpha1.WorkflowRun) result
			}{{"controller", runInController}, {"embedded", runEmbedded}} {
				t.Run(mode.name, func(t *testing.T) {
					ns := namespace(t, c)
					createObjects(t, c, ns, tc.objects)
					for id, lines := range tc.podLogs {
						pod, container, _ := strings.Cut(id, "/")
						kubelet.Write(ns, pod, container, written(lines), lines...)
					}
					var wr v1alpha1.WorkflowRun
					if err := yaml.UnmarshalStrict(tc.run, &wr); err != nil {
						t.Fatalf("run.yaml: %v", err)
					}
					wr.Namespace = ns
					standIn(t, c, ns, jobPods{kubelet: kubelet, lines: tc.jobPodLogs, made: map[types.UID]bool{}})
					began := time.Now()
					res := mode.run(t, c, ns, tc, &wr)
					t.Logf("finished in %v", time.Since(began).Round(time.Millisecond))
					check(t, tc.want, res)
				})
			}
		})
	}
}

// kubeletNode is the Node whose kubelet is the harness's stand-in (apiservertest.Kubelet); a
// case's Pods name it as spec.nodeName: ${KUBELET_NODE}.
const kubeletNode = "compat-kubelet"

// createObjects creates the objects of objects.yaml in ns. A Pod is then reported running with
// its containers started, as its node's kubelet would (apiservertest.Started): nothing runs it.
func createObjects(t *testing.T, c client.Client, ns string, objects []byte) {
	t.Helper()
	ctx := context.Background()
	for _, doc := range documents(objects) {
		var u unstructured.Unstructured
		if err := yaml.Unmarshal(doc, &u.Object); err != nil {
			t.Fatalf("objects.yaml: %v", err)
		}
		u.SetNamespace(ns)
		if err := c.Create(ctx, &u); err != nil {
			t.Fatalf("objects.yaml: %v", err)
		}
		if u.GetAPIVersion() != "v1" || u.GetKind() != "Pod" {
			continue
		}
		var pod corev1.Pod
		if err := c.Get(ctx, client.ObjectKeyFromObject(&u), &pod); err != nil {
			t.Fatal(err)
		}
		if err := apiservertest.Started(ctx, c, &pod); err != nil {
			t.Fatalf("objects.yaml: %v", err)
		}
	}
}

// result is how a run ended: the run as stored and its log.
type result struct {
	run  *engine.Run
	logs []engine.LogEntry
}

func newClient(t *testing.T) client.Client {
	t.Helper()
	scheme, err := controller.NewScheme()
	if err != nil {
		t.Fatal(err)
	}
	if err := apiextensionsv1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	c, err := client.New(cluster.Config, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

var namespaces atomic.Int64

// namespace makes a fresh namespace for one case in one mode.
func namespace(t *testing.T, c client.Client) string {
	t.Helper()
	name := strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name()))
	if len(name) > 50 {
		name = name[:50]
	}
	name = fmt.Sprintf("%s-%d", strings.Trim(name, "-"), namespaces.Add(1))
	if err := c.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	return name
}

// definitions decodes a case's WorkflowStepDefinitions, in namespace ns.
func definitions(t *testing.T, tc theCase, ns string) []*v1beta1.WorkflowStepDefinition {
	t.Helper()
	var defs []*v1beta1.WorkflowStepDefinition
	for _, doc := range documents(tc.definitions) {
		var d v1beta1.WorkflowStepDefinition
		if err := yaml.UnmarshalStrict(doc, &d); err != nil {
			t.Fatalf("definitions.yaml: %v", err)
		}
		d.Namespace = ns
		defs = append(defs, &d)
	}
	return defs
}

// runInController runs the case as `stepflow controller` does: a manager with controller.Setup,
// the run a WorkflowRun of its own shard.
func runInController(t *testing.T, c client.Client, ns string, tc theCase, wr *v1alpha1.WorkflowRun) result {
	t.Helper()
	ctx := context.Background()
	for _, d := range definitions(t, tc, ns) {
		if err := c.Create(ctx, d); err != nil {
			t.Fatalf("definitions.yaml: %v", err)
		}
	}
	scheme, _ := controller.NewScheme()
	skip := true
	mgr, err := ctrl.NewManager(cluster.Config, manager.Options{
		Scheme:     scheme,
		Cache:      controller.CacheOptions(ns),
		Metrics:    metricsserver.Options{BindAddress: "0"},
		Controller: config.Controller{SkipNameValidation: &skip},
	})
	if err != nil {
		t.Fatal(err)
	}
	clusters := stepcluster.New(cluster.Config, stepcluster.Options{Secrets: mgr.GetClient(), Scheme: scheme})
	if _, err := controller.Setup(mgr, controller.Options{
		Assembly: assembly.Config{Providers: assembly.Providers{Clusters: clusters}, Wait: controllerWait},
		Watches:  controller.NewWatches(cluster.Config, clusters, nil),
	}); err != nil {
		t.Fatal(err)
	}
	mctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := mgr.Start(mctx); err != nil {
			t.Errorf("manager: %v", err)
		}
	}()
	defer func() { cancel(); <-done }()
	if wr.Labels == nil {
		wr.Labels = map[string]string{}
	}
	wr.Labels[controller.ShardLabel] = ns
	if err := c.Create(ctx, wr); err != nil {
		t.Fatalf("run.yaml: %v", err)
	}
	deadline := time.Now().Add(controllerWait.Initial)
	for {
		var got v1alpha1.WorkflowRun
		if err := c.Get(ctx, client.ObjectKeyFromObject(wr), &got); err != nil {
			t.Fatal(err)
		}
		if got.Status.Finished {
			break
		}
		if time.Now().After(deadline) {
			y, _ := yaml.Marshal(got.Status)
			t.Fatalf("the run did not finish within the controller's first wait backoff (%v): a waiting step was not woken by what it waits on; status:\n%s", controllerWait.Initial, y)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The store reads the status and the context ConfigMap (the run variables) as the engine does.
	st := crdstore.New(crdstore.Options{Client: c})
	key := engine.Key{Namespace: ns, Name: wr.Name}
	run, err := st.Load(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	logs, err := st.Logs(ctx, key, "")
	if err != nil {
		t.Fatal(err)
	}
	return result{run, logs}
}

// finished is told of every transition and passes on the run once it has finished.
type finished chan *engine.Run

func (f finished) RunChanged(run *engine.Run) {
	if run.Object.Status.Finished {
		select {
		case f <- run:
		default:
		}
	}
}

// runEmbedded runs the case as `stepflow run` and `stepflow server` do: the engine over SQLite,
// reaching the same API server as its local cluster.
func runEmbedded(t *testing.T, c client.Client, ns string, tc theCase, wr *v1alpha1.WorkflowRun) result {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, sqlite.Options{Path: filepath.Join(t.TempDir(), "stepflow.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = st.Close() }()
	if err := st.PutObjects(ctx, definitions(t, tc, ns), nil); err != nil {
		t.Fatal(err)
	}
	done := make(finished, 1)
	a, err := assembly.New(assembly.Config{
		Providers: assembly.Providers{Clusters: stepcluster.New(cluster.Config, stepcluster.Options{Secrets: c})},
		Wait:      embeddedWait,
	}, assembly.Mode{Store: st, Definitions: st, Observers: []engine.Observer{done}})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Create(ctx, &engine.Run{Object: wr}, store.CreateNew); err != nil {
		t.Fatal(err)
	}
	ectx, cancel := context.WithCancel(ctx)
	stopped := make(chan struct{})
	go func() { _ = a.Engine.Start(ectx); close(stopped) }()
	defer func() { cancel(); <-stopped }()
	a.Engine.Enqueue(engine.Key{Namespace: ns, Name: wr.Name})
	select {
	case run := <-done:
		logs, err := st.Logs(ctx, engine.Key{Namespace: ns, Name: wr.Name}, "")
		if err != nil {
			t.Fatal(err)
		}
		return result{run, logs}
	case <-time.After(25 * time.Second):
		run, _ := st.Load(ctx, engine.Key{Namespace: ns, Name: wr.Name})
		var y []byte
		if run != nil {
			y, _ = yaml.Marshal(run.Object.Status)
		}
		t.Fatalf("the run did not finish in 25 s; status:\n%s", y)
	}
	return result{}
}

// check compares the finished run with the case's want.
func check(t *testing.T, w want, res result) {
	t.Helper()
	run := res.run
	st := run.Object.Status
	if st.Phase != w.Phase {
		t.Errorf("phase %s, want %s (message %q)", st.Phase, w.Phase, st.Message)
	}
	if w.Message != "" && !regexp.MustCompile(w.Message).MatchString(st.Message) {
		t.Errorf("message %q does not match %q", st.Message, w.Message)
	}
	got := map[string]string{}
	for _, s := range st.Steps {
		got[s.Name] = string(s.Phase)
		if s.Reason != "" {
			got[s.Name+"/"] = string(s.Phase) + "/" + s.Reason
		}
		if s.Message != "" {
			t.Logf("step %s: %s: %s", s.Name, s.Phase, s.Message)
		}
	}
	for name, phase := range w.Steps {
		have := got[name]
		if strings.Contains(phase, "/") {
			have = got[name+"/"]
		}
		if have != phase {
			t.Errorf("step %s: %q, want %q", name, have, phase)
		}
	}
	for name, raw := range w.Outputs {
		var want, have any
		if err := json.Unmarshal(raw, &want); err != nil {
			t.Fatalf("want outputs.%s: %v", name, err)
		}
		v, ok := run.Vars[name]
		if !ok {
			t.Errorf("no run variable %s (have %v)", name, slices.Sorted(maps.Keys(run.Vars)))
			continue
		}
		if err := json.Unmarshal(v, &have); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(have, want) {
			t.Errorf("run variable %s = %s, want %s", name, v, raw)
		}
	}
	messages := func(step string) []string {
		var out []string
		for _, e := range res.logs {
			if e.Step == step {
				out = append(out, e.Message)
			}
		}
		return out
	}
	for step, patterns := range w.Log {
		m := messages(step)
		if missing := inOrder(m, patterns); missing != "" {
			t.Errorf("the log of step %s has no entry matching %q where it should; its entries:\n%s", step, missing, strings.Join(m, "\n"))
		}
	}
	for step, patterns := range w.LogNot {
		for _, msg := range messages(step) {
			for _, re := range patterns {
				if regexp.MustCompile(re).MatchString(msg) {
					t.Errorf("the log of step %s has an entry matching %q: %q", step, re, msg)
				}
			}
		}
	}
}

// inOrder returns the first of the regular expressions res that no message matches after the
// message the one before it matched, or "" when each has its message, in order.
func inOrder(messages, res []string) string {
	i := 0
	for _, re := range res {
		r := regexp.MustCompile(re)
		for i < len(messages) && !r.MatchString(messages[i]) {
			i++
		}
		if i == len(messages) {
			return re
		}
		i++
	}
	return ""
}

var installOnce sync.Once

// installApplicationCRD installs a stand-in for KubeVela's Application CRD (an open schema with
// a status subresource): KubeVela's core is not installed here, and apply-app applies one.
func installApplicationCRD(t *testing.T, c client.Client) {
	t.Helper()
	installOnce.Do(func() {
		preserve := true
		crd := &apiextensionsv1.CustomResourceDefinition{
			ObjectMeta: metav1.ObjectMeta{Name: "applications.core.oam.dev"},
			Spec: apiextensionsv1.CustomResourceDefinitionSpec{
				Group: "core.oam.dev",
				Names: apiextensionsv1.CustomResourceDefinitionNames{Plural: "applications", Singular: "application", Kind: "Application", ListKind: "ApplicationList", ShortNames: []string{"app"}},
				Scope: apiextensionsv1.NamespaceScoped,
				Versions: []apiextensionsv1.CustomResourceDefinitionVersion{{
					Name: "v1beta1", Served: true, Storage: true,
					Schema:       &apiextensionsv1.CustomResourceValidation{OpenAPIV3Schema: &apiextensionsv1.JSONSchemaProps{Type: "object", XPreserveUnknownFields: &preserve}},
					Subresources: &apiextensionsv1.CustomResourceSubresources{Status: &apiextensionsv1.CustomResourceSubresourceStatus{}},
				}},
			},
		}
		if err := c.Create(context.Background(), crd); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			var got apiextensionsv1.CustomResourceDefinition
			if err := c.Get(context.Background(), client.ObjectKeyFromObject(crd), &got); err == nil {
				for _, cond := range got.Status.Conditions {
					if cond.Type == apiextensionsv1.Established && cond.Status == apiextensionsv1.ConditionTrue {
						return
					}
				}
			}
			if time.Now().After(deadline) {
				t.Fatal("the Application CRD was not established")
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
}

var applicationGVK = schema.GroupVersionKind{Group: "core.oam.dev", Version: "v1beta1", Kind: "Application"}

// standIn stands in for the kubelet and the kube-controller-manager (and for KubeVela's
// application controller), which cannot run here: until the test ends it marks the
// namespace's Deployments ready, its Jobs complete and its Applications running, each
// `ready` after it first saw them, as those controllers would once pods had started. A Job
// gets its pod at once, as the Job controller would make it: on the kubelet stand-in's node,
// reported running, with the case's job-pod-logs as the log of each of its containers.
func standIn(t *testing.T, c client.Client, ns string, pods jobPods) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		seen := map[string]time.Time{}
		due := func(kind string, m metav1.Object) bool {
			key := kind + "/" + m.GetName() + "/" + fmt.Sprint(m.GetGeneration())
			if _, ok := seen[key]; !ok {
				seen[key] = time.Now()
			}
			return time.Since(seen[key]) >= ready
		}
		for ctx.Err() == nil {
			markDeployments(ctx, t, c, ns, due)
			markJobs(ctx, t, c, ns, due, pods)
			markApplications(ctx, t, c, ns, due)
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
}

func markDeployments(ctx context.Context, t *testing.T, c client.Client, ns string, due func(string, metav1.Object) bool) {
	var list appsv1.DeploymentList
	if err := c.List(ctx, &list, client.InNamespace(ns)); err != nil {
		return
	}
	for i := range list.Items {
		d := &list.Items[i]
		if d.Status.ObservedGeneration == d.Generation || !due("Deployment", d) {
			continue
		}
		n := int32(1)
		if d.Spec.Replicas != nil {
			n = *d.Spec.Replicas
		}
		d.Status = appsv1.DeploymentStatus{
			ObservedGeneration: d.Generation, Replicas: n, ReadyReplicas: n, UpdatedReplicas: n, AvailableReplicas: n,
			Conditions: []appsv1.DeploymentCondition{{Type: appsv1.DeploymentAvailable, Status: corev1.ConditionTrue, Reason: "MinimumReplicasAvailable", LastUpdateTime: metav1.Now(), LastTransitionTime: metav1.Now()}},
		}
		if err := c.Status().Update(ctx, d); err != nil && ctx.Err() == nil && !apierrors.IsConflict(err) {
			t.Logf("stand-in: Deployment %s: %v", d.Name, err)
		}
	}
}

// jobPods is what the stand-in needs to make a Job's pod: the kubelet that serves its
// containers' logs, and their lines.
type jobPods struct {
	kubelet *apiservertest.Kubelet
	lines   []string
	made    map[types.UID]bool // the Jobs whose pod was made
}

func markJobs(ctx context.Context, t *testing.T, c client.Client, ns string, due func(string, metav1.Object) bool, pods jobPods) {
	var list batchv1.JobList
	if err := c.List(ctx, &list, client.InNamespace(ns)); err != nil {
		return
	}
	for i := range list.Items {
		j := &list.Items[i]
		if !pods.made[j.UID] {
			if err := pods.make(ctx, c, j); err != nil {
				if ctx.Err() == nil {
					t.Logf("stand-in: Job %s: %v", j.Name, err)
				}
				continue
			}
			pods.made[j.UID] = true
		}
		if j.Status.Succeeded > 0 || !due("Job", j) {
			continue
		}
		n := int32(1)
		if j.Spec.Completions != nil {
			n = *j.Spec.Completions
		}
		start := metav1.NewTime(j.CreationTimestamp.Time)
		now := metav1.Now()
		j.Status = batchv1.JobStatus{
			StartTime: &start, CompletionTime: &now, Succeeded: n,
			Conditions: []batchv1.JobCondition{
				{Type: batchv1.JobSuccessCriteriaMet, Status: corev1.ConditionTrue, LastTransitionTime: now},
				{Type: batchv1.JobComplete, Status: corev1.ConditionTrue, LastTransitionTime: now},
			},
		}
		if err := c.Status().Update(ctx, j); err != nil && ctx.Err() == nil && !apierrors.IsConflict(err) {
			t.Logf("stand-in: Job %s: %v", j.Name, err)
		}
	}
}

// make makes the pod of Job j, <job>-pod, labelled as the Job controller labels it, on the
// kubelet stand-in's node, and reports it running.
func (p jobPods) make(ctx context.Context, c client.Client, j *batchv1.Job) error {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: j.Name + "-pod", Namespace: j.Namespace,
			Labels:          maps.Clone(j.Spec.Template.Labels),
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(j, batchv1.SchemeGroupVersion.WithKind("Job"))},
		},
		Spec: *j.Spec.Template.Spec.DeepCopy(),
	}
	if pod.Labels == nil {
		pod.Labels = map[string]string{}
	}
	pod.Labels["job-name"] = j.Name
	pod.Labels["batch.kubernetes.io/job-name"] = j.Name
	pod.Spec.NodeName = kubeletNode
	if err := c.Create(ctx, pod); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("making its pod: %w", err)
	}
	for _, ct := range pod.Spec.Containers {
		p.kubelet.Write(pod.Namespace, pod.Name, ct.Name, written(p.lines), p.lines...)
	}
	return apiservertest.Started(ctx, c, pod)
}

func markApplications(ctx context.Context, t *testing.T, c client.Client, ns string, due func(string, metav1.Object) bool) {
	var list unstructured.UnstructuredList
	list.SetGroupVersionKind(applicationGVK.GroupVersion().WithKind("ApplicationList"))
	if err := c.List(ctx, &list, client.InNamespace(ns)); err != nil {
		return
	}
	for i := range list.Items {
		a := &list.Items[i]
		observed, _, _ := unstructured.NestedInt64(a.Object, "status", "observedGeneration")
		if observed == a.GetGeneration() || !due("Application", a) {
			continue
		}
		a.Object["status"] = map[string]any{"status": "running", "observedGeneration": a.GetGeneration()}
		if err := c.Status().Update(ctx, a); err != nil && ctx.Err() == nil && !apierrors.IsConflict(err) {
			t.Logf("stand-in: Application %s: %v", a.GetName(), err)
		}
	}
}

// TestTheDocNamesEveryCase keeps docs/kubevela-compatibility.md true: every case it names
// exists, and every case is named by some row.
func TestTheDocNamesEveryCase(t *testing.T) {
	doc, err := os.ReadFile("../docs/kubevela-compatibility.md")
	if err != nil {
		t.Fatal(err)
	}
	named := map[string]bool{}
	for _, m := range regexp.MustCompile(`compat/testdata/([\w-]+\.txtar)(?:[^\w.]|$)`).FindAllStringSubmatch(string(doc), -1) {
		named[m[1]] = true
		if _, err := os.Stat(filepath.Join("testdata", m[1])); err != nil {
			t.Errorf("docs/kubevela-compatibility.md names compat/testdata/%s, which does not exist", m[1])
		}
	}
	paths, err := filepath.Glob("testdata/*.txtar")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range paths {
		if !named[filepath.Base(p)] {
			t.Errorf("compat/%s is named by no row of docs/kubevela-compatibility.md", p)
		}
	}
}
