package main

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/api/v1beta1"
	"github.com/stepflow/stepflow/apiservertest"
	"github.com/stepflow/stepflow/controller"
	crdstore "github.com/stepflow/stepflow/store/crd"
)

// Sizes of the controller's crash test.
const (
	// controllerCrashRuns is half the embedded test's runs: the controller, kube-apiserver and
	// etcd share two CPUs with the race-instrumented test, and with 200 runs it took 80 to
	// 120s, against 35 to 85s with 100 (depending on what else the machine ran).
	controllerCrashRuns = 100
	// controllerCrashMaxGap keeps the kills within the requests the runs make at the least (5
	// each), as crashMaxGap does for the embedded test.
	controllerCrashMaxGap = 5 * controllerCrashRuns / crashKills
	// controllerCrashDeadline bounds the time the last controller takes to finish every run.
	controllerCrashDeadline = 3 * time.Minute
)

// TestControllerCrashRecovery is TestCrashRecovery for `stepflow controller` on a real API
// server: the crash test's WorkflowRuns are created through the API, a controller process
// drives them and is killed (SIGKILL) 20 times at random requests to the test server, each
// time replaced by a new one, and the last runs until every run has finished. The checks are
// the crash test's, on the runs as the controller stored them (status and status.stepflow):
// every run succeeded, no step recorded as succeeded, or with its side effect recorded, ran
// again, and each side effect was made at least once and at most once per recorded try.
// STEPFLOW_CRASH_SEED replays a seed.
func TestControllerCrashRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("starts kube-apiserver and kills a controller 20 times")
	}
	exe, err := exec.LookPath("stepflow-exe")
	if err != nil {
		t.Fatal(err)
	}
	plan := newCrashPlan(t, crashKills, controllerCrashMaxGap)
	// The cluster of the kube scripts belongs to TestScripts and ends with it: this test
	// starts its own, so that the controllers see no runs but the test's.
	cluster, err := apiservertest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// On a busy machine kube-apiserver may take longer to stop than envtest waits for,
		// and is then killed: nothing this test checks.
		if err := cluster.Stop(); err != nil {
			t.Logf("stopping the API server: %v", err)
		}
	})
	c := crashClient(t, cluster.Config)
	// The test server reads the runs as the controller does, through store/crd over an
	// informer cache: a read costs no request, so its answers are not held up by a busy API
	// server (the HTTP actions give up after 3s and try the step again, which would repeat a
	// side effect for a reason other than a crash). A write reaches the cache a moment after
	// it is made: a step run again within that moment would go unnoticed, while what the cache
	// shows when a request comes was written before it. The checks at the end read the API
	// server.
	observed := crdstore.New(crdstore.Options{Client: c, Cache: startCache(t, cluster.Config)})
	cs, url := startCrashServer(t, func() (runLoader, error) { return observed, nil })

	var def v1beta1.WorkflowStepDefinition
	createFromYAML(t, c, crashDefinition, &def)
	for i := range controllerCrashRuns {
		var run v1alpha1.WorkflowRun
		createFromYAML(t, c, strings.NewReplacer("$RUN", crashRunName(i), "$SERVER", url).Replace(crashWorkflow), &run)
	}

	start := func() *process {
		return startProcess(t, exe, "--kubeconfig", cluster.Kubeconfig, "--wait-backoff", "10ms", "--retry-backoff", "10ms",
			"controller", "--metrics-bind-address", "0", "--health-probe-bind-address", "0")
	}
	p := plan.killAndRestart(t, cs, start(), start)
	if err := waitFinished(t.Context(), c, controllerCrashDeadline); err != nil {
		_ = p.cmd.Process.Kill()
		t.Fatalf("%v\nthe last controller wrote:\n%s", err, p.output())
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-p.exited
	if p.err != nil {
		t.Fatalf("the last controller ended with %v on SIGTERM:\n%s", p.err, p.output())
	}

	repeated := checkCrashRuns(t, crdstore.New(crdstore.Options{Client: c}), cs, controllerCrashRuns)
	t.Logf("%d kills; %d of %d side effects were made again by a new controller, each in a try of its own",
		crashKills, repeated, controllerCrashRuns*len(crashSteps))
}

// crashClient is a client of the API server for the test's own requests, not held back by
// client-go's default rate limit (5 a second): the test creates every run, and reads each at
// the end.
func crashClient(t *testing.T, cfg *rest.Config) client.Client {
	t.Helper()
	cfg = rest.CopyConfig(cfg)
	cfg.QPS, cfg.Burst = 1000, 2000
	scheme, err := controller.NewScheme()
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// startCache starts an informer cache of the WorkflowRuns and their context ConfigMaps, as the
// controller's, for the test's duration.
func startCache(t *testing.T, cfg *rest.Config) cache.Cache {
	t.Helper()
	opts := controller.CacheOptions("")
	var err error
	if opts.Scheme, err = controller.NewScheme(); err != nil {
		t.Fatal(err)
	}
	ca, err := cache.New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan error, 1)
	go func() { started <- ca.Start(t.Context()) }()
	t.Cleanup(func() {
		if err := <-started; err != nil {
			t.Errorf("informer cache: %v", err)
		}
	})
	for _, obj := range []client.Object{&v1alpha1.WorkflowRun{}, &corev1.ConfigMap{}} {
		if _, err := ca.GetInformer(t.Context(), obj); err != nil {
			t.Fatal(err)
		}
	}
	if !ca.WaitForCacheSync(t.Context()) {
		t.Fatal("the informer cache did not sync")
	}
	return ca
}

// createFromYAML creates the object of a YAML document in the default namespace, as
// `kubectl create` would.
func createFromYAML(t *testing.T, c client.Client, doc string, obj client.Object) {
	t.Helper()
	if err := yaml.UnmarshalStrict([]byte(doc), obj); err != nil {
		t.Fatal(err)
	}
	obj.SetNamespace("default")
	if err := c.Create(t.Context(), obj); err != nil {
		t.Fatalf("create %s: %v", obj.GetName(), err)
	}
}

// waitFinished waits until every WorkflowRun has finished; past the deadline its error lists
// those that have not.
func waitFinished(ctx context.Context, c client.Client, deadline time.Duration) error {
	end := time.Now().Add(deadline)
	for {
		unfinished, err := unfinishedRuns(ctx, c)
		switch {
		case err == nil && len(unfinished) == 0:
			return nil
		case time.Now().Before(end):
			time.Sleep(200 * time.Millisecond)
		case err != nil:
			return fmt.Errorf("runs not finished after %s: %w", deadline, err)
		default:
			return fmt.Errorf("%d runs not finished after %s:\n%s", len(unfinished), deadline, strings.Join(unfinished, "\n"))
		}
	}
}

// unfinishedRuns lists the WorkflowRuns of the default namespace that have not finished, each
// with its phase, message and steps' phases.
func unfinishedRuns(ctx context.Context, c client.Client) ([]string, error) {
	var list v1alpha1.WorkflowRunList
	if err := c.List(ctx, &list, client.InNamespace("default")); err != nil {
		return nil, fmt.Errorf("list WorkflowRuns: %w", err)
	}
	var out []string
	for _, run := range list.Items {
		st := run.Status
		if st.Finished {
			continue
		}
		steps := make([]string, len(st.Steps))
		for i, s := range st.Steps {
			steps[i] = fmt.Sprintf("%s %s %s", s.Name, s.Phase, s.Message)
		}
		out = append(out, fmt.Sprintf("%s: %q %s; steps: %s", run.Name, st.Phase, st.Message, strings.Join(steps, ", ")))
	}
	return out, nil
}
