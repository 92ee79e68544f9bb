package run_test

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/apiservertest"
	"github.com/stepflow/stepflow/assembly"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/provider/kube"
	"github.com/stepflow/stepflow/provider/run"
	"github.com/stepflow/stepflow/step"
	"github.com/stepflow/stepflow/store"
	"github.com/stepflow/stepflow/store/sqlite"
)

// exited is what the test's stand-in for a node makes of a Job's container: its exit code, the
// lines it wrote and its termination message.
type exited struct {
	code    int32
	lines   []string
	message string
}

// node stands in for what runs a Job in a cluster and cannot run in the tests: the Job
// controller, which creates a Job's pod (there is no kube-controller-manager on the test API
// server, so the backend creates only the Job and this stand-in creates the pod, as the Job
// controller would: labelled with the Job's name, controlled by the Job), and the kubelet,
// which binds the pod to its node, runs the container (here: run says what it did, given the
// container's environment with the values of Secrets resolved as a kubelet resolves them), and
// reports it terminated with its exit code and termination message, its lines served through
// the API server's pods/log by apiservertest.Kubelet.
type node struct {
	t       *testing.T
	c       client.Client
	kubelet *apiservertest.Kubelet
	ns      string
	run     func(env map[string]string) exited

	mu      sync.Mutex
	created []string // the Jobs it saw, by name
}

const nodeName = "run-node"

func startNode(t *testing.T, c client.Client, ns string, runContainer func(env map[string]string) exited) *node {
	n := &node{t: t, c: c, kubelet: apiservertest.NewKubelet(t), ns: ns, run: runContainer}
	n.kubelet.Register(t, c, nodeName+"-"+ns)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			n.step(ctx)
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return n
}

// jobs is the names of the Jobs the node saw created.
func (n *node) jobs() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.created...)
}

func (n *node) step(ctx context.Context) {
	var jobs batchv1.JobList
	if err := n.c.List(ctx, &jobs, client.InNamespace(n.ns)); err != nil {
		return
	}
	for i := range jobs.Items {
		job := &jobs.Items[i]
		n.mu.Lock()
		seen := false
		for _, name := range n.created {
			seen = seen || name == job.Name
		}
		if !seen {
			n.created = append(n.created, job.Name)
		}
		n.mu.Unlock()
		if seen {
			continue
		}
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{
				Name: job.Name + "-x7k2p", Namespace: n.ns,
				Labels:          map[string]string{run.LabelJobName: job.Name, "job-name": job.Name},
				OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(job, batchv1.SchemeGroupVersion.WithKind("Job"))},
			},
			Spec: *job.Spec.Template.Spec.DeepCopy(),
		}
		maps.Copy(pod.Labels, job.Spec.Template.Labels)
		pod.Spec.NodeName = nodeName + "-" + n.ns
		if err := n.c.Create(ctx, pod); err != nil {
			n.t.Errorf("the stand-in creating the pod of Job %s: %v", job.Name, err)
			continue
		}
		ct := pod.Spec.Containers[0]
		env := map[string]string{}
		for _, e := range ct.Env {
			switch {
			case e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil:
				var s corev1.Secret
				if err := n.c.Get(ctx, client.ObjectKey{Namespace: n.ns, Name: e.ValueFrom.SecretKeyRef.Name}, &s); err == nil {
					env[e.Name] = string(s.Data[e.ValueFrom.SecretKeyRef.Key])
				}
			default:
				env[e.Name] = e.Value
			}
		}
		env["$0"] = strings.Join(ct.Command[3:], " ")
		out := n.run(env)
		now := time.Now()
		n.kubelet.Write(n.ns, pod.Name, ct.Name, now, out.lines...)
		pod.Status = corev1.PodStatus{Phase: corev1.PodSucceeded}
		if out.code != 0 {
			pod.Status.Phase = corev1.PodFailed
		}
		pod.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: ct.Name, Image: ct.Image, State: corev1.ContainerState{
			Terminated: &corev1.ContainerStateTerminated{ExitCode: out.code, Message: out.message, StartedAt: metav1.NewTime(now), FinishedAt: metav1.NewTime(now)},
		}}}
		if err := n.c.Status().Update(ctx, pod); err != nil {
			n.t.Errorf("the stand-in reporting pod %s: %v", pod.Name, err)
		}
	}
}

// clusterOf serves the test API server as the local cluster.
type clusterOf struct {
	c   client.Client
	cfg *rest.Config
}

func (o clusterOf) Client(_ context.Context, name string) (client.Client, error) {
	if name != "" {
		return nil, engine.Terminal(v1alpha1.ReasonExecute, errors.New("no cluster "+name))
	}
	return o.c, nil
}

func (o clusterOf) Config(context.Context, string) (*rest.Config, error) { return o.cfg, nil }

// jobStep evaluates template as step "build" of run "wr" in ns, in the execution given, again
// as a waiting step is (its variables carried over) until it ends, and returns the last result
// and every log line of its evaluations. Each evaluation is a new Runner, as another process's
// would be.
func jobStep(t *testing.T, opts run.Options, ns, execution, template string) (*engine.StepResult, []string) {
	t.Helper()
	return jobStepWith(t, opts, ns, execution, template, map[string]json.RawMessage{})
}

// jobStepWith is jobStep starting from the run variables vars, which it updates.
func jobStepWith(t *testing.T, opts run.Options, ns, execution, template string, vars map[string]json.RawMessage) (*engine.StepResult, []string) {
	t.Helper()
	var logs []string
	deadline := time.Now().Add(30 * time.Second)
	for {
		reg := step.NewRegistry()
		run.Register(reg, opts)
		r := step.NewRunner(step.Options{Registry: reg, Definitions: sameTemplate{}})
		res, err := r.RunStep(context.Background(), &engine.StepRequest{
			Run:        engine.Key{Namespace: ns, Name: "wr"},
			Step:       v1alpha1.WorkflowStepBase{Name: "build", Type: template, Outputs: v1alpha1.StepOutputs{{Name: "v", ValueFrom: "job.$returns.outputs.v"}}},
			Properties: json.RawMessage(`{}`),
			Context:    map[string]any{"name": "wr", "namespace": ns, "stepName": "build"},
			Vars:       maps.Clone(vars),
			Execution:  execution,
		})
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range res.Logs {
			logs = append(logs, l.Message)
		}
		maps.Copy(vars, res.VarWrites)
		if res.Outcome != engine.Waiting {
			return res, logs
		}
		if time.Now().After(deadline) {
			t.Fatalf("the step still waits: %s", res.Message)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func jobSetup(t *testing.T, runContainer func(env map[string]string) exited) (client.Client, string, *node, run.Options) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a kube-apiserver")
	}
	c, err := client.New(api.Config, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ns := apiservertest.Namespace(t)
	if err := c.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	n := startNode(t, c, ns, runContainer)
	cl := clusterOf{c, api.Config}
	// As assembly.Registry wires it: the Jobs and the Secrets of env in the same clusters.
	return c, ns, n, run.Options{Jobs: &run.Jobs{Objects: kube.NewObjects(kube.Options{Clusters: cl}), Clusters: cl}, Clusters: cl}
}

// A step with an image runs a Job; the container's lines reach the step's log, its output comes
// back through its termination message, and the Job is deleted after (cleanup: always).
func TestJobSucceedsWithOutputsAndLogs(t *testing.T) {
	var env map[string]string
	c, ns, n, opts := jobSetup(t, func(e map[string]string) exited {
		env = e
		return exited{lines: []string{"building", "built"}, message: "v\n3\n42\n"}
	})
	vars := map[string]json.RawMessage{}
	tmpl := runTemplate(`image: "busybox:1.36", script: "echo building; echo built; echo 42 > $STEPFLOW_OUTPUTS/v", outputs: ["v"], env: [{name: "MODE", value: "fast"}], timeout: "90s", resources: {cpu: "500m", memory: "128Mi"}`)
	res, logs := jobStepWith(t, opts, ns, "b/1/1/0", tmpl, vars)
	if res.Outcome != engine.Succeeded || string(res.Outputs["v"]) != `"42"` {
		t.Fatalf("outcome %v (%s), outputs %s", res.Outcome, res.Message, res.Outputs)
	}
	joined := strings.Join(logs, "|")
	if !strings.Contains(joined, "/run] building|") || !strings.Contains(joined, "/run] built") {
		t.Errorf("the container's lines are not in the step's log: %q", joined)
	}
	if env["MODE"] != "fast" || !strings.Contains(env["STEPFLOW_SCRIPT"], "echo building") || env["$0"] != "stepflow /bin/sh /stepflow/script" || env["STEPFLOW_OUTPUT_NAMES"] != "v" {
		t.Errorf("the container's environment: %v", env)
	}
	jobs := n.jobs()
	if len(jobs) != 1 || !strings.HasPrefix(jobs[0], "wr-build-") || len(jobs[0]) > 63 {
		t.Fatalf("jobs created: %v", jobs)
	}
	var job batchv1.Job
	err := c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: jobs[0]}, &job)
	if !apierrors.IsNotFound(err) {
		t.Errorf("the Job is not deleted after the step (cleanup always): %v", err)
	}
	// Evaluated again in the same execution (a later action of the step waited), the call
	// returns what the Job did, from the step's record, and creates no other Job.
	if res, _ := jobStepWith(t, opts, ns, "b/1/1/0", tmpl, vars); res.Outcome != engine.Succeeded || string(res.Outputs["v"]) != `"42"` {
		t.Errorf("again: outcome %v (%s), outputs %s", res.Outcome, res.Message, res.Outputs)
	}
	if got := n.jobs(); len(got) != 1 {
		t.Errorf("Jobs after evaluating again: %v, want 1", got)
	}
}

// A Job's spec: backoffLimit 0, the deadline from timeout, the resources, the run's labels, and
// the Secret's value as the kubelet's to read (cleanup: never keeps it).
func TestJobSpecAndEnvFromSecret(t *testing.T) {
	var token string
	c, ns, n, opts := jobSetup(t, func(e map[string]string) exited {
		token = e["TOKEN"]
		return exited{message: "v\n2\nok"}
	})
	if err := c.Create(context.Background(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "build", Namespace: ns}, Data: map[string][]byte{"token": []byte("tok-7f3a9c")}}); err != nil {
		t.Fatal(err)
	}
	res, _ := jobStep(t, opts, ns, "b/1/1/0", runTemplate(`image: "alpine:3", command: ["make"], args: ["all"], outputs: ["v"], cleanup: "never", timeout: "90s", resources: {cpu: "500m", memory: "128Mi"},
		env: [{name: "TOKEN", valueFrom: secretKeyRef: {name: "build", key: "token"}}]`))
	if res.Outcome != engine.Succeeded {
		t.Fatalf("outcome %v (%s)", res.Outcome, res.Message)
	}
	if token != "tok-7f3a9c" {
		t.Errorf("the container's TOKEN = %q", token)
	}
	// Read by stepflow too, so that the run redacts it in what the pod prints.
	if !slices.Contains(res.Sensitive, "tok-7f3a9c") {
		t.Errorf("the Secret's value is not known as a secret: %v", res.Sensitive)
	}
	var job batchv1.Job
	if err := c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: n.jobs()[0]}, &job); err != nil {
		t.Fatalf("the Job is not kept (cleanup never): %v", err)
	}
	ct := job.Spec.Template.Spec.Containers[0]
	if *job.Spec.BackoffLimit != 0 || *job.Spec.ActiveDeadlineSeconds != 90 || ct.Image != "alpine:3" ||
		ct.Resources.Limits.Cpu().String() != "500m" || ct.Resources.Limits.Memory().String() != "128Mi" ||
		job.Labels[kube.LabelRunName] != "wr" || job.Labels[run.LabelStep] != "build" || strings.Join(ct.Command[3:], " ") != "stepflow make all" {
		t.Errorf("the Job: backoffLimit %d, deadline %d, image %s, limits %v, labels %v, command %q", *job.Spec.BackoffLimit, *job.Spec.ActiveDeadlineSeconds, ct.Image, ct.Resources.Limits, job.Labels, ct.Command)
	}
	for _, e := range ct.Env {
		if e.Name == "TOKEN" && (e.Value != "" || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef.Name != "build") {
			t.Errorf("TOKEN in the Job: %+v", e)
		}
	}
}

// A non-zero exit fails the step with the code and the last lines, read through pods/log.
func TestJobFailsWithExitCodeAndLastLines(t *testing.T) {
	_, ns, _, opts := jobSetup(t, func(map[string]string) exited {
		return exited{code: 2, lines: []string{"compiling", "error: no such file"}}
	})
	res, _ := jobStep(t, opts, ns, "b/1/1/0", runTemplate(`image: "busybox", command: ["false"]`))
	if res.Outcome != engine.Failed || !strings.Contains(res.Message, "exited with code 2; last lines:\ncompiling\nerror: no such file") {
		t.Errorf("outcome %v, message %q", res.Outcome, res.Message)
	}
}

// An evaluation in another process (after a crash) of the same execution follows the Job the
// first made; a retry (another execution) makes another Job.
func TestJobOncePerExecution(t *testing.T) {
	c, ns, n, opts := jobSetup(t, func(map[string]string) exited { return exited{message: "v\n1\n7"} })
	tmpl := runTemplate(`image: "busybox", command: ["true"], outputs: ["v"], cleanup: "never"`)
	// The first evaluation creates the Job and waits; its process then dies: nothing of it is
	// kept but the Job. The next try evaluates the step afresh.
	reg := step.NewRegistry()
	run.Register(reg, opts)
	first, err := step.NewRunner(step.Options{Registry: reg, Definitions: sameTemplate{}}).RunStep(context.Background(), &engine.StepRequest{
		Run: engine.Key{Namespace: ns, Name: "wr"}, Step: v1alpha1.WorkflowStepBase{Name: "build", Type: tmpl},
		Properties: json.RawMessage(`{}`), Execution: "b/1/1/0",
	})
	if err != nil || first.Outcome != engine.Waiting {
		t.Fatalf("first evaluation: %v, %+v", err, first)
	}
	res, _ := jobStep(t, opts, ns, "b/1/1/0", tmpl)
	if res.Outcome != engine.Succeeded || string(res.Outputs["v"]) != `"7"` {
		t.Fatalf("outcome %v (%s), outputs %s", res.Outcome, res.Message, res.Outputs)
	}
	var list batchv1.JobList
	if err := c.List(context.Background(), &list, client.InNamespace(ns)); err != nil || len(list.Items) != 1 {
		t.Fatalf("Jobs after a re-evaluation: %d (%v), want 1", len(list.Items), err)
	}
	if res, _ := jobStep(t, opts, ns, "b/1/1/1", tmpl); res.Outcome != engine.Succeeded {
		t.Fatalf("retry: outcome %v (%s)", res.Outcome, res.Message)
	}
	if got := n.jobs(); len(got) != 2 || got[0] == got[1] {
		t.Errorf("Jobs after a retry: %v, want 2", got)
	}
}

// Outputs larger than a termination message holds fail the step saying so.
func TestJobOutputsBeyondTheTerminationMessage(t *testing.T) {
	_, ns, _, opts := jobSetup(t, func(map[string]string) exited {
		return exited{message: ("v\n5000\n" + strings.Repeat("x", 5000))[:run.MaxTerminationMessage]}
	})
	res, _ := jobStep(t, opts, ns, "b/1/1/0", runTemplate(`image: "busybox", command: ["true"], outputs: ["v"]`))
	if res.Outcome != engine.Failed || !strings.Contains(res.Message, "larger than 4096 bytes together") {
		t.Errorf("outcome %v, message %q", res.Outcome, res.Message)
	}
}

// settled passes on a run once it finished.
type settled chan *engine.Run

func (s settled) RunChanged(r *engine.Run) {
	if r.Object.Status.Finished {
		select {
		case s <- r:
		default:
		}
	}
}

// Through the engine of an assembly (embedded mode, its SQLite store), a run step with an image
// runs as a Job whose output the next step takes.
func TestJobThroughTheEngine(t *testing.T) {
	_, ns, n, _ := jobSetup(t, func(map[string]string) exited { return exited{lines: []string{"ok"}, message: "version\n3\nv9\n"} })
	c, err := client.New(api.Config, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	st, err := sqlite.Open(ctx, sqlite.Options{Path: filepath.Join(t.TempDir(), "stepflow.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	done := make(settled, 1)
	a, err := assembly.New(assembly.Config{Providers: assembly.Providers{Clusters: clusterOf{c, api.Config}}},
		assembly.Mode{Store: st, Definitions: st, Observers: []engine.Observer{done}})
	if err != nil {
		t.Fatal(err)
	}
	var obj v1alpha1.WorkflowRun
	doc := `
apiVersion: core.oam.dev/v1alpha1
kind: WorkflowRun
metadata: {name: wr, namespace: ` + ns + `}
spec:
  workflowSpec:
    steps:
    - name: build
      type: run
      properties: {image: "busybox:1.36", script: "printf 'v9\n' > $STEPFLOW_OUTPUTS/version", outputs: [version]}
      outputs: [{name: version, valueFrom: outputs.version}]
    - name: show
      type: print-message-in-status
      inputs: [{from: version, parameterKey: message}]
      properties: {message: ""}
`
	if err := yaml.UnmarshalStrict([]byte(doc), &obj); err != nil {
		t.Fatal(err)
	}
	if err := st.Create(ctx, &engine.Run{Object: &obj}, store.CreateNew); err != nil {
		t.Fatal(err)
	}
	engCtx, cancel := context.WithCancel(ctx)
	stopped := make(chan struct{})
	go func() { _ = a.Engine.Start(engCtx); close(stopped) }()
	t.Cleanup(func() { cancel(); <-stopped })
	a.Engine.Enqueue(engine.Key{Namespace: ns, Name: "wr"})
	var r *engine.Run
	select {
	case r = <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("the run did not finish")
	}
	if r.Object.Status.Phase != v1alpha1.RunSucceeded {
		t.Fatalf("phase %s, message %q, steps %+v", r.Object.Status.Phase, r.Object.Status.Message, r.Object.Status.Steps)
	}
	for _, s := range r.Object.Status.Steps {
		if s.Name == "show" && s.Message != "v9" {
			t.Errorf("show's message %q, want the Job's output v9", s.Message)
		}
	}
	if jobs := n.jobs(); len(jobs) != 1 {
		t.Errorf("Jobs created: %v, want 1", jobs)
	}
}
