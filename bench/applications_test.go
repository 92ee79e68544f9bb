package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"sort"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/stepflow/stepflow/api/v1beta1"
	"github.com/stepflow/stepflow/apiservertest"
	"github.com/stepflow/stepflow/assembly"
	"github.com/stepflow/stepflow/cluster"
	"github.com/stepflow/stepflow/controller"
)

// twoClusters names the benchmark's API servers: "" and "east" are the control plane's,
// "west" the second.
type twoClusters struct{ east, west *cluster.Registry }

func (c twoClusters) pick(name string) (*cluster.Registry, error) {
	switch name {
	case "", "local", "east":
		return c.east, nil
	case "west":
		return c.west, nil
	}
	return nil, fmt.Errorf("no cluster %q", name)
}

func (c twoClusters) Client(ctx context.Context, name string) (client.Client, error) {
	r, err := c.pick(name)
	if err != nil {
		return nil, err
	}
	return r.Client(ctx, "")
}

func (c twoClusters) Config(ctx context.Context, name string) (*rest.Config, error) {
	r, err := c.pick(name)
	if err != nil {
		return nil, err
	}
	return r.Config(ctx, "")
}

// BenchmarkApplications is issue 18's target: 100 Applications, each a webservice with the
// scaler and gateway traits under a topology of two clusters (two real API servers), created
// at once and reconciled by the controller in this process, to every one `running`. A stand-in
// for kube-controller-manager and an ingress controller marks the Deployments ready and the
// Ingresses given an address, in both clusters, as they appear. It reports the seconds to all
// running and the API requests the controller made per Application (at its transports, to both
// API servers; the benchmark's own requests are not counted).
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
	counter := &countingTransport{by: map[string]int{}, lat: map[string]time.Duration{}}
	wrap := func(cfg *rest.Config) *rest.Config {
		cfg = rest.CopyConfig(cfg)
		cfg.QPS, cfg.Burst = 1000, 2000
		cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper {
			return roundTrip(func(r *http.Request) (*http.Response, error) { return countRequest(counter, rt, r) })
		}
		return cfg
	}
	eastCfg, westCfg := wrap(east.Config), wrap(west.Config)
	mgr, err := ctrl.NewManager(eastCfg, manager.Options{
		Scheme: scheme, Cache: controller.CacheOptions(ns), Metrics: metricsserver.Options{BindAddress: "0"},
		Controller: skipNameValidation(),
	})
	if err != nil {
		b.Fatal(err)
	}
	clusters := twoClusters{
		east: cluster.New(eastCfg, cluster.Options{QPS: 1000, Burst: 2000}),
		west: cluster.New(westCfg, cluster.Options{QPS: 1000, Burst: 2000}),
	}
	settings := assembly.Config{Workers: 64, Providers: assembly.Providers{Clusters: clusters},
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	if _, err := controller.Setup(mgr, controller.Options{Assembly: settings, Applications: true}); err != nil {
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
	go func() { _ = mgr.Start(ctx) }()
	if !mgr.GetCache().WaitForCacheSync(ctx) {
		b.Fatal("cache did not sync")
	}
	var standIn sync.WaitGroup
	defer standIn.Wait()
	defer cancel()
	for _, cl := range clients {
		standIn.Go(func() { markReady(ctx, cl, ns) })
	}

	counter.mu.Lock()
	counter.by = map[string]int{}
	counter.mu.Unlock()
	before := counter.total.Load()
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
	deadline := time.Now().Add(5 * time.Minute)
	phases := map[v1beta1.ApplicationPhase]int{}
	for {
		var list v1beta1.ApplicationList
		if err := clients[0].List(ctx, &list, client.InNamespace(ns)); err != nil {
			b.Fatal(err)
		}
		was := phases[v1beta1.ApplicationRunning]
		phases = map[v1beta1.ApplicationPhase]int{}
		for _, a := range list.Items {
			phases[a.Status.Phase]++
		}
		if now := phases[v1beta1.ApplicationRunning]; now/10 != was/10 {
			b.Logf("%s: %d running", time.Since(start).Round(100*time.Millisecond), now)
		}
		if phases[v1beta1.ApplicationRunning] == n || phases[v1beta1.ApplicationWorkflowFailed] > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	if phases[v1beta1.ApplicationRunning] != n {
		b.Fatalf("after %s: phases %v", elapsed.Round(time.Millisecond), phases)
	}
	requests := counter.total.Load() - before
	b.ReportMetric(elapsed.Seconds(), "s/all-running")
	b.ReportMetric(float64(requests)/float64(n), "requests/app")
	counter.mu.Lock()
	var keys []string
	for k := range counter.by {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return counter.by[keys[i]] > counter.by[keys[j]] })
	for _, k := range keys {
		b.Logf("%6.2f/app  %s", float64(counter.by[k])/float64(n), k)
	}
	counter.mu.Unlock()
}

// roundTrip is an http.RoundTripper of a function.
type roundTrip func(*http.Request) (*http.Response, error)

func (f roundTrip) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// countRequest counts a request in t, as countingTransport does, and sends it through next.
func countRequest(t *countingTransport, next http.RoundTripper, r *http.Request) (*http.Response, error) {
	c := &countingTransport{next: next, by: map[string]int{}, lat: map[string]time.Duration{}}
	resp, err := c.RoundTrip(r)
	t.total.Add(1)
	t.mu.Lock()
	for k, v := range c.by {
		t.by[k] += v
	}
	t.mu.Unlock()
	return resp, err
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

// markReady stands in for kube-controller-manager and an ingress controller until ctx ends:
// Deployments ready with all their replicas, Ingresses given an address.
func markReady(ctx context.Context, c client.Client, ns string) {
	done := map[string]bool{}
	for ctx.Err() == nil {
		var ds appsv1.DeploymentList
		if c.List(ctx, &ds, client.InNamespace(ns)) == nil {
			for i := range ds.Items {
				d := &ds.Items[i]
				if d.Status.ObservedGeneration == d.Generation {
					continue
				}
				r := int32(1)
				if d.Spec.Replicas != nil {
					r = *d.Spec.Replicas
				}
				d.Status = appsv1.DeploymentStatus{ObservedGeneration: d.Generation, Replicas: r, ReadyReplicas: r, UpdatedReplicas: r, AvailableReplicas: r}
				_ = c.Status().Update(ctx, d)
			}
		}
		var ings networkingv1.IngressList
		if c.List(ctx, &ings, client.InNamespace(ns)) == nil {
			for i := range ings.Items {
				in := &ings.Items[i]
				if done[in.Name] || len(in.Status.LoadBalancer.Ingress) > 0 {
					continue
				}
				in.Status.LoadBalancer.Ingress = []networkingv1.IngressLoadBalancerIngress{{IP: "10.0.0.1"}}
				if c.Status().Update(ctx, in) == nil {
					done[in.Name] = true
				}
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}
