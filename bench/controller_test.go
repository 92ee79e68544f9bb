package bench

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/apiservertest"
	"github.com/stepflow/stepflow/assembly"
	"github.com/stepflow/stepflow/cluster"
	"github.com/stepflow/stepflow/controller"
)

// BenchmarkController is the three-step WorkflowRun benchmark of ../shared/bench/wr-bench.sh
// (apply-object of a ConfigMap, read-object with an output, print-message-in-status with that
// input) against a real kube-apiserver and etcd on this machine, with the controller in this
// process. It reports the seconds from the first create to every run succeeded, the API requests
// the controller made per run (counted at its HTTP transport; the benchmark's own creates and
// polls are not counted), the CPU seconds of this process and its peak RSS while the runs went
// through. Without the binaries of make kube-assets it is skipped.
//
//	go test -run '^$' -bench Controller -benchtime 1x ./bench/
func BenchmarkController(b *testing.B) {
	if testing.Short() {
		b.Skip("needs kube-apiserver and etcd")
	}
	c, err := apiservertest.Start()
	if errors.Is(err, apiservertest.ErrNoAssets) {
		b.Skip(err)
	}
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		if err := c.Stop(); err != nil {
			b.Error(err)
		}
	}()
	for _, n := range []int{200, 1000} {
		b.Run(fmt.Sprintf("runs=%d", n), func(b *testing.B) {
			for i := range b.N {
				benchControllerOnce(b, c, n, fmt.Sprintf("b%d-%d", n, i))
			}
		})
	}
}

// countingTransport counts the requests that go through it, by verb and resource.
type countingTransport struct {
	next  http.RoundTripper
	total atomic.Int64
	mu    sync.Mutex
	by    map[string]int
	lat   map[string]time.Duration
}

func (t *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	t.total.Add(1)
	verb := r.Method
	if r.URL.Query().Get("watch") == "true" {
		verb = "WATCH"
	}
	// /api/v1/namespaces/NS/configmaps/NAME/status -> configmaps/status
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	res := r.URL.Path
	for i, p := range parts {
		if p == "namespaces" && i+2 < len(parts) {
			rest := parts[i+2:]
			res = rest[0]
			if len(rest) > 2 {
				res += "/" + rest[2]
			}
			break
		}
	}
	start := time.Now()
	resp, err := t.next.RoundTrip(r)
	t.mu.Lock()
	t.by[verb+" "+res]++
	if verb != "WATCH" {
		t.lat[verb+" "+res] += time.Since(start)
	}
	t.mu.Unlock()
	return resp, err
}

func benchControllerOnce(b *testing.B, c *apiservertest.Cluster, n int, prefix string) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	scheme, err := controller.NewScheme()
	if err != nil {
		b.Fatal(err)
	}
	counter := &countingTransport{by: map[string]int{}, lat: map[string]time.Duration{}}
	cfg := rest.CopyConfig(c.Config)
	cfg.QPS, cfg.Burst = 1000, 2000
	cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper { counter.next = rt; return counter }
	mgr, err := ctrl.NewManager(cfg, manager.Options{
		Scheme:     scheme,
		Cache:      controller.CacheOptions(prefix),
		Metrics:    metricsserver.Options{BindAddress: "0"},
		Controller: skipNameValidation(),
	})
	if err != nil {
		b.Fatal(err)
	}
	clusters := cluster.New(cfg, cluster.Options{Secrets: mgr.GetClient(), QPS: 1000, Burst: 2000, Scheme: scheme})
	watches := controller.NewWatches(cfg, clusters, nil)
	settings := assembly.Config{Workers: 256, Providers: assembly.Providers{Clusters: clusters}}
	if _, err := controller.Setup(mgr, controller.Options{Assembly: settings, Watches: watches}); err != nil {
		b.Fatal(err)
	}
	clientCfg := rest.CopyConfig(c.Config)
	clientCfg.QPS, clientCfg.Burst = 1000, 2000
	cl, err := client.New(clientCfg, client.Options{Scheme: scheme})
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	if !mgr.GetCache().WaitForCacheSync(ctx) {
		b.Fatal("cache did not sync")
	}

	// One run first, as a controller that has been up has done: its caches are synced, the
	// step types compiled, the kinds it reads are mapped and watched.
	warm := benchRun(prefix+"-warm", 0)
	warm.Labels[controller.ShardLabel] = prefix
	if err := cl.Create(ctx, warm); err != nil {
		b.Fatal(err)
	}
	for {
		var wr v1alpha1.WorkflowRun
		if err := mgr.GetCache().Get(ctx, client.ObjectKeyFromObject(warm), &wr); err == nil && wr.Status.Finished {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}

	rss := startRSS(b)
	var ru0 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	before := counter.total.Load()
	counter.mu.Lock()
	counter.by = map[string]int{}
	counter.lat = map[string]time.Duration{}
	counter.mu.Unlock()

	if path := os.Getenv("APISERVER_PROFILE"); path != "" {
		// A CPU profile of kube-apiserver while the runs go through, to see what bounds them.
		go func() {
			raw, err := kubernetes.NewForConfigOrDie(clientCfg).CoreV1().RESTClient().Get().
				AbsPath("/debug/pprof/profile").Param("seconds", "6").DoRaw(ctx)
			if err == nil {
				err = os.WriteFile(path, raw, 0o644)
			}
			if err != nil {
				b.Logf("apiserver profile: %v", err)
			}
		}()
	}
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	jobs := make(chan int)
	for range 8 {
		wg.Go(func() {
			for i := range jobs {
				if err := cl.Create(ctx, benchRun(prefix, i)); err != nil {
					b.Error(err)
				}
			}
		})
	}
	for i := range n {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	created := time.Since(start)
	wrong := 0
	var firstFailure string
	for {
		// The runs are watched through the manager's cache (the same watch the controller
		// uses), so finding out costs the API server nothing more.
		var list v1alpha1.WorkflowRunList
		if err := mgr.GetCache().List(ctx, &list, client.InNamespace("default"), client.MatchingLabels{controller.ShardLabel: prefix}, client.UnsafeDisableDeepCopy); err != nil {
			b.Fatal(err)
		}
		succeeded, failed := 0, 0
		wrong = 0
		for i := range list.Items {
			wr := &list.Items[i]
			switch wr.Status.Phase {
			case v1alpha1.RunSucceeded:
				succeeded++
				want := "v" + strings.TrimPrefix(wr.Name, prefix+"-")
				if wr.Name == warm.Name {
					want = "v0"
				}
				if len(wr.Status.Steps) != 3 || wr.Status.Steps[2].Message != want {
					wrong++
				}
			case v1alpha1.RunFailed:
				failed++
				if firstFailure == "" {
					firstFailure = wr.Name + ": " + wr.Status.Message
				}
			}
		}
		if succeeded+failed >= n+1 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	if os.Getenv("BENCH_DEBUG") != "" {
		var cms corev1.ConfigMapList
		_ = cl.List(ctx, &cms, client.InNamespace("default"), client.MatchingLabels{"workflowrun.oam.dev/context": "true"})
		bad := 0
		for _, cm := range cms.Items {
			if strings.Contains(cm.Data["logs"], "error") || strings.Contains(cm.Data["logs"], "fail") {
				bad++
				if bad < 3 {
					b.Logf("%s: %s", cm.Name, cm.Data["logs"])
				}
			}
		}
		b.Logf("%d of %d runs logged errors", bad, len(cms.Items))
		raw, err := kubernetes.NewForConfigOrDie(clientCfg).CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
		if err == nil {
			for line := range strings.SplitSeq(string(raw), "\n") {
				if (strings.HasPrefix(line, "apiserver_request_duration_seconds_sum") || strings.HasPrefix(line, "apiserver_request_duration_seconds_count")) &&
					(strings.Contains(line, `resource="workflowruns"`) || strings.Contains(line, `resource="configmaps"`)) {
					b.Log(line)
				}
				if strings.HasPrefix(line, "apiserver_flowcontrol_request_wait_duration_seconds_count") || strings.HasPrefix(line, "apiserver_flowcontrol_request_concurrency_limit") || strings.HasPrefix(line, "apiserver_flowcontrol_nominal_limit_seats") || (strings.HasPrefix(line, "apiserver_request_duration_seconds_sum") && strings.Contains(line, "workflowruns")) || (strings.HasPrefix(line, "apiserver_request_duration_seconds_count") && strings.Contains(line, "workflowruns")) {
					b.Log(line)
				}
			}
		}
	}
	requests := counter.total.Load() - before
	var ru1 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	cpu := time.Duration(ru1.Utime.Nano()+ru1.Stime.Nano()-ru0.Utime.Nano()-ru0.Stime.Nano()) * time.Nanosecond
	if firstFailure != "" {
		b.Errorf("runs failed, the first: %s", firstFailure)
	}
	if wrong > 0 {
		b.Errorf("%d runs succeeded with the wrong message", wrong)
	}
	b.ReportMetric(elapsed.Seconds(), "s/all-succeeded")
	b.ReportMetric(float64(requests)/float64(n), "requests/run")
	b.ReportMetric(cpu.Seconds(), "cpu-s")
	rss.report(b, 0)
	counter.mu.Lock()
	var lines []string
	for k, v := range counter.by {
		lines = append(lines, fmt.Sprintf("%s=%.2f(avg %v)", k, float64(v)/float64(n), (counter.lat[k]/time.Duration(v)).Round(time.Millisecond)))
	}
	counter.mu.Unlock()
	sort.Strings(lines)
	b.Logf("runs=%d created in %.2fs, all succeeded in %.2fs; requests per run by kind: %s", n, created.Seconds(), elapsed.Seconds(), strings.Join(lines, " "))
	cancel()
	if err := <-done; err != nil {
		b.Errorf("manager: %v", err)
	}
}

// benchRun is run i of wr-bench.sh's shape.
func benchRun(prefix string, i int) *v1alpha1.WorkflowRun {
	name := fmt.Sprintf("%s-%d", prefix, i)
	raw := func(s string) *runtime.RawExtension { return &runtime.RawExtension{Raw: []byte(s)} }
	return &v1alpha1.WorkflowRun{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Labels: map[string]string{controller.ShardLabel: prefix}},
		Spec: v1alpha1.WorkflowRunSpec{WorkflowSpec: &v1alpha1.WorkflowSpec{Steps: []v1alpha1.WorkflowStep{
			{WorkflowStepBase: v1alpha1.WorkflowStepBase{Name: "cm", Type: "apply-object", Properties: raw(fmt.Sprintf(
				`{"value":{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"%s-cm","namespace":"default"},"data":{"k":"v%d"}}}`, name, i))}},
			{WorkflowStepBase: v1alpha1.WorkflowStepBase{Name: "read", Type: "read-object", Properties: raw(fmt.Sprintf(
				`{"apiVersion":"v1","kind":"ConfigMap","name":"%s-cm","namespace":"default"}`, name)),
				Outputs: v1alpha1.StepOutputs{{Name: "val", ValueFrom: "output.value.data.k"}}}},
			{WorkflowStepBase: v1alpha1.WorkflowStepBase{Name: "msg", Type: "print-message-in-status",
				Inputs: v1alpha1.StepInputs{{From: "val", ParameterKey: "message"}}}},
		}}},
	}
}

func skipNameValidation() config.Controller {
	skip := true
	return config.Controller{SkipNameValidation: &skip}
}
