package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/api/v1beta1"
	"github.com/stepflow/stepflow/apiservertest"
	"github.com/stepflow/stepflow/assembly"
	"github.com/stepflow/stepflow/cluster"
	"github.com/stepflow/stepflow/controller"
)

// BenchmarkApplications is issue 18's target: 100 Applications, each a webservice with the
// scaler and gateway traits under a topology of two clusters (two real API servers, east and
// west, registered as KubeVela's cluster Secrets in vela-system), created at once and
// reconciled by the controller in this process, set up as `stepflow controller` sets itself up
// (the Application reconciler, the WorkflowRun engine with its child CUE evaluators, the
// watches that wake waiting steps), to every one `running`. The Applications are delivered by
// the lifecycle's runs as they are merged: one `deploy` step each. A stand-in for
// kube-controller-manager and an ingress controller watches both clusters and marks the
// Deployments ready and gives the Ingresses an address as they appear.
//
// One Application is taken to running first, as a controller that has been up has done (its
// caches synced, its kinds mapped and watched, the definitions compiled in its evaluators). It
// reports the seconds from the first create to all 100 running, the API requests the
// controller made per Application (at its transports, to both API servers, by cluster, verb and
// resource; the benchmark's creates and polls and the stand-in's are not counted) and the CPU
// seconds of the controller (this process, where the stand-in and the polls are a small part)
// and of its CUE evaluators, kube-apiserver and etcd (its child processes).
//
//	go test -run '^$' -bench Applications -benchtime 1x ./bench/
func BenchmarkApplications(b *testing.B) {
	if testing.Short() {
		b.Skip("needs kube-apiserver and etcd")
	}
	var apis []*apiservertest.Cluster
	for range 2 {
		c, err := apiservertest.Start()
		if errors.Is(err, apiservertest.ErrNoAssets) {
			b.Skip(err)
		}
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = c.Stop() })
		apis = append(apis, c)
	}
	for i := range b.N {
		benchApplicationsOnce(b, apis[0], apis[1], 100, fmt.Sprintf("apps-%d", i))
	}
}

func benchApplicationsOnce(b *testing.B, east, west *apiservertest.Cluster, n int, ns string) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	scheme, err := controller.NewScheme()
	if err != nil {
		b.Fatal(err)
	}
	counter := &requestCounter{hosts: map[string]string{hostOf(east.Config): "east", hostOf(west.Config): "west"}, by: map[string]int{}}
	// The manager's client and cache, and the clusters' clients, as `stepflow controller` makes
	// them (--kube-api-qps and --kube-api-burst raised for a burst of 100 Applications).
	local := rest.CopyConfig(east.Config)
	local.QPS, local.Burst = 1000, 2000
	mgrCfg := rest.CopyConfig(local)
	mgrCfg.Wrap(counter.wrap)
	mgr, err := ctrl.NewManager(mgrCfg, manager.Options{
		Scheme: scheme, Cache: controller.CacheOptions(ns), Metrics: metricsserver.Options{BindAddress: "0"},
		Controller: skipNameValidation(),
	})
	if err != nil {
		b.Fatal(err)
	}
	clusters := cluster.New(local, cluster.Options{Secrets: mgr.GetClient(), QPS: 1000, Burst: 2000, Scheme: scheme, WrapTransport: counter.wrap})
	watches := controller.NewWatches(mgrCfg, clusters, nil)
	settings := assembly.Config{Providers: assembly.Providers{Clusters: clusters},
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	if _, err := controller.Setup(mgr, controller.Options{Assembly: settings, Watches: watches, Applications: true}); err != nil {
		b.Fatal(err)
	}

	var clients []client.Client
	for _, c := range []*apiservertest.Cluster{east, west} {
		cfg := rest.CopyConfig(c.Config)
		cfg.QPS, cfg.Burst = 1000, 2000
		cl, err := client.New(cfg, client.Options{Scheme: scheme})
		if err != nil {
			b.Fatal(err)
		}
		if err := cl.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			b.Fatal(err)
		}
		clients = append(clients, cl)
	}
	if err := registerClusters(ctx, clients[0], map[string]*rest.Config{"east": east.Config, "west": west.Config}); err != nil {
		b.Fatal(err)
	}
	var standIn sync.WaitGroup
	defer standIn.Wait()
	defer cancel()
	for _, c := range []*apiservertest.Cluster{east, west} {
		standIn.Go(func() {
			if err := readyOnWatch(ctx, c.Config, ns); err != nil && ctx.Err() == nil {
				b.Error(err)
			}
		})
	}
	stopped := make(chan error, 1)
	go func() { stopped <- mgr.Start(ctx) }()
	if !mgr.GetCache().WaitForCacheSync(ctx) {
		b.Fatal("cache did not sync")
	}

	// The warm-up Application, as one a controller that has been up has delivered.
	if err := clients[0].Create(ctx, benchApp(ns, n)); err != nil {
		b.Fatal(err)
	}
	// The Applications are polled through the manager's cache (the controller's own watch of
	// them), which costs the API server nothing.
	if _, err := waitRunning(ctx, mgr.GetCache(), ns, 1, 2*time.Minute, nil); err != nil {
		b.Fatal("warm-up: ", err)
	}

	// What the API servers and etcd use idle (their own loops, the watches open), to tell
	// from what the Applications cost them.
	idle0 := readCPU()
	time.Sleep(5 * time.Second)
	idle := readCPU().since(idle0)

	counter.reset()
	cpu0 := readCPU()
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	jobs := make(chan int)
	for range 8 {
		wg.Go(func() {
			for i := range jobs {
				if err := clients[0].Create(ctx, benchApp(ns, i)); err != nil {
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
	_, err = waitRunning(ctx, mgr.GetCache(), ns, n+1, 5*time.Minute, func(running int) {
		b.Logf("%s: %d running", time.Since(start).Round(100*time.Millisecond), running-1)
	})
	if err != nil {
		b.Fatal(err)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	if os.Getenv("BENCH_DEBUG") != "" {
		for _, name := range []string{"app-0-v1", "app-50-v1", "app-99-v1"} {
			var cm corev1.ConfigMap
			_ = clients[0].Get(ctx, client.ObjectKey{Namespace: ns, Name: "workflow-" + name + "-context"}, &cm)
			var wr v1alpha1.WorkflowRun
			_ = clients[0].Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &wr)
			b.Logf("%s (created %s): %+v\nlogs: %s", name, wr.CreationTimestamp.Sub(start), wr.Status, cm.Data["logs"])
		}
	}
	cpu := readCPU().since(cpu0)
	total, by := counter.snapshot()
	cancel()
	if err := <-stopped; err != nil {
		b.Errorf("manager: %v", err)
	}

	b.ReportMetric(elapsed.Seconds(), "s/all-running")
	b.ReportMetric(float64(total)/float64(n), "requests/app")
	b.ReportMetric(cpu.self.Seconds(), "controller-cpu-s")
	b.ReportMetric(cpu.evaluators.Seconds(), "evaluators-cpu-s")
	b.ReportMetric(cpu.apiservers.Seconds(), "apiservers-cpu-s")
	b.ReportMetric(cpu.etcd.Seconds(), "etcd-cpu-s")
	b.ReportMetric((idle.apiservers+idle.etcd).Seconds()/5, "idle-apiservers+etcd-cpu-s/s")
	keys := make([]string, 0, len(by))
	for k := range by {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(x, y string) int { return by[y] - by[x] })
	for _, k := range keys {
		b.Logf("%6.2f/app  %s", float64(by[k])/float64(n), k)
	}
	if load, err := os.ReadFile("/proc/loadavg"); err == nil {
		b.Logf("load average after: %s", bytes.TrimSpace(load))
	}
}

// waitRunning polls the Applications of ns until want of them are running, and returns how
// long that took; a failed one, or timeout passing, is an error. progress, when set, is called
// as each further tenth of them is running.
func waitRunning(ctx context.Context, c client.Reader, ns string, want int, timeout time.Duration, progress func(running int)) (time.Duration, error) {
	start := time.Now()
	deadline := start.Add(timeout)
	was := 0
	for {
		var list v1beta1.ApplicationList
		if err := c.List(ctx, &list, client.InNamespace(ns), client.UnsafeDisableDeepCopy); err != nil {
			return 0, err
		}
		phases := map[v1beta1.ApplicationPhase]int{}
		for _, a := range list.Items {
			phases[a.Status.Phase]++
			if a.Status.Phase == v1beta1.ApplicationWorkflowFailed && a.Status.Workflow != nil {
				return 0, fmt.Errorf("application %s failed: %s %+v", a.Name, a.Status.Workflow.Message, a.Status.Workflow.Steps)
			}
		}
		now := phases[v1beta1.ApplicationRunning]
		if progress != nil && now/10 != was/10 {
			progress(now)
		}
		was = now
		if now >= want {
			return time.Since(start), nil
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("after %s: phases %v", timeout, phases)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// registerClusters writes a KubeVela cluster Secret (X509Certificate) in vela-system for each
// named cluster, which is how the controller learns the clusters topology policies name.
func registerClusters(ctx context.Context, c client.Client, clusters map[string]*rest.Config) error {
	err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: v1alpha1.SystemNamespace}})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	for name, cfg := range clusters {
		s := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: v1alpha1.SystemNamespace, Name: name,
				Labels: map[string]string{cluster.LabelCredentialType: "X509Certificate"}},
			Data: map[string][]byte{cluster.KeyEndpoint: []byte(cfg.Host), cluster.KeyCA: cfg.CAData, cluster.KeyCert: cfg.CertData, cluster.KeyKey: cfg.KeyData},
		}
		if err := c.Create(ctx, s); err != nil && !apierrors.IsAlreadyExists(err) {
			return err
		}
	}
	return nil
}

// requestCounter counts the requests of the controller's clients by cluster (the API server's
// host), verb and resource.
type requestCounter struct {
	hosts map[string]string
	total atomic.Int64
	mu    sync.Mutex
	by    map[string]int
}

func (c *requestCounter) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTrip(func(r *http.Request) (*http.Response, error) {
		c.total.Add(1)
		k := c.hosts[r.URL.Host] + " " + requestKind(r)
		c.mu.Lock()
		c.by[k]++
		c.mu.Unlock()
		return rt.RoundTrip(r)
	})
}

func (c *requestCounter) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.total.Store(0)
	c.by = map[string]int{}
}

func (c *requestCounter) snapshot() (int64, map[string]int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.total.Load(), maps.Clone(c.by)
}

// requestKind is a request's verb (WATCH for a watch) and resource with its subresource:
// PATCH deployments, PUT applications/status.
func requestKind(r *http.Request) string {
	verb := r.Method
	if r.URL.Query().Get("watch") == "true" {
		verb = "WATCH"
	}
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	// /api/v1/... or /apis/GROUP/VERSION/...; then namespaces/NS when namespaced.
	i := 2
	if len(parts) > 0 && parts[0] == "apis" {
		i = 3
	}
	if i+1 < len(parts) && parts[i] == "namespaces" && i+2 < len(parts) {
		i += 2
	}
	if i >= len(parts) {
		return verb + " " + r.URL.Path
	}
	res := parts[i]
	if i+2 < len(parts) {
		res += "/" + parts[i+2]
	}
	return verb + " " + res
}

func hostOf(cfg *rest.Config) string {
	h := strings.TrimPrefix(strings.TrimPrefix(cfg.Host, "https://"), "http://")
	return strings.TrimSuffix(h, "/")
}

// roundTrip is an http.RoundTripper of a function.
type roundTrip func(*http.Request) (*http.Response, error)

func (f roundTrip) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// cpuTimes are CPU times of this process and of its child processes by what they are.
type cpuTimes struct {
	self, evaluators, apiservers, etcd time.Duration
}

func (c cpuTimes) since(o cpuTimes) cpuTimes {
	return cpuTimes{self: c.self - o.self, evaluators: c.evaluators - o.evaluators, apiservers: c.apiservers - o.apiservers, etcd: c.etcd - o.etcd}
}

// readCPU reads the CPU time, user and system, of this process, and of its running children
// from /proc by their command: kube-apiserver, etcd, and the rest (the CUE evaluators, this
// test binary run again) with the children that ended, which are evaluators too.
func readCPU() cpuTimes {
	var out cpuTimes
	var self, ended syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &self)
	_ = syscall.Getrusage(syscall.RUSAGE_CHILDREN, &ended)
	out.self = time.Duration(self.Utime.Nano() + self.Stime.Nano())
	out.evaluators = time.Duration(ended.Utime.Nano() + ended.Stime.Nano())
	entries, _ := os.ReadDir("/proc")
	me := strconv.Itoa(os.Getpid())
	for _, e := range entries {
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		open, end := bytes.IndexByte(stat, '('), bytes.LastIndexByte(stat, ')')
		if open < 0 || end < open || end+2 > len(stat) {
			continue
		}
		f := strings.Fields(string(stat[end+2:]))
		if len(f) < 13 || f[1] != me {
			continue
		}
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		d := time.Duration(ut+st) * 10 * time.Millisecond // USER_HZ is 100
		switch comm := string(stat[open+1 : end]); comm {
		case "kube-apiserver":
			out.apiservers += d
		case "etcd":
			out.etcd += d
		default:
			out.evaluators += d
		}
	}
	return out
}

// benchApp is Application i: a webservice with scaler and gateway under a topology of east
// and west.
func benchApp(ns string, i int) *v1beta1.Application {
	raw := func(s string) *runtime.RawExtension { return &runtime.RawExtension{Raw: []byte(s)} }
	return &v1beta1.Application{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("app-%d", i), Labels: map[string]string{controller.ShardLabel: ns}},
		Spec: v1beta1.ApplicationSpec{
			Components: []v1beta1.ApplicationComponent{{
				Name: fmt.Sprintf("web-%d", i), Type: "webservice",
				Properties: raw(`{"image":"nginx:1.27","ports":[{"port":80,"expose":true}]}`),
				Traits: []v1beta1.ApplicationTrait{
					{Type: "scaler", Properties: raw(`{"replicas":2}`)},
					{Type: "gateway", Properties: raw(fmt.Sprintf(`{"domain":"app-%d.example.com","http":{"/":80}}`, i))},
				},
			}},
			Policies: []v1beta1.AppPolicy{{Name: "both", Type: "topology", Properties: raw(`{"clusters":["east","west"]}`)}},
		},
	}
}

// readyOnWatch stands in for kube-controller-manager and an ingress controller in one cluster
// until ctx ends: it watches the Deployments and Ingresses of ns, as those controllers do, and
// as each is added or changed marks a Deployment ready with all its replicas at its generation
// and gives an Ingress an address.
func readyOnWatch(ctx context.Context, cfg *rest.Config, ns string) error {
	cfg = rest.CopyConfig(cfg)
	cfg.QPS, cfg.Burst = 1000, 2000
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	work := make(chan any, 1024)
	factory := informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithNamespace(ns))
	handler := toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { work <- obj },
		UpdateFunc: func(_, obj any) { work <- obj },
	}
	if _, err := factory.Apps().V1().Deployments().Informer().AddEventHandler(handler); err != nil {
		return err
	}
	if _, err := factory.Networking().V1().Ingresses().Informer().AddEventHandler(handler); err != nil {
		return err
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-ctx.Done():
					return
				case obj := <-work:
					markOne(ctx, cs, obj)
				}
			}
		})
	}
	factory.Start(ctx.Done())
	<-ctx.Done()
	factory.Shutdown()
	wg.Wait()
	return nil
}

func markOne(ctx context.Context, cs kubernetes.Interface, obj any) {
	switch o := obj.(type) {
	case *appsv1.Deployment:
		want := int32(1)
		if o.Spec.Replicas != nil {
			want = *o.Spec.Replicas
		}
		if o.Status.ObservedGeneration == o.Generation && o.Status.ReadyReplicas == want && o.Status.UpdatedReplicas == want {
			return
		}
		d := o.DeepCopy()
		d.Status = appsv1.DeploymentStatus{ObservedGeneration: d.Generation, Replicas: want, ReadyReplicas: want, UpdatedReplicas: want, AvailableReplicas: want}
		_, _ = cs.AppsV1().Deployments(d.Namespace).UpdateStatus(ctx, d, metav1.UpdateOptions{})
	case *networkingv1.Ingress:
		if len(o.Status.LoadBalancer.Ingress) > 0 {
			return
		}
		in := o.DeepCopy()
		in.Status.LoadBalancer.Ingress = []networkingv1.IngressLoadBalancerIngress{{IP: "203.0.113.7"}}
		_, _ = cs.NetworkingV1().Ingresses(in.Namespace).UpdateStatus(ctx, in, metav1.UpdateOptions{})
	}
}
